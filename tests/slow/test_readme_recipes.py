"""Every recipe in the README runs as written, so a recipe cannot drift from the code.

The Python and bash blocks of README.md's "Recipes" section are run in order, in one
temporary folder and one Python namespace (as a reader pasting them into a notebook and a
shell would), on tiny offline models, scikit-image photos and a small COCO-format data set
this test writes under the names the recipes use (``val2017/``,
``instances_val2017.json``, ``llava_v1_5_mix665k.json``). A block the tests cannot run
(a real checkpoint, several GPUs) is preceded in the README by a comment
``<!-- not run by the tests: <reason> -->``; the test lists those and checks each has a
reason, so nothing is left out silently.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SKIP = re.compile(r"<!--\s*not run by the tests:\s*(?P<reason>[^>]*?)\s*-->")


@dataclass(frozen=True)
class Block:
    heading: str
    language: str
    code: str
    line: int
    skip_reason: str | None


def recipe_blocks(text: str) -> list[Block]:
    """The fenced python/bash blocks of the "## Recipes" section, in order."""
    start = text.index("\n## Recipes\n")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end >= 0 else None]
    first_line = text[:start].count("\n") + 1
    blocks, heading = [], ""
    fence = re.compile(r"^```(\w+)\n(.*?)^```$", re.S | re.M)
    for found in fence.finditer(section):
        before = section[: found.start()]
        headings = re.findall(r"^### (.+)$", before, re.M)
        heading = headings[-1] if headings else heading
        last_text = before.rstrip().splitlines()[-1] if before.strip() else ""
        skip = SKIP.search(last_text)
        blocks.append(
            Block(
                heading,
                found.group(1),
                found.group(2),
                first_line + before.count("\n"),
                skip.group("reason") if skip else None,
            )
        )
    return blocks


def write_inputs(folder: Path) -> None:
    """What the recipes' commands read: two photos with COCO polygons, a LLaVA mix file."""
    from skimage import data

    images = folder / "val2017"
    images.mkdir()
    photos = {"astronaut.jpg": data.astronaut(), "coffee.jpg": data.coffee()}
    coco: dict = {"images": [], "annotations": [], "categories": []}
    coco["categories"] = [{"id": 1, "name": "person"}, {"id": 2, "name": "cup"}]
    for image_id, (name, pixels) in enumerate(photos.items(), start=1):
        Image.fromarray(pixels).save(images / name, quality=95)
        height, width = pixels.shape[:2]
        coco["images"].append({"id": image_id, "file_name": name, "width": width, "height": height})
        for k, (x, y, w, h) in enumerate([(40, 40, 160, 200), (250, 120, 120, 100)]):
            polygon = [x, y, x + w, y, x + w, y + h, x, y + h]
            coco["annotations"].append(
                {"id": 10 * image_id + k, "image_id": image_id, "category_id": k + 1,
                 "segmentation": [polygon], "area": float(w * h), "bbox": [x, y, w, h],
                 "iscrowd": 0}
            )  # fmt: skip
    (folder / "instances_val2017.json").write_text(json.dumps(coco))
    rng = np.random.default_rng(0)
    records = []
    for i in range(40):
        record: dict = {"id": f"llava-{i}", "conversations": []}
        if i % 4:
            record["image"] = "coco/train2017/000.jpg"
            record["conversations"].append({"from": "human", "value": "<image>\nWhat is this?"})
        else:
            record["conversations"].append({"from": "human", "value": "Say hello."})
        answer = "1. a cat\n2. a dog" if rng.random() < 0.2 else "A photo of a street."
        record["conversations"].append({"from": "gpt", "value": answer})
        records.append(record)
    (folder / "llava_v1_5_mix665k.json").write_text(json.dumps(records))
    (folder / "models").symlink_to(ROOT / "models")  # `somprobe eval run models/toy-som ...`


def run_bash(code: str, cwd: Path, where: str) -> None:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, f"{where} failed:\n{code}\n--- stderr ---\n{proc.stderr[-4000:]}"


def test_readme_has_recipes_and_every_skip_says_why() -> None:
    blocks = recipe_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 10
    assert {b.language for b in blocks} == {"python", "bash"}
    for block in blocks:
        if block.skip_reason is not None:
            assert len(block.skip_reason) > 10, f"README line {block.line}: say why it is not run"
    run = [b for b in blocks if b.skip_reason is None]
    assert len(run) >= len(blocks) - 2  # only real-checkpoint / multi-GPU lines are left out


@pytest.mark.slow
def test_every_recipe_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_inputs(tmp_path)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "readme"}
    for block in recipe_blocks(README.read_text(encoding="utf-8")):
        if block.skip_reason is not None:
            continue
        where = f"README.md line {block.line} ({block.heading}, {block.language})"
        if block.language == "bash":
            run_bash(block.code, tmp_path, where)
            continue
        try:
            exec(compile(block.code, where, "exec"), namespace)
        except Exception as err:  # re-raised with the recipe named
            raise AssertionError(f"{where} failed: {type(err).__name__}: {err}") from err
