"""Weight-free regions for real photos: scikit-image superpixels (Felzenszwalb or SLIC).

The default when no segmentation model is given. Every pixel belongs to exactly one
region, so the regions tile the image.

Example:
    >>> from skimage import data
    >>> regions = from_superpixels(data.coffee()[::4, ::4], method="slic", n_segments=12)
    >>> 4 <= len(regions) <= 20, regions[0].metadata["method"]
    (True, 'slic')
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from PIL import Image
from skimage import segmentation

from somprobe.errors import InputError
from somprobe.tagging.regions.arrays import from_label_image
from somprobe.tagging.regions.base import Region
from somprobe.tagging.rgb import as_rgb_array


def from_superpixels(
    image: Image.Image | np.ndarray,
    method: Literal["felzenszwalb", "slic"] = "felzenszwalb",
    *,
    scale: float = 400.0,
    sigma: float = 0.8,
    min_size: int | None = None,
    n_segments: int = 40,
    compactness: float = 10.0,
) -> list[Region]:
    """Superpixel regions of ``image``, ordered by superpixel label.

    Args:
        image: PIL image or array (converted as in :mod:`somprobe.tagging.rgb`).
        method: "felzenszwalb" (graph-based; follows object borders, uneven sizes) or
            "slic" (k-means in colour + position; compact, even sizes).
        scale, sigma, min_size: Felzenszwalb parameters; ``min_size`` defaults to 0.2 %
            of the image's pixels (at least 1), which gives some 20-40 regions on a
            typical photo.
        n_segments, compactness: SLIC parameters (SLIC may return somewhat fewer or more
            segments than asked).

    Each region's ``source_id`` is its superpixel label and its metadata holds
    ``method``; ``category`` is None.
    """
    pixels = as_rgb_array(image)
    h, w = pixels.shape[:2]
    if method == "felzenszwalb":
        size = max(1, round(0.002 * h * w)) if min_size is None else int(min_size)
        if scale <= 0 or sigma < 0 or size < 1:
            raise InputError(
                f"felzenszwalb needs scale > 0, sigma ≥ 0, min_size ≥ 1; got {scale}, {sigma}, "
                f"{size}"
            )
        labels = segmentation.felzenszwalb(pixels, scale=scale, sigma=sigma, min_size=size)
        params: dict[str, Any] = {"scale": scale, "sigma": sigma, "min_size": size}
    elif method == "slic":
        if n_segments < 1 or compactness <= 0:
            raise InputError(
                f"slic needs n_segments ≥ 1 and compactness > 0; got {n_segments}, {compactness}"
            )
        labels = segmentation.slic(
            pixels, n_segments=n_segments, compactness=compactness, start_label=1
        )
        params = {"n_segments": n_segments, "compactness": compactness}
    else:
        raise InputError(f"method must be 'felzenszwalb' or 'slic', got {method!r}")
    return from_label_image(labels, background=None, metadata={"method": method, **params})
