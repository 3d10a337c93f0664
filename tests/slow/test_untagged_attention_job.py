"""The untagged-image job (paper Figs. 2, 7–8) runs end to end on a small limit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from somprobe_testing import bad_job_run, load_experiment

from somprobe.data.toyworld import WorldConfig
from somprobe.errors import InputError
from somprobe.models import build_prompt, load_model, prepare_inputs

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "experiments" / "untagged_attention.py"


def _job() -> ModuleType:
    return load_experiment("untagged_attention")


@pytest.mark.slow
def test_job_on_a_small_limit(tmp_path: Path) -> None:
    out, figures = tmp_path / "results", tmp_path / "figures"
    args = ["--limit", "3", "--out", str(out), "--figures", str(figures), "--bootstrap", "200"]
    assert (
        _job().main([*args, "--max-new-tokens", "6", "--figure-scenes", "2", "--no-progress"]) == 0
    )

    answers = pd.read_csv(out / "answers.csv")
    assert set(answers.columns) >= {
        "model",
        "image",
        "qid",
        "kind",
        "question",
        "answer",
        "correct",
    }
    assert set(answers["model"]) == {"baseline", "SoM"}
    assert set(answers["kind"]) <= {"colour", "shape", "exists"}
    assert answers["correct"].dtype == bool
    by_model = answers.groupby("model")["qid"].apply(sorted)
    assert by_model["baseline"] == by_model["SoM"]  # the same questions to both models
    n_questions = len(by_model["SoM"])
    assert n_questions >= 3  # at least one question per scene

    scores = pd.read_csv(out / "scores.csv")
    needed = {"model", "qid", "tokens", "layer", "head", "mass_object", "image_share_object",
              "lift_object", "auroc"}  # fmt: skip
    assert needed <= set(scores.columns)
    assert set(scores["tokens"]) == {"question_word", "answer"}
    assert scores["layer"].between(0, 3).all() and scores["head"].between(0, 3).all()
    assert scores["image_share_object"].between(0, 1).all()
    shares = scores[["image_share_object", "image_share_other", "image_share_rest"]].sum(axis=1)
    np.testing.assert_allclose(shares, 1.0, atol=1e-6)
    # absolute masses: the object's is its share of the image's, and image + text = 1
    kept = scores["mass_image"] - scores["mass_sink"]
    np.testing.assert_allclose(
        scores["mass_object"], scores["image_share_object"] * kept, atol=1e-9
    )
    np.testing.assert_allclose(scores["mass_image"] + scores["mass_text"], 1.0, atol=1e-4)
    auroc = scores["auroc"].dropna()
    assert len(auroc) and auroc.between(0, 1).all()
    words = scores[(scores["tokens"] == "question_word") & (scores["model"] == "SoM")]
    assert words["qid"].nunique() == n_questions  # every question's object word scored

    comparison = pd.read_csv(out / "comparison.csv")
    assert {"metric", "tokens", "layer", "ci_low", "ci_high", "p_adjusted"} <= set(
        comparison.columns
    )
    ok = comparison.dropna(subset=["ci_low", "ci_high"])
    assert len(ok) and (ok["ci_low"] <= ok["ci_high"]).all()

    summary = json.loads((out / "summary.json").read_text())
    assert summary["scenes"] == 3
    assert sum(summary["questions"].values()) == n_questions
    for model in ("baseline", "SoM"):
        assert 0 <= summary["answers"][model]["accuracy"] <= 1
    share = summary["question_word"]["image_share_object"]
    assert share["ci95"][0] <= share["ci95"][1]
    assert [r["layer"] for r in share["layers"]] == [0, 1, 2, 3]  # every layer, not the best
    assert share["n_scenes"] <= 3
    for name in ("untagged_attention_layers.png", "query_top20_patches.png"):
        assert (figures / name).stat().st_size > 1000
    run = summary["run"]
    assert run["images"]["count"] == 3 and "untagged" in run["images"]["source"]
    assert set(run["models"]) == {"baseline", "SoM"} and run["somprobe_version"]
    assert run["arguments"]["kinds"] == ["colour", "shape", "exists"]


@pytest.mark.slow
def test_bad_limit_exits_with_code_2(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--limit", "0", "--out", str(tmp_path / "r"),
         "--figures", str(tmp_path / "f")],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert run.returncode == 2
    assert "--limit must be at least 1" in run.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--k", "0"], "--k must be at least 1"),
        (["--top", "0"], "--top must be at least 1"),
        (["--bootstrap", "0"], "--bootstrap must be at least 1"),
        (["--figure-layer", "-1"], "--figure-layer must be 0 or more"),
        (["--kinds", "colour,smell"], "--kinds must name kinds"),
        (["--out", "{tmp}/file.txt/r"], "file.txt is a file"),
        (["--figures", "{tmp}/file.txt"], "file.txt is a file"),
    ],
)
def test_bad_arguments_fail_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert message in bad_job_run("untagged_attention", tmp_path, capsys, extra)


def test_outputs_default_to_results_under_the_working_folder() -> None:
    args = _job().parse_args([])
    assert args.out == Path("results/untagged_attention")
    assert args.figures == Path("results/untagged_attention/figures")


@pytest.mark.slow
def test_an_object_word_the_prompt_lacks_is_an_input_error() -> None:
    job = _job()
    _, processor = load_model(ROOT / "models" / "toy-som", dtype="float32")
    side = WorldConfig().image_size
    image = Image.new("RGB", (side, side))
    inputs = prepare_inputs(
        processor, [image], [build_prompt(processor, "What colour is the star?")]
    )
    ids = inputs["input_ids"][0].tolist()
    positions = job.phrase_positions(processor.tokenizer, ids, "star")
    assert len(positions) == 1 and processor.tokenizer.decode([ids[positions[0]]]).strip() == "star"
    with pytest.raises(InputError, match="'hexagon' do not occur"):
        job.phrase_positions(processor.tokenizer, ids, "hexagon")
