"""Superpixel regions equal scikit-image's own labelling and tile the image."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data, segmentation

from somprobe.errors import InputError
from somprobe.tagging.regions import from_superpixels

IMAGE = data.coffee()[::5, ::5]


@pytest.mark.parametrize("method", ["felzenszwalb", "slic"])
def test_regions_tile_the_image_and_match_skimage(method: str) -> None:
    regions = from_superpixels(IMAGE, method=method)  # type: ignore[arg-type]
    if method == "slic":
        labels = segmentation.slic(IMAGE, n_segments=40, compactness=10.0, start_label=1)
    else:
        size = round(0.002 * IMAGE.shape[0] * IMAGE.shape[1])
        labels = segmentation.felzenszwalb(IMAGE, scale=400.0, sigma=0.8, min_size=size)
    assert len(regions) == len(np.unique(labels)) >= 5
    total = np.zeros(IMAGE.shape[:2], int)
    for r in regions:
        assert np.array_equal(r.mask, labels == r.source_id)
        assert r.metadata["method"] == method
        total += r.mask
    assert (total == 1).all()


def test_bad_superpixel_arguments() -> None:
    with pytest.raises(InputError, match="method"):
        from_superpixels(IMAGE, method="watershed")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="n_segments"):
        from_superpixels(IMAGE, method="slic", n_segments=0)
    with pytest.raises(InputError, match="scale"):
        from_superpixels(IMAGE, scale=0)
