"""COCO regions equal pycocotools' own annToMask; crowd and category filters; errors."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from somprobe.errors import DataFormatError, InputError
from somprobe.tagging.regions import from_coco, load_coco

H, W = 30, 40


def write_annotations(path: Path) -> Path:
    blob = np.zeros((H, W), np.uint8)
    blob[5:20, 25:38] = 1
    compressed = mask_utils.encode(np.asfortranarray(blob))
    crowd = np.zeros((H, W), np.uint8)
    crowd[20:28, 0:15] = 1
    flat = crowd.T.ravel()  # column-major, as COCO RLE counts are
    counts, cur, n = [], 0, 0
    for v in flat:
        if v != cur:
            counts.append(n)
            cur, n = v, 0
        n += 1
    counts.append(n)
    data = {
        "images": [{"id": 1, "width": W, "height": H}, {"id": 2, "width": 8, "height": 6}],
        "categories": [{"id": 1, "name": "cat"}, {"id": 7, "name": "dog"}],
        "annotations": [
            {
                "id": 101,
                "image_id": 1,
                "category_id": 1,
                "iscrowd": 0,
                "segmentation": [[2, 2, 20, 3, 15, 18, 3, 12], [30, 25, 38, 25, 34, 29]],
                "area": 200.0,
                "bbox": [2, 2, 36, 27],
            },
            {
                "id": 102,
                "image_id": 1,
                "category_id": 7,
                "iscrowd": 0,
                "segmentation": {
                    "size": [H, W],
                    "counts": compressed["counts"].decode("ascii"),
                },
                "area": float(blob.sum()),
                "bbox": [25, 5, 13, 15],
            },
            {
                "id": 103,
                "image_id": 1,
                "category_id": 7,
                "iscrowd": 1,
                "segmentation": {"size": [H, W], "counts": counts},
                "area": float(crowd.sum()),
                "bbox": [0, 20, 15, 8],
            },
            {
                "id": 201,
                "image_id": 2,
                "category_id": 1,
                "iscrowd": 0,
                "segmentation": [[0, 0, 4, 0, 4, 4]],
                "area": 8.0,
                "bbox": [0, 0, 4, 4],
            },
        ],
    }
    path.write_text(json.dumps(data))
    return path


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # numpy-2 notice inside pycocotools
def test_masks_equal_pycocotools_ann_to_mask(tmp_path: Path) -> None:
    path = write_annotations(tmp_path / "instances.json")
    with contextlib.redirect_stdout(io.StringIO()):
        ref = COCO(str(path))
    regions = from_coco(path, image_id=1, include_crowd=True)
    assert [r.source_id for r in regions] == [101, 102, 103]
    assert [r.category for r in regions] == ["cat", "dog", "dog"]
    for r in regions:
        expected = ref.annToMask(ref.anns[r.source_id]).astype(bool)
        assert r.mask.shape == (H, W) and np.array_equal(r.mask, expected)
        assert r.area > 0
    assert regions[2].metadata["iscrowd"] == 1 and regions[1].metadata["coco_category_id"] == 7
    assert regions[1].metadata["bbox"] == [25.0, 5.0, 13.0, 15.0]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_crowd_excluded_by_default_and_category_filter(tmp_path: Path) -> None:
    path = write_annotations(tmp_path / "instances.json")
    coco = load_coco(path)
    assert [r.source_id for r in from_coco(coco, 1)] == [101, 102]
    assert [r.source_id for r in from_coco(coco, 1, category_ids=[7])] == [102]
    as_dict = json.loads(path.read_text())
    assert [r.source_id for r in from_coco(as_dict, 2)] == [201]
    assert from_coco(coco, 2)[0].mask.shape == (6, 8)


def test_bad_annotations_raise(tmp_path: Path) -> None:
    path = write_annotations(tmp_path / "instances.json")
    with pytest.raises(InputError, match="image id 5"):
        from_coco(path, 5)
    with pytest.raises(InputError, match="no COCO annotation file"):
        from_coco(tmp_path / "missing.json", 1)
    (tmp_path / "bad.json").write_text("[1, 2")
    with pytest.raises(DataFormatError, match="not valid JSON"):
        from_coco(tmp_path / "bad.json", 1)
    with pytest.raises(DataFormatError, match="'categories'"):
        from_coco({"images": [], "annotations": []}, 1)
