"""Per-layer probe curves: task, control, selectivity and baseline with intervals.

Example:
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import pandas as pd
    >>> df = pd.DataFrame({"layer": [0, 1, 0, 1], "target": "colour", "metric": "accuracy",
    ...                    "probe": ["task", "task", "control", "control"],
    ...                    "value": [0.5, 0.9, 0.3, 0.3], "ci_low": [0.4, 0.8, 0.2, 0.2],
    ...                    "ci_high": [0.6, 1.0, 0.4, 0.4]})
    >>> ax = plot_probe_curves(df)
    >>> [line.get_label() for line in ax.get_lines()]
    ['task', 'control']
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from somprobe.errors import InputError

_STYLE: dict[str, dict[str, Any]] = {
    "task": {"linestyle": "-", "marker": "o"},
    "control": {"linestyle": "--", "marker": "s"},
    "selectivity": {"linestyle": "-.", "marker": "^"},
    "baseline": {"linestyle": ":", "marker": None},
    "control_number": {"linestyle": "--", "marker": "x"},
    "binding": {"linestyle": "--", "marker": "D"},
    "number_baseline": {"linestyle": ":", "marker": "v"},
}


def plot_probe_curves(
    df: pd.DataFrame,
    target: str | None = None,
    *,
    probes: tuple[str, ...] = ("task", "control", "selectivity", "baseline"),
    ax: Any = None,
) -> Any:
    """Plot a probe score against layer for one target, one line per probe (and model).

    Args:
        df: ``ProbeResult.scores`` (optionally with a ``model`` column, e.g. several
            results concatenated: one colour per model).
        target: which target to draw; may be left out when ``df`` has only one.
        probes: which probe rows to draw, if present.
        ax: matplotlib Axes to draw on (default: a new figure).

    Returns:
        the Axes.

    Raises:
        InputError: ``df`` lacks a score column or has no rows, or no rows for ``target``.
    """
    import matplotlib.pyplot as plt

    need = ["layer", "target", "probe", "metric", "value", "ci_low", "ci_high"]
    missing = [c for c in need if c not in getattr(df, "columns", [])]
    if missing:
        raise InputError(f"df lacks column(s) {missing}; pass ProbeResult.scores")
    if df.empty:
        raise InputError("df has no rows: there is nothing to plot")
    targets = sorted(df["target"].unique())
    if target is None:
        if len(targets) != 1:
            raise InputError(f"df has targets {targets}; pass target= to pick one")
        target = targets[0]
    sub = df[(df["target"] == target) & df["probe"].isin(probes)]
    if sub.empty:
        raise InputError(f"no rows for target {target!r} and probes {probes}; targets: {targets}")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    models = list(sub["model"].unique()) if "model" in sub else [None]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, model in enumerate(models):
        part = sub if model is None else sub[sub["model"] == model]
        for probe in [p for p in probes if p in set(part["probe"])]:
            rows = part[part["probe"] == probe].sort_values("layer")
            label = probe if model is None else f"{model} {probe}"
            colour = colours[(i if model is not None else probes.index(probe)) % len(colours)]
            ax.plot(
                rows["layer"], rows["value"], color=colour, label=label, **_STYLE.get(probe, {})
            )
            ax.fill_between(
                rows["layer"], rows["ci_low"], rows["ci_high"], color=colour, alpha=0.15
            )
    ax.set_xlabel("layer")
    ax.set_ylabel(str(sub["metric"].iloc[0]))
    ax.set_title(f"probe: {target}")
    ax.legend(fontsize="small")
    return ax
