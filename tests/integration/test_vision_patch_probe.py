"""The vision patch probe: one sample per owned patch, every layer, per-shape scores that add up."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from somprobe_testing import load_experiment

from somprobe.data.toyworld import make_scene, world
from somprobe.data.toyworld.patch_labels import object_shares


def test_scores_cover_every_layer_and_every_owned_patch(
    tiny_llava_path: Path, tmp_path: Path
) -> None:
    job = load_experiment("vision_patch_probe")
    out = tmp_path / "out"
    argv = ["--model", f"tiny={tiny_llava_path}", "--scenes", "12", "--bootstrap", "20"]
    assert job.main([*argv, "--out", str(out)]) == 0
    scores = pd.read_csv(out / "scores.csv")
    per_shape = pd.read_csv(out / "per_shape.csv")
    layers = sorted(scores["layer"].unique())
    assert layers == list(range(len(layers))) and len(layers) >= 2
    assert set(scores["target"]) == {"shape", "colour"}
    assert scores.groupby("target").size().tolist() == [len(layers)] * 2
    assert scores["projector_reads"].sum() == 2
    cfg = world("v2")
    owned = sum(
        int((object_shares(make_scene(cfg, (0, job.SCENE_CODE, i))).max(axis=0) >= 0.25).sum())
        for i in range(12)
    )
    assert ((scores["n_train"] + scores["n_test"]) == owned).all()
    shape = scores[scores["target"] == "shape"].set_index("layer")
    for layer, group in per_shape.groupby("layer"):
        assert group["n"].sum() == shape.loc[layer, "n_test"]
        weighted = float(np.average(group["accuracy"], weights=group["n"]))
        assert weighted == pytest.approx(shape.loc[layer, "value"])
    assert (scores["chance"] > 0).all() and (scores["chance"] < 1).all()


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--model", "no-equals-sign"], "LABEL=PATH"),
        (["--model", "x=/does/not/exist"], "not a folder"),
        (["--scenes", "5"], "--scenes"),
        (["--bootstrap", "-1"], "--bootstrap"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(
    argv: list[str], match: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = load_experiment("vision_patch_probe")
    assert job.main([*argv, "--out", str(tmp_path / "out")]) == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
