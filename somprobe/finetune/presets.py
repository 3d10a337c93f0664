"""Named training recipes: the SoM-LLaVA paper's, and one for the tiny toy models.

``som-llava-1.5`` is SoM-LLaVA's finetune of LLaVA-1.5 (from its stage-1 checkpoint):
full finetuning with the vision tower frozen, lr 2e-5, cosine schedule, warmup 3 %, one
epoch, global batch 128, bf16, gradient checkpointing, DeepSpeed ZeRO-3, sequences up to
2048 tokens, images padded to square, vicuna_v1 conversations.

``toy`` suits the ~5M-parameter toy LLaVA on a CPU: AdamW lr 1e-3, 100 warmup steps,
weight decay 0.05, batch 32, cosine decay to 0.1× the peak, every part trained (the toy
vision tower starts from random weights).

Example:
    >>> preset = get_preset("toy", learning_rate=5e-4)
    >>> preset.global_batch_size
    32
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

from somprobe.errors import InputError

Trainable = Literal["projector", "projector+lm", "all"]
TRAINABLE: tuple[str, ...] = ("projector", "projector+lm", "all")

#: DeepSpeed ZeRO-3 settings; "auto" values are filled in by the HF Trainer from the
#: training arguments. configs/deepspeed/zero3.json holds the same settings.
ZERO3_CONFIG: dict[str, Any] = {
    "bf16": {"enabled": "auto"},
    "fp16": {"enabled": "auto"},
    "train_micro_batch_size_per_gpu": "auto",
    "train_batch_size": "auto",
    "gradient_accumulation_steps": "auto",
    "gradient_clipping": "auto",
    "zero_optimization": {
        "stage": 3,
        "overlap_comm": True,
        "contiguous_gradients": True,
        "sub_group_size": 1_000_000_000,
        "reduce_bucket_size": "auto",
        "stage3_prefetch_bucket_size": "auto",
        "stage3_param_persistence_threshold": "auto",
        "stage3_max_live_parameters": 1_000_000_000,
        "stage3_max_reuse_distance": 1_000_000_000,
        "stage3_gather_16bit_weights_on_model_save": True,
    },
}


@dataclass(frozen=True)
class FinetunePreset:
    """Every hyperparameter of a run; override any field with :func:`get_preset`.

    ``warmup`` below 1 is a fraction of the steps, from 1 up a number of steps.
    ``global_batch_size`` is reached with gradient accumulation over
    ``per_device_batch_size`` × processes. ``max_steps`` > 0 overrides ``epochs``.
    """

    name: str
    learning_rate: float
    lr_scheduler: str = "cosine"
    lr_scheduler_kwargs: dict[str, Any] = field(default_factory=dict)
    warmup: float = 0.03
    weight_decay: float = 0.0
    epochs: float = 1.0
    max_steps: int = -1
    global_batch_size: int = 128
    per_device_batch_size: int = 16
    max_grad_norm: float = 1.0
    bf16: bool = False
    gradient_checkpointing: bool = False
    trainable: Trainable = "projector+lm"
    image_aspect_ratio: Literal["pad", "crop"] = "pad"
    template: Literal["auto", "chat", "vicuna_v1"] = "auto"
    max_length: int | None = None
    deepspeed: dict[str, Any] | None = None
    dataloader_workers: int = 0
    logging_steps: int = 10
    save_steps: int = 500
    save_total_limit: int | None = 2
    seed: int = 42

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


PRESETS: dict[str, FinetunePreset] = {
    "som-llava-1.5": FinetunePreset(
        name="som-llava-1.5",
        learning_rate=2e-5,
        lr_scheduler="cosine",
        warmup=0.03,
        weight_decay=0.0,
        epochs=1.0,
        global_batch_size=128,
        per_device_batch_size=16,
        bf16=True,
        gradient_checkpointing=True,
        trainable="projector+lm",
        image_aspect_ratio="pad",
        template="vicuna_v1",
        max_length=2048,
        deepspeed=ZERO3_CONFIG,
        dataloader_workers=4,
        logging_steps=1,
        save_steps=50_000,
        save_total_limit=1,
    ),
    "toy": FinetunePreset(
        name="toy",
        learning_rate=1e-3,
        lr_scheduler="cosine_with_min_lr",
        lr_scheduler_kwargs={"min_lr_rate": 0.1},
        warmup=100,
        weight_decay=0.05,
        epochs=1.0,
        global_batch_size=32,
        per_device_batch_size=32,
        bf16=False,
        gradient_checkpointing=False,
        trainable="all",
        image_aspect_ratio="crop",
        template="auto",
        logging_steps=50,
        save_steps=500,
    ),
}


def get_preset(name: str | FinetunePreset = "toy", **overrides: Any) -> FinetunePreset:
    """A preset by name with fields overridden (``None`` overrides are ignored).

    Raises:
        InputError: unknown preset or field, or an invalid value.
    """
    if isinstance(name, FinetunePreset):
        base = name
    elif name in PRESETS:
        base = PRESETS[name]
    else:
        raise InputError(f"unknown finetune preset {name!r}; choose one of {sorted(PRESETS)}")
    known = {f.name for f in fields(FinetunePreset)}
    unknown = set(overrides) - known
    if unknown:
        raise InputError(f"unknown preset field(s) {sorted(unknown)}; valid: {sorted(known)}")
    preset = replace(base, **{k: v for k, v in overrides.items() if v is not None})
    if preset.trainable not in TRAINABLE:
        raise InputError(f"trainable must be one of {TRAINABLE}, got {preset.trainable!r}")
    if preset.global_batch_size < 1 or preset.per_device_batch_size < 1:
        raise InputError("batch sizes must be positive")
    if preset.learning_rate <= 0:
        raise InputError(f"learning_rate must be positive, got {preset.learning_rate}")
    return preset


__all__ = ["PRESETS", "TRAINABLE", "ZERO3_CONFIG", "FinetunePreset", "Trainable", "get_preset"]
