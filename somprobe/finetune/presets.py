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
    ``save_steps`` below 1 is a fraction of the run's steps (the default 0.1 writes a
    checkpoint every 10 % of the run, so a run killed late resumes late), from 1 up a
    number of steps; only the last ``save_total_limit`` checkpoints are kept.
    ``order="sequential"`` feeds the records in file order (for runs that must see the
    same records in the same order); ``loss="turn"`` weights every answer turn equally
    (see :func:`somprobe.finetune.loss.turn_weighted_loss`) instead of every token.
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
    save_steps: float = 0.1
    save_total_limit: int | None = 2
    seed: int = 42
    order: Literal["random", "sequential"] = "random"
    loss: Literal["token", "turn"] = "token"

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
        save_steps=0.1,
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
        save_steps=0.1,
        save_total_limit=2,
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
    check_preset(preset)
    return preset


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _scheduler_arguments(name: str) -> set[str] | None:
    """The extra keyword arguments the scheduler ``name`` accepts (None: any)."""
    import inspect

    from transformers.optimization import TYPE_TO_SCHEDULER_FUNCTION
    from transformers.trainer_utils import SchedulerType

    fn: Any = TYPE_TO_SCHEDULER_FUNCTION.get(SchedulerType(name))
    if fn is None:
        return None
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return set(params) - {"optimizer", "num_warmup_steps", "num_training_steps", "last_epoch"}


def check_preset(preset: FinetunePreset) -> None:
    """Check every field of ``preset``, so that a bad value fails before a model loads.

    Raises:
        InputError: naming the field, its value and what is allowed.
    """
    from transformers.trainer_utils import SchedulerType

    from somprobe.finetune.template import TEMPLATES

    problems: list[str] = []

    def need(ok: bool, field_name: str, allowed: str) -> None:
        if not ok:
            problems.append(f"{field_name}={getattr(preset, field_name)!r} ({allowed})")

    def whole(value: Any, low: int) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= low

    need(preset.trainable in TRAINABLE, "trainable", f"one of {TRAINABLE}")
    need(whole(preset.global_batch_size, 1), "global_batch_size", "a positive whole number")
    need(whole(preset.per_device_batch_size, 1), "per_device_batch_size", "a positive whole number")
    need(_number(preset.learning_rate) and preset.learning_rate > 0, "learning_rate", "> 0")
    schedulers = [s.value for s in SchedulerType]
    need(preset.lr_scheduler in schedulers, "lr_scheduler", f"one of {schedulers}")
    if preset.lr_scheduler in schedulers:
        takes = _scheduler_arguments(preset.lr_scheduler)
        kwargs = preset.lr_scheduler_kwargs
        need(isinstance(kwargs, dict), "lr_scheduler_kwargs", "a dict of keyword arguments")
        if takes is not None and isinstance(kwargs, dict):
            need(
                set(kwargs) <= takes,
                "lr_scheduler_kwargs",
                f"{preset.lr_scheduler} takes {sorted(takes)}",
            )
    need(_number(preset.warmup) and preset.warmup >= 0, "warmup", "≥ 0: <1 a fraction, else steps")
    if _number(preset.warmup) and preset.warmup >= 1:
        need(float(preset.warmup).is_integer(), "warmup", "a whole number of steps from 1 up")
    need(_number(preset.weight_decay) and preset.weight_decay >= 0, "weight_decay", "≥ 0")
    need(_number(preset.epochs) and preset.epochs > 0, "epochs", "> 0")
    need(
        whole(preset.max_steps, 1) or preset.max_steps == -1,
        "max_steps",
        "≥ 1, or -1 / None to train for `epochs`",
    )
    need(_number(preset.max_grad_norm) and preset.max_grad_norm > 0, "max_grad_norm", "> 0")
    need(preset.image_aspect_ratio in ("pad", "crop"), "image_aspect_ratio", "'pad' or 'crop'")
    need(preset.template in TEMPLATES, "template", f"one of {TEMPLATES}")
    need(preset.max_length is None or whole(preset.max_length, 1), "max_length", "None or ≥ 1")
    need(whole(preset.dataloader_workers, 0), "dataloader_workers", "≥ 0")
    need(whole(preset.logging_steps, 1), "logging_steps", "a whole number ≥ 1")
    need(
        _number(preset.save_steps)
        and preset.save_steps > 0
        and (preset.save_steps < 1 or float(preset.save_steps).is_integer()),
        "save_steps",
        "a fraction of the run in (0, 1), or a whole number of steps ≥ 1",
    )
    need(
        preset.save_total_limit is None or whole(preset.save_total_limit, 1),
        "save_total_limit",
        "None (keep all) or ≥ 1",
    )
    need(whole(preset.seed, 0), "seed", "a whole number ≥ 0")
    need(preset.order in ("random", "sequential"), "order", "'random' or 'sequential'")
    need(preset.loss in ("token", "turn"), "loss", "'token' or 'turn'")
    if problems:
        raise InputError(f"finetune preset {preset.name!r}: bad " + "; ".join(problems))


__all__ = [
    "PRESETS",
    "TRAINABLE",
    "ZERO3_CONFIG",
    "FinetunePreset",
    "Trainable",
    "check_preset",
    "get_preset",
]
