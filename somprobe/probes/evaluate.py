"""Probe every layer for every target, with controls, baselines and intervals.

Protocol (the same for every layer and target):

1. Whole images are held out for testing (``test_size``, :func:`holdout_mask`).
2. On the remaining images, the L2 strength is chosen from ``lambdas`` by grouped
   ``n_folds``-fold cross-validation (held-out log-loss for classification, mean squared
   error for regression), each fold standardised on its own training rows.
3. The probe is refitted on all training images with that strength and scored on the test
   images; intervals come from a cluster bootstrap over test images.

Classification targets use multinomial logistic probes, regression targets ridge probes;
all layers (and folds, and the label controls) are fitted together as batched tensor ops.
Rows of ``scores`` have ``probe`` =

* ``task``: the target read from the hidden state;
* a *label control*, the same hidden state with other labels: ``control`` (Hewitt &
  Liang, one random label per key; :func:`run_probes` keys it on the object category),
  ``control_number`` (keyed on the tag number) or ``binding`` (another object's label);
* a *feature baseline*, the same labels from other features, the same for every layer:
  ``number_baseline`` (tag number and list position only);
* ``baseline``: majority class / training mean;
* a paired difference ``task − <probe>`` for every control and feature baseline (one
  cluster bootstrap for both sides): ``selectivity`` for ``control``, else
  ``task_minus_<probe>``.

Each row's ``chance`` is the score of a constant guess at that probe's own labels (the
training majority class, or the training mean for R²), for differences the difference of
the two chance levels. What each control is for: :mod:`somprobe.probes.controls`.

Example:
    >>> import numpy as np, torch
    >>> g = torch.Generator().manual_seed(0)
    >>> y = np.tile(np.arange(3), 40)
    >>> X = torch.randn(2, 120, 6, generator=g); X[1, :, 0] += 3.0 * torch.tensor(y)
    >>> groups = np.repeat(np.arange(40), 3)
    >>> res = probe_layers(X, {"colour": y}, groups, control_keys={"control": y % 2},
    ...                    partners={"binding": (np.arange(120) // 3) * 3 + (np.arange(120) + 1) % 3},
    ...                    n_boot=50)
    >>> acc = res.scores.query("probe == 'task'").set_index("layer")["value"]
    >>> bool(acc[1] > 0.9 and acc[0] < 0.7)
    True
    >>> sorted(set(res.scores["probe"]))
    ['baseline', 'binding', 'control', 'selectivity', 'task', 'task_minus_binding']
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from somprobe.errors import ProbeError
from somprobe.probes.bootstrap import Resampler
from somprobe.probes.controls import (
    CONTROLS,
    BindingMode,
    binding_partners,
    control_labels,
    listing_order,
    majority_class,
    number_features,
)
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
    "chance",
]
#: Probe names that are not controls: the target itself and the constant guess.
RESERVED_PROBES = ("task", "baseline", "selectivity")


@dataclass
class ProbeResult:
    """Scores and the per-sample test outcomes behind them.

    Attributes:
        scores: tidy table, one row per layer × target × probe: columns ``layer``,
            ``target``, ``probe``, ``metric`` (``accuracy`` or ``r2``), ``value``,
            ``ci_low``, ``ci_high``, ``lam`` (chosen L2 strength), ``n_train``, ``n_test``,
            ``chance`` (a constant guess's score at the probe's own labels).
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
    control_keys: Mapping[str, Sequence[object] | np.ndarray] | None = None,
    partners: Mapping[str, Sequence[int] | np.ndarray] | None = None,
    baseline_features: Mapping[str, np.ndarray | Tensor] | None = None,
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
        tag_ids: shorthand for ``control_keys={"control": tag_ids}`` (the Hewitt & Liang
            control keyed on the tag number, which is trivial at a number token: prefer
            :func:`run_probes`, which keys ``control`` on the object category).
        control_keys: probe name → key of each sample: a Hewitt & Liang control task with
            one random label per key (:func:`~somprobe.probes.control_labels`, ``seed``).
            A key needs two or more distinct values and none missing.
        partners: probe name → index of each sample's partner (another sample of the same
            image): a control predicting the partner's label from this sample's state
            (``binding``, :func:`~somprobe.probes.binding_partners`).
        baseline_features: probe name → ``[sample, k]`` features: the same probe fitted on
            them instead of the hidden state (the same split, folds and L2 grid), one
            result repeated for every layer (``number_baseline``,
            :func:`~somprobe.probes.number_features`).
        layers: layer labels for the tables (default 0..L-1).
        sample_ids: keys that identify a sample across models (default 0..n-1).
        lambdas / ridge_lambdas: L2 grids for logistic / ridge probes (finite, positive).
        rank: rank limit for logistic probes (``None``: full rank; feature baselines are
            always full rank).
        n_boot: bootstrap resamples of the intervals; 0 skips them (``ci_low`` and
            ``ci_high`` are NaN, the point estimates stay).
        layer_chunk: layers fitted at a time (default: as many as fit in 2 GiB).

    Every control and feature baseline ``p`` adds a row ``p`` and a paired difference
    ``task − p`` (``selectivity`` for ``control``, else ``task_minus_<p>``).

    Raises:
        ProbeError: NaN/inf features, no samples or no feature dimensions, a target with
            one class or missing values (or a regression target that is not numeric),
            fewer images than folds, mismatched lengths, an unknown kind, or an option
            out of range (``n_folds`` < 2, ``n_boot`` < 0, ``ci`` or ``test_size`` outside
            (0, 1), ``max_iter`` or ``layer_chunk`` < 1, ``tol`` < 0, empty or
            non-positive L2 grids); a control named twice or like a built-in row, a
            control key with one value or missing values, a partner out of range, itself
            or in another image, baseline features that are not ``[sample, k]`` finite
            numbers.
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
    relabel, extra_x = _check_controls(
        n, groups_a, tag_ids, control_keys, partners, baseline_features, seed
    )
    variants = ["task", *relabel]

    # label encoding (classes from all samples) and the label controls
    encoded: dict[str, tuple[np.ndarray, int]] = {}
    for name, arr in cls_targets.items():
        _, codes = np.unique(arr.astype(str), return_inverse=True)
        rows = [codes, *(f(codes) for f in relabel.values())]
        encoded[name] = (np.stack(rows), int(codes.max()) + 1)
    reg_names = list(reg_targets)
    Yreg = np.zeros((n, 0))
    if reg_names:
        cols = [reg_targets[k] for k in reg_names]
        cols += [f(reg_targets[k]) for f in relabel.values() for k in reg_names]
        Yreg = np.stack(cols, 1)

    n_cls = max([c for _, c in encoded.values()], default=2)
    chunk = layer_chunk or _auto_chunk(n, d, len(variants) * n_folds, n_cls)
    dtype = torch.float64 if features.dtype == torch.float64 else torch.float32
    test_t = torch.as_tensor(test)

    outcome: dict[tuple[str, str], np.ndarray] = {}  # (target, probe) -> [L, nte]
    truth: dict[tuple[str, str], np.ndarray] = {}  # (target, probe) -> [nte]
    train_y: dict[tuple[str, str], np.ndarray] = {}  # (target, probe) -> [ntr]
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
                truth[(name, probe)], train_y[(name, probe)] = ys[v, test], ys[v, ~test]
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
                truth[(name, probe)], train_y[(name, probe)] = y_te, Yreg[~test, j]
                cv_rows.append(_cv_frame(cv[:, :, j], ridge_grid, layer_names[sl], name, probe))
    for key, chunks in parts.items():
        outcome[key] = np.concatenate(chunks, 0)
        lam_out[key] = np.concatenate(lam_parts[key], 0)

    # feature baselines: the same probe on other features, one fit for every layer
    for probe, Xb in extra_x.items():
        Xb_tr, Xb_te = Xb[:, ~test_t].to(dtype), Xb[:, test_t].to(dtype)
        for name, (ys, n_classes) in encoded.items():
            lam_b, correct, cv = _classify(
                Xb_tr,
                Xb_te,
                ys[:1, ~test],
                ys[:1, test],
                folds,
                n_classes,
                lam_grid,
                None,
                max_iter,
                tol,
                seed,
            )
            _feature_rows(outcome, lam_out, (name, probe), correct[0, 0], lam_b[0, 0], L)
            truth[(name, probe)], train_y[(name, probe)] = ys[0, test], ys[0, ~test]
            cv_rows.append(
                _cv_frame(
                    np.repeat(cv[:, :, 0], L, 1),
                    sorted(lam_grid, reverse=True),
                    layer_names,
                    name,
                    probe,
                )
            )
        if reg_names:
            k = len(reg_names)
            lam_b, pred, cv = _regress(Xb_tr, Xb_te, Yreg[~test, :k], folds, ridge_grid)
            for j, name in enumerate(reg_names):
                y_te = Yreg[test, j]
                sq = np.square(pred[0, j] - y_te)
                _feature_rows(outcome, lam_out, (name, probe), sq, lam_b[0, j], L)
                truth[(name, probe)], train_y[(name, probe)] = y_te, Yreg[~test, j]
                cv_rows.append(
                    _cv_frame(np.repeat(cv[:, :, j], L, 1), ridge_grid, layer_names, name, probe)
                )

    # baselines: majority class / training mean, the same for every layer
    for name, (ys, _) in encoded.items():
        base = (ys[0, test] == majority_class(ys[0, ~test])).astype(float)
        outcome[(name, "baseline")] = np.broadcast_to(base, (L, nte))
        truth[(name, "baseline")], train_y[(name, "baseline")] = ys[0, test], ys[0, ~test]
    for j, name in enumerate(reg_names):
        y = Yreg[:, j]
        outcome[(name, "baseline")] = np.broadcast_to(
            np.square(y[test] - y[~test].mean()), (L, nte)
        )
        truth[(name, "baseline")], train_y[(name, "baseline")] = y[test], y[~test]

    boot = Resampler(groups_a[test], n_boot=n_boot, seed=seed, ci=ci)
    chance = {key: _chance(train_y[key], truth[key], key[0] in reg_targets) for key in outcome}
    scores = _score_table(
        outcome,
        truth,
        lam_out,
        chance,
        set(reg_names),
        boot,
        layer_names,
        ntr,
        nte,
        [*relabel, *extra_x],
    )
    per_sample = _per_sample_table(
        outcome, truth, set(reg_names), layer_names, ids[test], groups_a[test]
    )
    return ProbeResult(
        scores=scores, per_sample=per_sample, cv=pd.concat(cv_rows, ignore_index=True)
    )


