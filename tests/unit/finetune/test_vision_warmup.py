"""The vision warm-up: only the vision tower changes, on the features the projector reads."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from somprobe.data.toyworld import world
from somprobe.errors import InputError
from somprobe.finetune.vision_warmup import (
    RESULT_FILE,
    _features,
    load_warmup_result,
    vision_patch_features,
    warmup_vision,
)
from somprobe.models import load_model

SMALL = {"steps": 3, "batch_size": 4, "eval_scenes": 6, "eval_every": 2, "progress": False}


def test_only_the_vision_tower_changes(tiny_llava_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "warm"
    result = warmup_vision(tiny_llava_path, out, world("v2"), **SMALL)
    before = load_file(tiny_llava_path / "model.safetensors")
    after = load_file(out / "model.safetensors")
    assert before.keys() == after.keys()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("vision_tower" in k for k in changed)
    assert any("vision_tower" in k and "encoder.layers" in k for k in changed)
    assert [row["step"] for row in result.curve] == [2, 3]
    assert result.objects > 0 and 0 <= result.shape_accuracy <= 1
    assert load_warmup_result(out) == result
    assert json.loads((out / RESULT_FILE).read_text())["steps"] == 3
    model, _ = load_model(out)
    assert all(p.requires_grad for p in model.parameters())


def test_same_seed_same_weights(tiny_llava_path: Path, tmp_path: Path) -> None:
    a = warmup_vision(tiny_llava_path, tmp_path / "a", world("v2"), seed=1, **SMALL)
    b = warmup_vision(tiny_llava_path, tmp_path / "b", world("v2"), seed=1, **SMALL)
    c = warmup_vision(tiny_llava_path, tmp_path / "c", world("v2"), seed=2, **SMALL)
    wa, wb, wc = (load_file(tmp_path / n / "model.safetensors") for n in "abc")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)
    assert a.curve == [{**r, "seconds": a.curve[i]["seconds"]} for i, r in enumerate(b.curve)]
    assert c.settings["seed"] == 2


def test_features_are_what_the_projector_reads(tiny_llava) -> None:  # type: ignore[no-untyped-def]
    model, processor = tiny_llava
    from somprobe.data.toyworld import make_scene

    pixels = processor.image_processor([make_scene(world("v2"), i).image for i in range(2)],
                                       return_tensors="pt")["pixel_values"]  # fmt: skip
    with torch.no_grad():
        ours = model.model.multi_modal_projector(_features(model, pixels))
        theirs = model.get_image_features(pixel_values=pixels)
    theirs = theirs.pooler_output if hasattr(theirs, "pooler_output") else theirs
    theirs = torch.stack(list(theirs)) if isinstance(theirs, list | tuple) else theirs
    torch.testing.assert_close(ours, theirs.reshape(ours.shape), rtol=0, atol=1e-6)


def test_bad_input(tiny_llava_path: Path, tmp_path: Path) -> None:
    for bad in (
        {"steps": 0},
        {"batch_size": 0},
        {"lr": 0.0},
        {"eval_every": 0},
        {"min_share": 0.0},
    ):
        with pytest.raises(InputError):
            warmup_vision(tiny_llava_path, tmp_path / "x", world("v2"), **{**SMALL, **bad})
    other = dataclasses.replace(world("v2"), image_size=140, min_gap=0.5)
    with pytest.raises(InputError, match="140 px"):
        warmup_vision(tiny_llava_path, tmp_path / "x", other, **SMALL)
    assert not (tmp_path / "x").exists()
    (tmp_path / "exists").mkdir()
    with pytest.raises(InputError, match="exists"):
        warmup_vision(tiny_llava_path, tmp_path / "exists", world("v2"), **SMALL)


def test_patch_features_hold_every_layer_and_the_projector_input(tiny_llava) -> None:  # type: ignore[no-untyped-def]
    model, processor = tiny_llava
    from somprobe.data.toyworld import make_scene

    scenes = [make_scene(world("v2"), i) for i in range(3)]
    feats = vision_patch_features(model, processor, scenes, batch_size=2)
    vision = model.config.vision_config
    grid = vision.image_size // vision.patch_size
    assert feats.shape == (vision.num_hidden_layers + 1, 3, grid * grid, vision.hidden_size)
    pixels = processor.image_processor([s.image for s in scenes], return_tensors="pt")
    with torch.no_grad():
        reads = _features(model, pixels["pixel_values"])
    torch.testing.assert_close(feats[model.config.vision_feature_layer], reads)
    one = vision_patch_features(model, processor, scenes[2:])
    torch.testing.assert_close(feats[:, 2:], one, rtol=1e-5, atol=1e-5)
    with pytest.raises(InputError, match="at least one scene"):
        vision_patch_features(model, processor, [])
    with pytest.raises(InputError, match="batch_size"):
        vision_patch_features(model, processor, scenes, batch_size=0)
