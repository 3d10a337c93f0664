"""tag_regions: SoM-LLaVA ordering, overlap removal, area limit, mark placement, drawing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from scipy import ndimage

from somprobe.errors import InputError
from somprobe.tagging import mark_position, min_area_for, tag_regions
from somprobe.tagging.regions import Region


def random_masks(seed: int, n: int, h: int, w: int) -> list[np.ndarray]:
    """Rectangles, noise and empties mixed, so overlaps, covers and tiny leftovers occur."""
    rng = np.random.default_rng(seed)
    masks = []
    for _ in range(n):
        kind = rng.integers(0, 6)
        m = np.zeros((h, w), dtype=bool)
        if kind == 0:
            m = rng.random((h, w)) < rng.uniform(0.05, 0.6)
        elif kind != 5:  # kind 5 stays empty
            y0, x0 = rng.integers(0, h), rng.integers(0, w)
            y1, x1 = rng.integers(y0, h) + 1, rng.integers(x0, w) + 1
            m[y0:y1, x0:x1] = True
        masks.append(m)
    return masks


def reference_tagging(
    masks: list[np.ndarray], threshold: float
) -> tuple[list[int], list[np.ndarray], set[int]]:
    """Independent SoM-LLaVA reference: kept indices in tag order, remaining masks, skipped."""
    areas = [int(m.sum()) for m in masks]
    order = sorted(range(len(masks)), key=lambda i: (areas[i], i))
    covered = np.zeros_like(masks[0]) if masks else None
    kept, remaining, skipped = [], [], set()
    for i in order:
        rem = masks[i] & ~covered
        covered = covered | masks[i]
        a = int(rem.sum())
        if a == 0 or a < threshold:
            skipped.add(i)
        else:
            kept.append(i)
            remaining.append(rem)
    return kept, remaining, skipped


def brute_force_mark(mask: np.ndarray) -> tuple[int, int]:
    """Pixel of max distance to the nearest background pixel (image edge = background)."""
    padded = np.pad(mask, 1)
    bg = np.argwhere(~padded)
    fg = np.argwhere(padded)
    d2 = ((fg[:, None, :] - bg[None, :, :]) ** 2).sum(-1).min(1)
    best = fg[d2 == d2.max()]  # argwhere is row-major already
    r, c = best[len(best) // 2]
    return int(c) - 1, int(r) - 1


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 9),
    h=st.integers(1, 30),
    w=st.integers(1, 30),
    min_area=st.sampled_from([None, 0.0, 3.0, 12.0]),
)
def test_properties_over_random_region_sets(
    seed: int, n: int, h: int, w: int, min_area: float | None
) -> None:
    masks = random_masks(seed, n, h, w)
    image = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    out = tag_regions(image, masks, min_area=min_area)
    ts = out.tagset
    threshold = min_area if min_area is not None else min_area_for(w, h)
    kept, remaining, skipped = reference_tagging(masks, threshold)

    assert ts.ids == list(range(1, len(ts) + 1))
    assert [t.source_index for t in ts] == kept
    assert {s["index"] for s in ts.skipped} == skipped
    assert all(s["area"] == 0 or s["area"] < threshold for s in ts.skipped)
    assert all(t.area >= threshold and t.area > 0 for t in ts)
    total = np.zeros((h, w), dtype=int)
    for tag, rem in zip(ts, remaining, strict=True):
        assert np.array_equal(tag.mask, rem)
        assert np.array_equal(tag.original_mask, masks[tag.source_index])
        total += tag.mask
        x, y = tag.center
        assert tag.mask[int(y), int(x)]
        # the mark sits on a maximum of the distance transform of the remaining mask
        dist = ndimage.distance_transform_edt(np.pad(tag.mask, 1))[1:-1, 1:-1]
        assert dist[int(y), int(x)] == dist.max()
        x0, y0, x1, y1 = tag.mark_box
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
    assert total.max(initial=0) <= 1  # disjoint
    again = tag_regions(image, masks, min_area=min_area)
    assert np.array_equal(np.asarray(out.image), np.asarray(again.image))


@pytest.mark.parametrize("seed", range(8))
def test_mark_position_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    mask = ndimage.binary_opening(rng.random((13, 17)) < 0.7)
    if not mask.any():
        mask[3:6, 4:9] = True
    assert mark_position(mask) == brute_force_mark(mask)


def test_mark_position_ties_take_middle_in_row_major_order() -> None:
    mask = np.zeros((3, 9), dtype=bool)
    mask[1, 1:8] = True  # every pixel of the line is at distance 1: 7 ties, middle = col 4
    assert mark_position(mask) == (4, 1)
    plateau = np.ones((4, 4), dtype=bool)  # 4 ties at distance 2: (1,1),(1,2),(2,1),(2,2)
    assert mark_position(plateau) == (1, 2)  # index 4 // 2 = 2 → row 2, col 1


def test_default_order_smallest_first_and_stable_ties() -> None:
    h, w = 40, 40
    a = np.zeros((h, w), bool)
    a[0:20, 0:20] = True  # 400
    b = np.zeros((h, w), bool)
    b[25:35, 25:35] = True  # 100
    c = np.zeros((h, w), bool)
    c[0:10, 25:35] = True  # 100 (tie with b; b comes first in the input)
    tags = tag_regions(np.zeros((h, w, 3), np.uint8), [a, b, c]).tagset
    assert [t.source_index for t in tags] == [1, 2, 0]
    desc = tag_regions(np.zeros((h, w, 3), np.uint8), [a, b, c], order="area_descending")
    assert [t.source_index for t in desc.tagset] == [0, 1, 2]
    given_ = tag_regions(np.zeros((h, w, 3), np.uint8), [b, a, c], order="given")
    assert [t.source_index for t in given_.tagset] == [0, 1, 2]


def test_overlap_removal_and_skipped_still_cover() -> None:
    h, w = 30, 30
    tiny = np.zeros((h, w), bool)
    tiny[0, 0:2] = True  # 2 px: below the limit 5, skipped but covers
    mid = np.zeros((h, w), bool)
    mid[0:5, 0:5] = True
    big = np.ones((h, w), bool)
    ts = tag_regions(np.zeros((h, w, 3), np.uint8), [big, mid, tiny], min_area=5).tagset
    assert [s["index"] for s in ts.skipped] == [2]
    assert ts.skipped[0]["reason"] == "below_min_area"
    assert ts[1].source_index == 1 and ts[1].area == 23  # 25 minus the skipped 2 px
    assert ts[2].area == h * w - 25
    assert not ts[2].mask[0, 0]  # the skipped pixels stay covered
    keep_all = tag_regions(np.zeros((h, w, 3), np.uint8), [big, mid], remove_overlaps=False)
    assert np.array_equal(keep_all.tagset[2].mask, big)


def test_min_area_scales_with_square_of_shorter_side() -> None:
    assert min_area_for(640, 480) == pytest.approx(110 * (480 / 640) ** 2)
    assert min_area_for(480, 640) == min_area_for(640, 480)
    assert min_area_for(1280, 960) == pytest.approx(4 * min_area_for(640, 480))
    h, w = 480, 640  # limit 61.875: 61 px skipped, 62 px kept
    small = np.zeros((h, w), bool)
    small[0, :61] = True
    ok = np.zeros((h, w), bool)
    ok[10, :62] = True
    ts = tag_regions(np.zeros((h, w, 3), np.uint8), [small, ok]).tagset
    assert [s["index"] for s in ts.skipped] == [0]
    assert [t.source_index for t in ts] == [1]
    assert ts.options["min_area"] == pytest.approx(61.875)


def test_letter_labels_and_categories_carried() -> None:
    h, w = 40, 40
    regions = []
    for k in range(28):
        m = np.zeros((h, w), bool)
        m.flat[k * 40 : (k + 1) * 40] = True  # one row each, equal areas → given order
        regions.append(Region(m, category=f"c{k}", source_id=k, metadata={"k": k}))
    ts = tag_regions(np.zeros((h, w, 3), np.uint8), regions, label_mode="letter", min_area=0)
    labels = [t.label for t in ts.tagset]
    assert labels[0] == "a" and labels[25] == "z" and labels[26] == "aa" and labels[27] == "ab"
    assert ts.tagset.label_mode == "letter"
    assert [t.category for t in ts.tagset] == [f"c{k}" for k in range(28)]
    assert ts.tagset[4].metadata == {"k": 3} and ts.tagset[4].source_id == 3


def test_mark_mode_draws_white_on_black_only_inside_mark_boxes() -> None:
    h, w = 200, 300
    image = np.full((h, w, 3), 200, np.uint8)
    m = np.zeros((h, w), bool)
    m[50:150, 50:250] = True
    out = tag_regions(image, [m])
    drawn = np.asarray(out.image)
    x0, y0, x1, y1 = out.tagset[1].mark_box
    changed = (drawn != image).any(-1)
    assert changed[y0:y1, x0:x1].any()
    changed[y0:y1, x0:x1] = False
    assert not changed.any()
    patch = drawn[y0:y1, x0:x1]
    assert tuple(patch[0, 0]) == (40, 40, 40)  # 0.2 * 200 + 0.8 * 0
    assert patch.max() > 200  # white digit pixels
    cx, cy = out.tagset[1].center
    assert x0 <= cx <= x1 and y0 <= cy <= y1
    assert abs((x0 + x1) / 2 - cx) <= 1 and abs((y0 + y1) / 2 - cy) <= 1


def test_fill_outline_and_box_modes_touch_only_their_pixels() -> None:
    h, w = 60, 80
    image = np.full((h, w, 3), 128, np.uint8)
    m = np.zeros((h, w), bool)
    m[10:40, 20:60] = True
    fill = np.asarray(tag_regions(image, [m], draw="fill").image)
    changed = (fill != image).any(-1)
    assert np.array_equal(changed, m)
    outline = np.asarray(tag_regions(image, [m], draw="outline", line_width=2).image)
    ring = m & ~ndimage.binary_erosion(m, iterations=2)
    assert np.array_equal((outline != image).any(-1), ring)
    box = np.asarray(tag_regions(image, [m], draw="box", line_width=1).image)
    rect = np.zeros((h, w), bool)
    rect[10:40, 20:60] = True
    rect[11:39, 21:59] = False
    assert np.array_equal((box != image).any(-1), rect)
    both = tag_regions(image, [m], draw=("fill", "outline", "mark"), label_mode="letter")
    assert both.tagset[1].label == "a"


def test_contrast_auto_and_region_box_color() -> None:
    h, w = 100, 100
    m = np.ones((h, w), bool)
    dark = tag_regions(np.zeros((h, w, 3), np.uint8), [m], contrast="auto")
    x0, y0, x1, y1 = dark.tagset[1].mark_box
    patch = np.asarray(dark.image)[y0:y1, x0:x1]
    assert patch[0, 0].min() >= 200 and patch.min() < 50  # light box, dark text
    light = tag_regions(np.full((h, w, 3), 255, np.uint8), [m], contrast="auto")
    patch = np.asarray(light.image)[y0:y1, x0:x1]
    assert patch[0, 0].max() <= 60 and patch.max() > 200  # dark box, light text
    region = tag_regions(
        np.zeros((h, w, 3), np.uint8), [m], box_color="region", box_alpha=1.0, text_color="auto"
    )
    patch = np.asarray(region.image)[y0:y1, x0:x1]
    assert tuple(patch[0, 0]) == region.tagset[1].color


def test_colors_are_seeded() -> None:
    h, w = 50, 50
    masks = random_masks(3, 5, h, w)
    img = np.zeros((h, w, 3), np.uint8)
    a = tag_regions(img, masks, draw="fill", seed=1, min_area=0)
    b = tag_regions(img, masks, draw="fill", seed=1, min_area=0)
    c = tag_regions(img, masks, draw="fill", seed=2, min_area=0)
    assert [t.color for t in a.tagset] == [t.color for t in b.tagset]
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert [t.color for t in a.tagset] != [t.color for t in c.tagset]


def test_font_size_rule_and_legible_floor() -> None:
    m = np.ones((640, 640), bool)
    assert tag_regions(np.zeros((640, 640, 3), np.uint8), [m]).tagset.options["font_size"] == 18
    m = np.ones((112, 150), bool)
    ts = tag_regions(np.zeros((112, 150, 3), np.uint8), [m]).tagset
    assert ts.options["font_size"] == 10
    x0, y0, x1, y1 = ts[1].mark_box
    assert y1 - y0 >= 10 and x1 - x0 >= 7  # digit box stays readable on small images


# --- bad or unusual input ---------------------------------------------------------------


def test_no_regions_gives_empty_tagset_and_unchanged_image() -> None:
    img = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    out = tag_regions(img, [])
    assert len(out.tagset) == 0 and out.tagset.skipped == []
    assert out.tagset.image_size == (30, 20)
    assert np.array_equal(np.asarray(out.image), img)


def test_all_zero_mask_is_reported_not_tagged() -> None:
    m = np.zeros((20, 20), bool)
    ok = np.zeros((20, 20), bool)
    ok[5:15, 5:15] = True
    ts = tag_regions(np.zeros((20, 20, 3), np.uint8), [m, ok]).tagset
    assert ts.ids == [1] and ts[1].source_index == 1
    assert ts.skipped == [
        {"index": 0, "area": 0, "reason": "empty", "category": None, "source_id": None}
    ]


def test_wrong_shape_and_bad_masks_raise() -> None:
    img = np.zeros((20, 30, 3), np.uint8)
    with pytest.raises(InputError, match=r"region 0 has mask shape \(30, 20\)"):
        tag_regions(img, [np.ones((30, 20), bool)])
    with pytest.raises(InputError, match="values other than 0 and 1"):
        tag_regions(img, [np.full((20, 30), 3)])
    with pytest.raises(InputError, match="one 2-D array"):
        tag_regions(img, np.ones((20, 30), bool))
    with pytest.raises(InputError, match="list of Region"):
        tag_regions(img, "masks")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="unknown draw mode"):
        tag_regions(img, [], draw="glow")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="order must be"):
        tag_regions(img, [np.ones((20, 30), bool)], order="random")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="label_mode"):
        tag_regions(img, [], label_mode="roman")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="box_alpha"):
        tag_regions(img, [], box_alpha=1.5)
    with pytest.raises(InputError, match="text_color"):
        tag_regions(img, [], text_color=(300, 0, 0))


def test_zero_one_integer_masks_and_stacks_are_accepted() -> None:
    img = np.zeros((10, 10, 3), np.uint8)
    stack = np.zeros((2, 10, 10), np.uint8)
    stack[0, :5] = 1
    stack[1, 5:] = 1
    ts = tag_regions(img, stack, min_area=0).tagset
    assert len(ts) == 2 and ts[1].mask.dtype == np.bool_


@pytest.mark.parametrize(
    ("image", "expected_pixel"),
    [
        (np.full((8, 8), 77, np.uint8), (77, 77, 77)),
        (np.full((8, 8, 4), (10, 20, 30, 0), np.uint8), (255, 255, 255)),  # RGBA over white
        (np.full((8, 8, 4), (10, 20, 30, 255), np.uint8), (10, 20, 30)),
        (np.full((8, 8, 3), 65535, np.uint16), (255, 255, 255)),  # 16-bit scaled
        (Image.new("L", (8, 8), 50), (50, 50, 50)),
        (Image.new("RGBA", (8, 8), (0, 0, 0, 0)), (255, 255, 255)),
        (Image.fromarray(np.full((8, 8), 65535, np.uint16)), (255, 255, 255)),
    ],
)
def test_grayscale_rgba_and_16_bit_images_become_rgb(image: object, expected_pixel: tuple) -> None:
    m = np.zeros((8, 8), bool)
    m[:4, :4] = True
    out = tag_regions(image, [m], draw="box", min_area=0)  # type: ignore[arg-type]
    arr = np.asarray(out.image)
    assert out.image.mode == "RGB" and arr.shape == (8, 8, 3)
    assert tuple(arr[7, 7]) == expected_pixel


def test_one_pixel_image() -> None:
    out = tag_regions(np.zeros((1, 1, 3), np.uint8), [np.ones((1, 1), bool)])
    tag = out.tagset[1]
    assert tag.center == (0.5, 0.5) and tag.mark_box == (0, 0, 1, 1)
    assert out.image.size == (1, 1)


def test_more_than_99_tags_get_more_digits_or_a_clear_error() -> None:
    h, w = 120, 10
    masks = []
    for k in range(120):
        m = np.zeros((h, w), bool)
        m[k] = True
        masks.append(m)
    ts = tag_regions(np.zeros((h, w, 3), np.uint8), masks, min_area=0).tagset
    assert len(ts) == 120 and ts[100].label == "100" and ts[120].label == "120"
    with pytest.raises(InputError, match="max_tags=99"):
        tag_regions(np.zeros((h, w, 3), np.uint8), masks, min_area=0, max_tags=99)
