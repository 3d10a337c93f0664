"""Splits grouped by image, so no image's tags land on both sides of a split.

Both functions are deterministic: the same groups (in any order) and seed give the same
split, so two models probed on the same images are tested on the same images.

Example:
    >>> import numpy as np
    >>> groups = np.repeat(np.arange(10), 3)
    >>> test = holdout_mask(groups, test_size=0.2, seed=0)
    >>> sorted(set(groups[test]) & set(groups[~test]))
    []
    >>> folds = group_folds(groups[~test], n_folds=4)
    >>> sorted(np.unique(folds).tolist())
    [0, 1, 2, 3]
"""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import GroupKFold

from somprobe.errors import ProbeError


def _group_codes(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    uniq, codes = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    return uniq, codes


def holdout_mask(groups: np.ndarray, test_size: float = 0.2, seed: int = 0) -> np.ndarray:
    """Boolean test mask holding out about ``test_size`` of the groups (whole groups).

    Groups are ordered by a seeded permutation of their sorted names, and whole groups go
    to the test side until it holds at least ``test_size`` of the samples.
    """
    if not 0.0 < test_size < 1.0:
        raise ProbeError(f"test_size must be in (0, 1); got {test_size}")
    uniq, codes = _group_codes(groups)
    if codes.size == 0:
        raise ProbeError("no samples: a split needs samples from at least two images")
    if uniq.size < 2:
        raise ProbeError(
            f"all {codes.size} samples come from one image; a grouped split needs at least two"
        )
    order = np.random.default_rng(seed).permutation(uniq.size)
    sizes = np.bincount(codes, minlength=uniq.size)[order]
    cum = np.cumsum(sizes)
    n_test = int(np.searchsorted(cum, test_size * codes.size) + 1)
    n_test = min(max(n_test, 1), uniq.size - 1)
    is_test_group = np.zeros(uniq.size, bool)
    is_test_group[order[:n_test]] = True
    return is_test_group[codes]


def group_folds(groups: np.ndarray, n_folds: int = 5) -> np.ndarray:
    """Fold index (0..n_folds-1) of each sample; each group lies in exactly one fold.

    Uses scikit-learn's :class:`~sklearn.model_selection.GroupKFold` (balanced by size).
    """
    uniq, codes = _group_codes(groups)
    if n_folds < 2:
        raise ProbeError(f"n_folds must be at least 2; got {n_folds}")
    if uniq.size < n_folds:
        raise ProbeError(
            f"{codes.size} samples from {uniq.size} images cannot make {n_folds} grouped folds; "
            "lower n_folds or add images"
        )
    folds = np.empty(codes.size, dtype=np.int64)
    for k, (_, test) in enumerate(GroupKFold(n_splits=n_folds).split(codes, groups=codes)):
        folds[test] = k
    return folds
