"""The toy-model training job: three matched arms, the stage-1 gate, cards and curves."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from somprobe_testing import load_experiment

from somprobe.models import load_model


@pytest.mark.slow
def test_smoke_run_trains_three_matched_arms_and_ships_seed_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = load_experiment("train_toy_models")
    out, work = tmp_path / "models", tmp_path / "work"
    argv = ["--smoke", "--out", str(out), "--work", str(work), "--no-progress", "--sequential"]
    assert job.main(argv) == 0
    digests, steps = set(), {}
    for arm in ("baseline", "som", "control"):
        folder = out / f"toy-{arm}"
        model, _ = load_model(folder)
        assert model.dtype.is_floating_point
        card = json.loads((folder / "training.json").read_text())
        digests.add(card["instruction_digest"])
        steps[arm] = card["steps"]
        assert card["world"] == "v2" and card["seed"] == 0 and card["stage1_steps"] == 4
        assert card["hyperparameters"]["order"] == "sequential"
        assert card["hyperparameters"]["loss"] == "turn"
        assert card["hyperparameters"]["lr_scheduler"] == "cosine_with_min_lr"
        assert "Held-out scores" in (folder / "README.md").read_text()
        check = json.loads((folder / "check_sample.json").read_text())
        assert check["n"] == job.CHECK_SCENES and check["world"] == "v2"
        assert not list(folder.glob("*.tmp"))
    assert len(digests) == 1  # identical instruction records in identical order
    assert steps == {"baseline": 10, "som": 13, "control": 13}  # 320 and 320 + 80 records
    gate = json.loads((work / "seed0" / "stage1" / "gate.json").read_text())
    assert gate["passed"] and gate["step"] == 4
    # the thread count is recorded: results are bit-identical only for the same one
    assert gate["device"] == f"cpu ({torch.get_num_threads()} threads)"
    assert card["device"] == gate["device"]  # --sequential: the arms in this process
    assert gate["vision_warmup"]["steps"] == 3 and gate["vision_warmup"]["objects"] > 0
    assert "Vision warm-up" in (out / "toy-som" / "README.md").read_text()
    results = pd.read_csv(out / "toy_arms_results.csv")
    assert set(results["arm"]) == {"baseline", "som", "control"} and set(results["seed"]) == {0}
    curve = pd.read_csv(out / "toy_training_curve.csv")
    assert {"listing/all/list_accuracy", "instruct/shape/accuracy"} <= set(curve["metric"])
    # a second run finds everything done and trains nothing
    assert job.main(argv) == 0
    assert json.loads((work / "seed0" / "som" / "scores.json").read_text())["steps"] == 13
    # the stage-1 gate is enforced: an unreachable gate stops seed 1 after stage 1 (the
    # same data folder) and no arm of that seed is trained; the job goes on with the seed
    # after it (0: done, so it rewrites the results) and ends with an error naming seed 1
    capsys.readouterr()
    (out / "toy_arms_results.csv").unlink()
    assert job.main([*argv, "--seeds", "1", "0", "--gate", "0.99"]) == 2
    err = capsys.readouterr().err
    assert "1 of 2 seeds trained no arm" in err and "seed 1: stage 1 did not pass the gate" in err
    gate = json.loads((work / "seed1" / "stage1" / "gate.json").read_text())
    assert gate["passed"] is False and gate["step"] == 8
    assert not (work / "seed1" / "som").exists()
    assert set(pd.read_csv(out / "toy_arms_results.csv")["seed"]) == {0}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--lr", "0"], "--lr must be > 0"),
        (["--warmup", "-5"], "--warmup must be ≥ 0"),
        (["--seeds", "0", "0"], "--seeds must be distinct"),
        (["--gate", "1.5"], "--gate must lie in [0, 1]"),
        (["--som-share", "0"], "--som-share must lie in (0, 1]"),
        (["--out", "{tmp}/file.txt/m"], "file.txt is a file"),
        (["--instruct-records", "30000"], "exceeds --instruct-pool 25600"),
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


def test_a_dataset_written_with_other_sizes_is_refused_not_reused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The stage-1 scenes come after the instruction pool, so a dataset written with another
    pool (or seed, sizes) holds other data: the job refuses it instead of training on it."""
    job = load_experiment("train_toy_models")
    work = tmp_path / "w"
    argv = ["--smoke", "--out", str(tmp_path / "m"), "--work", str(work), "--no-progress",
            "--stage1-max-steps", "1", "--vision-steps", "0", "--arms", "som"]  # fmt: skip
    args = job.parse_args(argv)
    job.data_dir(args)  # writes the smoke dataset (instruction pool 320)
    job.data_dir(args)  # the same arguments: reused
    for extra, message in (
        (
            ["--instruct-pool", "640", "--instruct-records", "320"],
            "--instruct-pool 320 (asked: 640)",
        ),
        (["--world-seed", "3"], "--world-seed 0 (asked: 3)"),
        (["--stage1-records", "640"], "--stage1-records 320 (asked: 640)"),
    ):
        assert job.main([*argv, *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and "another --work" in err, err
    assert not (work / "seed0").exists()  # refused before any training
    # a smaller --instruct-records is a matched subset of the same pool, not new data
    small = job.parse_args([*argv, "--instruct-records", "160"])
    job.check_dataset(job.load_arms_manifest(work / "data"), small, work / "data")
