"""Probe every layer for every target, with controls, baselines and intervals.

Protocol (the same for every layer and target):

1. Whole images are held out for testing (``test_size``, :func:`holdout_mask`).
2. On the remaining images, the L2 strength is chosen from ``lambdas`` by grouped
   ``n_folds``-fold cross-validation (held-out log-loss for classification, mean squared
   error for regression), each fold standardised on its own training rows.
3. The probe is refitted on all training images with that strength and scored on the test
   images; intervals come from a cluster bootstrap over test images.

Classification targets use multinomial logistic probes, regression targets ridge probes;
all layers (and folds, and the control task) are fitted together as batched tensor ops.
Rows of ``scores`` have ``probe`` = ``task`` (the target), ``control`` (the Hewitt & Liang
control task, needs tag ids), ``selectivity`` (task − control, paired interval) or
``baseline`` (majority class / training mean).

Example:
    >>> import numpy as np, torch
    >>> g = torch.Generator().manual_seed(0)
    >>> y = np.tile(np.arange(3), 40)
    >>> X = torch.randn(2, 120, 6, generator=g); X[1, :, 0] += 3.0 * torch.tensor(y)
    >>> groups = np.repeat(np.arange(40), 3)
    >>> res = probe_layers(X, {"colour": y}, groups, tag_ids=np.tile([1, 2, 3], 40), n_boot=50)
    >>> acc = res.scores.query("probe == 'task'").set_index("layer")["value"]
    >>> bool(acc[1] > 0.9 and acc[0] < 0.7)
    True
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from somprobe.errors import ProbeError
from somprobe.probes.bootstrap import Resampler
from somprobe.probes.controls import control_labels, majority_class
from somprobe.probes.dataset import ProbeDataset
from somprobe.probes.models import fit_logistic, fit_ridge, fit_standardizer, predict_logits
from somprobe.probes.solver import spectral_preconditioner
from somprobe.probes.splits import group_folds, holdout_mask
from somprobe.probes.validate import (
    check_count,
    check_finite,
    check_open_unit,
    check_strengths,
    check_target_values,
)

Kind = Literal["classification", "regression"]
LOGISTIC_LAMBDAS = tuple(float(v) for v in np.logspace(-4, 1, 6))
RIDGE_LAMBDAS = tuple(float(v) for v in np.logspace(-3, 3, 7))
SCORE_COLUMNS = [
    "layer",
    "target",
    "probe",
    "metric",
    "value",
    "ci_low",
    "ci_high",
    "lam",
    "n_train",
    "n_test",
]


@dataclass
class ProbeResult:
    """Scores and the per-sample test outcomes behind them.

    Attributes:
        scores: tidy table, one row per layer × target × probe: columns ``layer``,
            ``target``, ``probe``, ``metric`` (``accuracy`` or ``r2``), ``value``,
            ``ci_low``, ``ci_high``, ``lam`` (chosen L2 strength), ``n_train``, ``n_test``.
        per_sample: one row per layer × target × probe × test sample with ``metric``,
            ``sample_id``, ``group``, ``y`` (true value, for R²) and ``score`` (1/0 correct,
            or squared error); :func:`compare_probes` pairs two results through it.
        cv: cross-validation curve: ``layer``, ``target``, ``probe``, ``lam``, ``cv_loss``.
    """

    scores: pd.DataFrame
    per_sample: pd.DataFrame
    cv: pd.DataFrame


def _infer_kind(values: np.ndarray) -> Kind:
    return "regression" if np.asarray(values).dtype.kind == "f" else "classification"


def _auto_chunk(n: int, d: int, n_problems: int, n_classes: int, budget: float = 2**31) -> int:
    """Layers per chunk so that features, L-BFGS history and logits fit in ``budget`` bytes."""
    params = n_problems * d * n_classes * 26  # theta, gradients, 2 x 10 history, temporaries
    # float32 features, their train/test split and a bfloat16 copy; logits and temporaries
    per_layer = 4.0 * (2.5 * n * d + params + 8 * n * n_problems * n_classes)
    return max(1, int(budget // per_layer))


def _classify(
    Xtr: Tensor,
    Xte: Tensor,
    ytr: np.ndarray,
    yte: np.ndarray,
    folds: np.ndarray,
    n_classes: int,
    lambdas: Sequence[float],
    rank: int | None,
    max_iter: int,
    tol: float,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns chosen lam ``[L, V]``, test correctness ``[L, V, n_te]``, cv loss ``[K, L, V]``."""
    L, ntr, _ = Xtr.shape
    V, F = ytr.shape[0], int(folds.max()) + 1
    fold_t = torch.as_tensor(folds)
    y_cv = torch.as_tensor(np.repeat(ytr, F, axis=0))  # problem p = v * F + f
    held = torch.stack([fold_t == f for f in range(F)] * V)  # [P, ntr]
    weights = (~held).to(Xtr.dtype)
    st = fit_standardizer(Xtr, weights)
    # one curvature model per layer serves every fold, strength and the final refit
    pre = None if rank is not None else spectral_preconditioner(Xtr, weights, st, seed=seed)
    order = sorted(lambdas, reverse=True)  # strong to weak: warm starts help most
    cv_loss = np.zeros((len(order), L, V))
    means = []
    init = None
    for k, lam in enumerate(order):
        lam_t = torch.full((L, V * F), lam, dtype=Xtr.dtype)
        fit = fit_logistic(
            Xtr,
            y_cv,
            weights,
            lam_t,
            n_classes,
            rank=rank,
            init=init,
            standardizer=st,
            preconditioner=pre,
            max_iter=max_iter,
            tol=tol,
            seed=seed,
        )
        init = fit.flat()
        logp = torch.log_softmax(predict_logits(fit, Xtr), -1)  # [L, P, ntr, C]
        nll = -logp.gather(-1, y_cv[None, :, :, None].expand(L, -1, -1, 1)).squeeze(-1)
        fold_loss = (nll * held).sum(-1) / held.sum(-1)  # [L, P]
        cv_loss[k] = fold_loss.view(L, V, F).mean(-1).numpy()
        means.append(init.view(L, V, F, -1).mean(2))
    best = cv_loss.argmin(0)  # [L, V]
    lam_best = np.asarray(order)[best]
    stacked = torch.stack(means)  # [K, L, V, m]
    init = stacked[torch.as_tensor(best), torch.arange(L)[:, None], torch.arange(V)[None]]
    fit = fit_logistic(
        Xtr,
        torch.as_tensor(ytr),
        torch.ones(V, ntr, dtype=Xtr.dtype),
        torch.as_tensor(lam_best, dtype=Xtr.dtype),
        n_classes,
        rank=rank,
        init=init.reshape(L * V, -1),
        preconditioner=pre,
        max_iter=max_iter,
        tol=tol,
        seed=seed,
    )
    pred = predict_logits(fit, Xte).argmax(-1).numpy()  # [L, V, nte]
    correct = (pred == yte[None]).astype(float)
    return lam_best, correct, cv_loss


