"""``tag_images`` (``somprobe data tag``): shrink-only resizing, checks before any work."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from somprobe.data.tagging import folder_items, mask_folder_source, tag_images
from somprobe.errors import InputError
from somprobe.tagging import tag_regions
from somprobe.tagging.io import load_tagset, tagsets_equal
from somprobe.tagging.regions.arrays import from_label_image


def _write(folder: Path, name: str, size: tuple[int, int]) -> np.ndarray:
    """An image of ``size = (width, height)`` with three labelled rectangles."""
    width, height = size
    labels = np.zeros((height, width), np.uint8)
    labels[height // 10 : height // 2, width // 10 : width // 2] = 1
    labels[height // 2 + 2 : height - 2, width // 8 : width // 3] = 2
    labels[height // 8 : height - 4, width // 2 + 3 : width - 3] = 3
    palette = np.array([[30, 30, 30], [220, 40, 40], [40, 200, 40], [40, 40, 220]], np.uint8)
    (folder / "images").mkdir(exist_ok=True)
    (folder / "masks").mkdir(exist_ok=True)
    Image.fromarray(palette[labels]).save(folder / "images" / f"{name}.png")
    Image.fromarray(labels).save(folder / "masks" / f"{name}.png")
    return labels


def test_short_side_only_shrinks(tmp_path: Path) -> None:
    """SoM-LLaVA resizes large COCO images down to a 640 shorter side; a smaller image is
    kept as it is (it used to be enlarged: 600×400 → 960×640)."""
    small = _write(tmp_path, "small", (60, 40))  # shorter side 40 ≤ 64: kept
    _write(tmp_path, "edge", (96, 64))  # exactly 64: kept
    _write(tmp_path, "large", (128, 96))  # shorter side 96 > 64: shrunk to 85×64
    out = tmp_path / "som"
    items = folder_items(tmp_path / "images")
    tag_images(items, mask_folder_source(tmp_path / "masks"), out, short_side=64, progress=False)
    sizes = {
        k: load_tagset(out / "tagsets" / f"{k}.json").image_size for k in ("small", "edge", "large")
    }
    assert sizes == {"small": (60, 40), "edge": (96, 64), "large": (85, 64)}
    with Image.open(out / "images" / "large.png") as im:
        assert im.size == (85, 64)
    # the kept image is tagged exactly as without --short-side
    with Image.open(tmp_path / "images" / "small.png") as im:
        direct = tag_regions(im.convert("RGB"), from_label_image(small))
    assert tagsets_equal(load_tagset(out / "tagsets" / "small.json"), direct.tagset)
    with Image.open(out / "images" / "small.png") as im:
        assert np.array_equal(np.asarray(im), np.asarray(direct.image))


def test_shrink_to_short_side() -> None:
    from somprobe.data.tagging import shrink_to_short_side

    assert shrink_to_short_side(Image.new("RGB", (600, 400)), 640).size == (600, 400)
    assert shrink_to_short_side(Image.new("RGB", (1280, 960)), 640).size == (853, 640)
    assert shrink_to_short_side(Image.new("RGB", (480, 1000)), 240).size == (240, 500)
    assert shrink_to_short_side(Image.new("RGB", (640, 640)), 640).size == (640, 640)


def test_option_help_and_docstring_say_never_enlarged() -> None:
    from typer.testing import CliRunner

    from somprobe.cli import app

    result = CliRunner().invoke(app, ["data", "tag", "--help"], env={"COLUMNS": "100"})
    assert "never enlarged" in " ".join(result.output.split())
    assert "never enlarged" in " ".join((tag_images.__doc__ or "").split())
    with pytest.raises(InputError, match="short-side 0"):
        tag_images(
            [], mask_folder_source(Path(__file__).parent), Path("/nonexistent"), short_side=0
        )
