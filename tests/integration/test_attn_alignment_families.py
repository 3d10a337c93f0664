"""``experiments/attn_alignment.py --base <tiny LLaVA-NeXT> --som <tiny Qwen2.5-VL>`` end to
end. Both models have random weights: this checks the plumbing (two families with
different image tokens through one run, tables, comparison and figures), never what the
numbers say about SoM training."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from somprobe_testing import load_experiment

from somprobe.models import build_tiny_llava_next, build_tiny_qwen2_5_vl

pytestmark = pytest.mark.integration


def test_llava_next_against_qwen_runs_end_to_end(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    base = build_tiny_llava_next(tmp_path / "next")
    som = build_tiny_qwen2_5_vl(tmp_path / "qwen")
    job = load_experiment("attn_alignment")
    out, figures = tmp_path / "results", tmp_path / "figures"
    args = ["--base", str(base), "--som", str(som), "--world", "v1", "--limit", "2"]
    args += ["--out", str(out), "--figures", str(figures), "--bootstrap", "20"]
    args += ["--permutations", "20", "--max-new-tokens", "8", "--threads", "1", "--no-progress"]
    assert job.main(args) == 0
    scores = pd.read_csv(out / "scores.csv.gz")
    assert set(scores["model"]) == {"baseline", "SoM"}
    tf = scores[scores["mode"] == "teacher_forced"]
    kept = tf.groupby("model")["n_kept"].max()
    extra = tf.groupby("model")["mass_image_extra"].min()
    # LLaVA-NeXT: base + tile tokens scored, its image newlines outside; Qwen: one grid
    assert kept["baseline"] > 16 and extra["baseline"] > 0
    assert kept["SoM"] == 16 and extra["SoM"] == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 2
    assert summary["run"]["models"] == {"baseline": str(base), "SoM": str(som)}
    comparison = pd.read_csv(out / "comparison.csv")
    assert set(comparison["metric"]) == set(job.METRICS)
    for name in ("attn_layer_curves_teacher_forced.png", "attn_top_patches.png"):
        assert (figures / name).stat().st_size > 1000
