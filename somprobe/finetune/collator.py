"""Batch finetuning items: right-pad ids and labels, stack the images.

Example:
    >>> collate = SFTCollator(pad_token_id=processor.tokenizer.pad_token_id)
    >>> batch = collate([dataset[0], dataset[1]])
    >>> sorted(batch)
    ['attention_mask', 'input_ids', 'labels', 'pixel_values']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from somprobe.errors import InputError
from somprobe.finetune.dataset import IGNORE_INDEX


@dataclass(frozen=True)
class SFTCollator:
    """Pad to the longest item (optionally up to a multiple), mask padding in the labels.

    Items without an image (text-only records) contribute no ``pixel_values``; the
    images of a batch are stacked in item order, which is the order of their image
    tokens in the batch, as ``LlavaForConditionalGeneration`` expects.
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, Tensor]:
        if not items:
            raise InputError("cannot collate an empty batch")
        longest = max(len(item["input_ids"]) for item in items)
        if self.pad_to_multiple_of:
            m = self.pad_to_multiple_of
            longest = (longest + m - 1) // m * m
        n = len(items)
        input_ids = torch.full((n, longest), self.pad_token_id, dtype=torch.long)
        labels = torch.full((n, longest), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((n, longest), dtype=torch.long)
        for row, item in enumerate(items):
            length = len(item["input_ids"])
            input_ids[row, :length] = item["input_ids"]
            labels[row, :length] = item["labels"]
            attention_mask[row, :length] = 1
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        pixels = [item["pixel_values"] for item in items if item.get("pixel_values") is not None]
        if pixels:
            batch["pixel_values"] = torch.stack(pixels)
        return batch


__all__ = ["SFTCollator"]
