"""The toy-model training job runs end to end on a tiny budget and writes what it ships."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from somprobe_testing import load_experiment

from somprobe.models import load_model

TINY = [
    "--train-scenes", "40", "--eval-scenes", "8", "--stage1-steps", "2", "--steps", "4",
    "--batch-size", "4", "--eval-every", "2", "--eval-samples", "2",
    "--final-eval-samples", "2", "--threads", "1", "--no-progress",
]  # fmt: skip


@pytest.mark.slow
def test_training_job_writes_models_cards_checks_and_curve(tmp_path: Path) -> None:
    job = load_experiment("train_toy_models")
    out, work = tmp_path / "models", tmp_path / "work"
    assert job.main([*TINY, "--out", str(out), "--work", str(work)]) == 0

    for name in ("baseline", "som"):
        folder = out / f"toy-{name}"
        model, _ = load_model(folder)
        assert model.dtype.is_floating_point
        card = json.loads((folder / "training.json").read_text())
        assert card["steps"] == 4 and card["stage1_steps"] == 2 and card["seed"] == 0
        assert "Held-out scores" in (folder / "README.md").read_text()
        check = json.loads((folder / "check_sample.json").read_text())
        assert check["n"] == job.CHECK_SCENES
        assert set(check["listing"]) == {
            "list_accuracy", "recall", "colour_accuracy", "shape_accuracy",
        }  # fmt: skip
        for value in check["listing"].values():  # null where nothing was listed
            assert value is None or 0.0 <= value <= 1.0
        assert not list(folder.glob("*.tmp"))

    curve = pd.read_csv(out / "toy_training_curve.csv")
    assert set(curve["model"]) == {"baseline", "som"}
    assert set(curve["step"]) == {0, 2, 4}  # 0: before stage 2
    assert "list_accuracy" in set(curve["metric"])
    run = json.loads((out / "toy_training_run.json").read_text())
    assert run["wall_seconds"] > 0 and run["parallel"] is False


@pytest.mark.slow
def test_training_job_rejects_a_negative_step_count(tmp_path: Path) -> None:
    job = load_experiment("train_toy_models")
    with pytest.raises(SystemExit):
        job.main(["--steps", "-1", "--out", str(tmp_path / "m"), "--work", str(tmp_path / "w")])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--lr", "0"], "--lr must be > 0"),
        (["--warmup", "-5"], "--warmup must be ≥ 0"),
        (["--out", "{tmp}/file.txt/m"], "file.txt is a file"),
    ],
)
def test_training_job_rejects_bad_arguments_before_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    (tmp_path / "file.txt").write_text("x")
    job = load_experiment("train_toy_models")
    argv = ["--out", str(tmp_path / "m"), "--work", str(tmp_path / "w")]
    with pytest.raises(SystemExit) as exit_:
        job.main([*argv, *(a.replace("{tmp}", str(tmp_path)) for a in extra)])
    assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "m").exists() and not (tmp_path / "w").exists()