def _feature_rows(
    outcome: dict[tuple[str, str], np.ndarray],
    lam_out: dict[tuple[str, str], np.ndarray],
    key: tuple[str, str],
    score: np.ndarray,
    lam: float,
    L: int,
) -> None:
    """A feature baseline's one fit, repeated for each of the ``L`` layers."""
    outcome[key] = np.broadcast_to(score, (L, score.shape[-1]))
    lam_out[key] = np.full(L, lam)


def _chance(y_train: np.ndarray, y_test: np.ndarray, regression: bool) -> float:
    """The test score of a constant guess: the training majority class (accuracy) or the
    training mean (R²; NaN when the test labels are constant)."""
    if regression:
        sst = float(np.square(y_test - y_test.mean()).sum())
        sse = float(np.square(y_test - y_train.mean()).sum())
        return 1.0 - sse / sst if sst > 0 else float("nan")
    return float(np.mean(y_test == majority_class(y_train)))


def _keyed_labels(keys: np.ndarray, seed: int, labels: np.ndarray) -> np.ndarray:
    return control_labels(keys, labels, seed)


def _partner_labels(partners: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return labels[partners]


def _check_controls(
    n: int,
    groups: np.ndarray,
    tag_ids: Sequence[object] | np.ndarray | None,
    control_keys: Mapping[str, Sequence[object] | np.ndarray] | None,
    partners: Mapping[str, Sequence[int] | np.ndarray] | None,
    baseline_features: Mapping[str, np.ndarray | Tensor] | None,
    seed: int,
) -> tuple[dict[str, Callable[[np.ndarray], np.ndarray]], dict[str, Tensor]]:
    """The label controls (name → labels from the task's labels) and feature baselines
    (name → ``[1, sample, k]`` features), checked."""
    keys = dict(control_keys or {})
    if tag_ids is not None:
        if "control" in keys:
            raise ProbeError(
                "the 'control' probe is given twice (tag_ids and control_keys['control']); "
                "pass one of them"
            )
        keys = {"control": tag_ids, **keys}
    pairs, extra = dict(partners or {}), dict(baseline_features or {})
    names: list[object] = [*keys, *pairs, *extra]
    taken = sorted({str(m) for m in names if names.count(m) > 1})
    bad: list[object] = [m for m in names if not isinstance(m, str) or not m]
    bad += [m for m in names if m in RESERVED_PROBES or str(m).startswith("task_minus_")]
    if taken or bad:
        raise ProbeError(
            f"control names must be distinct non-empty strings other than the reserved "
            f"{list(RESERVED_PROBES)} and 'task_minus_*'; got {taken or bad}"
        )
    relabel: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
    for name, key in keys.items():
        arr = np.asarray(key, dtype=object)
        if arr.ndim != 1 or len(arr) != n:
            raise ProbeError(
                f"control {name!r} has {len(arr)} keys for {n} samples; give one per sample"
            )
        missing = pd.isna(pd.Series(arr, dtype=object)).to_numpy()
        if missing.any():
            raise ProbeError(
                f"control {name!r}: the key is missing for {int(missing.sum())} samples "
                f"(first: {np.flatnonzero(missing)[:5].tolist()}); a control keyed on the "
                "object needs every object's key (e.g. its category)"
            )
        as_text = arr.astype(str)
        if np.unique(as_text).size < 2:
            raise ProbeError(
                f"control {name!r} is keyed on one value ({str(as_text[0])!r}) for all {n} "
                "samples: its labels would be constant; key it on a column with two or more "
                "values, or leave it out"
            )
        relabel[name] = functools.partial(_keyed_labels, as_text, seed)
    for name, idx in pairs.items():
        arr = np.asarray(idx)
        if arr.shape != (n,) or (arr.size and arr.dtype.kind not in "iu"):
            raise ProbeError(
                f"partners {name!r} must be {n} sample indices (integers); got shape "
                f"{arr.shape}, dtype {arr.dtype}"
            )
        arr = arr.astype(np.int64)
        out = (arr < 0) | (arr >= n)
        if out.any():
            raise ProbeError(
                f"partners {name!r}: indices {arr[out][:5].tolist()} are out of range for "
                f"{n} samples"
            )
        if (arr == np.arange(n)).any() or not (groups[arr].astype(str) == groups.astype(str)).all():
            raise ProbeError(
                f"partners {name!r}: each sample's partner must be another sample of the "
                "same image (binding_partners makes them)"
            )
        relabel[name] = functools.partial(_partner_labels, arr)
    feats: dict[str, Tensor] = {}
    for name, x in extra.items():
        t = torch.as_tensor(np.asarray(x, dtype=np.float64))
        if t.ndim != 2 or t.shape[0] != n or t.shape[1] == 0:
            raise ProbeError(
                f"baseline_features {name!r} must be [sample={n}, k ≥ 1] rows; got shape "
                f"{tuple(t.shape)}"
            )
        if not bool(torch.isfinite(t).all()):
            raise ProbeError(f"baseline_features {name!r} hold NaN or infinite values")
        feats[name] = t[None]
    return relabel, feats


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


def difference_name(probe: str) -> str:
    """Name of the paired ``task − probe`` row: ``selectivity`` for the Hewitt & Liang
    ``control``, else ``task_minus_<probe>``."""
    return "selectivity" if probe == "control" else f"task_minus_{probe}"


def _score_table(
    outcome: dict[tuple[str, str], np.ndarray],
    truth: dict[tuple[str, str], np.ndarray],
    lam: dict[tuple[str, str], np.ndarray],
    chance: dict[tuple[str, str], float],
    regression: set[str],
    boot: Resampler,
    layers: list[int],
    ntr: int,
    nte: int,
    controls: Sequence[str],
) -> pd.DataFrame:
    frames = []
    stats_by_key = {}
    for (target, probe), score in outcome.items():
        reg = target in regression
        stats = _stats(boot, score, truth[(target, probe)], reg)
        stats_by_key[(target, probe)] = stats
        rows = _rows(stats, boot, layers, target, probe, reg, lam.get((target, probe)))
        frames.append(rows.assign(chance=chance[(target, probe)]))
    for target in sorted({t for t, _ in outcome}):
        for probe in controls:
            diff = stats_by_key[(target, "task")] - stats_by_key[(target, probe)]
            rows = _rows(
                diff, boot, layers, target, difference_name(probe), target in regression, None
            )
            frames.append(rows.assign(chance=chance[(target, "task")] - chance[(target, probe)]))
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
    controls: Sequence[str] | None = None,
    control_key: str | Sequence[str] = "category",
    binding: BindingMode = "next",
    **kwargs: object,
) -> ProbeResult:
    """Probe a :class:`ProbeDataset` for the given sample columns (default: all targets).

    Samples are grouped by ``image_id``. Sample keys for :func:`compare_probes` are
    ``image_id/tag_id/k`` (the k-th mention of that tag). Other keyword arguments go to
    :func:`probe_layers`.

    Args:
        control: ``False`` fits no control at all (only ``task`` and ``baseline``); the
            same as ``controls=()``.
        controls: which controls to fit beside the task, from
            :data:`~somprobe.probes.CONTROLS` (what each is for, its chance level and what
            would knock over a claim: :mod:`somprobe.probes.controls`):

            * ``"control"``: Hewitt & Liang, one random label per object category (the
              ``control_key`` column), with ``selectivity`` = task − control;
            * ``"control_number"``: Hewitt & Liang keyed on the tag number (trivially
              decodable at a number token; for comparison with earlier results);
            * ``"binding"``: the same state, the label of another object of the same image
              (``binding``: the next tag's object cyclically, or ``"random"``, seeded);
            * ``"number_baseline"``: the same probe on the tag number and list position
              alone (:func:`~somprobe.probes.number_features`).

            Each adds its row and a paired ``task_minus_<name>`` row. Default
            ``("control",)``: the rows ``task``, ``control``, ``selectivity``,
            ``baseline``.
        control_key: the sample column(s) that identify an object for ``"control"``
            (default ``category``; several columns are joined).
        binding: ``"next"`` or ``"random"`` partner for ``"binding"``.

    Raises:
        ProbeError: ``dataset`` is not a ProbeDataset, a target is not a sample column, a
            keyword is not an option of :func:`probe_layers`, ``controls`` holds an unknown
            name or is given with ``control=False``, ``control_key`` is not a sample column
            or has one value or missing values, ``"binding"`` on an image with one object,
            or as :func:`probe_layers`.
    """
    if not isinstance(dataset, ProbeDataset):
        raise ProbeError(
            f"run_probes needs a ProbeDataset (build_probe_dataset), got {type(dataset).__name__}"
        )
    options = set(inspect.signature(probe_layers).parameters) - {
        "features", "targets", "groups", "tag_ids", "layers", "sample_ids",
        "control_keys", "partners", "baseline_features",
    }  # fmt: skip
    unknown = sorted(set(kwargs) - options)
    if unknown:
        raise ProbeError(f"unknown option(s) {unknown}; run_probes takes {sorted(options)}")
    chosen = _chosen_controls(control, controls)
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
    seed = kwargs.get("seed", 0)
    seed = seed if isinstance(seed, int | np.integer) else 0  # probe_layers checks it
    control_keys: dict[str, np.ndarray] = {}
    partners: dict[str, np.ndarray] = {}
    extra: dict[str, np.ndarray] = {}
    for name in chosen:
        if name == "control":
            control_keys[name] = _object_keys(s, control_key)
        elif name == "control_number":
            control_keys[name] = s["tag_id"].to_numpy()
        elif name == "binding":
            partners[name] = binding_partners(
                s["image_id"].to_numpy(), s["tag_id"].to_numpy(), binding, int(seed)
            )
        else:
            extra[name] = number_features(s["tag_id"].to_numpy(), listing_order(s))
    return probe_layers(
        dataset.features,
        data,
        s["image_id"].to_numpy(),
        control_keys=control_keys,
        partners=partners,
        baseline_features=extra,
        layers=dataset.layers,
        sample_ids=keys.to_numpy(),
        **kwargs,  # type: ignore[arg-type]
    )


