"""experiments/causal_tags.py on the shipped arms: tables, checks built into the method, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from somprobe_testing import bad_job_run, load_experiment

from somprobe.data.toyworld import world

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_causal_job_writes_every_arm_window_and_condition(tmp_path: Path) -> None:
    job = load_experiment("causal_tags")
    out = tmp_path / "r"
    argv = ["--limit", "4", "--batch-size", "4", "--bootstrap", "200", "--threads", "1",
            "--out", str(out), "--figures", str(tmp_path / "f"), "--no-progress"]  # fmt: skip
    assert job.main(argv) == 0
    summary = pd.read_csv(out / "summary.csv")
    drops = summary[summary["metric"] == "drop"]
    control = {"control"} if (ROOT / "models" / "toy-control").is_dir() else set()
    shipped = {"baseline", "som"} | control
    assert set(drops["model"]) == shipped
    assert set(drops["condition"]) == {"object", "mark", "random"}
    assert set(drops["window"]) == {"L0", "L1", "L2", "L3", "all"}
    assert drops["chance"].isna().all()
    categories = world(json.loads((out / "summary.json").read_text())["world"]).categories
    assert (summary[summary["metric"] == "correct"]["chance"] == 1 / len(categories)).all()
    listing = pd.read_csv(out / "listing_som.csv")
    # the random set is size-matched to the object set, item by item
    assert set(listing["scope"]) == {"tag", "line"}
    wide = listing[(listing["window"] == "all") & (listing["scope"] == "tag")].pivot_table(
        index=["scene", "tag_id"], columns="condition", values="n_keys"
    )
    assert (wide["object"] == wide["random"]).all() and (wide["object"] > 0).any()
    empty = listing[(listing["condition"] == "object") & (listing["n_keys"] == 0)]
    assert empty["drop"].isna().all()  # no object set: NaN, never 0
    # a knockout can only change a row through the knocked edges: "none" is the plain answer
    qa = pd.read_csv(out / "qa_som.csv")
    assert set(qa[qa["window"] == "none"]["condition"]) == {"none"}
    patch = pd.read_csv(out / "patching_som.csv")
    last = patch[patch["layer"] == patch["layer"].max()]
    # the last layer's output at image positions reaches no later token: nothing restored
    assert np.allclose(last["patched"], last["corrupted"], atol=1e-6)
    comp = pd.read_csv(out / "comparison.csv")
    assert len(comp[comp["comparison"].str.startswith("object")]) == len(shipped) * 2 * 5
    assert len(comp[comp["comparison"].str.startswith("som")]) == 2 * 3 * 5
    # knocking the tag number's edges at the last layer cannot reach a later token
    last = listing[(listing["window"] == "L3") & (listing["scope"] == "tag")]
    assert np.allclose(last["drop"].dropna(), 0.0, atol=1e-6)
    assert (tmp_path / "f" / "causal_knockout.png").is_file()
    assert (tmp_path / "f" / "causal_patching.png").is_file()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model", "som"], "--model needs NAME=PATH"),
        (["--model", "a=x", "--model", "a=y"], "given twice"),
        (["--limit", "0"], "--limit must be ≥ 1"),
        (["--threads", "0"], "--threads must be ≥ 1"),
    ],
)
def test_causal_job_rejects_bad_arguments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert message in bad_job_run("causal_tags", tmp_path, capsys, extra)
