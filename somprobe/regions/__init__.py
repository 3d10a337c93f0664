"""Where regions come from: plain arrays, COCO annotations, SAM, superpixels.

Every source returns a list of :class:`Region` (boolean mask, optional category name,
source id, metadata), ready for :func:`somprobe.marks.tag_regions`.
"""

from somprobe.regions.base import Region, as_region, mask_bbox, resize_regions

__all__ = ["Region", "as_region", "mask_bbox", "resize_regions"]
