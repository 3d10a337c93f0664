"""Placement and drawing as separate steps: place_tags + annotate redraw tag_regions exactly."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from skimage import data

from somprobe.errors import InputError
from somprobe.tagging import (
    TagStyle,
    annotate,
    from_superpixels,
    load_tagset,
    place_tags,
    save_tagset,
    tag_regions,
)
from somprobe.tagging.io import tagsets_equal

STYLES = [
    {},
    {"draw": ("fill", "outline", "mark"), "fill_alpha": 0.45, "label_mode": "letter"},
    {"draw": ("box", "mark"), "box_color": "region", "text_color": "auto", "line_width": 3},
    {"draw": "mark", "contrast": "auto", "box_alpha": 0.5},
    {"draw": "outline", "remove_overlaps": False},
]
PLACEMENT = {"label_mode", "remove_overlaps", "order", "min_area", "font_size", "seed"}


@pytest.fixture(scope="module")
def photo() -> tuple[np.ndarray, list]:
    image = data.astronaut()[::2, ::2]  # 256 × 256
    return image, from_superpixels(image, min_size=400)


@pytest.mark.parametrize("options", STYLES)
def test_annotate_redraws_tag_regions_pixel_for_pixel(photo, options, tmp_path: Path) -> None:
    image, regions = photo
    tagged = tag_regions(image, regions, **options)
    style = TagStyle(**{k: v for k, v in options.items() if k not in PLACEMENT})
    assert np.array_equal(np.asarray(annotate(image, tagged.tagset, style)), tagged.image)
    save_tagset(tagged.tagset, tmp_path / "tags.json")  # a saved TagSet redraws the same
    again = annotate(image, load_tagset(tmp_path / "tags.json"), style)
    assert np.array_equal(np.asarray(again), np.asarray(tagged.image))


def test_place_tags_is_the_tagset_of_tag_regions(photo) -> None:
    image, regions = photo
    tagged = tag_regions(image, regions, label_mode="letter", seed=3)
    placed = place_tags((image.shape[1], image.shape[0]), regions, label_mode="letter", seed=3)
    assert tagsets_equal(replace(placed, options=tagged.tagset.options), tagged.tagset)
    dropped = {"draw", "box_alpha", "contrast"}  # drawing settings: not placement's
    assert placed.options == {k: v for k, v in tagged.tagset.options.items() if k not in dropped}


def test_annotate_draws_a_tagset_in_another_style(photo) -> None:
    image, regions = photo
    tagged = tag_regions(image, regions)
    outlined = np.asarray(annotate(image, tagged.tagset, TagStyle(draw="outline")))
    changed = np.any(outlined != image, axis=-1)
    inner = next(t for t in tagged.tagset if t.area > 400)
    x0, y0, x1, y1 = inner.mark_box
    assert changed.any() and not changed[y0:y1, x0:x1].all()  # no label box drawn
    assert np.array_equal(np.asarray(annotate(image, tagged.tagset, TagStyle(draw=()))), image)


def test_bad_annotate_input_is_an_input_error(photo) -> None:
    image, regions = photo
    tagset = tag_regions(image, regions).tagset
    with pytest.raises(InputError, match="TagSet is for a 256×256 image"):
        annotate(image[:100], tagset)
    with pytest.raises(InputError, match="unknown draw mode"):
        TagStyle(draw="glow")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="box_alpha must lie in"):
        TagStyle(box_alpha=1.5)
    with pytest.raises(InputError, match="line_width must be"):
        TagStyle(line_width=0)
