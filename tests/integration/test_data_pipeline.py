"""images + regions → tagged images + listing + QA → mixed file → read back, via the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from somprobe.data.cli import app
from somprobe.data.llava_json import iter_records, make_record, validate_file, write_records
from somprobe.data.runner import PAUSE_ENV
from somprobe.data.survey import survey_file
from somprobe.tagging import tag_regions
from somprobe.tagging.io import load_tagset, tagsets_equal
from somprobe.tagging.regions.coco import from_coco

pytestmark = pytest.mark.integration

CATS = [(1, "person"), (2, "cat"), (3, "cup"), (4, "dog")]
N_IMAGES = 6


def make_coco(root: Path) -> tuple[Path, Path]:
    """N_IMAGES random images with 2-4 rectangle annotations each, as a COCO file."""
    rng = np.random.default_rng(0)
    images_dir = root / "images_in"
    images_dir.mkdir()
    images, anns = [], []
    for i in range(N_IMAGES):
        w, h = 96, 80
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
            images_dir / f"{i:04d}.jpg", quality=95
        )
        images.append({"id": 100 + i, "file_name": f"{i:04d}.jpg", "width": w, "height": h})
        for k in range(2 + i % 3):
            x0, y0 = int(rng.integers(0, 50)), int(rng.integers(0, 40))
            bw, bh = int(rng.integers(12, 40)), int(rng.integers(12, 35))
            x1, y1 = min(w, x0 + bw), min(h, y0 + bh)
            anns.append({
                "id": 1000 * i + k, "image_id": 100 + i, "category_id": int(rng.integers(1, 5)),
                "iscrowd": 0, "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]],
                "area": float((x1 - x0) * (y1 - y0)), "bbox": [x0, y0, x1 - x0, y1 - y0],
            })  # fmt: skip
    ann_path = root / "instances.json"
    ann_path.write_text(json.dumps({
        "images": images, "annotations": anns,
        "categories": [{"id": c, "name": n} for c, n in CATS],
    }))  # fmt: skip
    return images_dir, ann_path


def make_base(path: Path, n: int = 40) -> Path:
    """A stand-in for LLaVA's instruction file: image and text-only records."""
    recs = [
        make_record(f"base{i}", f"coco/{i}.jpg" if i % 4 else None,
                    [("Describe it.", "A photo." if i % 5 else "1. Mix flour.\n2. Bake.")])
        for i in range(n)
    ]  # fmt: skip
    write_records(recs, path)
    return path


def cli(*args: str) -> str:
    result = CliRunner().invoke(app, [*map(str, args), "--no-progress"])
    assert result.exit_code == 0, result.output
    return result.output


def run_pipeline(root: Path, images_dir: Path, ann: Path, base: Path, seed: int) -> Path:
    out = root / "som"
    cli("tag", images_dir, out, "--coco", ann)
    cli("listing", out, root / "listing.json", "--seed", str(seed))
    cli("qa", out, root / "qa.json", "--seed", str(seed), "--questions", "3")
    cli("mix", root / "mixed.json", "--source", f"base={base}",
        "--source", f"listing={root / 'listing.json'}:4", "--source", f"qa={root / 'qa.json'}",
        "--image-prefix", "listing=som/", "--image-prefix", "qa=som/",
        "--seed", str(seed), "--report", root / "report.csv")  # fmt: skip
    return out


