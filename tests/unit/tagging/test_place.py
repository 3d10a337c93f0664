"""Fast mark placement and drawing give exactly the results of the plain implementations.

The references below are the straightforward versions: the mark at the middle tie of the
maximum of ``scipy.ndimage.distance_transform_edt`` over the whole mask padded with one
background pixel, mask blending by boolean indexing in float32, outlines by scipy's
binary erosion.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

import somprobe.tagging.place as marks
from somprobe.tagging import mark_position, min_area_for, tag_regions
from somprobe.tagging.draw import blend_mask, outline_of
from somprobe.tagging.regions.base import mask_bbox


def reference_bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """The tight box from the rows and columns holding any True pixel."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def reference_mark(mask: np.ndarray) -> tuple[int, int]:
    """``(col, row)``: full-image EDT with the image edge as border, middle of the ties."""
    dist = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    ties = np.flatnonzero(dist == dist.max())
    row, col = divmod(int(ties[len(ties) // 2]), mask.shape[1])
    return col, row


def reference_blend(canvas, mask, offset, color, alpha) -> None:  # type: ignore[no-untyped-def]
    x, y = offset
    view = canvas[y : y + mask.shape[0], x : x + mask.shape[1]]
    pixels = view[mask].astype(np.float32)
    pixels *= 1.0 - alpha
    pixels += alpha * np.asarray(color, dtype=np.float32)
    view[mask] = np.rint(pixels).astype(np.uint8)


def random_shape(seed: int, h: int, w: int) -> np.ndarray:
    """Unions of discs, ellipses and rectangles (often touching the image edges), minus
    holes, sometimes with thin lines, speckle or a plateau; never empty."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    mask = np.zeros((h, w), dtype=bool)
    for _ in range(rng.integers(1, 5)):
        kind = rng.integers(0, 4)
        cy, cx = rng.uniform(-0.2, 1.2) * h, rng.uniform(-0.2, 1.2) * w
        if kind == 0:  # disc, integer centre and radius: many exact ties
            r = rng.integers(2, max(3, min(h, w)))
            mask |= (yy - int(cy)) ** 2 + (xx - int(cx)) ** 2 <= r * r
        elif kind == 1:  # rotated ellipse
            a, b = rng.uniform(1, h + 1), rng.uniform(1, w + 1)
            t = rng.uniform(0, np.pi)
            u = (yy - cy) * np.cos(t) + (xx - cx) * np.sin(t)
            v = -(yy - cy) * np.sin(t) + (xx - cx) * np.cos(t)
            mask |= (u / a) ** 2 + (v / b) ** 2 <= 1
        elif kind == 2:  # rectangle, often flush with an edge
            y0, x0 = sorted(rng.integers(0, h, 2)), sorted(rng.integers(0, w, 2))
            mask[y0[0] : y0[1] + 1, x0[0] : x0[1] + 1] = True
        else:  # the whole image
            mask[:] = True
    for _ in range(rng.integers(0, 3)):  # holes
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(1, max(2, h // 3))
        mask &= (yy - cy) ** 2 + (xx - cx) ** 2 > r * r
    extra = rng.integers(0, 6)
    if extra == 0:  # a thin diagonal line
        n = min(h, w)
        mask[np.arange(n), np.arange(n)] = True
    elif extra == 1:  # speckle
        mask ^= rng.random((h, w)) < 0.02
    if not mask.any():
        mask[rng.integers(0, h), rng.integers(0, w)] = True
    return mask


@pytest.mark.parametrize("force_fast", [False, True])
@settings(max_examples=120, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), h=st.integers(1, 130), w=st.integers(1, 130))
def test_mark_position_equals_full_image_edt(force_fast: bool, seed: int, h: int, w: int) -> None:
    mask = random_shape(seed, h, w)
    with pytest.MonkeyPatch.context() as mp:
        if force_fast:  # take the pruning path even for small masks, never fall back
            mp.setattr(marks, "_DENSE_MAX_AREA", 0)
            mp.setattr(marks, "_PAIRS_PER_PIXEL", 10**9)
        assert mark_position(mask) == reference_mark(mask)


def _forbid_dense(crop: np.ndarray) -> tuple[int, int]:
    raise AssertionError(f"dense transform used for a {crop.shape} crop")


def test_fast_path_is_taken_and_exact_on_large_shapes(monkeypatch: pytest.MonkeyPatch) -> None:
    h, w = 480, 640
    yy, xx = np.mgrid[:h, :w]
    disc = (yy - 200) ** 2 + (xx - 300) ** 2 <= 150**2  # near-ties all round the centre
    holed = disc & ((yy - 170) ** 2 + (xx - 250) ** 2 > 60**2)  # a hole off the centre
    corner = np.zeros((h, w), dtype=bool)
    corner[: h // 2, w // 3 :] = True  # flush with the top and right image edges
    twins = ((yy - 100) ** 2 + (xx - 120) ** 2 <= 50**2) | (
        (yy - 350) ** 2 + (xx - 500) ** 2 <= 50**2
    )  # two equal discs far apart: ties in two places
    everything = np.ones((h, w), dtype=bool)  # a plateau of ties along the middle row
    shapes = (disc, holed, corner, twins, everything)
    expected = [reference_mark(m) for m in shapes]
    monkeypatch.setattr(marks, "_farthest_pixel_dense", _forbid_dense)
    assert [mark_position(m) for m in shapes] == expected


def test_ridges_thin_and_speckled_masks_are_exact() -> None:
    h, w = 200, 220
    yy, xx = np.mgrid[:h, :w]
    ring = ((yy - 100) ** 2 + (xx - 110) ** 2 <= 95**2) & (
        (yy - 100) ** 2 + (xx - 110) ** 2 > 40**2
    )  # the maximum is a whole circle of near-ties
    band = np.zeros((h, w), dtype=bool)
    band[60:90, 5:215] = True  # a long plateau of exact ties
    line = np.zeros((h, w), dtype=bool)
    line[np.arange(h), np.arange(h)] = True  # all pixels tie at distance 1
    speckle = np.random.default_rng(3).random((h, w)) < 0.5  # no all-foreground block
    for mask in (ring, band, line, speckle):
        assert mark_position(mask) == reference_mark(mask)


def _layout(seed: int, h: int, w: int, n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    masks = [random_shape(int(rng.integers(0, 2**32)), h, w) for _ in range(n)]
    for i in rng.choice(n, size=min(n, 2), replace=False):  # tiny regions
        m = np.zeros((h, w), dtype=bool)
        y, x = rng.integers(0, h), rng.integers(0, w)
        m[y : y + 3, x : x + 2] = True
        masks[i] = m
    return masks


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    h=st.integers(16, 120),
    w=st.integers(16, 160),
    n=st.integers(1, 8),
    min_area=st.sampled_from([None, 0.0, 40.0]),
    order=st.sampled_from(["area_ascending", "area_descending", "given"]),
    remove_overlaps=st.booleans(),
)
def test_tag_regions_centres_and_tag_sets_match_the_reference(
    seed: int, h: int, w: int, n: int, min_area: float | None, order: str, remove_overlaps: bool
) -> None:
    masks = _layout(seed, h, w, n)
    image = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(marks, "_DENSE_MAX_AREA", 0)  # every region through the fast path
        ts = tag_regions(
            image,
            masks,
            min_area=min_area,
            order=order,  # type: ignore[arg-type]
            remove_overlaps=remove_overlaps,
            draw=("fill", "outline", "box", "mark"),
        ).tagset
    threshold = min_area if min_area is not None else min_area_for(w, h)
    areas = [int(m.sum()) for m in masks]
    if order == "area_ascending":
        sequence = sorted(range(n), key=lambda i: (areas[i], i))
    elif order == "area_descending":
        sequence = sorted(range(n), key=lambda i: (-areas[i], i))
    else:
        sequence = list(range(n))
    covered = np.zeros((h, w), dtype=bool)
    kept, skipped = [], []
    for i in sequence:
        remaining = masks[i] & ~covered if remove_overlaps else masks[i]
        covered |= masks[i]
        area = int(remaining.sum())
        if area == 0 or area < threshold:
            skipped.append(i)
        else:
            kept.append((i, remaining))
    assert [s["index"] for s in ts.skipped] == skipped
    assert [t.source_index for t in ts] == [i for i, _ in kept]
    for tag, (_, remaining) in zip(ts, kept, strict=True):
        assert np.array_equal(tag.mask, remaining)
        col, row = reference_mark(remaining)
        assert tag.center == (col + 0.5, row + 0.5)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    h=st.integers(1, 60),
    w=st.integers(1, 60),
    alpha=st.sampled_from([0.0, 0.25, 0.4, 0.8, 1.0]),
    width=st.integers(1, 4),
)
def test_blend_and_outline_equal_the_plain_versions(
    seed: int, h: int, w: int, alpha: float, width: int
) -> None:
    rng = np.random.default_rng(seed)
    canvas = rng.integers(0, 256, (h + 7, w + 5, 3), dtype=np.uint8)
    mask = random_shape(seed, h, w)
    color = tuple(int(c) for c in rng.integers(0, 256, 3))
    offset = (int(rng.integers(0, 6)), int(rng.integers(0, 8)))
    expected = canvas.copy()
    reference_blend(expected, mask, offset, color, alpha)
    blend_mask(canvas, mask, offset, color, alpha)  # type: ignore[arg-type]
    assert np.array_equal(canvas, expected)
    strided = np.zeros((h + 7, 2 * (w + 5), 3), dtype=np.uint8)[:, ::2]  # not contiguous
    expected = strided.copy()
    reference_blend(expected, mask, offset, color, alpha)
    blend_mask(strided, mask, offset, color, alpha)  # type: ignore[arg-type]
    assert np.array_equal(strided, expected)
    inner = ndimage.binary_erosion(mask, iterations=width, border_value=0)
    assert np.array_equal(outline_of(mask, width), mask & ~inner)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    h=st.integers(1, 40),
    words=st.integers(1, 10),
    extra=st.sampled_from([0, 3]),
)
def test_word_wise_box_equals_mask_bbox(seed: int, h: int, words: int, extra: int) -> None:
    rng = np.random.default_rng(seed)
    mask = rng.random((h, 8 * words + extra)) < rng.uniform(0.0, 0.05)
    assert mask_bbox(mask) == reference_bbox(mask)
    assert mask_bbox(mask[:, ::-1]) == reference_bbox(mask[:, ::-1])  # not contiguous
