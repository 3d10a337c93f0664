"""TagSet JSON + COCO RLE: exact round trip, atomic writes, clear errors on bad files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from somprobe.errors import DataFormatError, InputError
from somprobe.tagging import tag_regions
from somprobe.tagging.io import (
    decode_mask,
    encode_mask,
    load_tagset,
    save_tagset,
    tagset_from_dict,
    tagset_to_dict,
    tagsets_equal,
)
from somprobe.tagging.regions import Region


def sample_tagset():  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    h, w = 37, 53
    regions = []
    for k in range(6):
        m = rng.random((h, w)) < 0.3
        m[k * 5 : k * 5 + 6, k * 7 : k * 7 + 9] = True
        regions.append(
            Region(
                m,
                category=None if k == 0 else f"cat{k}",
                source_id="ann-x" if k == 1 else k,
                metadata={"score": 0.1 * k, "tags": ["a", k], "nested": {"n": None}},
            )
        )
    speck = np.zeros((h, w), bool)
    speck[0, :3] = True  # 3 px < min_area: skipped
    regions.append(Region(speck, category="speck", source_id=np.int64(99)))
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return tag_regions(image, regions, min_area=20, label_mode="letter").tagset


def test_round_trip_is_exact(tmp_path: Path) -> None:
    ts = sample_tagset()
    assert len(ts) >= 3 and ts.skipped  # the sample exercises skipped entries too
    path = tmp_path / "tags.json"
    save_tagset(ts, path)
    back = load_tagset(path)
    assert tagsets_equal(back, ts)
    for a, b in zip(ts, back, strict=True):
        assert np.array_equal(a.mask, b.mask) and b.mask.dtype == np.bool_
        assert np.array_equal(a.original_mask, b.original_mask)
        assert a.center == b.center and a.mark_box == b.mark_box and a.color == b.color
        assert (a.label, a.category, a.source_id, a.metadata) == (
            b.label,
            b.category,
            b.source_id,
            b.metadata,
        )
    assert back.skipped == ts.skipped and back.options == ts.options
    assert back.image_size == ts.image_size and back.label_mode == "letter"
    assert [p.name for p in tmp_path.iterdir()] == ["tags.json"]  # no temp file left


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # inside pycocotools
def test_rle_matches_pycocotools() -> None:
    m = np.random.default_rng(1).random((19, 23)) < 0.5
    rle = encode_mask(m)
    assert isinstance(rle["counts"], str)
    ref = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()})
    assert np.array_equal(ref.astype(bool), m)
    assert np.array_equal(decode_mask(rle), m)
    uncompressed = {"size": [2, 3], "counts": [1, 2, 3]}  # column-major runs
    assert decode_mask(uncompressed).T.ravel().tolist() == [0, 1, 1, 0, 0, 0]


def test_numpy_metadata_becomes_json_and_bad_metadata_raises(tmp_path: Path) -> None:
    m = np.ones((4, 4), bool)
    ts = tag_regions(
        np.zeros((4, 4, 3), np.uint8),
        [Region(m, metadata={"v": np.int64(3), "arr": np.arange(2), "t": (1, 2)})],
        min_area=0,
    ).tagset
    meta = tagset_to_dict(ts)["tags"][0]["metadata"]
    assert meta == {"v": 3, "arr": [0, 1], "t": [1, 2]}
    assert type(meta["v"]) is int
    bad = tag_regions(
        np.zeros((4, 4, 3), np.uint8), [Region(m, metadata={"obj": object()})], min_area=0
    ).tagset
    with pytest.raises(InputError, match=r"metadata\['obj'\] holds a object"):
        save_tagset(bad, tmp_path / "bad.json")
    assert not list(tmp_path.iterdir())


def test_bad_files_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no TagSet file"):
        load_tagset(tmp_path / "missing.json")
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(DataFormatError, match="not valid JSON"):
        load_tagset(tmp_path / "junk.json")
    with pytest.raises(DataFormatError, match="not a TagSet file"):
        tagset_from_dict({"tags": []})
    data = tagset_to_dict(sample_tagset())
    data["version"] = 99
    with pytest.raises(DataFormatError, match="version 99"):
        tagset_from_dict(data)
    data = tagset_to_dict(sample_tagset())
    del data["tags"][0]["mask"]
    with pytest.raises(DataFormatError, match="tag entry 0 has no 'mask'"):
        tagset_from_dict(data)
    data = tagset_to_dict(sample_tagset())
    data["image_size"] = [10, 10]
    with pytest.raises(DataFormatError, match="image_size"):
        tagset_from_dict(data)
    data = tagset_to_dict(sample_tagset())
    data["tags"][1]["id"] = 7
    with pytest.raises(DataFormatError, match=r"1\.\.N"):
        tagset_from_dict(data)
    data = tagset_to_dict(sample_tagset())
    data["tags"][0]["mask"] = {"size": [3]}
    with pytest.raises(DataFormatError, match="COCO RLE"):
        tagset_from_dict(data)
    with pytest.raises(InputError, match="does not exist"):
        save_tagset(sample_tagset(), tmp_path / "nope" / "t.json")


def test_saved_file_is_plain_json(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    save_tagset(sample_tagset(), path)
    data = json.loads(path.read_text())
    assert data["format"] == "somprobe.tagset" and data["version"] == 1
    assert data["tags"][0]["id"] == 1 and data["tags"][0]["label"] == "a"
