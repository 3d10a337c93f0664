"""Hostile inputs to somprobe.tagging: every one is a SomprobeError that says what to do,
or the documented behaviour; never a raw traceback or a silently wrong result."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from somprobe.errors import DataFormatError, InputError, ModelLoadError, SomprobeError, WriteError
from somprobe.tagging import (
    Region,
    TagSet,
    TagStyle,
    annotate,
    as_rgb_array,
    from_coco,
    from_label_image,
    from_masks,
    from_sam,
    from_superpixels,
    load_tagset,
    mark_position,
    min_area_for,
    place_tags,
    save_tagset,
    tag_regions,
)
from somprobe.tagging.io import tagset_to_dict

PIXELS = np.zeros((32, 40, 3), np.uint8)
MASK = np.zeros((32, 40), bool)
MASK[4:20, 4:20] = True


def _tagset() -> TagSet:
    return tag_regions(PIXELS, [MASK], min_area=0).tagset


# -- save_tagset ------------------------------------------------------------------------------------


def test_save_under_a_regular_file_is_a_write_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(WriteError, match="not a folder"):
        save_tagset(_tagset(), tmp_path / "a-file" / "tags.json")
    assert (tmp_path / "a-file").read_text() == "x"


SAVES: list[tuple[Callable[[Path], Any], Callable[[Path], Path], type[SomprobeError], str]] = [
    (lambda d: _tagset(), lambda d: d / "missing" / "tags.json", InputError, "does not exist"),
    (lambda d: _tagset(), lambda d: d, WriteError, "cannot write"),
    (lambda d: "tags", lambda d: d / "t.json", InputError, "must be a TagSet"),
    (lambda d: None, lambda d: d / "t.json", InputError, "must be a TagSet"),
    (
        lambda d: replace(_tagset(), options={"when": object()}),
        lambda d: d / "t.json",
        InputError,
        "JSON cannot store",
    ),
    (
        lambda d: replace(_tagset(), options={1: "x"}),
        lambda d: d / "t.json",
        InputError,
        "non-string key",
    ),
]


@pytest.mark.parametrize(("tagset", "where", "error", "match"), SAVES)
def test_save_tagset(tmp_path, tagset, where, error, match):  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=match):
        save_tagset(tagset(tmp_path), where(tmp_path))
    assert not list(tmp_path.glob("*.json"))


# -- load_tagset ------------------------------------------------------------------------------------


def _data(**changes: Any) -> dict[str, Any]:
    data = tagset_to_dict(_tagset())
    for key, value in changes.items():
        if value is KeyError:
            del data[key]
        else:
            data[key] = value
    return data


def _tag(**changes: Any) -> dict[str, Any]:
    data = tagset_to_dict(_tagset())
    for key, value in changes.items():
        if value is KeyError:
            del data["tags"][0][key]
        else:
            data["tags"][0][key] = value
    return data


GOOD = json.dumps(tagset_to_dict(_tagset()))

TEXTS: list[tuple[str | bytes, str]] = [
    (GOOD[: len(GOOD) // 2], "not valid JSON"),
    (GOOD[:-1], "not valid JSON"),
    ("", "not valid JSON"),
    (b"\xff\xfe\x00", "not valid JSON"),
    ("null", "not a TagSet file"),
    ("[]", "not a TagSet file"),
]

SCHEMAS: list[tuple[dict[str, Any], str]] = [
    (_data(format="other"), "not a TagSet file"),
    (_data(version=2), "version 2"),
    (_data(tags=KeyError), "no 'tags' field"),
    (_data(tags=5), "tags must be a list"),
    (_data(image_size=KeyError), "no 'image_size' field"),
    (_data(image_size=[1, 2, 3]), "image_size"),
    (_data(image_size=[-40, -32], tags=[]), "image_size"),
    (_data(image_size=[0, 0], tags=[]), "image_size"),
    (_data(image_size=[10, 10]), "image_size"),
    (_data(skipped=5), "skipped must be a list"),
    (_data(skipped=["x"]), "skipped"),
    (_data(options="abc"), "options must be an object"),
    (_data(options=5), "options must be an object"),
    (_data(label_mode="roman"), "label_mode"),
    (_data(tags=["abc"]), "tag entry 0 is not an object"),
    (_data(tags=[5]), "tag entry 0 is not an object"),
    (_tag(mask=KeyError), "tag entry 0 has no 'mask'"),
    (_tag(mask={"size": [32, 40], "counts": "zzzz"}), "tag entry 0 mask"),
    (_tag(mask={"size": [32, 40], "counts": "!!!!!!!"}), "tag entry 0 mask"),
    (_tag(mask={"size": [32, 40], "counts": [5, 5]}), "tag entry 0 mask"),
    (_tag(mask={"size": [-1, 40], "counts": "abc"}), "tag entry 0 mask"),
    (_tag(mask={"size": [3]}), "COCO RLE"),
    (_tag(mask=[[0, 1]]), "COCO RLE"),
    (_tag(center=[1, 2, 3]), "center"),
    (_tag(center="ab"), "center"),
    (_tag(mark_box="abcd"), "mark_box"),
    (_tag(mark_box=[0, 0, 1]), "mark_box"),
    (_tag(color=[1, 2]), "color"),
    (_tag(color=[1, 2, 300]), "color"),
    (_tag(color="red"), "color"),
    (_tag(id=5), r"1\.\.N"),
    (_tag(id="x"), "id"),
    (_tag(metadata=[1, 2]), "metadata"),
    (_tag(metadata="abc"), "metadata"),
    (_tag(category=5), "category"),
]


@pytest.mark.parametrize(("text", "match"), TEXTS)
def test_load_damaged_tagset_file(tmp_path, text, match):  # type: ignore[no-untyped-def]
    path = tmp_path / "tags.json"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    with pytest.raises(DataFormatError, match=match):
        load_tagset(path)


@pytest.mark.parametrize(("data", "match"), SCHEMAS)
def test_load_tagset_with_a_wrong_schema(tmp_path, data, match):  # type: ignore[no-untyped-def]
    path = tmp_path / "tags.json"
    path.write_text(json.dumps(data))
    with pytest.raises(DataFormatError, match=match):
        load_tagset(path)


@pytest.mark.parametrize("where", ["missing.json", ".", "a-file/tags.json"])
def test_load_tagset_where_there_is_none(tmp_path, where):  # type: ignore[no-untyped-def]
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(InputError, match="no TagSet file"):
        load_tagset(tmp_path / where)


# -- tag_regions and place_tags -----------------------------------------------------------------------

TAG_OPTIONS: list[tuple[dict[str, Any], str]] = [
    ({"order": "random"}, "order must be"),
    ({"label_mode": "roman"}, "label_mode must be"),
    ({"min_area": -1}, "min_area must be ≥ 0"),
    ({"min_area": "a"}, "min_area must be a number"),
    ({"min_area": float("nan")}, "min_area must be a number"),
    ({"min_area": None, "min_area_at_640": -5.0}, "at_640"),
    ({"font_size": 0}, "font size must be ≥ 1"),
    ({"font_size": -3}, "font size must be ≥ 1"),
    ({"font_size": "big"}, "font_size must be an integer"),
    ({"min_font_size": 0}, "min_font_size must be an integer ≥ 1"),
    ({"draw": "glow"}, "unknown draw mode"),
    ({"draw": 5}, "draw must be"),
    ({"box_alpha": 2}, "box_alpha must lie in"),
    ({"box_alpha": "x"}, "box_alpha must be a number"),
    ({"box_alpha": float("nan")}, "box_alpha must lie in"),
    ({"fill_alpha": -0.1}, "fill_alpha must lie in"),
    ({"text_color": (300, 0, 0)}, "text_color"),
    ({"box_color": "blue"}, "box_color"),
    ({"contrast": "x"}, "contrast must be"),
    ({"line_width": 0}, "line_width must be ≥ 1"),
    ({"line_width": "x"}, "line_width must be an integer"),
    ({"max_tags": 0}, "max_tags=0"),
    ({"centers": []}, "centers has 0 entries"),
    ({"centers": [(100, 100)]}, "not on a pixel"),
    ({"centers": [(np.nan, 1)]}, "not on a pixel"),
    ({"centers": [(1,)]}, r"center \(1,\) given for region 0"),
    ({"centers": ["ab"]}, "center 'ab' given for region 0"),
    ({"seed": "x"}, "seed must be an integer ≥ 0"),
    ({"seed": -1}, "seed must be an integer ≥ 0"),
]


@pytest.mark.parametrize(("options", "match"), TAG_OPTIONS)
def test_tag_regions_options(options, match):  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match=match):
        tag_regions(PIXELS, [MASK], **{"min_area": 0, **options})


TAG_INPUTS: list[tuple[Any, Any, str]] = [
    (PIXELS, MASK, "one 2-D array"),
    (PIXELS, None, "must be a list"),
    (PIXELS, "masks", "must be a list"),
    (PIXELS, [np.zeros((5, 5), bool)], "resize the mask"),
    (PIXELS, [MASK.astype(int) * 3], "values other than 0 and 1"),
    (PIXELS, [np.zeros((2, 32, 40), bool)], "2-D"),
    (PIXELS, np.zeros((2, 2, 32, 40), bool), r"\(N, H, W\)"),
    ([[1]], [MASK], "PIL.Image.Image or a numpy array"),
    (None, [MASK], "PIL.Image.Image or a numpy array"),
    (np.zeros((0, 0, 3), np.uint8), [], "no pixels"),
    (np.full((32, 40), 2.0), [MASK], r"\[0, 1\]"),
]


@pytest.mark.parametrize(("image", "regions", "match"), TAG_INPUTS)
def test_tag_regions_inputs(image, regions, match):  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match=match):
        tag_regions(image, regions)


def test_images_without_tags_are_documented_not_errors() -> None:
    empty = tag_regions(PIXELS, [])
    assert len(empty.tagset) == 0 and np.array_equal(np.asarray(empty.image), PIXELS)
    blank = tag_regions(PIXELS, [np.zeros((32, 40), bool)])
    assert len(blank.tagset) == 0 and blank.tagset.skipped[0]["reason"] == "empty"
    assert np.array_equal(np.asarray(annotate(PIXELS, blank.tagset)), PIXELS)


PLACES: list[tuple[Any, dict[str, Any], str]] = [
    ((0, 0), {}, "size must be"),
    ((-1, 5), {}, "size must be"),
    ("abc", {}, "size must be"),
    ((1, 2, 3), {}, "size must be"),
    ((40.5, 32), {}, "size must be"),
    ((40, 32), {"colour": "red"}, "unknown placement option"),
    ((40, 32), {"draw": "box"}, "unknown placement option"),
]


@pytest.mark.parametrize(("size", "options", "match"), PLACES)
def test_place_tags(size, options, match):  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match=match):
        place_tags(size, [MASK], **options)


MARKS: list[tuple[Any, str]] = [
    (np.zeros((4, 4), bool), "empty mask"),
    (np.zeros((0, 0), bool), "no pixels"),
    (np.ones((4, 4, 3), bool), "2-D"),
    (np.ones(4, bool), "2-D"),
    (np.full((4, 4), 3), "values other than 0 and 1"),
    (None, "2-D"),
]


@pytest.mark.parametrize(("mask", "match"), MARKS)
def test_mark_position(mask, match):  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match=match):
        mark_position(mask)


def test_mark_position_takes_nested_lists() -> None:
    assert mark_position([[0, 1], [1, 1]]) == mark_position(np.array([[0, 1], [1, 1]], bool))


@pytest.mark.parametrize(
    ("args", "match"),
    [((0, 480), "width and height"), ((-640, 480), "width and height"), ((640, 480, -1), "at_640")],
)
def test_min_area_for(args, match):  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match=match):
        min_area_for(*args)


# -- annotate, TagSet, TagStyle -------------------------------------------------------------------------

ANNOTATES: list[tuple[Any, Any, Any, str]] = [
    (np.zeros((5, 5, 3), np.uint8), _tagset(), None, "is for a 40×32 image"),
    (PIXELS, "tags", None, "must be a TagSet"),
    (PIXELS, None, None, "must be a TagSet"),
    (PIXELS, _tagset(), "mark", "style must be a TagStyle"),
    (
        PIXELS,
        TagSet([replace(_tagset().tags[0], mask=np.zeros((32, 40), bool))], (40, 32)),
        None,
        "empty mask",
    ),
    (PIXELS, replace(_tagset(), options={"font_size": -2}), None, "font size must be ≥ 1"),
    (PIXELS, replace(_tagset(), options={"font_size": "big"}), None, r"options\['font_size'\]"),
    (
        PIXELS,
        TagSet([replace(_tagset().tags[0], mask=np.zeros((3, 3), bool))], (40, 32)),
        None,
        "mask of shape",
    ),
]


@pytest.mark.parametrize(("image", "tagset", "style", "match"), ANNOTATES)
def test_annotate(image, tagset, style, match):  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match=match):
        annotate(image, tagset, style)


@pytest.mark.parametrize("draw", ["mark", ("mark", "outline", "box", "fill")])
def test_annotate_a_tag_without_a_colour_uses_the_seeded_colour(draw):  # type: ignore[no-untyped-def]
    tagset = _tagset()
    plain = replace(tagset, tags=[replace(t, color=None) for t in tagset.tags])
    style = TagStyle(draw=draw)
    assert np.array_equal(
        np.asarray(annotate(PIXELS, plain, style)), np.asarray(annotate(PIXELS, tagset, style))
    )


@pytest.mark.parametrize(("key", "match"), [(0, "no tag 0"), (2, "no tag 2"), ("a", "no tag 'a'")])
def test_tagset_lookup(key, match):  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match=match):
        _tagset()[key]


# -- images and regions ---------------------------------------------------------------------------------

RGB_INPUTS: list[tuple[Any, str]] = [
    (None, "PIL.Image.Image or a numpy array"),
    ([[0]], "PIL.Image.Image or a numpy array"),
    (np.zeros((2, 2, 5)), r"shape \(2, 2, 5\)"),
    (np.zeros((2, 2, 3, 1)), r"shape \(2, 2, 3, 1\)"),
    (np.full((2, 2), 2.0), r"outside \[0, 1\]"),
    (np.full((2, 2), np.nan), r"outside \[0, 1\]"),
    (np.full((2, 2), -1), r"outside \[0, 255\]"),
    (np.zeros((2, 2), complex), "unsupported dtype"),
    (np.array([["a"]]), "unsupported dtype"),
    (np.zeros((0, 3)), "no pixels"),
    (Image.new("RGB", (0, 0)), "at least 1×1"),
]


@pytest.mark.parametrize(("image", "match"), RGB_INPUTS)
def test_as_rgb_array(image, match):  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match=match):
        as_rgb_array(image)


REGION_CALLS: list[tuple[Callable[[], Any], str]] = [
    (lambda: Region(np.zeros((2, 2, 2))), "2-D"),
    (lambda: Region(None), "2-D"),
    (lambda: Region(MASK, category=5), "category must be a string"),
    (lambda: from_label_image(np.zeros((2, 2), float)), "integers"),
    (lambda: from_label_image(np.zeros((0, 2), int)), "non-empty 2-D"),
    (lambda: from_label_image(None), "non-empty 2-D"),
    (lambda: from_masks(MASK), r"\(N, H, W\) stack"),
    (lambda: from_masks(None), r"\(N, H, W\) stack"),
    (lambda: from_masks(5), r"\(N, H, W\) stack"),
    (lambda: from_masks([MASK, np.zeros((3, 3), bool)]), "mask 1 has shape"),
    (lambda: from_masks([MASK], categories=["a", "b"]), "categories has 2 entries"),
    (lambda: from_superpixels(PIXELS, method="x"), "method must be"),
    (lambda: from_superpixels(PIXELS, scale=0), "scale > 0"),
    (lambda: from_superpixels(PIXELS, method="slic", n_segments=0), "n_segments ≥ 1"),
    (lambda: from_superpixels(None), "PIL.Image.Image or a numpy array"),
    (lambda: from_sam(PIXELS, None, points_per_side=0), "points_per_side"),
    (lambda: from_sam(PIXELS, 5), "SamModel"),
]


@pytest.mark.parametrize(("call", "match"), REGION_CALLS)
def test_region_sources(call, match):  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match=match):
        call()


def test_sam_checkpoint_that_is_not_there(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="could not load a SAM model"):
        from_sam(PIXELS, tmp_path / "no-sam")


COCO = {
    "images": [{"id": 1, "width": 4, "height": 3}],
    "categories": [{"id": 5, "name": "box"}],
    "annotations": [
        {
            "id": 9,
            "image_id": 1,
            "category_id": 5,
            "iscrowd": 0,
            "segmentation": [[0, 0, 3, 0, 3, 2, 0, 2]],
            "area": 6.0,
            "bbox": [0, 0, 3, 2],
        }
    ],
}


def _coco(**changes: Any) -> dict[str, Any]:
    data = json.loads(json.dumps(COCO))
    for key, value in changes.items():
        if value is KeyError:
            del data["annotations"][0][key]
        else:
            data["annotations"][0][key] = value
    return data


COCO_CALLS: list[tuple[Any, Any, dict[str, Any], type[SomprobeError], str]] = [
    ([], 1, {}, InputError, "annotations must be"),
    (5, 1, {}, InputError, "annotations must be"),
    ({"images": [], "annotations": []}, 1, {}, DataFormatError, "no 'categories' list"),
    (COCO, 2, {}, InputError, "image id 2 is not in"),
    (COCO, "1", {}, InputError, "image_id must be an integer"),
    (COCO, 1, {"category_ids": ["x"]}, InputError, "category_ids"),
    ({**COCO, "images": [{"id": 1}]}, 1, {}, DataFormatError, "unreadable segmentation"),
    (_coco(segmentation=KeyError), 1, {}, DataFormatError, "unreadable segmentation"),
    (_coco(segmentation="abc"), 1, {}, DataFormatError, "unreadable segmentation"),
    (_coco(segmentation=[[0, 0, 3]]), 1, {}, DataFormatError, "unreadable segmentation"),
    (_coco(segmentation=[]), 1, {}, DataFormatError, "unreadable segmentation"),
    (_coco(category_id=KeyError), 1, {}, DataFormatError, "missing field 'category_id'"),
    (_coco(id=KeyError), 1, {}, DataFormatError, "missing field 'id'"),
    (_coco(category_id="x"), 1, {}, DataFormatError, "annotation 9"),
    (_coco(bbox="abc"), 1, {}, DataFormatError, "annotation 9"),
    (_coco(area="abc"), 1, {}, DataFormatError, "annotation 9"),
    (_coco(iscrowd="x"), 1, {}, DataFormatError, "annotation 9"),
]


@pytest.mark.parametrize(("data", "image_id", "options", "error", "match"), COCO_CALLS)
def test_from_coco(data, image_id, options, error, match):  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=match):
        from_coco(data, image_id, **options)


@pytest.mark.parametrize(
    ("text", "error", "match"),
    [('{"images": [', DataFormatError, "not valid JSON"), (None, InputError, "no COCO")],
)
def test_coco_file(tmp_path, text, error, match):  # type: ignore[no-untyped-def]
    path = tmp_path / "coco.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(error, match=match):
        from_coco(path, 1)
