"""The tag-listing / POPE job runs end to end on a few scenes and writes sane outputs."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest
from somprobe_testing import bad_job_run, load_experiment


def load_job() -> ModuleType:
    return load_experiment("listing_eval")


@pytest.mark.slow
def test_listing_job_on_a_small_limit(tmp_path: Path) -> None:
    job = load_job()
    out, figures = tmp_path / "results", tmp_path / "figures"
    args = ["--limit", "4", "--out", str(out), "--figures", str(figures), "--bootstrap", "100"]
    assert job.main([*args, "--no-progress"]) == 0

    summary = pd.read_csv(out / "summary.csv")
    assert {"model", "task", "setting", "metric", "value", "low", "high", "n"} <= set(summary)
    assert set(summary["model"]) == {"baseline", "SoM"}
    assert set(summary["setting"]) == {"all", "random", "popular", "adversarial"}
    listing_metrics = {"list_accuracy", "recall", "exact_rate", "colour_accuracy", "shape_accuracy"}
    assert listing_metrics <= set(summary.loc[summary["task"] == "listing", "metric"])
    assert "f1" in set(summary.loc[summary["task"] == "pope", "metric"])
    assert (summary["n"] == 4).all()
    for r in summary.itertuples():
        if math.isnan(r.value):  # e.g. list accuracy of a model that listed nothing
            continue
        assert -1e-9 <= r.low <= r.value + 1e-9 and r.value <= r.high + 1e-9 <= 1 + 2e-9, r

    items = pd.read_csv(out / "listing_items.csv")
    assert len(items) == 8 and set(items["scene"]) == {f"eval_00000{i}" for i in range(4)}
    for model, group in items.groupby("model"):  # point estimates are the pooled ratios
        row = summary[(summary["model"] == model) & (summary["metric"] == "recall")].iloc[0]
        assert row["value"] == pytest.approx(group["correct"].sum() / group["tags"].sum())
    pope = pd.read_csv(out / "pope_items.csv")
    assert set(pope["label"]) == {"yes", "no"} and len(pope) > 0

    comparison = pd.read_csv(out / "comparison.csv")
    assert {"diff", "low", "high", "value_a", "value_b", "n"} <= set(comparison)
    finite = comparison.dropna(subset=["diff"])
    assert not finite.empty
    assert ((finite["diff"] - (finite["value_b"] - finite["value_a"])).abs() < 1e-9).all()
    assert (finite["low"] <= finite["diff"] + 1e-9).all()
    assert (finite["diff"] <= finite["high"] + 1e-9).all()
    assert (figures / "listing_accuracy.png").stat().st_size > 1000
    run = json.loads((out / "run.json").read_text())["run"]
    assert run["images"]["count"] == 4 and "toy world" in run["images"]["source"]
    assert set(run["models"]) == {"baseline", "SoM"} and run["somprobe_version"]
    assert run["arguments"]["out"] == str(out) and run["arguments"]["bootstrap"] == 100


@pytest.mark.slow
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--limit", "0"], "--limit must be ≥ 1"),
        (["--base", "/nonexistent/model-a", "--som", "/nonexistent/model-b"], "neither a local"),
        (["--base", "/nonexistent/model-a"], "give both --base and --som"),
    ],
)
def test_bad_input_is_a_clear_error_with_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    job = load_job()
    args = ["--out", str(tmp_path / "r"), "--figures", str(tmp_path / "f"), "--no-progress"]
    assert job.main([*args, *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("listing_eval: error:") and message in err
    assert not (tmp_path / "f" / "listing_accuracy.png").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--batch-size", "0"], "--batch-size must be ≥ 1"),
        (["--bootstrap", "-1"], "--bootstrap must be ≥ 1"),
        (["--threads", "0"], "--threads must be ≥ 1"),
        (["--out", "{tmp}/file.txt/r"], "file.txt is a file"),
        (["--figures", "{tmp}/file.txt"], "file.txt is a file"),
    ],
)
def test_bad_arguments_fail_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert message in bad_job_run("listing_eval", tmp_path, capsys, extra)


def test_outputs_default_to_results_under_the_working_folder() -> None:
    job = load_job()
    args = job.parse_args([])
    assert args.out == Path("results/listing_eval")
    assert args.figures == Path("results/listing_eval/figures")
    assert job.parse_args(["--figures", "figures"]).figures == Path("figures")
