"""Presets, training arguments, and the shipped accelerate / DeepSpeed configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from somprobe.errors import InputError
from somprobe.finetune import PRESETS, ZERO3_CONFIG, get_preset, training_arguments

ROOT = Path(__file__).resolve().parents[3]


def test_som_llava_preset_is_the_papers_recipe() -> None:
    p = PRESETS["som-llava-1.5"]
    assert (p.learning_rate, p.lr_scheduler, p.warmup, p.epochs) == (2e-5, "cosine", 0.03, 1.0)
    assert p.global_batch_size == 128 and p.bf16 and p.gradient_checkpointing
    assert p.trainable == "projector+lm" and p.image_aspect_ratio == "pad"
    assert p.template == "vicuna_v1" and p.max_length == 2048
    assert p.deepspeed is not None and p.deepspeed["zero_optimization"]["stage"] == 3


def test_toy_preset() -> None:
    p = PRESETS["toy"]
    assert (p.learning_rate, p.warmup, p.weight_decay, p.global_batch_size) == (1e-3, 100, 0.05, 32)
    assert p.lr_scheduler == "cosine_with_min_lr" and p.lr_scheduler_kwargs == {"min_lr_rate": 0.1}


def test_overrides_and_errors() -> None:
    p = get_preset("toy", learning_rate=5e-4, max_steps=None)
    assert p.learning_rate == 5e-4 and p.max_steps == -1
    with pytest.raises(InputError, match="unknown finetune preset"):
        get_preset("huge")
    with pytest.raises(InputError, match="unknown preset field"):
        get_preset("toy", lr=1.0)
    with pytest.raises(InputError, match="trainable"):
        get_preset("toy", trainable="vision")


def test_global_batch_by_accumulation(tmp_path: Path) -> None:
    preset = get_preset("som-llava-1.5")
    eight = training_arguments(preset, tmp_path, world_size=8, deepspeed=None)
    one = training_arguments(preset, tmp_path, world_size=1, deepspeed=None)
    assert eight.gradient_accumulation_steps == 1 and one.gradient_accumulation_steps == 8
    assert one.per_device_train_batch_size == 16 and one.learning_rate == 2e-5
    assert one.lr_scheduler_type.value == "cosine" and one.warmup_steps == 0.03
    with pytest.raises(InputError, match="not a multiple"):
        training_arguments(preset, tmp_path, world_size=3, deepspeed=None)


def test_preset_zero3_is_dropped_without_gpu(tmp_path: Path) -> None:
    args = training_arguments(get_preset("som-llava-1.5", bf16=False), tmp_path, world_size=8)
    assert args.deepspeed is None  # this machine has no GPU


def test_shipped_configs_match() -> None:
    zero3 = json.loads((ROOT / "configs/deepspeed/zero3.json").read_text())
    assert zero3 == ZERO3_CONFIG
    for name in ("multi-gpu", "zero3", "cpu-2proc"):
        config = yaml.safe_load((ROOT / f"configs/accelerate/{name}.yaml").read_text())
        assert config["num_machines"] == 1 and config["num_processes"] >= 2
    ds = yaml.safe_load((ROOT / "configs/accelerate/zero3.yaml").read_text())
    assert ds["distributed_type"] == "DEEPSPEED"
    assert (ROOT / ds["deepspeed_config"]["deepspeed_config_file"]).is_file()
