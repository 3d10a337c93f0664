"""The tagging data types every other stage relies on: :class:`Tag`, :class:`TagSet`,
:class:`TaggedImage`.

A :class:`TagSet` is the ground truth of every probe: for each tag id (1..N) the label
drawn, the region it marks (after overlap removal), where the mark was drawn, and the
region's metadata. :func:`somprobe.tagging.tag_regions` produces a :class:`TaggedImage`;
the toy world, the data pipeline and the scorers consume TagSets.

Coordinates are in pixels of the *original* image: ``(x, y)`` with x to the right and y
down; boxes are ``(x0, y0, x1, y1)`` with x1/y1 exclusive. Masks are boolean arrays of
shape ``(height, width)``.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from jaxtyping import Bool
from PIL import Image

from somprobe.errors import InputError

LabelMode = Literal["number", "letter"]
Box = tuple[int, int, int, int]


@dataclass(frozen=True, eq=False)
class Tag:
    """One drawn tag and the region it marks.

    Attributes:
        id: tag number, 1..N, contiguous within a TagSet.
        label: the text drawn on the image ("3", or "c" in letter mode).
        mask: the region after overlap removal (what the tag really marks).
        original_mask: the region as given, before overlap removal.
        center: ``(x, y)`` of the mark's center in original-image pixels.
        mark_box: ``(x0, y0, x1, y1)`` of the drawn label box (exclusive end).
        category: the region's category name when known (e.g. "cat", "red circle").
        source_id: the id of the region in its source (COCO annotation id, ...).
        metadata: any further per-region facts (colour, shape, area, ...).
        source_index: position of the region in the list given to ``tag_regions``.
        color: the RGB colour used for this tag's fill / outline / box drawing.

    ``center`` is the centre of the chosen pixel, ``(col + 0.5, row + 0.5)``, so
    ``mask[int(center[1]), int(center[0])]`` is that pixel and is always True.
    """

    id: int
    label: str
    mask: Bool[np.ndarray, "height width"]
    original_mask: Bool[np.ndarray, "height width"]
    center: tuple[float, float]
    mark_box: Box
    category: str | None = None
    source_id: str | int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    source_index: int | None = None
    color: tuple[int, int, int] | None = None

    @property
    def area(self) -> int:
        """Pixels in the remaining (overlap-removed) mask."""
        return int(self.mask.sum())


@dataclass(frozen=True, eq=False)
class TagSet:
    """All tags of one image, in tag order.

    Attributes:
        tags: the tags, ``tags[i].id == i + 1``.
        image_size: ``(width, height)`` of the original image.
        label_mode: "number" or "letter".
        skipped: regions not tagged because too little of them remained after overlap
            removal; each entry holds at least ``index`` (position in the input list),
            ``area`` (remaining pixels) and ``reason``.
        options: the settings the tags were made with (resolved values: font size,
            minimum area in pixels, order, ...), for provenance.
    """

    tags: list[Tag]
    image_size: tuple[int, int]
    label_mode: LabelMode = "number"
    skipped: list[dict[str, Any]] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.tags)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.tags)

    def __getitem__(self, tag_id: int) -> Tag:
        """The tag with id ``tag_id`` (1-based, like the numbers drawn)."""
        try:
            index = None if isinstance(tag_id, bool) else operator.index(tag_id)
        except TypeError:
            index = None
        if index is None or not 1 <= index <= len(self.tags):
            shown = tag_id if index is None else index
            raise InputError(f"no tag {shown!r} in this TagSet: ids are 1..{len(self.tags)}")
        return self.tags[index - 1]

    @property
    def ids(self) -> list[int]:
        return [t.id for t in self.tags]


@dataclass(frozen=True, eq=False)
class TaggedImage:
    """The image with its marks drawn, and the ground truth of what each mark tags."""

    image: Image.Image
    tagset: TagSet
