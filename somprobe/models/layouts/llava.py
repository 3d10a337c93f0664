"""LLaVA-1.5 (``LlavaProcessor``): one grid per image, the CLS handled by the strategy.

The CLIP-style image processor either resizes the shorter side and crops the center
("crop") or pads to a square with the mean colour first ("pad", ``do_pad=True``); the
``<image>`` placeholder expands to ``rows × cols`` patch tokens (plus the CLS under
``vision_feature_select_strategy="full"``), row-major.

Example:
    >>> entries = build_entries(processor, inputs, input_ids, [(640, 480)])  # doctest: +SKIP
    >>> entries[0].grids[0].rows
    24
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from somprobe.errors import LayoutError
from somprobe.models.layouts import base
from somprobe.models.layouts.base import ImageEntry, Inputs, PatchGrid, Preprocess, Sizes, TokenIds

NAME = "llava"
PROCESSOR_CLASSES = ("LlavaProcessor",)
MODEL_TYPES = ("llava",)


def _check_inputs(inputs: Inputs, n_images: int) -> None:
    """Refuse inputs that another family's processor made, or a wrong image count."""
    base.refuse_qwen_inputs(inputs, "LLaVA-1.5")
    pixel_values = inputs.get("pixel_values")
    if "image_sizes" in inputs or (
        pixel_values is not None and torch.as_tensor(pixel_values).ndim == 5
    ):
        raise LayoutError(
            "the inputs hold tiled pixel_values/image_sizes (a LLaVA-NeXT processor made them) "
            "but the processor given is a LLaVA-1.5 one; pass the processor that made the inputs"
        )
    if pixel_values is not None:
        base.check_image_count(n_images, len(pixel_values))


def build_entries(
    processor: Any, inputs: Inputs, input_ids: TokenIds, sizes: Sizes
) -> list[ImageEntry]:
    """The image entries of a LLaVA-1.5 batch (see the module docstring).

    Raises:
        LayoutError: the inputs were made by another family's processor, or their
            ``<image>`` tokens and the images do not match.
    """
    _check_inputs(inputs, len(sizes))
    patch = int(processor.patch_size)
    strategy, extra = base.select_strategy(processor)
    has_cls = strategy == "full" and extra > 0
    preprocess = [Preprocess.from_image_processor(processor.image_processor, s) for s in sizes]
    shapes = [(p.input_size[1] // patch, p.input_size[0] // patch) for p in preprocess]
    counts = [r * c + extra - (1 if strategy == "default" else 0) for r, c in shapes]
    entries = []
    for (row, chunk), pre, (rows, cols) in zip(
        base.image_runs(processor, input_ids, counts), preprocess, shapes, strict=True
    ):
        patches = chunk[extra:] if has_cls else chunk[len(chunk) - rows * cols :]
        grid = PatchGrid(patches.astype(np.int64), rows, cols, patch, pre)
        entries.append(base.one_grid_entry(row, chunk, grid, int(chunk[0]) if has_cls else None))
    return entries
