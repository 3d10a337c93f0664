"""Where SoM tags go: tag order, overlap removal, the area limit and the mark position.

:func:`place_tags` turns regions into a :class:`~somprobe.tagging.types.TagSet` without
drawing anything; :func:`somprobe.tagging.tag_regions` places and then draws
(:func:`somprobe.tagging.annotate`). The rules are SoM-LLaVA's: regions sorted by area
ascending (the smallest gets tag 1), each mask minus all earlier masks, regions whose
remaining area is 0 or below :func:`min_area_for` skipped (their pixels still count as
covered), and the mark at :func:`mark_position` of the remaining mask.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import ndimage

from somprobe.errors import InputError
from somprobe.tagging import draw
from somprobe.tagging.regions.base import Region, as_bool_mask, as_region, mask_bbox
from somprobe.tagging.types import Box, LabelMode, Tag, TagSet

Order = Literal["area_ascending", "area_descending", "given"]
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

    Raises:
        InputError: ``width`` or ``height`` below 1, or a negative ``at_640``.

    Example:
        >>> min_area_for(640, 480), min_area_for(960, 1280)
        (61.875, 247.5)
    """
    if not (_is_number(width) and _is_number(height) and min(width, height) >= 1):
        raise InputError(f"width and height must be ≥ 1, got {width!r} × {height!r}")
    if not (_is_number(at_640) and at_640 >= 0):
        raise InputError(f"at_640 (the minimum area at 640 px) must be ≥ 0, got {at_640!r}")
    return float(at_640) * (min(width, height) / 640.0) ** 2


