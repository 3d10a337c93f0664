"""Compare two models' probes on the same test samples (e.g. LLaVA-1.5 vs SoM-LLaVA).

Samples are paired by ``sample_id`` within each layer, target and probe; the interval of
the difference comes from one cluster bootstrap over images applied to both models, so
it accounts for the pairing.

Example:
    >>> import numpy as np, pandas as pd
    >>> from somprobe.probes.evaluate import ProbeResult, difference_name
    >>> def result(score):
    ...     ps = pd.DataFrame({"layer": 0, "target": "colour", "probe": "task",
    ...                        "metric": "accuracy", "sample_id": range(40),
    ...                        "group": np.repeat(range(10), 4), "y": 0.0, "score": score})
    ...     return ProbeResult(pd.DataFrame(), ps, pd.DataFrame())
    >>> a, b = result(np.tile([1.0, 0, 0, 0], 10)), result(np.tile([1.0, 1, 1, 0], 10))
    >>> out = compare_probes(a, b, names=("llava", "som"), n_boot=100)
    >>> out[["value_a", "value_b", "value"]].round(2).values.tolist()
    [[0.25, 0.75, 0.5]]
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from somprobe.errors import ProbeError
from somprobe.probes.bootstrap import Resampler
from somprobe.probes.evaluate import ProbeResult, difference_name
from somprobe.probes.validate import check_count, check_open_unit

_KEYS = ["layer", "target", "probe"]
#: Probes that do not read the hidden state: the same for any two models.
_MODEL_FREE = ("baseline", "number_baseline")


def compare_probes(
    a: ProbeResult,
    b: ProbeResult,
    names: tuple[str, str] = ("a", "b"),
    *,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Per layer, target and probe: ``b − a`` with a paired cluster-bootstrap interval.

    Only test samples present in both results are used (``n_pairs``). Regression targets
    are compared by R² (their ``y`` must agree). For every control ``p`` of
    :func:`~somprobe.probes.run_probes` scored on the task's samples, the ``task − p``
    row (``selectivity`` for ``control``, else ``task_minus_<p>``) is the difference of
    the two models' task − p differences. ``baseline`` and ``number_baseline`` rows are
    left out: they do not read the model.

    ``n_boot=0`` skips the intervals (``ci_low`` and ``ci_high`` NaN).

    Returns:
        tidy DataFrame: ``layer``, ``target``, ``probe``, ``metric``, ``value`` (b − a),
        ``ci_low``, ``ci_high``, ``value_a``, ``value_b``, ``n_pairs``, ``model_a``,
        ``model_b``.

    Raises:
        ProbeError: no shared test samples, samples of different images, a result without
            the per-sample columns, not two names, ``n_boot`` < 0 or ``ci`` outside (0, 1).
    """
    check_count(n_boot, "n_boot", 0)
    check_open_unit(ci, "ci")
    if isinstance(names, str) or len(names) != 2:
        raise ProbeError(f"names must be two model names (a, b); got {names!r}")
    cols = [*_KEYS, "metric", "sample_id", "group", "y", "score"]
    for side, result in (("a", a), ("b", b)):
        table = getattr(result, "per_sample", None)
        if not isinstance(table, pd.DataFrame):
            raise ProbeError(
                f"{side} must be a ProbeResult (run_probes), got {type(result).__name__}"
            )
        missing = [c for c in cols if c not in table.columns]
        if missing:
            raise ProbeError(
                f"{side}.per_sample lacks column(s) {missing}; pass run_probes' result"
            )
    merged = a.per_sample[cols].merge(
        b.per_sample[cols], on=[*_KEYS, "metric", "sample_id"], suffixes=("_a", "_b")
    )
    merged = merged[~merged["probe"].isin(_MODEL_FREE)]
    if merged.empty:
        raise ProbeError(
            "the two probe results share no test samples; probe the same images with the "
            "same test_size and seed"
        )
    if not (merged["group_a"].astype(str) == merged["group_b"].astype(str)).all():
        raise ProbeError("paired samples belong to different images in the two results")
    regression = set(merged.loc[merged["metric"] == "r2", "target"])
    frames = []
    for (layer, target), g in merged.groupby(["layer", "target"], sort=True):
        stats: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        boot = None
        for probe, gp in g.groupby("probe"):
            gp = gp.sort_values("sample_id", key=lambda s: s.astype(str))
            boot = Resampler(gp["group_a"].to_numpy(), n_boot=n_boot, seed=seed, ci=ci)
            sa, sb = (
                _stat(boot, gp, "a", target in regression),
                _stat(boot, gp, "b", target in regression),
            )
            stats[str(probe)] = (sa, sb)
            frames.append(
                _row(boot, sa, sb, layer, target, str(probe), target in regression, len(gp))
            )
        for probe in sorted(stats):
            if boot is None or probe == "task" or "task" not in stats:
                continue
            if probe.startswith("task_minus_") or probe == "selectivity":
                continue
            if not _same_samples(g, probe):
                continue
            sa = stats["task"][0] - stats[probe][0]
            sb = stats["task"][1] - stats[probe][1]
            n = int((g["probe"] == "task").sum())
            frames.append(
                _row(boot, sa, sb, layer, target, difference_name(probe), target in regression, n)
            )
    out = pd.DataFrame(frames)
    out["model_a"], out["model_b"] = names
    return out


def _same_samples(g: pd.DataFrame, probe: str) -> bool:
    ids = [set(g.loc[g["probe"] == p, "sample_id"].astype(str)) for p in ("task", probe)]
    return ids[0] == ids[1]


def _stat(boot: Resampler, g: pd.DataFrame, side: str, regression: bool) -> np.ndarray:
    score = g[f"score_{side}"].to_numpy()[None]
    if regression:
        return boot.r2(score, g[f"y_{side}"].to_numpy()[None])[:, 0]
    return boot.accuracy(score)[:, 0]


def _row(
    boot: Resampler,
    sa: np.ndarray,
    sb: np.ndarray,
    layer: object,
    target: object,
    probe: str,
    regression: bool,
    n: int,
) -> dict[str, object]:
    point, lo, hi = boot.interval((sb - sa)[:, None])
    return {
        "layer": layer,
        "target": target,
        "probe": probe,
        "metric": "r2" if regression else "accuracy",
        "value": float(point[0]),
        "ci_low": float(lo[0]),
        "ci_high": float(hi[0]),
        "value_a": float(sa[0]),
        "value_b": float(sb[0]),
        "n_pairs": n,
    }
