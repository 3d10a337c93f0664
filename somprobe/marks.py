"""Set-of-Mark tagging: the data types every other module relies on.

A :class:`TagSet` is the ground truth of every probe: for each tag id (1..N) the label
drawn, the region it marks (after overlap removal), where the mark was drawn, and the
region's metadata. :func:`tag_regions` produces a
:class:`TaggedImage`; the toy world, the data pipeline and the scorers consume TagSets.

Coordinates are in pixels of the *original* image: ``(x, y)`` with x to the right and y
down; boxes are ``(x0, y0, x1, y1)`` with x1/y1 exclusive. Masks are boolean arrays of
shape ``(height, width)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from jaxtyping import Bool
from PIL import Image
from scipy import ndimage

from somprobe.errors import InputError
from somprobe.regions.base import Region, as_region, mask_bbox
from somprobe.rgb import as_rgb_array

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
        if not 1 <= tag_id <= len(self.tags):
            from somprobe.errors import InputError

            raise InputError(f"no tag {tag_id} in this TagSet: ids are 1..{len(self.tags)}")
        return self.tags[tag_id - 1]

    @property
    def ids(self) -> list[int]:
        return [t.id for t in self.tags]


@dataclass(frozen=True, eq=False)
class TaggedImage:
    """The image with its marks drawn, and the ground truth of what each mark tags."""

    image: Image.Image
    tagset: TagSet


# --------------------------------------------------------------------------------------
# Tagging
# --------------------------------------------------------------------------------------

Order = Literal["area_ascending", "area_descending", "given"]
DrawMode = Literal["mark", "box", "outline", "fill"]
DRAW_MODES: tuple[str, ...] = ("mark", "box", "outline", "fill")
REFERENCE_MIN_AREA = 110.0
"""SoM-LLaVA's minimum remaining area, in pixels at a shorter side of 640."""


def min_area_for(width: int, height: int, at_640: float = REFERENCE_MIN_AREA) -> float:
    """Minimum remaining area in pixels for a ``width`` × ``height`` image.

    The rule: ``at_640 * (min(width, height) / 640) ** 2``. SoM-LLaVA resizes images to a
    shorter side of 640 and skips masks with fewer than 110 remaining pixels there; a
    region of ``a`` pixels in an image of shorter side ``s`` covers ``a * (640 / s)**2``
    pixels after that resize, so the threshold scales with the square of the shorter side
    (i.e. with the image area at a fixed aspect ratio). A region is skipped when its
    remaining area is 0 or ``< min_area_for(...)``.

    Example:
        >>> min_area_for(640, 480), min_area_for(960, 1280)
        (61.875, 247.5)
    """
    return float(at_640) * (min(width, height) / 640.0) ** 2


def mark_position(mask: np.ndarray) -> tuple[int, int]:
    """``(col, row)`` of the pixel farthest (L2) from the border of a non-empty ``mask``.

    The distance of a pixel is the Euclidean distance to the nearest background pixel,
    with everything outside the mask's array counting as background (the image edge is
    a border). "Middle of ties": the pixels that reach the maximum distance, listed in
    row-major order (by row, then column), and the one at index ``n // 2`` (0-based) of
    that list of ``n`` is taken. The result is exactly that of
    ``scipy.ndimage.distance_transform_edt`` on the mask padded with one background
    pixel all round; large masks are solved faster with the same answer (see
    :func:`_farthest_pixel`).

    Example:
        >>> m = np.zeros((5, 7), dtype=bool); m[1:4, 1:6] = True
        >>> mark_position(m)
        (3, 2)
    """
    bbox = mask_bbox(mask)
    if bbox is None:
        raise InputError("cannot place a mark on an empty mask")
    x0, y0, x1, y1 = bbox
    row, col = _farthest_pixel(mask[y0:y1, x0:x1])
    return x0 + col, y0 + row


