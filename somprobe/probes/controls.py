"""Control tasks (Hewitt & Liang, 2019) and trivial baselines for probes.

In the control task every tag id gets one fixed random label, the same in every image,
drawn from the task's own label distribution (so the control has the task's label set and
frequencies but carries no information about the tagged object). A probe that decodes the
control well is memorising tag identity; *selectivity* = task score − control score.

Example:
    >>> import numpy as np
    >>> tags = np.array([1, 2, 1, 3, 2, 1])
    >>> labels = np.array([0, 1, 2, 0, 1, 2])
    >>> ctrl = control_labels(tags, labels, seed=0)
    >>> all(len(set(ctrl[tags == t])) == 1 for t in (1, 2, 3))  # one label per tag id
    True
"""

from __future__ import annotations

import numpy as np

from somprobe.errors import ProbeError


def control_labels(tag_ids: np.ndarray, labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Control target: each distinct tag id → one label drawn from the task's labels.

    Works for class indices and for continuous targets alike (a value is drawn from the
    empirical distribution of ``labels``). Deterministic in ``seed`` and the set of tag ids.

    Raises:
        ProbeError: ``tag_ids`` and ``labels`` differ in length (one label per sample).
    """
    tag_ids = np.asarray(tag_ids)
    labels = np.asarray(labels)
    if tag_ids.shape[:1] != labels.shape[:1]:
        raise ProbeError(
            f"{len(tag_ids)} tag ids but {len(labels)} labels; give one label per sample"
        )
    uniq, inverse = np.unique(tag_ids.astype(str), return_inverse=True)
    rng = np.random.default_rng(seed)
    drawn = labels[rng.integers(0, labels.size, size=uniq.size)]
    return drawn[inverse]


def majority_class(labels: np.ndarray) -> int:
    """The most frequent class index (the smallest one on ties).

    Raises:
        ProbeError: no labels, or labels that are not class indices (integers ≥ 0).
    """
    arr = np.asarray(labels)
    if arr.size == 0:
        raise ProbeError("no labels: a majority class needs at least one")
    if arr.dtype.kind not in "biu" or arr.min() < 0:
        raise ProbeError("labels must be class indices (integers ≥ 0); encode the classes first")
    return int(np.bincount(arr.astype(np.int64)).argmax())
