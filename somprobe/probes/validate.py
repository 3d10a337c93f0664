"""Input checks shared by the probe modules; each failure is a :class:`ProbeError`.

Example:
    >>> import torch
    >>> check_finite(torch.zeros(2, 3, 4), [0, 1])
    >>> check_count(5, "n_folds", 2)
    5
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from somprobe.errors import ProbeError


def check_finite(features: Float[Tensor, "layer sample dim"], layers: Sequence[int]) -> None:
    """Raise :class:`ProbeError` naming the layers and samples with NaN or infinite values."""
    if features.ndim != 3:
        raise ProbeError(
            f"features must be [layer, sample, dim]; got shape {tuple(features.shape)}"
        )
    bad = torch.zeros(features.shape[:2], dtype=torch.bool)
    for i in range(features.shape[0]):  # layer by layer: no full-size temporary
        bad[i] = ~torch.isfinite(features[i]).all(dim=-1)
    if bool(bad.any()):
        bad_layers = [layers[i] for i in torch.nonzero(bad.any(1)).flatten().tolist()]
        samples = torch.nonzero(bad.any(0)).flatten().tolist()
        raise ProbeError(
            f"hidden states contain NaN or infinity at layers {bad_layers[:10]} for "
            f"{len(samples)} samples (first: {samples[:5]}); check the capture (dtype overflow, "
            "masked positions) or drop those samples"
        )


def check_target_values(values: np.ndarray, name: str, kind: str) -> None:
    """A target must have no missing values and, for classification, two or more classes."""
    if kind == "regression":
        arr = np.asarray(values, dtype=float)
        missing = ~np.isfinite(arr)
    else:
        missing = np.asarray(pd_isna(values))
    if missing.any():
        idx = np.flatnonzero(missing)
        raise ProbeError(
            f"target {name!r} is missing (NaN/None) for {idx.size} samples (first: "
            f"{idx[:5].tolist()}); drop those samples or fill the target"
        )
    if kind == "classification":
        classes = np.unique(np.asarray(values, dtype=object).astype(str))
        if classes.size < 2:
            raise ProbeError(
                f"target {name!r} has a single class ({classes[0]!r}) across {len(values)} "
                "samples; a probe needs at least two classes"
            )
    elif float(np.ptp(np.asarray(values, dtype=float))) == 0.0:
        raise ProbeError(
            f"target {name!r} is constant ({float(values[0])}) across {len(values)} samples; "
            "there is nothing to regress"
        )


def pd_isna(values: np.ndarray) -> np.ndarray:
    """Elementwise missing-value test that works for object arrays."""
    import pandas as pd

    return np.asarray(pd.isna(pd.Series(values, dtype=object)))


def check_count(value: object, name: str, low: int = 1) -> int:
    """An integer option of at least ``low`` (a number of folds, resamples, iterations)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ProbeError(f"{name} must be an integer ≥ {low}; got {value!r}")
    return int(value)


def check_open_unit(value: object, name: str) -> float:
    """A number strictly between 0 and 1 (a confidence level, a share)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise ProbeError(f"{name} must be a number in (0, 1); got {value!r}")
    if not 0.0 < float(value) < 1.0:
        raise ProbeError(f"{name} must be in (0, 1); got {value!r}")
    return float(value)


def check_strengths(values: Sequence[float] | np.ndarray | Tensor, name: str) -> list[float]:
    """A non-empty grid of finite, positive L2 strengths."""
    grid = [float(v) for v in torch.as_tensor(values, dtype=torch.float64).reshape(-1).tolist()]
    if not grid:
        raise ProbeError(f"{name} is empty; give at least one L2 strength (e.g. [1e-2])")
    bad = [v for v in grid if not (np.isfinite(v) and v > 0)]
    if bad:
        raise ProbeError(f"{name} must be finite and positive; got {bad[:3]}")
    return grid


def check_features_shape(X: object) -> tuple[int, int, int]:
    """``(layer, sample, dim)`` of a ``[layer, sample, dim]`` tensor, else a ProbeError."""
    if not isinstance(X, Tensor) or X.ndim != 3:
        shape = tuple(X.shape) if isinstance(X, Tensor) else type(X).__name__
        raise ProbeError(f"features must be a [layer, sample, dim] tensor; got {shape}")
    L, n, d = X.shape
    return int(L), int(n), int(d)


def check_problem_weights(
    X: Tensor, weights: Tensor, what: str = "weights"
) -> tuple[int, int, int]:
    """``X`` is ``[layer, sample, dim]`` and ``weights`` ``[problem, sample]``: finite,
    non-negative, with a positive weight (a training row) in every problem."""
    L, n, d = check_features_shape(X)
    if not isinstance(weights, Tensor) or weights.ndim != 2 or weights.shape[1] != n:
        shape = tuple(weights.shape) if isinstance(weights, Tensor) else type(weights).__name__
        raise ProbeError(f"{what} must be [problem, sample={n}]; got {shape}")
    if not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()):
        raise ProbeError(f"{what} must be finite and non-negative")
    empty = torch.nonzero(weights.sum(-1) <= 0).flatten().tolist()
    if empty:
        raise ProbeError(
            f"problems {empty[:5]} have no training row (every weight 0); each problem needs "
            "at least one training row"
        )
    return int(L), int(n), int(d)
