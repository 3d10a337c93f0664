"""Tagging: image + regions → :class:`TagSet` → tagged image (the Set-of-Mark data stage).

* :mod:`~somprobe.tagging.regions`: where regions come from (arrays, COCO, SAM,
  superpixels);
* :mod:`~somprobe.tagging.place`: tag order, overlap removal, mark positions
  (:func:`place_tags`);
* :mod:`~somprobe.tagging.draw`: :func:`annotate` draws any TagSet in a :class:`TagStyle`;
* :mod:`~somprobe.tagging.tag`: :func:`tag_regions`, both in one call;
* :mod:`~somprobe.tagging.io`: TagSets to and from JSON (masks as COCO RLE);
* :mod:`~somprobe.tagging.types`: :class:`Tag`, :class:`TagSet`, :class:`TaggedImage`.

Example:
    >>> import numpy as np
    >>> mask = np.zeros((64, 64), bool); mask[8:40, 8:40] = True
    >>> tagged = tag_regions(np.zeros((64, 64, 3), np.uint8), [mask])
    >>> [(t.label, t.area) for t in tagged.tagset]
    [('1', 1024)]
"""

from somprobe.tagging.draw import DRAW_MODES, TagStyle, annotate
from somprobe.tagging.io import load_tagset, save_tagset
from somprobe.tagging.place import REFERENCE_MIN_AREA, mark_position, min_area_for, place_tags
from somprobe.tagging.regions import (
    Region,
    from_coco,
    from_label_image,
    from_masks,
    from_sam,
    from_superpixels,
)
from somprobe.tagging.rgb import as_rgb_array
from somprobe.tagging.tag import tag_regions
from somprobe.tagging.types import Box, LabelMode, Tag, TaggedImage, TagSet

__all__ = [
    "DRAW_MODES",
    "REFERENCE_MIN_AREA",
    "Box",
    "LabelMode",
    "Region",
    "Tag",
    "TagSet",
    "TagStyle",
    "TaggedImage",
    "annotate",
    "as_rgb_array",
    "from_coco",
    "from_label_image",
    "from_masks",
    "from_sam",
    "from_superpixels",
    "load_tagset",
    "mark_position",
    "min_area_for",
    "place_tags",
    "save_tagset",
    "tag_regions",
]
