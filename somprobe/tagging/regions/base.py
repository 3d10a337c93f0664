"""The :class:`Region` type every region source returns and the tagger consumes.

A region is a boolean mask over the image plus what is known about it: a category name
(COCO class, toy-world object), its id in the source, and free-form metadata.

Example:
    >>> import numpy as np
    >>> mask = np.zeros((4, 6), dtype=bool)
    >>> mask[1:3, 2:5] = True
    >>> r = Region(mask, category="cat", source_id=7)
    >>> r.area, r.bbox
    (6, (2, 1, 5, 3))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from jaxtyping import Bool
from PIL import Image

from somprobe.errors import InputError

Box = tuple[int, int, int, int]


def as_bool_mask(mask: Any, what: str = "mask") -> Bool[np.ndarray, "height width"]:
    """``mask`` as a 2-D boolean array; integer or float masks must hold only 0 and 1.

    Raises:
        InputError: the mask is not 2-D, is empty, or holds values other than 0/1.
    """
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise InputError(
            f"{what} must be a 2-D (height, width) array, got shape {arr.shape}; "
            "pass one mask per region (use from_masks for a stack)"
        )
    if arr.size == 0:
        raise InputError(f"{what} has shape {arr.shape}, which holds no pixels")
    if arr.dtype == np.bool_:
        return arr
    if arr.dtype.kind not in "uif":
        raise InputError(f"{what} has dtype {arr.dtype}; pass a boolean (or 0/1) array")
    ok = (arr == 0) | (arr == 1)
    if not bool(ok.all()):
        raise InputError(
            f"{what} has values other than 0 and 1 (dtype {arr.dtype}); threshold it "
            "(mask > 0.5) or pass a label image to from_label_image"
        )
    return arr.astype(bool)


def mask_bbox(mask: Bool[np.ndarray, "height width"]) -> Box | None:
    """Tight ``(x0, y0, x1, y1)`` box (exclusive end) of the True pixels, or None if none.

    A C-contiguous boolean mask whose width is a multiple of 8 is read 8 pixels at a
    time (its rows viewed as uint64 words); the box is the same either way.
    """
    words_fit = mask.ndim == 2 and mask.shape[1] % 8 == 0 and mask.shape[1] > 0
    if words_fit and mask.dtype == np.bool_ and mask.flags.c_contiguous:
        words = mask.view(np.uint64)  # row r, word j: columns 8j .. 8j+7
        rows = np.flatnonzero(np.bitwise_or.reduce(words, axis=1))
        if rows.size == 0:
            return None
        y0, y1 = int(rows[0]), int(rows[-1]) + 1
        cols = np.flatnonzero(np.bitwise_or.reduce(words[y0:y1], axis=0).view(np.uint8))
        return int(cols[0]), y0, int(cols[-1]) + 1, y1
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


@dataclass(frozen=True, eq=False)
class Region:
    """One region of an image.

    Attributes:
        mask: boolean ``(height, width)`` mask (0/1 arrays are converted on creation).
        category: category name when known ("person", "red circle"), else None.
        source_id: the region's id in its source (COCO annotation id, label value, ...).
        metadata: further facts (COCO bbox, SAM scores, superpixel method, ...).
    """

    mask: Bool[np.ndarray, "height width"]
    category: str | None = None
    source_id: str | int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "mask", as_bool_mask(self.mask))
        if self.category is not None and not isinstance(self.category, str):
            raise InputError(f"Region.category must be a string or None, got {self.category!r}")

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` of the mask."""
        return int(self.mask.shape[0]), int(self.mask.shape[1])

    @property
    def area(self) -> int:
        """Number of True pixels."""
        return int(np.count_nonzero(self.mask))

    @property
    def bbox(self) -> Box | None:
        """Tight box ``(x0, y0, x1, y1)`` (exclusive end), None for an empty mask."""
        return mask_bbox(self.mask)


def as_region(item: Region | np.ndarray, index: int = 0) -> Region:
    """A :class:`Region` from a Region (returned as is) or a plain mask array."""
    if isinstance(item, Region):
        return item
    return Region(as_bool_mask(item, what=f"region {index}"))


def resize_regions(regions: Sequence[Region], size: tuple[int, int]) -> list[Region]:
    """Regions resized (nearest neighbour) to ``size = (width, height)``.

    Use it with the image resize the tagger sees, e.g. COCO images at shorter side 640.

    Example:
        >>> r = Region(np.ones((2, 2), dtype=bool), category="x")
        >>> resize_regions([r], (4, 3))[0].mask.shape
        (3, 4)
    """
    width, height = size
    if width < 1 or height < 1:
        raise InputError(f"resize target {size} must be (width, height) with both ≥ 1")
    out = []
    for region in regions:
        img = Image.fromarray(region.mask.astype(np.uint8) * 255)
        resized = np.asarray(img.resize((width, height), Image.Resampling.NEAREST)) > 127
        out.append(Region(resized, region.category, region.source_id, dict(region.metadata)))
    return out