_BLOCK = 8
"""Side of the coarse blocks of the fast placement (a multiple of 8: rows are read as uint64)."""
_DENSE_MAX_AREA = 6000
"""Crops of at most this many pixels (or thinner than two blocks) use the dense transform."""
_PAIRS_PER_PIXEL = 48
"""Work limit of the fast placement in (pixel, border pixel) pairs per crop pixel."""
_FULL_ROW = np.uint64(0x0101010101010101)  # eight True bytes
_SLACK = 1e-6  # bounds are compared with this margin, so rounding can only keep more cells


def _farthest_pixel_dense(crop: np.ndarray) -> tuple[int, int]:
    """``(row, col)`` by the full distance transform of ``crop`` padded with background."""
    h, w = crop.shape
    padded = np.zeros((h + 2, w + 2), dtype=bool)
    padded[1:-1, 1:-1] = crop
    dist = ndimage.distance_transform_edt(padded)[1:-1, 1:-1]
    ties = np.flatnonzero(dist == dist.max())
    row, col = divmod(int(ties[len(ties) // 2]), w)
    return row, col


def _farthest_pixel(crop: np.ndarray) -> tuple[int, int]:
    """``(row, col)`` in ``crop`` of :func:`mark_position`'s pixel; exact, usually fast.

    Squared distances are integers, so maxima and ties are decided exactly. Steps:

    1. Pad the crop with background to a grid of 8×8 blocks; ``scipy.ndimage``'s
       distance transform of the map of all-foreground blocks gives, for each block,
       bounds ``8·E ± 7·√2`` on the distance of all its pixels (``E`` in blocks).
    2. Exact squared distances of a few pixels, against the background pixels that
       touch the mask (a nearest background pixel always does), give a lower bound on
       the maximum; blocks whose upper bound is below it are dropped.
    3. Quadtree: the kept cells are halved down to single pixels; a cell is dropped
       when its centre's distance plus the centre-to-corner radius (distance is
       1-Lipschitz) is below the best exact distance seen.

    Every pixel at the maximum distance survives, so the tie list, and its middle,
    equals the dense transform's. Small or thin crops, and crops where the bounds prune
    too little, use the dense transform directly.
    """
    h, w = crop.shape
    k = _BLOCK
    if h * w <= _DENSE_MAX_AREA or min(h, w) < 2 * k:
        return _farthest_pixel_dense(crop)
    gh, gw = -(-(h + 2) // k) * k, -(-(w + 2) // k) * k
    grid = np.zeros((gh, gw), dtype=bool)
    np.not_equal(crop, False, out=grid[1 : h + 1, 1 : w + 1])  # True stored as byte 1
    full = (grid.view(np.uint64) == _FULL_ROW).reshape(gh // k, k, gw // k).all(axis=1)
    coarse = ndimage.distance_transform_edt(full)
    top = float(coarse.max())
    if top == 0.0:
        return _farthest_pixel_dense(crop)
    flat = grid.ravel()
    border = _border_matrix(flat, gw)
    # exact lower bound from the centres of (up to 16) deepest blocks, all foreground
    rows, cols = np.nonzero(coarse == top)
    centres = (rows[:16] * k + k // 2) * gw + cols[:16] * k + k // 2
    best = float(_nearest_d2(centres, gw, border).max())
    rows, cols = np.nonzero(k * coarse + (k - 1) * math.sqrt(2.0) + _SLACK >= math.sqrt(best))
    border = _shell(border, rows * k, cols * k, k)
    cells = rows * (k * gw) + cols * k  # flat index of each cell's top-left pixel
    budget = _PAIRS_PER_PIXEL * h * w
    size = k
    while True:
        half = size // 2
        samples = cells + half * (gw + 1)
        if size == 1:
            samples = samples[flat[samples]]
        budget -= samples.size * border.shape[1]
        if budget < 0:
            return _farthest_pixel_dense(crop)
        d2 = _nearest_d2(samples, gw, border)
        if size == 1:
            ties = np.sort(samples[d2 == d2.max()])  # flat order is row-major order
            row, col = divmod(int(ties[ties.size // 2]), gw)
            return row - 1, col - 1
        d2 *= flat[samples]  # a background centre is at distance 0
        best = max(best, float(d2.max()))
        reach = math.sqrt(best) - half * math.sqrt(2.0) - _SLACK
        if reach > 0:
            cells = cells[d2 >= reach * reach]
        size = half
        cells = (cells[:, None] + np.array([0, size, size * gw, size * gw + size])).ravel()


def _border_matrix(flat: np.ndarray, width: int) -> np.ndarray:
    """``(3, B)`` rows ``|q|², -2·q_row, -2·q_col`` of the background pixels touching ``flat``.

    ``flat`` is a row-major grid of ``width`` columns whose first and last columns are
    background, so the wrap-around of the ±1 shifts pairs background with background.
    """
    near = np.zeros_like(flat)
    near[1:] = flat[:-1]
    near[:-1] |= flat[1:]
    near[width:] |= flat[:-width]
    near[:-width] |= flat[width:]
    near &= ~flat
    q_row, q_col = np.divmod(np.flatnonzero(near), width)
    out = np.empty((3, q_row.size))
    out[0] = q_row * q_row + q_col * q_col
    out[1] = -2.0 * q_row
    out[2] = -2.0 * q_col
    return out


def _nearest_d2(samples: np.ndarray, width: int, border: np.ndarray) -> np.ndarray:
    """Exact squared distance from each flat-indexed pixel to its nearest ``border`` pixel.

    ``|s - q|² = |s|² + (|q|² - 2 s·q)``: a matrix product, exact because all values are
    integers far below 2**53.
    """
    s_row, s_col = np.divmod(samples, width)
    vec = np.empty((samples.size, 3))
    vec[:, 0] = 1.0
    vec[:, 1] = s_row
    vec[:, 2] = s_col
    step = max(1, (1 << 20) // border.shape[1])  # at most 8 MB per product
    if samples.size <= step:
        out = (vec @ border).min(axis=1)
    else:
        out = np.concatenate(
            [(vec[i : i + step] @ border).min(axis=1) for i in range(0, samples.size, step)]
        )
    out += s_row * s_row + s_col * s_col
    return out


def _shell(border: np.ndarray, rows: np.ndarray, cols: np.ndarray, size: int) -> np.ndarray:
    """The border pixels that can be nearest to a pixel of the cells at ``rows``, ``cols``.

    With ``m`` the centre and ``ρ`` the half-diagonal of the cells' bounding box, and
    ``d`` the distance from ``m`` to the nearest border pixel, every pixel ``p`` of the
    cells has its nearest border pixel within ``ρ + (ρ + d)`` of ``m``.
    """
    r0, r1 = int(rows.min()), int(rows.max()) + size - 1
    c0, c1 = int(cols.min()), int(cols.max()) + size - 1
    centre = np.array([1.0, 0.5 * (r0 + r1), 0.5 * (c0 + c1)])
    dq = centre @ border + (centre[1] ** 2 + centre[2] ** 2)  # exact: quarter-integers
    limit = math.sqrt(float(dq.min())) + math.hypot(r1 - r0, c1 - c0) + _SLACK
    return border[:, dq <= limit * limit]


def _as_regions(
    regions: Sequence[Region | np.ndarray] | np.ndarray, shape: tuple[int, int]
) -> list[Region]:
    if isinstance(regions, np.ndarray):
        if regions.ndim == 2:
            raise InputError(
                f"regions is one 2-D array of shape {regions.shape}; pass a list of masks, "
                "a (N, H, W) stack, or from_label_image(labels) for a label image"
            )
        if regions.ndim != 3:
            raise InputError(f"a mask stack must have shape (N, H, W), got {regions.shape}")
        items: Sequence[Region | np.ndarray] = list(regions)
    elif isinstance(regions, (Region, str, bytes)) or not isinstance(regions, Sequence):
        raise InputError(
            f"regions must be a list of Region objects or boolean masks, got "
            f"{type(regions).__name__}"
        )
    else:
        items = regions
    out = []
    for i, item in enumerate(items):
        region = as_region(item, i)
        if region.shape != shape:
            raise InputError(
                f"region {i} has mask shape {region.shape} but the image is "
                f"{shape[0]}×{shape[1]} (height×width); resize the mask to the image "
                "(e.g. somprobe.regions.resize_regions)"
            )
        out.append(region)
    return out


def _order(areas: list[int], order: str) -> list[int]:
    if order == "area_ascending":
        return [int(i) for i in np.argsort(np.asarray(areas), kind="stable")]
    if order == "area_descending":
        return [int(i) for i in np.argsort(-np.asarray(areas), kind="stable")]
    if order == "given":
        return list(range(len(areas)))
    raise InputError(f"order must be 'area_ascending', 'area_descending' or 'given', got {order!r}")


def _draw_modes(draw: str | Sequence[str]) -> set[str]:
    modes = {draw} if isinstance(draw, str) else set(draw)
    bad = modes - set(DRAW_MODES)
    if bad:
        raise InputError(f"unknown draw mode(s) {sorted(bad)}; choose from {list(DRAW_MODES)}")
    return modes


def _check_color(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if isinstance(value, str):
        if value not in allowed:
            raise InputError(
                f"{name} must be an (r, g, b) tuple or one of {allowed}, got {value!r}"
            )
        return
    arr = np.asarray(value)
    if arr.shape != (3,) or arr.dtype.kind not in "iu" or arr.min() < 0 or arr.max() > 255:
        raise InputError(f"{name} must be an (r, g, b) tuple of ints in 0..255, got {value!r}")


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
    0.8, font size from :func:`somprobe.marks_draw.font_size_for`.

    Args:
        image: PIL image or array; converted as documented in :mod:`somprobe.rgb`
            (grayscale, RGBA over white, 16-bit scaled). The drawn image is RGB.
        regions: list of :class:`~somprobe.regions.Region` or boolean ``(H, W)`` masks, or
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

    Example:
        >>> import numpy as np
        >>> img = np.zeros((64, 64, 3), dtype=np.uint8)
        >>> big = np.zeros((64, 64), bool); big[:, :40] = True
        >>> small = np.zeros((64, 64), bool); small[10:30, 10:30] = True
        >>> tagged = tag_regions(img, [big, small])
        >>> [(t.id, t.label, t.source_index, t.area) for t in tagged.tagset]
        [(1, '1', 1, 400), (2, '2', 0, 2160)]
    """
    from somprobe import marks_draw as md

    pixels = as_rgb_array(image)
    height, width = int(pixels.shape[0]), int(pixels.shape[1])
    regs = _as_regions(regions, (height, width))
    modes = _draw_modes(draw)
    if label_mode not in ("number", "letter"):
        raise InputError(f"label_mode must be 'number' or 'letter', got {label_mode!r}")
    if contrast not in ("fixed", "auto"):
        raise InputError(f"contrast must be 'fixed' or 'auto', got {contrast!r}")
    _check_color("text_color", text_color, ("auto",))
    _check_color("box_color", box_color, ("region",))
    for name, value in (("box_alpha", box_alpha), ("fill_alpha", fill_alpha)):
        if not 0.0 <= float(value) <= 1.0:
            raise InputError(f"{name} must lie in [0, 1], got {value}")
    threshold = (
        float(min_area) if min_area is not None else min_area_for(width, height, min_area_at_640)
    )
    if threshold < 0:
        raise InputError(f"min_area must be ≥ 0, got {threshold}")
    fsize = (
        int(font_size)
        if font_size is not None
        else md.font_size_for(width, height, minimum=min_font_size)
    )
    lw = int(line_width) if line_width is not None else max(1, round(2 * min(width, height) / 640))
    if lw < 1:
        raise InputError(f"line_width must be ≥ 1, got {line_width}")

    if centers is not None and len(centers) != len(regs):
        raise InputError(
            f"centers has {len(centers)} entries but there are {len(regs)} regions; give one "
            "(x, y) or None per region"
        )
    kept, skipped = _remaining_masks(regs, (height, width), order, remove_overlaps, threshold)
    if max_tags is not None and len(kept) > max_tags:
        raise InputError(
            f"{len(kept)} tags would be drawn but max_tags={max_tags}; pass fewer regions, "
            "raise min_area, or raise max_tags"
        )

    colors = md.region_colors(len(kept), seed)
    font = md.load_font(fsize)
    canvas = pixels.copy()
    tags: list[Tag] = []
    origins: list[tuple[int, int]] = []
    for n, (idx, remaining, (x0, y0, x1, y1)) in enumerate(kept):
        region = regs[idx]
        given = centers[idx] if centers is not None else None
        if given is None:
            row, col = _farthest_pixel(remaining)  # remaining is cropped to its own box
            center = (x0 + col + 0.5, y0 + row + 0.5)
        else:
            center = _check_center(given, idx, remaining, (x0, y0))
        label = md.label_text(n + 1, label_mode)
        mark_box, origin = md.label_layout(label, font, center, (width, height))
        origins.append(origin)
        full = np.zeros((height, width), dtype=bool)
        full[y0:y1, x0:x1] = remaining
        tags.append(
            Tag(
                id=n + 1,
                label=label,
                mask=full,
                original_mask=region.mask.copy(),
                center=center,
                mark_box=mark_box,
                category=region.category,
                source_id=region.source_id,
                metadata=dict(region.metadata),
                source_index=idx,
                color=colors[n],
            )
        )
    for (_, remaining, (x0, y0, _, _)), color in zip(kept, colors, strict=True):
        if "fill" in modes and fill_alpha > 0:
            md.blend_mask(canvas, remaining, (x0, y0), color, float(fill_alpha))
        if "outline" in modes:
            md.blend_mask(canvas, md.outline_of(remaining, lw), (x0, y0), color, 1.0)
    if "box" in modes:
        for tag, (_, _, box) in zip(tags, kept, strict=True):
            assert tag.color is not None
            md.draw_rectangle(canvas, box, tag.color, lw)
    texts: list[tuple[tuple[int, int], str, tuple[int, int, int]]] = []
    if "mark" in modes:
        for tag, origin in zip(tags, origins, strict=True):
            bg, fg = _mark_colors(canvas, tag, text_color, box_color, contrast, box_alpha)
            if box_alpha > 0:
                md.blend_box(canvas, tag.mark_box, bg, float(box_alpha))
            texts.append((origin, tag.label, fg))
    drawn = md.draw_texts(canvas, texts, font) if texts else Image.fromarray(canvas)
    options = {
        "order": order,
        "remove_overlaps": remove_overlaps,
        "min_area": threshold,
        "label_mode": label_mode,
        "draw": sorted(modes),
        "font_size": fsize,
        "box_alpha": float(box_alpha),
        "contrast": contrast,
        "seed": seed,
        "explicit_centers": centers is not None,
    }
    tagset = TagSet(tags, (width, height), label_mode, skipped, options)
    return TaggedImage(drawn, tagset)


def _remaining_masks(
    regs: list[Region],
    shape: tuple[int, int],
    order: str,
    remove_overlaps: bool,
    threshold: float,
) -> tuple[list[tuple[int, np.ndarray, Box]], list[dict[str, Any]]]:
    """Overlap removal and the area limit, in tag order.

    Returns ``(kept, skipped)``: ``kept`` holds ``(index, remaining, box)`` with
    ``remaining`` the remaining mask cropped to its own tight ``box``; ``skipped`` the
    entries of :attr:`TagSet.skipped`. Skipped regions still cover their pixels.
    """
    areas = [int(np.count_nonzero(r.mask)) for r in regs]
    covered = np.zeros(shape, dtype=bool)
    kept: list[tuple[int, np.ndarray, Box]] = []
    skipped: list[dict[str, Any]] = []
    for idx in _order(areas, order):
        region = regs[idx]
        box = _mask_box(region.mask) if areas[idx] else None
        if box is None:
            skipped.append(_skip_entry(idx, region, 0, "empty"))
            continue
        x0, y0, x1, y1 = box
        crop = region.mask[y0:y1, x0:x1]
        seen = covered[y0:y1, x0:x1]
        remaining = crop > seen if remove_overlaps else crop  # crop and not yet covered
        seen |= crop
        area = int(np.count_nonzero(remaining)) if remove_overlaps else areas[idx]
        if area == 0 or area < threshold:
            reason = "fully_covered" if area == 0 else "below_min_area"
            skipped.append(_skip_entry(idx, region, area, reason))
            continue
        if area < areas[idx]:  # part was covered: shrink to the remaining pixels' box
            bx0, by0, bx1, by1 = mask_bbox(remaining) or (0, 0, 0, 0)
            remaining = remaining[by0:by1, bx0:bx1]
            box = (x0 + bx0, y0 + by0, x0 + bx1, y0 + by1)
        kept.append((idx, remaining, box))
    return kept, skipped


def _mask_box(mask: np.ndarray) -> Box | None:
    """:func:`~somprobe.regions.base.mask_bbox`, reading rows 8 pixels at a time when it can."""
    if mask.shape[1] % 8 or not mask.flags.c_contiguous:
        return mask_bbox(mask)
    words = mask.view(np.uint64)  # row r, word j: columns 8j .. 8j+7
    rows = np.flatnonzero(np.bitwise_or.reduce(words, axis=1))
    if rows.size == 0:
        return None
    y0, y1 = int(rows[0]), int(rows[-1]) + 1
    cols = np.flatnonzero(np.bitwise_or.reduce(words[y0:y1], axis=0).view(np.uint8))
    return int(cols[0]), y0, int(cols[-1]) + 1, y1


def _check_center(
    given: tuple[float, float], idx: int, remaining: np.ndarray, offset: tuple[int, int]
) -> tuple[float, float]:
    x, y = float(given[0]), float(given[1])
    col, row = int(np.floor(x)) - offset[0], int(np.floor(y)) - offset[1]
    inside = 0 <= row < remaining.shape[0] and 0 <= col < remaining.shape[1]
    if not (np.isfinite(x) and np.isfinite(y) and inside and remaining[row, col]):
        raise InputError(
            f"center {given} given for region {idx} is not on a pixel of its remaining mask; "
            "give a point inside the region (after overlap removal) or None"
        )
    return x, y


def _skip_entry(index: int, region: Region, area: int, reason: str) -> dict[str, Any]:
    return {
        "index": index,
        "area": area,
        "reason": reason,
        "category": region.category,
        "source_id": region.source_id,
    }


def _mark_colors(
    canvas: np.ndarray,
    tag: Tag,
    text_color: tuple[int, int, int] | str,
    box_color: tuple[int, int, int] | str,
    contrast: str,
    box_alpha: float,
) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(box colour, text colour) for one label, following the contrast rules."""
    from somprobe.marks_draw import DARK_BACKGROUND_LUMINANCE, LIGHT_BOX_LUMINANCE, luminance

    white, black = (255, 255, 255), (0, 0, 0)
    x0, y0, x1, y1 = tag.mark_box
    under = canvas[y0:y1, x0:x1]
    if contrast == "auto":
        dark = luminance(under) < DARK_BACKGROUND_LUMINANCE
        return (white, black) if dark else (black, white)
    bg: tuple[int, int, int]
    if box_color == "region":
        assert tag.color is not None
        bg = tag.color
    else:
        bg = tuple(int(c) for c in box_color)  # type: ignore[assignment]
    if text_color != "auto":
        return bg, tuple(int(c) for c in text_color)  # type: ignore[return-value]
    seen = box_alpha * luminance(bg) + (1 - box_alpha) * luminance(under)
    return bg, (black if seen > LIGHT_BOX_LUMINANCE else white)