def _chosen_controls(control: bool, controls: Sequence[str] | None) -> list[str]:
    """The controls to fit, checked, in the order given (default ``["control"]``)."""
    if controls is None:
        return ["control"] if control else []
    if isinstance(controls, str) or not isinstance(controls, Sequence):
        raise ProbeError(
            f"controls must be a sequence of names from {list(CONTROLS)}, got {controls!r}; "
            'e.g. controls=("control", "binding")'
        )
    if not control and len(controls):
        raise ProbeError(
            f"control=False asks for no controls but controls={list(controls)} names some; "
            "pass one of them"
        )
    unknown = [c for c in controls if c not in CONTROLS]
    if unknown:
        raise ProbeError(f"unknown control(s) {unknown}; choose from {list(CONTROLS)}")
    return list(dict.fromkeys(controls))


def _object_keys(samples: pd.DataFrame, control_key: str | Sequence[str]) -> np.ndarray:
    """The key of the object-keyed control: one column, or several joined by "|"."""
    cols = [control_key] if isinstance(control_key, str) else list(control_key)
    missing = [c for c in cols if c not in samples.columns]
    if not cols or missing:
        raise ProbeError(
            f"control_key {missing or control_key!r} is not a sample column; the 'control' is "
            f"keyed on the object, e.g. control_key='category' (columns: {list(samples.columns)})"
        )
    if len(cols) == 1:
        return samples[cols[0]].to_numpy()
    table = samples[cols]
    joined = table.astype(str).agg("|".join, axis=1).to_numpy(dtype=object)
    joined[table.isna().any(axis=1).to_numpy()] = None
    return joined