def _is_number(value: Any) -> bool:
    """A real, finite number (bools excluded)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return False
    return bool(np.isfinite(value))


def _count(value: Any, name: str, low: int) -> int:
    """``value`` as an integer ≥ ``low``, or an InputError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{name} must be an integer ≥ {low}, got {value!r}")
    if value < low:
        raise InputError(f"{name} must be an integer ≥ {low}, got {value}")
    return int(value)


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

    Raises:
        InputError: ``mask`` is not a 2-D boolean (or 0/1) array, or has no True pixel.

    Example:
        >>> m = np.zeros((5, 7), dtype=bool); m[1:4, 1:6] = True
        >>> mark_position(m)
        (3, 2)
    """
    mask = as_bool_mask(mask, "mask")
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
                "(e.g. somprobe.tagging.regions.resize_regions)"
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
        box = mask_bbox(region.mask) if areas[idx] else None
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


def _check_center(
    given: tuple[float, float], idx: int, remaining: np.ndarray, offset: tuple[int, int]
) -> tuple[float, float]:
    pair = isinstance(given, (tuple, list, np.ndarray)) and len(given) == 2
    real = (int, float, np.integer, np.floating)
    if not (pair and all(isinstance(v, real) and not isinstance(v, bool) for v in given)):
        raise InputError(
            f"center {given!r} given for region {idx} must be (x, y), two numbers, or None"
        )
    x, y = float(given[0]), float(given[1])
    inside = False
    if np.isfinite(x) and np.isfinite(y):
        col, row = int(np.floor(x)) - offset[0], int(np.floor(y)) - offset[1]
        inside = 0 <= row < remaining.shape[0] and 0 <= col < remaining.shape[1]
        inside = inside and bool(remaining[row, col])
    if not inside:
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


@dataclass(frozen=True)
class Placement:
    """A placed TagSet and what drawing it needs without recomputing anything.

    Attributes:
        tagset: the tags (its options: the placement settings).
        crops: per tag, its remaining mask cropped to its own tight box, and that box.
        origins: per tag, where the label text is drawn.
        font: the font the label boxes were laid out with.
    """

    tagset: TagSet
    crops: list[tuple[np.ndarray, Box]]
    origins: list[tuple[int, int]]
    font: draw.Font


def place(
    size: tuple[int, int],
    regions: Sequence[Region | np.ndarray] | np.ndarray,
    *,
    order: Order = "area_ascending",
    remove_overlaps: bool = True,
    min_area: float | None = None,
    min_area_at_640: float = REFERENCE_MIN_AREA,
    label_mode: LabelMode = "number",
    font_size: int | None = None,
    min_font_size: int = 10,
    seed: int = 0,
    max_tags: int | None = None,
    centers: Sequence[tuple[float, float] | None] | None = None,
) -> Placement:
    """:func:`place_tags`, keeping the crops, text origins and font for drawing."""
    width, height = _image_size(size)
    regs = _as_regions(regions, (height, width))
    if label_mode not in ("number", "letter"):
        raise InputError(f"label_mode must be 'number' or 'letter', got {label_mode!r}")
    if min_area is not None and not _is_number(min_area):
        raise InputError(f"min_area must be a number of pixels (or None), got {min_area!r}")
    threshold = (
        float(min_area) if min_area is not None else min_area_for(width, height, min_area_at_640)
    )
    if threshold < 0:
        raise InputError(f"min_area must be ≥ 0, got {threshold}")
    _count(min_font_size, "min_font_size", 1)
    if font_size is not None and (
        isinstance(font_size, bool) or not isinstance(font_size, (int, np.integer))
    ):
        raise InputError(f"font_size must be an integer (pixels) or None, got {font_size!r}")
    fsize = (
        int(font_size)
        if font_size is not None
        else draw.font_size_for(width, height, minimum=min_font_size)
    )
    seed = _count(seed, "seed", 0)
    if max_tags is not None:
        max_tags = _count(max_tags, "max_tags", 0)
    if centers is not None and (
        isinstance(centers, (str, bytes)) or not isinstance(centers, (Sequence, np.ndarray))
    ):
        raise InputError(f"centers must be a list of (x, y) or None, got {type(centers).__name__}")
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

    colors = draw.region_colors(len(kept), seed)
    font = draw.load_font(fsize)
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
        label = draw.label_text(n + 1, label_mode)
        mark_box, origin = draw.label_layout(label, font, center, (width, height))
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
    options = {
        "order": order,
        "remove_overlaps": remove_overlaps,
        "min_area": threshold,
        "label_mode": label_mode,
        "font_size": fsize,
        "seed": seed,
        "explicit_centers": centers is not None,
    }
    tagset = TagSet(tags, (width, height), label_mode, skipped, options)
    crops = [(remaining, box) for _, remaining, box in kept]
    return Placement(tagset, crops, origins, font)


def _image_size(size: Any) -> tuple[int, int]:
    """``(width, height)`` as two integers ≥ 1, or an InputError."""
    if isinstance(size, (str, bytes)) or not isinstance(size, (Sequence, np.ndarray)):
        raise InputError(f"size must be (width, height), two integers ≥ 1, got {size!r}")
    values = list(size)
    ok = len(values) == 2 and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in values
    )
    if not ok:
        raise InputError(f"size must be (width, height), two integers ≥ 1, got {size!r}")
    return int(values[0]), int(values[1])


_PLACEMENT_OPTIONS = (
    "order",
    "remove_overlaps",
    "min_area",
    "min_area_at_640",
    "label_mode",
    "font_size",
    "min_font_size",
    "seed",
    "max_tags",
    "centers",
)


def place_tags(
    size: tuple[int, int],
    regions: Sequence[Region | np.ndarray] | np.ndarray,
    **options: Any,
) -> TagSet:
    """Number ``regions`` and place their marks without drawing: the ground truth alone.

    Args:
        size: ``(width, height)`` of the image the regions belong to.
        regions: list of :class:`~somprobe.tagging.regions.Region` or boolean ``(H, W)``
            masks, or an ``(N, H, W)`` stack.
        **options: the placement options of :func:`somprobe.tagging.tag_regions`
            (``order``, ``remove_overlaps``, ``min_area``, ``min_area_at_640``,
            ``label_mode``, ``font_size``, ``min_font_size``, ``seed``, ``max_tags``,
            ``centers``).

    Example:
        >>> m = np.zeros((32, 32), bool); m[4:20, 4:20] = True
        >>> [(t.label, t.center) for t in place_tags((32, 32), [m])]
        [('1', (11.5, 12.5))]
    """
    unknown = sorted(set(options) - set(_PLACEMENT_OPTIONS))
    if unknown:
        raise InputError(
            f"unknown placement option(s) {unknown}; place_tags takes {list(_PLACEMENT_OPTIONS)} "
            "(drawing options go to annotate's TagStyle)"
        )
    return place(size, regions, **options).tagset
