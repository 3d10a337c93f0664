"""Input checks shared by the probe modules; each failure is a :class:`ProbeError`.

Example:
    >>> import torch
    >>> check_finite(torch.zeros(2, 3, 4), [0, 1])
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