def _regress(
    Xtr: Tensor, Xte: Tensor, Ytr: np.ndarray, folds: np.ndarray, lambdas: Sequence[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns chosen lam ``[L, T]``, test predictions ``[L, T, n_te]``, cv mse ``[K, L, T]``."""
    L = Xtr.shape[0]
    lam_t = torch.as_tensor(list(lambdas), dtype=torch.float64)
    Y = torch.as_tensor(Ytr, dtype=Xtr.dtype)
    F = int(folds.max()) + 1
    cv = np.zeros((len(lambdas), L, Y.shape[1]))
    for f in range(F):
        tr, te = torch.as_tensor(folds != f), torch.as_tensor(folds == f)
        fit = fit_ridge(Xtr[:, tr], Y[tr], lam_t)
        err = (fit.predict(Xtr[:, te]) - Y[te]).square().mean(2)  # [L, K, T]
        cv += err.permute(1, 0, 2).double().numpy() / F
    best = cv.argmin(0)  # [L, T]
    fit = fit_ridge(Xtr, Y, lam_t)
    pred = fit.predict(Xte).numpy()  # [L, K, nte, T]
    chosen = np.take_along_axis(pred, best[:, None, None, :], axis=1)[:, 0]  # [L, nte, T]
    return np.asarray(lambdas)[best], chosen.transpose(0, 2, 1), cv


def probe_layers(
    features: Float[Tensor, "layer sample dim"],
    targets: Mapping[str, Sequence[object] | np.ndarray],
    groups: Sequence[object] | np.ndarray,
    *,
    tag_ids: Sequence[object] | np.ndarray | None = None,
    kinds: Mapping[str, Kind] | None = None,
    layers: Sequence[int] | None = None,
    sample_ids: Sequence[object] | np.ndarray | None = None,
    lambdas: Sequence[float] | None = None,
    ridge_lambdas: Sequence[float] | None = None,
    n_folds: int = 5,
    test_size: float = 0.2,
    rank: int | None = None,
    max_iter: int = 100,
    tol: float = 1e-4,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    layer_chunk: int | None = None,
) -> ProbeResult:
    """Fit and score linear probes of every layer for each target (see module docstring).

    Args:
        features: ``[layer, sample, dim]`` hidden states, a tensor or an array (any float
            dtype; processed ``layer_chunk`` layers at a time in float32, or float64 if
            given float64).
        targets: name → one value per sample. Float arrays are regression targets (ridge),
            anything else classification targets (logistic); override with ``kinds``.
        groups: image id of each sample; splits never separate an image's samples.
        tag_ids: tag id of each sample; enables the control task and selectivity.
        layers: layer labels for the tables (default 0..L-1).
        sample_ids: keys that identify a sample across models (default 0..n-1).
        lambdas / ridge_lambdas: L2 grids for logistic / ridge probes (finite, positive).
        rank: rank limit for logistic probes (``None``: full rank).
        n_boot: bootstrap resamples of the intervals; 0 skips them (``ci_low`` and
            ``ci_high`` are NaN, the point estimates stay).
        layer_chunk: layers fitted at a time (default: as many as fit in 2 GiB).

    Raises:
        ProbeError: NaN/inf features, no samples or no feature dimensions, a target with
            one class or missing values (or a regression target that is not numeric),
            fewer images than folds, mismatched lengths, an unknown kind, or an option
            out of range (``n_folds`` < 2, ``n_boot`` < 0, ``ci`` or ``test_size`` outside
            (0, 1), ``max_iter`` or ``layer_chunk`` < 1, ``tol`` < 0, empty or
            non-positive L2 grids).
    """
    if not isinstance(features, torch.Tensor):
        try:
            features = torch.as_tensor(np.asarray(features))
        except (TypeError, ValueError, RuntimeError) as err:
            raise ProbeError(f"features must be a [layer, sample, dim] tensor: {err}") from err
    if features.ndim != 3:
        raise ProbeError(f"features must be [layer, sample, dim]; got {tuple(features.shape)}")
    L, n, d = features.shape
    if n == 0:
        raise ProbeError("features have no samples: there is nothing to probe")
    if d == 0:
        raise ProbeError("features have no dimensions (dim 0): there is nothing to probe with")
    check_count(n_folds, "n_folds", 2)
    check_count(n_boot, "n_boot", 0)
    check_count(max_iter, "max_iter", 1)
    check_open_unit(ci, "ci")
    check_open_unit(test_size, "test_size")
    if not (isinstance(tol, int | float) and np.isfinite(tol) and tol >= 0):
        raise ProbeError(f"tol must be a finite number ≥ 0; got {tol!r}")
    if layer_chunk is not None:
        check_count(layer_chunk, "layer_chunk", 1)
    if rank is not None:
        check_count(rank, "rank", 1)
    lam_grid = check_strengths(LOGISTIC_LAMBDAS if lambdas is None else lambdas, "lambdas")
    ridge_grid = check_strengths(
        RIDGE_LAMBDAS if ridge_lambdas is None else ridge_lambdas, "ridge_lambdas"
    )
    layer_names = list(range(L)) if layers is None else list(layers)
    groups_a = np.asarray(groups, dtype=object)
    ids = np.arange(n) if sample_ids is None else np.asarray(sample_ids, dtype=object)
    for what, arr in (("groups", groups_a), ("sample_ids", ids)):
        if len(arr) != n:
            raise ProbeError(f"{len(arr)} {what} for {n} samples; give one per sample")
    if len(layer_names) != L:
        raise ProbeError(f"{len(layer_names)} layer labels for {L} layers")
    if not targets:
        raise ProbeError("no targets given; name at least one column to probe")
    check_finite(features, layer_names)
    kinds = dict(kinds or {})
    odd = {k: v for k, v in kinds.items() if v not in ("classification", "regression")}
    if odd:
        raise ProbeError(f"kinds must be 'classification' or 'regression'; got kind {odd}")
    cls_targets: dict[str, np.ndarray] = {}
    reg_targets: dict[str, np.ndarray] = {}
    for name, values in targets.items():
        arr = np.asarray(values)
        if len(arr) != n:
            raise ProbeError(f"target {name!r} has {len(arr)} values for {n} samples")
        kind = kinds.get(name, _infer_kind(arr))
        if kind == "regression" and arr.dtype.kind not in "biuf":
            try:
                arr = arr.astype(float)
            except (TypeError, ValueError) as err:
                raise ProbeError(
                    f"target {name!r} is not numeric ({err}); a regression target needs "
                    "numbers (probe it as classification)"
                ) from err
        check_target_values(arr, name, kind)
        if kind == "regression":
            reg_targets[name] = arr.astype(float)
        else:
            cls_targets[name] = arr
    if tag_ids is not None and len(tag_ids) != n:
        raise ProbeError(f"{len(tag_ids)} tag ids for {n} samples; give one per sample")

    test = holdout_mask(groups_a, test_size, seed)
    folds = group_folds(groups_a[~test], n_folds)
    ntr, nte = int((~test).sum()), int(test.sum())
    variants = ["task"] if tag_ids is None else ["task", "control"]
    tags = None if tag_ids is None else np.asarray(tag_ids)

    # label encoding (classes from all samples) and control targets
    encoded: dict[str, tuple[np.ndarray, int]] = {}
    for name, arr in cls_targets.items():
        _, codes = np.unique(arr.astype(str), return_inverse=True)
        rows = [codes] if tags is None else [codes, control_labels(tags, codes, seed)]
        encoded[name] = (np.stack(rows), int(codes.max()) + 1)
    reg_names = list(reg_targets)
    Yreg = np.zeros((n, 0))
    if reg_names:
        cols = [reg_targets[k] for k in reg_names]
        if tags is not None:
            cols += [control_labels(tags, reg_targets[k], seed) for k in reg_names]
        Yreg = np.stack(cols, 1)

    n_cls = max([c for _, c in encoded.values()], default=2)
    chunk = layer_chunk or _auto_chunk(n, d, len(variants) * n_folds, n_cls)
    dtype = torch.float64 if features.dtype == torch.float64 else torch.float32
    test_t = torch.as_tensor(test)

    outcome: dict[tuple[str, str], np.ndarray] = {}  # (target, probe) -> [L, nte]
    truth: dict[tuple[str, str], np.ndarray] = {}  # (target, probe) -> [nte]
    lam_out: dict[tuple[str, str], np.ndarray] = {}
    cv_rows: list[pd.DataFrame] = []
    parts: dict[tuple[str, str], list[np.ndarray]] = {}
    lam_parts: dict[tuple[str, str], list[np.ndarray]] = {}
    for start in range(0, L, chunk):
        sl = slice(start, min(L, start + chunk))
        Xc = features[sl].to(dtype)
        Xtr, Xte = Xc[:, ~test_t], Xc[:, test_t]
        del Xc
        for name, (ys, n_classes) in encoded.items():
            lam_b, correct, cv = _classify(
                Xtr,
                Xte,
                ys[:, ~test],
                ys[:, test],
                folds,
                n_classes,
                lam_grid,
                rank,
                max_iter,
                tol,
                seed,
            )
            for v, probe in enumerate(variants):
                parts.setdefault((name, probe), []).append(correct[:, v])
                lam_parts.setdefault((name, probe), []).append(lam_b[:, v])
                truth[(name, probe)] = ys[v, test]
                cv_rows.append(
                    _cv_frame(
                        cv[:, :, v], sorted(lam_grid, reverse=True), layer_names[sl], name, probe
                    )
                )
        if reg_names:
            lam_b, pred, cv = _regress(Xtr, Xte, Yreg[~test], folds, ridge_grid)
            for j in range(Yreg.shape[1]):
                name, probe = reg_names[j % len(reg_names)], variants[j // len(reg_names)]
                y_te = Yreg[test, j]
                parts.setdefault((name, probe), []).append(np.square(pred[:, j] - y_te))
                lam_parts.setdefault((name, probe), []).append(lam_b[:, j])
                truth[(name, probe)] = y_te
                cv_rows.append(_cv_frame(cv[:, :, j], ridge_grid, layer_names[sl], name, probe))
    for key, chunks in parts.items():
        outcome[key] = np.concatenate(chunks, 0)
        lam_out[key] = np.concatenate(lam_parts[key], 0)

    # baselines: majority class / training mean, the same for every layer
    for name, (ys, _) in encoded.items():
        base = (ys[0, test] == majority_class(ys[0, ~test])).astype(float)
        outcome[(name, "baseline")] = np.broadcast_to(base, (L, nte))
        truth[(name, "baseline")] = ys[0, test]
    for j, name in enumerate(reg_names):
        y = Yreg[:, j]
        outcome[(name, "baseline")] = np.broadcast_to(
            np.square(y[test] - y[~test].mean()), (L, nte)
        )
        truth[(name, "baseline")] = y[test]

    boot = Resampler(groups_a[test], n_boot=n_boot, seed=seed, ci=ci)
    scores = _score_table(
        outcome, truth, lam_out, set(reg_names), boot, layer_names, ntr, nte, "control" in variants
    )
    per_sample = _per_sample_table(
        outcome, truth, set(reg_names), layer_names, ids[test], groups_a[test]
    )
    return ProbeResult(
        scores=scores, per_sample=per_sample, cv=pd.concat(cv_rows, ignore_index=True)
    )


def _cv_frame(
    cv: np.ndarray, grid: Sequence[float], layers: Sequence[int], target: str, probe: str
) -> pd.DataFrame:
    k, L = cv.shape
    return pd.DataFrame(
        {
            "layer": np.tile(np.asarray(layers), k),
            "target": target,
            "probe": probe,
            "lam": np.repeat(np.asarray(grid), L),
            "cv_loss": cv.reshape(-1),
        }
    )


def _stats(boot: Resampler, score: np.ndarray, y: np.ndarray, regression: bool) -> np.ndarray:
    if regression:
        return boot.r2(score, np.broadcast_to(y, score.shape))
    return boot.accuracy(score)


def _score_table(
    outcome: dict[tuple[str, str], np.ndarray],
    truth: dict[tuple[str, str], np.ndarray],
    lam: dict[tuple[str, str], np.ndarray],
    regression: set[str],
    boot: Resampler,
    layers: list[int],
    ntr: int,
    nte: int,
    has_control: bool,
) -> pd.DataFrame:
    frames = []
    stats_by_key = {}
    for (target, probe), score in outcome.items():
        reg = target in regression
        stats = _stats(boot, score, truth[(target, probe)], reg)
        stats_by_key[(target, probe)] = stats
        frames.append(_rows(stats, boot, layers, target, probe, reg, lam.get((target, probe))))
    if has_control:
        for target in sorted({t for t, _ in outcome}):
            diff = stats_by_key[(target, "task")] - stats_by_key[(target, "control")]
            frames.append(
                _rows(diff, boot, layers, target, "selectivity", target in regression, None)
            )
    out = pd.concat(frames, ignore_index=True)
    out["n_train"], out["n_test"] = ntr, nte
    return out[SCORE_COLUMNS]


def _rows(
    stats: np.ndarray,
    boot: Resampler,
    layers: list[int],
    target: str,
    probe: str,
    reg: bool,
    lam: np.ndarray | None,
) -> pd.DataFrame:
    point, lo, hi = boot.interval(stats)
    return pd.DataFrame(
        {
            "layer": layers,
            "target": target,
            "probe": probe,
            "metric": "r2" if reg else "accuracy",
            "value": point,
            "ci_low": lo,
            "ci_high": hi,
            "lam": np.nan if lam is None else lam,
        }
    )


def _per_sample_table(
    outcome: dict[tuple[str, str], np.ndarray],
    truth: dict[tuple[str, str], np.ndarray],
    regression: set[str],
    layers: list[int],
    ids: np.ndarray,
    groups: np.ndarray,
) -> pd.DataFrame:
    frames = []
    for (target, probe), score in outcome.items():
        L, nte = score.shape
        frames.append(
            pd.DataFrame(
                {
                    "layer": np.repeat(np.asarray(layers), nte),
                    "target": target,
                    "probe": probe,
                    "metric": "r2" if target in regression else "accuracy",
                    "sample_id": np.tile(ids, L),
                    "group": np.tile(groups, L),
                    "y": np.tile(np.asarray(truth[(target, probe)], dtype=float), L),
                    "score": score.reshape(-1),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def run_probes(
    dataset: ProbeDataset,
    targets: Sequence[str] | None = None,
    *,
    control: bool = True,
    **kwargs: object,
) -> ProbeResult:
    """Probe a :class:`ProbeDataset` for the given sample columns (default: all targets).

    Samples are grouped by ``image_id``; the control task uses ``tag_id``. Sample keys for
    :func:`compare_probes` are ``image_id/tag_id/k`` (the k-th mention of that tag).
    Other keyword arguments go to :func:`probe_layers`.

    Raises:
        ProbeError: ``dataset`` is not a ProbeDataset, a target is not a sample column, a
            keyword is not an option of :func:`probe_layers`, or as :func:`probe_layers`.
    """
    if not isinstance(dataset, ProbeDataset):
        raise ProbeError(
            f"run_probes needs a ProbeDataset (build_probe_dataset), got {type(dataset).__name__}"
        )
    options = set(inspect.signature(probe_layers).parameters) - {
        "features", "targets", "groups", "tag_ids", "layers", "sample_ids"
    }  # fmt: skip
    unknown = sorted(set(kwargs) - options)
    if unknown:
        raise ProbeError(f"unknown option(s) {unknown}; run_probes takes {sorted(options)}")
    s = dataset.samples
    names = list(targets) if targets is not None else dataset.targets()
    missing = [t for t in names if t not in s.columns]
    if missing:
        raise ProbeError(
            f"targets {missing} are not sample columns; choose from {dataset.targets()}"
        )
    occurrence = s.groupby(["image_id", "tag_id"]).cumcount()
    keys = s["image_id"].astype(str) + "/" + s["tag_id"].astype(str) + "/" + occurrence.astype(str)
    data = {t: s[t].to_numpy() for t in names}
    return probe_layers(
        dataset.features,
        data,
        s["image_id"].to_numpy(),
        tag_ids=s["tag_id"].to_numpy() if control else None,
        layers=dataset.layers,
        sample_ids=keys.to_numpy(),
        **kwargs,  # type: ignore[arg-type]
    )
