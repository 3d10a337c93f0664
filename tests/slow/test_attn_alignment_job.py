"""The main job runs end to end on a small limit and writes its outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from somprobe_testing import load_experiment


@pytest.mark.slow
def test_main_job_on_a_small_limit(tmp_path: Path) -> None:
    job = load_experiment("attn_alignment")
    out, figures = tmp_path / "results", tmp_path / "figures"
    args = ["--limit", "4", "--out", str(out), "--figures", str(figures), "--bootstrap", "200"]
    assert job.main([*args, "--max-new-tokens", "24", "--no-progress"]) == 0
    scores = pd.read_csv(out / "scores.csv.gz")
    assert set(scores["model"]) == {"baseline", "SoM"}
    assert {"share_object", "lift_object", "auroc", "layer", "head"} <= set(scores.columns)
    comparison = pd.read_csv(out / "comparison.csv")
    assert {"ci_low", "ci_high", "p_adjusted"} <= set(comparison.columns)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 4
    for name in ("attn_layer_curves_teacher_forced.png", "attn_top_patches.png"):
        assert (figures / name).stat().st_size > 1000
