"""Regions from plain arrays: a label image or a stack of boolean masks.

Example:
    >>> import numpy as np
    >>> labels = np.array([[0, 1, 1], [2, 2, 1]])
    >>> [(r.source_id, r.area) for r in from_label_image(labels)]
    [(1, 3), (2, 2)]
    >>> len(from_masks(np.ones((2, 3, 3), dtype=bool), categories=["a", "b"]))
    2
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from jaxtyping import Bool, Integer
from scipy import ndimage

from somprobe.errors import InputError
from somprobe.tagging.regions.base import Region, as_bool_mask


def from_label_image(
    labels: Integer[np.ndarray, "height width"],
    *,
    background: int | None = 0,
    categories: Mapping[int, str] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> list[Region]:
    """One region per distinct label value (except ``background``), by increasing value.

    Args:
        labels: integer ``(H, W)`` array; each value names one region.
        background: the value that is not a region (None: every value is a region).
        categories: optional label value → category name.
        metadata: copied into every region's metadata (e.g. the method that made it).

    The region's ``source_id`` is its label value (a Python int).
    """
    arr = np.asarray(labels)
    if arr.ndim != 2 or arr.size == 0:
        raise InputError(f"a label image must be a non-empty 2-D array, got shape {arr.shape}")
    if arr.dtype.kind not in "iub":
        raise InputError(f"a label image must hold integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    all_values, inverse = np.unique(arr, return_inverse=True)
    dense = inverse.reshape(arr.shape) + 1  # find_objects wants labels 1..K
    keep = np.ones(all_values.size, dtype=bool)
    if background is not None:
        keep = all_values != background
        dense[arr == background] = 0
    values = all_values[keep]
    if values.size == 0:
        return []
    slices = ndimage.find_objects(dense)
    out = []
    for k, (value, slc) in enumerate(zip(all_values, slices, strict=True), start=1):
        if not keep[k - 1] or slc is None:
            continue
        mask = np.zeros(arr.shape, dtype=bool)
        mask[slc] = dense[slc] == k
        v = int(value)
        out.append(
            Region(
                mask,
                category=None if categories is None else categories.get(v),
                source_id=v,
                metadata=dict(metadata or {}),
            )
        )
    return out


def from_masks(
    masks: Bool[np.ndarray, "n height width"] | Sequence[np.ndarray],
    *,
    categories: Sequence[str | None] | None = None,
    source_ids: Sequence[str | int | None] | None = None,
    metadata: Sequence[Mapping[str, Any]] | None = None,
) -> list[Region]:
    """Regions from an ``(N, H, W)`` boolean stack or a list of ``(H, W)`` masks.

    ``source_ids`` default to the position in the stack. Every mask must have the same
    shape; 0/1 integer masks are accepted, other values raise InputError.
    """
    items: list[Any] | None = None
    if isinstance(masks, np.ndarray):
        items = list(masks) if masks.ndim == 3 else None
    elif isinstance(masks, Sequence) and not isinstance(masks, (str, bytes)):
        items = list(masks)
    if items is None:
        raise InputError(
            f"masks must be an (N, H, W) stack or a list of (H, W) masks, got shape "
            f"{np.asarray(masks).shape}"
        )
    n = len(items)
    for name, seq in (
        ("categories", categories),
        ("source_ids", source_ids),
        ("metadata", metadata),
    ):
        if seq is not None and len(seq) != n:
            raise InputError(f"{name} has {len(seq)} entries but there are {n} masks")
    out = []
    shape: tuple[int, ...] | None = None
    for i, m in enumerate(items):
        mask = as_bool_mask(m, what=f"mask {i}")
        if shape is not None and mask.shape != shape:
            raise InputError(f"mask {i} has shape {mask.shape} but mask 0 has shape {shape}")
        shape = mask.shape
        out.append(
            Region(
                mask,
                category=None if categories is None else categories[i],
                source_id=i if source_ids is None else source_ids[i],
                metadata={} if metadata is None else dict(metadata[i]),
            )
        )
    return out
