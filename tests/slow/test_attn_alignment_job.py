"""The main job runs end to end on a small limit and writes its outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from somprobe_testing import bad_job_run, load_experiment


@pytest.mark.slow
def test_main_job_on_a_small_limit(tmp_path: Path) -> None:
    job = load_experiment("attn_alignment")
    out, figures = tmp_path / "results", tmp_path / "figures"
    args = ["--limit", "4", "--out", str(out), "--figures", str(figures), "--bootstrap", "200"]
    assert job.main([*args, "--max-new-tokens", "24", "--no-progress"]) == 0
    scores = pd.read_csv(out / "scores.csv.gz")
    assert set(scores["model"]) == {"baseline", "SoM"}
    needed = {"mass_object_markfree", "image_share_object", "lift_object", "auroc", "chance_topk"}
    assert needed | {"mass_text", "layer", "head"} <= set(scores.columns)
    comparison = pd.read_csv(out / "comparison.csv")
    assert {"ci_low", "ci_high", "p_adjusted", "n_clusters"} <= set(comparison.columns)
    # every layer × metric of the family is reported, never only the best layer
    assert len(comparison) == 4 * len(job.METRICS)
    assert (comparison["n_clusters"] <= 4).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 4
    rows = summary["teacher_forced"]["topk_hit"]
    assert [r["layer"] for r in rows] == [0, 1, 2, 3] and all("chance_SoM" in r for r in rows)
    for name in ("attn_layer_curves_teacher_forced.png", "attn_top_patches.png"):
        assert (figures / name).stat().st_size > 1000


@pytest.mark.slow
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--limit", "0"], "--limit must be ≥ 1"),
        (["--batch-size", "0"], "--batch-size must be ≥ 1"),
        (["--k", "0"], "--k must be ≥ 1"),
        (["--bootstrap", "0"], "--bootstrap must be ≥ 1"),
        (["--max-new-tokens", "0"], "--max-new-tokens must be ≥ 1"),
        (["--short-side", "-3"], "--short-side must be ≥ 1"),
        (["--threads", "0"], "--threads must be ≥ 1"),
        (["--modes", "teacher_forced,free"], "--modes"),
        (["--modes", ","], "--modes"),
        (["--images", "folder"], "--images folder needs --image-dir"),
        (["--images", "folder", "--image-dir", "{tmp}/nowhere"], "does not exist"),
        (["--images", "folder", "--image-dir", "{tmp}/file.txt"], "not a folder"),
        (["--images", "coco", "--image-dir", "{tmp}"], "needs --coco-annotations"),
        (["--images", "coco", "--image-dir", "{tmp}", "--coco-annotations", "{tmp}/no.json"],
         "no COCO annotation file"),
        (["--images", "coco", "--image-dir", "{tmp}", "--coco-annotations", "{tmp}/bad.json"],
         "not valid JSON"),
        (["--images", "folder", "--image-dir", "{tmp}", "--regions", "sam"], "--sam-model"),
        (["--images", "folder", "--image-dir", "{tmp}/empty"], "no usable images"),
        (["--image-dir", "{tmp}"], "--image-dir needs --images coco or folder"),
        (["--out", "{tmp}/file.txt/r"], "file.txt"),
        (["--figures", "{tmp}/file.txt"], "file.txt"),
    ],
)  # fmt: skip
def test_bad_arguments_fail_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert message in bad_job_run("attn_alignment", tmp_path, capsys, extra)


@pytest.mark.slow
def test_outputs_default_to_results_under_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = load_experiment("attn_alignment")
    args = job.parse_args([])
    assert args.out == Path("results/attn_alignment")
    assert args.figures == Path("results/attn_alignment/figures")
    assert job.parse_args(["--out", "x"]).figures == Path("x/figures")
    assert job.parse_args(["--figures", "figures"]).figures == Path("figures")


@pytest.mark.slow
def test_a_folder_of_photos_runs_with_superpixel_regions_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image
    from skimage import data

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(data.astronaut()).resize((256, 256)).save(photos / "astronaut.png")
    Image.fromarray(data.chelsea()).save(photos / "chelsea.jpg")
    monkeypatch.chdir(tmp_path)
    job = load_experiment("attn_alignment")
    argv = ["--images", "folder", "--image-dir", "photos", "--short-side", "160", "--limit", "2",
            "--modes", "teacher_forced", "--bootstrap", "50", "--no-progress"]  # fmt: skip
    assert job.main(argv) == 0
    out = tmp_path / "results" / "attn_alignment"
    mentions = pd.read_csv(out / "mentions.csv")
    assert "position" in mentions.columns and (mentions["captured"]).all()
    assert set(mentions["image"]) == {"astronaut.png", "chelsea.jpg"}
    assert mentions["answer"].str.startswith("1. region").all()
    assert (out / "figures" / "attn_top_patches.png").stat().st_size > 1000
    run = json.loads((out / "summary.json").read_text())["run"]
    assert run["images"] == {"source": f"folder {Path('photos').resolve()} (regions: superpixels)",
                             "count": 2}  # fmt: skip
    assert run["arguments"]["describe"] == "region" and run["arguments"]["limit"] == 2
    assert run["arguments"]["out"] == "results/attn_alignment"
    assert set(run["models"]) == {"baseline", "SoM"}
    assert run["somprobe_version"]
