"""Where regions come from: plain arrays, COCO annotations, SAM, superpixels.

Every source returns a list of :class:`Region` (boolean mask, optional category name,
source id, metadata), ready for :func:`somprobe.tagging.tag_regions`.

Example:
    >>> import numpy as np
    >>> regions = from_label_image(np.array([[0, 1], [2, 2]]))
    >>> [r.source_id for r in regions]
    [1, 2]
"""

from somprobe.tagging.regions.arrays import from_label_image, from_masks
from somprobe.tagging.regions.base import Region, as_region, mask_bbox, resize_regions
from somprobe.tagging.regions.coco import from_coco, load_coco
from somprobe.tagging.regions.sam import from_sam
from somprobe.tagging.regions.superpixels import from_superpixels

__all__ = [
    "Region",
    "as_region",
    "from_coco",
    "from_label_image",
    "from_masks",
    "from_sam",
    "from_superpixels",
    "load_coco",
    "mask_bbox",
    "resize_regions",
]
