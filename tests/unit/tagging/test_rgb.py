"""Image conversion rules for tagging."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from somprobe.errors import InputError
from somprobe.tagging.rgb import as_rgb_array


def test_rgb_passthrough_and_conversions() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    assert np.array_equal(as_rgb_array(rgb), rgb)
    assert np.array_equal(as_rgb_array(Image.fromarray(rgb)), rgb)
    gray = rgb[..., 0]
    assert np.array_equal(as_rgb_array(gray), np.stack([gray] * 3, -1))
    assert np.array_equal(as_rgb_array(gray[..., None]), np.stack([gray] * 3, -1))
    assert as_rgb_array(np.ones((2, 2), bool)).max() == 255
    assert as_rgb_array(np.full((2, 2), 0.5)).max() == 128
    assert as_rgb_array(np.full((2, 2), 200, np.int64)).max() == 200
    assert as_rgb_array(np.full((2, 2), 257, np.uint16)).max() == 1
    half = np.full((1, 1, 4), (0, 0, 0, 128), np.uint8)
    assert as_rgb_array(half)[0, 0].tolist() == [127, 127, 127]
    assert as_rgb_array(Image.new("P", (2, 2))).shape == (2, 2, 3)
    assert as_rgb_array(Image.new("CMYK", (2, 2))).shape == (2, 2, 3)


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (np.zeros((0, 3, 3), np.uint8), "no pixels"),
        (np.zeros((2, 2, 2), np.uint8), "expected"),
        (np.full((2, 2), 1.5), r"outside \[0, 1\]"),
        (np.full((2, 2), -1, np.int32), "outside"),
        (np.zeros((2, 2), np.complex64), "unsupported dtype"),
        ("image.png", "PIL.Image.Image or a numpy array"),
    ],
)
def test_bad_images_raise(image: object, match: str) -> None:
    with pytest.raises(InputError, match=match):
        as_rgb_array(image)
