"""The tag-token probing job runs end to end on a few scenes and writes sane outputs."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest
from somprobe_testing import bad_job_run, load_experiment


def load_job() -> ModuleType:
    return load_experiment("probe_tags")


@pytest.mark.slow
def test_probe_job_on_a_small_limit(tmp_path: Path) -> None:
    job = load_job()
    out, figures = tmp_path / "results", tmp_path / "figures"
    args = ["--limit", "15", "--folds", "3", "--bootstrap", "100", "--targets", "colour,area"]
    assert job.main([*args, "--out", str(out), "--figures", str(figures), "--no-progress"]) == 0

    probes = pd.read_csv(out / "probes.csv")
    cols = {"model", "at", "layer", "target", "probe", "metric", "value", "ci_low", "ci_high"}
    assert cols <= set(probes) and "chance" in probes
    assert set(probes["model"]) == {"baseline", "SoM"}
    assert set(probes["target"]) == {"colour", "area"}
    assert set(probes["at"]) == {"number", "dot", "attribute"}
    controls = {"control", "binding", "number_baseline"}
    differences = {"selectivity", "task_minus_binding", "task_minus_number_baseline"}
    assert set(probes["probe"]) == {"task", "baseline", *controls, *differences}
    run = json.loads((out / "run.json").read_text())
    assert sorted(probes["layer"].unique()) == run["layers"] and len(run["layers"]) >= 2
    assert run["samples"] >= 2 * 15  # every toy scene has at least two tags
    acc = probes[(probes["metric"] == "accuracy") & ~probes["probe"].isin(differences)]
    assert acc["value"].between(0, 1).all() and not acc.empty
    assert set(probes.loc[probes["target"] == "area", "metric"]) == {"r2"}
    fitted = probes[~probes["probe"].isin(differences)]  # a difference of R² can pass 1
    assert (fitted.loc[fitted["metric"] == "r2", "value"] <= 1 + 1e-9).all()
    sel = probes[(probes["probe"] == "selectivity") & (probes["metric"] == "accuracy")]
    assert sel["value"].between(-1, 1).all() and not sel.empty
    assert (probes["ci_low"] <= probes["ci_high"] + 1e-9).all()

    comparison = pd.read_csv(out / "comparison.csv")
    assert {"value", "ci_low", "ci_high", "value_a", "value_b", "n_pairs"} <= set(comparison)
    task = comparison[comparison["probe"] == "task"]
    assert ((task["value"] - (task["value_b"] - task["value_a"])).abs() < 1e-9).all()
    for at in ("number", "dot", "attribute"):
        assert (figures / f"probe_layers_{at}.png").stat().st_size > 1000
    record = run["run"]
    assert record["images"]["count"] == 15 and "toy world" in record["images"]["source"]
    assert set(record["models"]) == {"baseline", "SoM"} and record["somprobe_version"]
    assert record["arguments"]["figures"] == str(figures) and record["arguments"]["folds"] == 3


@pytest.mark.slow
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--limit", "0"], "--limit must be ≥ 1"),
        (["--folds", "1"], "--folds must be ≥ 2"),
        (["--targets", "colour,smell"], "unknown --targets ['smell']"),
    ],
)
def test_bad_input_is_a_clear_error_with_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    job = load_job()
    args = ["--out", str(tmp_path / "r"), "--figures", str(tmp_path / "f"), "--no-progress"]
    assert job.main([*args, "--limit", "4", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("probe_tags: error:") and message in err
    assert not (tmp_path / "f").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--batch-size", "0"], "--batch-size must be ≥ 1"),
        (["--bootstrap", "0"], "--bootstrap must be ≥ 1"),
        (["--test-size", "1.0"], "--test-size"),
        (["--targets", " , "], "--targets is empty"),
        (["--out", "{tmp}/file.txt/r"], "file.txt is a file"),
        (["--figures", "{tmp}/file.txt/f"], "file.txt is a file"),
    ],
)
def test_bad_arguments_fail_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert message in bad_job_run("probe_tags", tmp_path, capsys, extra, "--limit", "4")


def test_outputs_default_to_results_under_the_working_folder() -> None:
    job = load_job()
    args = job.parse_args([])
    assert args.out == Path("results/probe_tags")
    assert args.figures == Path("results/probe_tags/figures")