@pytest.fixture(scope="module")
def coco(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("coco")
    images_dir, ann = make_coco(root)
    return images_dir, ann, make_base(root / "base.json")


def test_end_to_end(tmp_path: Path, coco: tuple[Path, Path, Path]) -> None:
    images_dir, ann, base = coco
    out = run_pipeline(tmp_path, images_dir, ann, base, seed=0)
    keys = sorted(p.stem for p in (out / "tagsets").glob("*.json"))
    assert keys == [f"{i:04d}" for i in range(N_IMAGES)]

    # the tagged output equals tagging the same COCO regions directly
    for i, key in enumerate(keys):
        with Image.open(images_dir / f"{key}.jpg") as im:
            direct = tag_regions(im.convert("RGB"), from_coco(ann, 100 + i))
        saved = load_tagset(out / "tagsets" / f"{key}.json")
        assert tagsets_equal(saved, direct.tagset)
        with Image.open(out / "images" / f"{key}.png") as im:
            assert np.array_equal(np.asarray(im), np.asarray(direct.image))

    # listing lines match the TagSet exactly, tag by tag
    listing = {r.id: r for r in iter_records(tmp_path / "listing.json")}
    assert len(listing) == N_IMAGES
    for key in keys:
        ts = load_tagset(out / "tagsets" / f"{key}.json")
        answer = listing[f"som_listing_{key}"].conversations[1].value
        assert answer.split("\n") == [f"{t.id}. {t.category}" for t in ts.tags]
        assert listing[f"som_listing_{key}"].image == f"images/{key}.png"

    # QA answers agree with the TagSet (counts)
    for rec in iter_records(tmp_path / "qa.json"):
        ts = load_tagset(out / "tagsets" / f"{rec.id.removeprefix('som_qa_')}.json")
        turns = rec.conversations
        for q, a in zip(turns[0::2], turns[1::2], strict=True):
            if "How many" in q.value or q.value.startswith("Count"):
                cat = q.value.rstrip("?.").split(" ")[-1]
                assert a.value == str(sum(t.category == cat for t in ts.tags))

    # the mix reads back, validates (images exist under one root) and has the composition
    root = tmp_path / "train_images"
    (root / "coco").mkdir(parents=True)
    for i in range(40):
        (root / "coco" / f"{i}.jpg").write_bytes(b"")
    (root / "som").symlink_to(out)
    summary = validate_file(tmp_path / "mixed.json", image_root=root)
    assert summary.records == 40 + 4 + N_IMAGES
    mixed_ids = [r.id for r in iter_records(tmp_path / "mixed.json")]
    assert sum(i.startswith("som_listing_") for i in mixed_ids) == 4
    assert sum(i.startswith("som_qa_") for i in mixed_ids) == N_IMAGES
    report = (tmp_path / "report.csv").read_text().splitlines()
    assert report[0] == "source,path,available,requested,taken,share"
    assert [r.split(",")[4] for r in report[1:]] == ["40", "4", str(N_IMAGES)]

    # the survey sees the listing records as listing style
    table = survey_file(tmp_path / "listing.json").set_index(["unit", "style"])
    assert table.loc[("record", "item_listing"), "count"] == sum(
        len(load_tagset(out / "tagsets" / f"{k}.json")) >= 2 for k in keys
    )


def test_same_seed_gives_identical_bytes(tmp_path: Path, coco: tuple[Path, Path, Path]) -> None:
    images_dir, ann, base = coco
    outs = []
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        (tmp_path / name).mkdir()
        outs.append(run_pipeline(tmp_path / name, images_dir, ann, base, seed))
    a, b, c = (tmp_path / n for n in "abc")
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 2 * N_IMAGES + 4  # images, tagsets, listing, qa, mix, report
    for rel in files:
        if rel.name != "report.csv":  # it names the input paths, which differ
            assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    for name in ("listing.json", "qa.json", "mixed.json"):
        assert (a / name).read_bytes() != (c / name).read_bytes(), name


def test_shards_cover_the_full_run(tmp_path: Path, coco: tuple[Path, Path, Path]) -> None:
    images_dir, ann, _ = coco
    out = tmp_path / "som"
    for i in range(3):  # three machines tag into one folder
        cli("tag", images_dir, out, "--coco", ann, "--shard", f"{i}/3")
    cli("listing", out, tmp_path / "full.json")
    for i in range(2):
        cli("listing", out, tmp_path / f"part{i}.json", "--shard", f"{i}/2")
    full = {r.id: r for r in iter_records(tmp_path / "full.json")}
    parts = [r for i in range(2) for r in iter_records(tmp_path / f"part{i}.json")]
    assert len(parts) == len(full) == N_IMAGES
    assert {r.id: r for r in parts} == full


def spawn(
    args: list[str],
    stderr: Path,
    pause: int | None,
    module: str = "somprobe.data.cli",
    env: dict[str, str] | None = None,
) -> subprocess.Popen:
    """``python -m MODULE ARGS`` in a fresh process; with ``pause``, the data commands'
    test hook (``SOMPROBE_DATA_PAUSE_AFTER``) stops it after that many items."""
    full = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    full.pop(PAUSE_ENV, None)
    if pause is not None:
        full[PAUSE_ENV] = str(pause)
    progress = ["--no-progress"] if module.startswith("somprobe.data") else []
    with open(stderr, "w") as err:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", module, *args, *progress],
            stdout=subprocess.DEVNULL, stderr=err, env=full,
        )  # fmt: skip


def wait_until_paused(proc: subprocess.Popen, stderr: Path, timeout: float = 120) -> None:
    """Wait for the test hook's "paused after" line (the process is then idle)."""
    start = time.monotonic()
    while "paused after" not in stderr.read_text():
        assert proc.poll() is None, stderr.read_text()
        assert time.monotonic() - start < timeout, "the run never reached the pause point"
        time.sleep(0.05)


def kill(proc: subprocess.Popen) -> None:
    """SIGKILL: no handler, no cleanup, as an out-of-memory kill or ``kill -9``."""
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


def kill_when_paused(proc: subprocess.Popen, stderr: Path, timeout: float = 120) -> None:
    wait_until_paused(proc, stderr, timeout)
    kill(proc)


def leftovers(folder: Path) -> list[Path]:
    """What a run may leave behind: hidden temporary files and folders (``.name.<pid>-*.tmp``,
    ``.mix-<pid>-*``) and resume journals (``*.partial.jsonl``)."""
    return sorted([*folder.rglob(".*"), *folder.rglob("*.partial.jsonl")])


