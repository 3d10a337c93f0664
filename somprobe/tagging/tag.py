"""Set-of-Mark tagging in one call: :func:`tag_regions` = place the tags, then draw them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

import numpy as np
from PIL import Image

from somprobe.tagging.draw import DrawMode, TagStyle, draw_tags
from somprobe.tagging.place import REFERENCE_MIN_AREA, Order, place
from somprobe.tagging.regions.base import Region
from somprobe.tagging.rgb import as_rgb_array
from somprobe.tagging.types import LabelMode, TaggedImage

_OPTION_ORDER = (
    "order",
    "remove_overlaps",
    "min_area",
    "label_mode",
    "draw",
    "font_size",
    "box_alpha",
    "contrast",
    "seed",
    "explicit_centers",
)
"""The keys of ``TagSet.options`` written by :func:`tag_regions`, in their saved order."""


def tag_regions(
    image: Image.Image | np.ndarray,
    regions: Sequence[Region | np.ndarray] | np.ndarray,
    *,
    order: Order = "area_ascending",
    remove_overlaps: bool = True,
    min_area: float | None = None,
    min_area_at_640: float = REFERENCE_MIN_AREA,
    label_mode: LabelMode = "number",
    draw: DrawMode | Sequence[DrawMode] = "mark",
    font_size: int | None = None,
    min_font_size: int = 10,
    text_color: tuple[int, int, int] | Literal["auto"] = (255, 255, 255),
    box_color: tuple[int, int, int] | Literal["region"] = (0, 0, 0),
    box_alpha: float = 0.8,
    contrast: Literal["fixed", "auto"] = "fixed",
    fill_alpha: float = 0.4,
    line_width: int | None = None,
    seed: int = 0,
    max_tags: int | None = None,
    centers: Sequence[tuple[float, float] | None] | None = None,
) -> TaggedImage:
    """Draw Set-of-Mark tags on ``image`` for ``regions``; return the image and its TagSet.

    The defaults are SoM-LLaVA's: regions sorted by area ascending (the smallest gets tag
    1; ties keep the given order), each mask minus all earlier masks, regions with
    remaining area 0 or below :func:`min_area_for` skipped (their pixels still count as
    covered; they are listed in ``tagset.skipped``; ids stay 1..N), the mark at
    :func:`mark_position` of the remaining mask, white numbers on a black box of alpha
    0.8, font size from :func:`somprobe.tagging.draw.font_size_for`.

    Args:
        image: PIL image or array; converted as documented in :mod:`somprobe.tagging.rgb`
            (grayscale, RGBA over white, 16-bit scaled). The drawn image is RGB.
        regions: list of :class:`~somprobe.tagging.regions.Region` or boolean ``(H, W)`` masks, or
            an ``(N, H, W)`` stack. An empty list gives an empty TagSet and an unchanged
            image; an all-zero mask is skipped with reason ``"empty"``.
        order: "area_ascending", "area_descending" (both by original mask area, stable) or
            "given".
        remove_overlaps: subtract all earlier masks (False: tags keep their full masks).
        min_area: minimum remaining area in pixels; None uses
            ``min_area_for(width, height, min_area_at_640)``.
        label_mode: "number" (1, 2, …) or "letter" (a … z, aa, ab, …).
        draw: any of "mark" (label box + text), "box" (region bounding box), "outline"
            (mask border), "fill" (mask fill with ``fill_alpha``); outlines, boxes and
            fills use the tag's seeded colour and the remaining mask.
        font_size: label font size in px; None uses the scaling rule with floor
            ``min_font_size``.
        text_color: RGB, or "auto" (black or white, whichever reads on the label box).
        box_color: RGB, or "region" (the tag's colour).
        box_alpha: opacity of the label box (0 draws no box).
        contrast: "fixed" uses ``text_color`` on ``box_color``; "auto" uses white on black
            unless the pixels under the box are dark (mean luma < 80), then black on white.
        fill_alpha: opacity of "fill".
        line_width: width of "box"/"outline" lines; None: ``max(1, round(2 * short/640))``.
        seed: seed of the tag colours.
        max_tags: raise InputError if more tags than this would be drawn (None: no
            limit; numbers simply get more digits, 100, 101, …).
        centers: optional explicit mark centers ``(x, y)`` in pixels, one per input region
            (same order as ``regions``; None entries use :func:`mark_position`). A given
            center must fall on a pixel of the region's remaining mask (InputError
            otherwise), so ``Tag.center`` keeps its invariant. Used, e.g., to put marks on
            patch centers of a vision encoder.

    Placement and drawing are also separate steps: :func:`~somprobe.tagging.place_tags`
    (the TagSet alone) and :func:`~somprobe.tagging.annotate` (draw any TagSet in a
    :class:`~somprobe.tagging.TagStyle`).

    Example:
        >>> import numpy as np
        >>> img = np.zeros((64, 64, 3), dtype=np.uint8)
        >>> big = np.zeros((64, 64), bool); big[:, :40] = True
        >>> small = np.zeros((64, 64), bool); small[10:30, 10:30] = True
        >>> tagged = tag_regions(img, [big, small])
        >>> [(t.id, t.label, t.source_index, t.area) for t in tagged.tagset]
        [(1, '1', 1, 400), (2, '2', 0, 2160)]
    """
    style = TagStyle(
        draw=draw,
        text_color=text_color,
        box_color=box_color,
        box_alpha=box_alpha,
        contrast=contrast,
        fill_alpha=fill_alpha,
        line_width=line_width,
    )
    pixels = as_rgb_array(image)
    height, width = int(pixels.shape[0]), int(pixels.shape[1])
    placed = place(
        (width, height),
        regions,
        order=order,
        remove_overlaps=remove_overlaps,
        min_area=min_area,
        min_area_at_640=min_area_at_640,
        label_mode=label_mode,
        font_size=font_size,
        min_font_size=min_font_size,
        seed=seed,
        max_tags=max_tags,
        centers=centers,
    )
    tagset = placed.tagset
    drawn = draw_tags(pixels.copy(), tagset.tags, placed.crops, placed.origins, placed.font, style)
    options = tagset.options | {
        "draw": style.modes,
        "box_alpha": float(box_alpha),
        "contrast": contrast,
    }
    return TaggedImage(drawn, replace(tagset, options={k: options[k] for k in _OPTION_ORDER}))
