"""Finetuning LLaVA on LLaVA JSON data: the SoM-LLaVA recipe and the toy models' recipe.

Example:
    >>> from somprobe.finetune import finetune
    >>> result = finetune("tiny-llava/", "train.json", "images/", "out/", preset="toy",
    ...                   max_steps=20)  # doctest: +SKIP
"""

from somprobe.finetune.callbacks import PeriodicEval
from somprobe.finetune.collator import SFTCollator
from somprobe.finetune.dataset import (
    IGNORE_INDEX,
    LlavaSFTDataset,
    SkipReport,
    expand_to_square,
    tokenize_conversation,
)
from somprobe.finetune.presets import PRESETS, ZERO3_CONFIG, FinetunePreset, get_preset
from somprobe.finetune.template import (
    VICUNA_V1_SYSTEM,
    NoAssistantTurnError,
    RenderedConversation,
    render_conversation,
)
from somprobe.finetune.trainer import (
    FinetuneResult,
    LoraOptions,
    finetune,
    merge_lora,
    set_trainable,
    training_arguments,
)

__all__ = [
    "IGNORE_INDEX",
    "PRESETS",
    "VICUNA_V1_SYSTEM",
    "ZERO3_CONFIG",
    "FinetunePreset",
    "FinetuneResult",
    "LlavaSFTDataset",
    "LoraOptions",
    "NoAssistantTurnError",
    "PeriodicEval",
    "RenderedConversation",
    "SFTCollator",
    "SkipReport",
    "expand_to_square",
    "finetune",
    "get_preset",
    "merge_lora",
    "render_conversation",
    "set_trainable",
    "tokenize_conversation",
    "training_arguments",
]
