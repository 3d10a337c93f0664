"""Region: mask coercion, area, bbox, resizing."""

from __future__ import annotations

import numpy as np
import pytest

from somprobe.errors import InputError
from somprobe.tagging.regions import Region, as_region, mask_bbox, resize_regions


def test_region_coerces_zero_one_masks_and_reports_area_and_bbox() -> None:
    m = np.zeros((5, 7), np.uint8)
    m[1:4, 2:6] = 1
    r = Region(m, category="cup", source_id=3, metadata={"a": 1})
    assert r.mask.dtype == np.bool_ and r.area == 12 and r.shape == (5, 7)
    assert r.bbox == (2, 1, 6, 4)
    ys, xs = np.nonzero(m)
    assert r.bbox == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    assert Region(np.zeros((2, 2), bool)).bbox is None
    assert mask_bbox(np.zeros((3, 3), bool)) is None
    assert as_region(r) is r and as_region(m).area == 12


@pytest.mark.parametrize(
    ("mask", "match"),
    [
        (np.zeros((2, 2, 2), bool), "2-D"),
        (np.zeros((0, 3), bool), "no pixels"),
        (np.full((2, 2), 0.5), "values other than 0 and 1"),
        (np.array([["a"]]), "dtype"),
    ],
)
def test_bad_masks_raise(mask: np.ndarray, match: str) -> None:
    with pytest.raises(InputError, match=match):
        Region(mask)


def test_bad_category_raises() -> None:
    with pytest.raises(InputError, match="category"):
        Region(np.ones((2, 2), bool), category=3)  # type: ignore[arg-type]


def test_resize_regions_nearest() -> None:
    m = np.zeros((2, 2), bool)
    m[0, 1] = True
    (r,) = resize_regions([Region(m, category="x", source_id=1)], (4, 6))
    assert r.mask.shape == (6, 4) and r.category == "x" and r.source_id == 1
    expected = np.repeat(np.repeat(m, 3, axis=0), 2, axis=1)
    assert np.array_equal(r.mask, expected)
    with pytest.raises(InputError):
        resize_regions([r], (0, 3))
