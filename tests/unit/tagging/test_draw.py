"""Label text, font size rule, label boxes, seeded colours."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from somprobe.errors import InputError
from somprobe.tagging.draw import (
    font_size_for,
    label_layout,
    label_text,
    load_font,
    outline_of,
    region_colors,
)


def letters_reference(n: int) -> str:
    """Enumerate a, b, ..., z, aa, ab, ... directly and pick the n-th."""
    import itertools
    import string

    count = 0
    for length in itertools.count(1):
        for combo in itertools.product(string.ascii_lowercase, repeat=length):
            count += 1
            if count == n:
                return "".join(combo)
    raise AssertionError


@pytest.mark.parametrize("n", [1, 2, 26, 27, 28, 52, 53, 702, 703])
def test_letter_labels_match_enumeration(n: int) -> None:
    assert label_text(n, "letter") == letters_reference(n)
    assert label_text(n, "number") == str(n)


def test_label_text_rejects_bad_input() -> None:
    with pytest.raises(InputError):
        label_text(0, "number")
    with pytest.raises(InputError):
        label_text(1, "roman")  # type: ignore[arg-type]


def test_font_size_rule() -> None:
    assert font_size_for(640, 480) == round(18 * 480 / 640)
    assert font_size_for(1280, 960) == 27
    assert font_size_for(640, 640) == 18
    assert font_size_for(112, 112) == 10 and font_size_for(224, 224) == 10
    assert font_size_for(224, 224, minimum=6) == 6


def test_scalable_default_font_works_offline() -> None:
    small, large = load_font(10), load_font(30)
    h_small = small.getbbox("8")[3] - small.getbbox("8")[1]
    h_large = large.getbbox("8")[3] - large.getbbox("8")[1]
    assert h_large > 2 * h_small >= 12


@settings(max_examples=40, deadline=None)
@given(
    w=st.integers(1, 80),
    h=st.integers(1, 80),
    fx=st.floats(0, 1),
    fy=st.floats(0, 1),
    n=st.integers(1, 150),
)
def test_label_box_stays_inside_image(w: int, h: int, fx: float, fy: float, n: int) -> None:
    center = (fx * w, fy * h)
    box, _ = label_layout(str(n), load_font(10), center, (w, h))
    x0, y0, x1, y1 = box
    assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h


def test_colors_seeded_and_in_range() -> None:
    a, b = region_colors(10, 0), region_colors(10, 0)
    assert a == b and region_colors(10, 1) != a
    arr = np.array(a)
    assert arr.min() >= 0 and arr.max() <= 255 and arr.max(axis=1).min() >= 0.75 * 255 - 1


def test_outline_is_inner_border() -> None:
    m = np.zeros((7, 7), bool)
    m[1:6, 1:6] = True
    ring = outline_of(m, 1)
    assert ring.sum() == 16 and not ring[3, 3]
    full = np.ones((3, 3), bool)
    assert outline_of(full, 1).sum() == 8  # the image edge counts as border