def test_resume_with_other_settings_is_refused(
    tmp_path: Path, coco: tuple[Path, Path, Path]
) -> None:
    images_dir, ann, _ = coco
    out = tmp_path / "som"
    cli("tag", images_dir, out, "--coco", ann, "--limit", "2")
    args = [str(a) for a in ["listing", out, tmp_path / "l.json", "--seed", "1"]]
    kill_when_paused(spawn(args, tmp_path / "e", 1), tmp_path / "e")
    result = CliRunner().invoke(app, ["listing", str(out), str(tmp_path / "l.json"), "--seed", "2"])
    assert result.exit_code == 2
    assert "rerun with the same options" in result.output


def test_bad_inputs_give_clear_errors(tmp_path: Path, coco: tuple[Path, Path, Path]) -> None:
    images_dir, ann, base = coco

    def fails(*args: object) -> str:
        result = CliRunner().invoke(app, [str(a) for a in args])
        assert result.exit_code == 2, result.output
        return result.output

    assert "run `somprobe data tag`" in fails("listing", tmp_path, tmp_path / "x.json")
    # an image named in the annotations is missing
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "0000.jpg").write_bytes((images_dir / "0000.jpg").read_bytes())
    assert "0001.jpg" in fails("tag", partial, tmp_path / "o", "--coco", ann)
    assert "exactly one region source" in fails("tag", images_dir, tmp_path / "o")
    # malformed JSON and duplicate ids in a mix source
    bad = tmp_path / "bad.json"
    bad.write_text(base.read_text()[:-40])
    assert "not valid JSON" in fails("mix", tmp_path / "m.json", "--source", f"b={bad}")
    assert "base0" in fails("mix", tmp_path / "m.json", "--source", f"a={base}",
                            "--source", f"b={base}")  # fmt: skip
    assert not (tmp_path / "m.json").exists()
    # a record without <image>, and a missing image file
    rec = json.loads(base.read_text())
    rec[1]["conversations"][0]["value"] = "Describe it."
    (tmp_path / "noimg.json").write_text(json.dumps(rec))
    out = fails("validate", tmp_path / "noimg.json")
    assert "record id='base1'" in out and "conversations[0].value" in out
    out = fails("validate", base, "--image-root", tmp_path)
    assert "record id='base1'" in out and "field 'image'" in out
    assert "--shard" in fails("listing", tmp_path, tmp_path / "x.json", "--shard", "2/2")


def test_mask_folder_superpixels_resize_and_describer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(1)
    (tmp_path / "imgs").mkdir()
    (tmp_path / "masks").mkdir()
    palette = np.array([[20, 20, 20], [220, 40, 40], [40, 200, 40], [40, 40, 220]], np.uint8)
    for i in range(2):
        lab = np.zeros((40, 60), np.uint8)
        lab[2:20, 2:30], lab[22:38, 5:25], lab[5:35, 35:58] = 1, 2, 3
        noise = rng.integers(0, 10, (40, 60, 3), dtype=np.uint8)
        Image.fromarray(palette[lab] + noise).save(tmp_path / "imgs" / f"m{i}.png")
        Image.fromarray(lab).save(tmp_path / "masks" / f"m{i}.png")
        (tmp_path / "masks" / f"m{i}.json").write_text('{"1": "cat", "2": "dog", "3": "cat"}')
    out = tmp_path / "som"
    cli("tag", tmp_path / "imgs", out, "--masks", tmp_path / "masks", "--short-side", "80")
    ts = load_tagset(out / "tagsets" / "m0.json")
    assert ts.image_size == (60, 40)  # shorter side 40 ≤ 80: kept, never enlarged
    assert sorted(t.area for t in ts.tags) == [16 * 20, 18 * 28, 23 * 30]
    assert [t.category for t in ts.tags] == ["dog", "cat", "cat"]  # smallest first

    # a user's describer, loaded by name
    (tmp_path / "my_describer.py").write_text(
        "def describe(tag, image=None):\n"
        "    return f'{tag.category} of {tag.area} px in a {image.width}px-wide image'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    cli("listing", out, tmp_path / "l.json", "--describer", "my_describer:describe")
    answer = read_first_answer(tmp_path / "l.json")
    assert answer.split("\n") == [
        f"{t.id}. {t.category} of {t.area} px in a 60px-wide image" for t in ts.tags
    ]

    # no annotations at all: superpixel regions, no categories, so listing needs a describer
    cli("tag", tmp_path / "imgs", tmp_path / "sp", "--superpixels", "slic")
    assert len(load_tagset(tmp_path / "sp" / "tagsets" / "m1.json")) > 3
    result = CliRunner().invoke(app, ["listing", str(tmp_path / "sp"), str(tmp_path / "x.json")])
    assert result.exit_code == 2 and "has no category" in result.output


def read_first_answer(path: Path) -> str:
    return next(iter_records(path)).conversations[1].value
