"""Regions from COCO-format instance annotations, through pycocotools.

Polygons, uncompressed and compressed RLE are all decoded by pycocotools'
``COCO.annToMask``; crowd annotations (``iscrowd=1``) are left out unless asked for.

Example:
    >>> ds = {"images": [{"id": 1, "width": 4, "height": 3}],
    ...       "categories": [{"id": 5, "name": "box"}],
    ...       "annotations": [{"id": 9, "image_id": 1, "category_id": 5, "iscrowd": 0,
    ...                        "segmentation": [[0, 0, 3, 0, 3, 2, 0, 2]],
    ...                        "area": 6.0, "bbox": [0, 0, 3, 2]}]}
    >>> [(r.category, r.source_id, r.mask.shape) for r in from_coco(ds, image_id=1)]
    [('box', 9, (3, 4))]
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO

from somprobe.errors import DataFormatError, InputError
from somprobe.tagging.regions.base import Region


def load_coco(annotations: str | os.PathLike[str] | Mapping[str, Any] | COCO) -> COCO:
    """A pycocotools ``COCO`` index from a file path, a loaded dict, or a COCO object."""
    if isinstance(annotations, COCO):
        return annotations
    if isinstance(annotations, Mapping):
        data = dict(annotations)
    elif not isinstance(annotations, (str, os.PathLike)):
        raise InputError(
            "annotations must be a path to a COCO JSON file, the loaded dict or a COCO "
            f"object, got {type(annotations).__name__}"
        )
    else:
        path = Path(annotations)
        if not path.is_file():
            raise InputError(f"no COCO annotation file at {path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DataFormatError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise DataFormatError("COCO annotations must be a JSON object")
    for key in ("images", "annotations", "categories"):
        if key not in data or not isinstance(data[key], list):
            raise DataFormatError(f"COCO annotations have no {key!r} list")
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        try:
            coco.createIndex()
        except (KeyError, TypeError) as err:
            raise DataFormatError(f"malformed COCO annotations: missing field {err}") from err
    return coco


def from_coco(
    annotations: str | os.PathLike[str] | Mapping[str, Any] | COCO,
    image_id: int,
    *,
    include_crowd: bool = False,
    category_ids: Iterable[int] | None = None,
) -> list[Region]:
    """The instance regions of one COCO image, in annotation order.

    Args:
        annotations: path to a COCO JSON file, the loaded dict, or a ``COCO`` object
            (pass the object when reading many images: loading is the slow part).
        image_id: the COCO image id.
        include_crowd: keep ``iscrowd=1`` annotations (default: excluded, as in SoM).
        category_ids: keep only these category ids (default: all).

    Each region has ``category`` = the category name, ``source_id`` = the annotation id
    and metadata ``coco_category_id``, ``iscrowd``, ``area`` and ``bbox`` from the file.
    Masks have the image's ``(height, width)`` from the ``images`` entry.
    """
    if isinstance(image_id, bool) or not isinstance(image_id, (int, np.integer)):
        raise InputError(f"image_id must be an integer (a COCO image id), got {image_id!r}")
    wanted: set[int] | None = None
    if category_ids is not None:
        if isinstance(category_ids, (str, bytes)) or not all(
            isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in category_ids
        ):
            raise InputError(f"category_ids must be integers (COCO ids), got {category_ids!r}")
        wanted = {int(c) for c in category_ids}
    coco = load_coco(annotations)
    if image_id not in coco.imgs:
        some = sorted(coco.imgs)[:5]
        raise InputError(f"image id {image_id} is not in the COCO annotations (ids include {some})")
    ann_ids = coco.getAnnIds(imgIds=[image_id], iscrowd=None)
    out = []
    for ann in coco.loadAnns(ann_ids):
        try:
            crowd = int(ann.get("iscrowd", 0))
            cat_id = int(ann["category_id"])
            ann_id = int(ann["id"])
        except (TypeError, ValueError) as err:
            raise DataFormatError(
                f"COCO annotation {ann.get('id')} has a malformed id, category_id or iscrowd "
                f"({err})"
            ) from err
        if crowd and not include_crowd:
            continue
        if wanted is not None and cat_id not in wanted:
            continue
        try:
            with warnings.catch_warnings():  # numpy-2 copy-keyword notice inside pycocotools
                warnings.simplefilter("ignore", DeprecationWarning)
                mask = coco.annToMask(ann).astype(bool)
        except Exception as err:  # pycocotools raises bare Exceptions on bad polygons
            raise DataFormatError(
                f"COCO annotation {ann.get('id')} has an unreadable segmentation ({err})"
            ) from err
        try:
            metadata = {
                "coco_category_id": cat_id,
                "iscrowd": crowd,
                "area": float(ann.get("area", mask.sum())),
                "bbox": [float(v) for v in ann.get("bbox", [])],
            }
        except (TypeError, ValueError) as err:
            raise DataFormatError(
                f"COCO annotation {ann_id} has a malformed area or bbox ({err})"
            ) from err
        cat = coco.cats.get(cat_id)
        out.append(
            Region(
                np.ascontiguousarray(mask),
                category=None if cat is None else str(cat["name"]),
                source_id=ann_id,
                metadata=metadata,
            )
        )
    return out
