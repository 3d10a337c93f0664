"""Qwen2-VL and Qwen2.5-VL (``Qwen2VLProcessor``, ``Qwen2_5_VLProcessor``).

The image processor resizes the picture (aspect kept as closely as it can) to a size
whose sides are multiples of ``patch_size × merge_size`` (28 px) and whose area lies in
``[min_pixels, max_pixels]`` (``smart_resize``), cuts it into 14 px patches, and the
model merges each 2×2 block of patches into one token. The ``<|image_pad|>`` placeholder
(between ``<|vision_start|>`` and ``<|vision_end|>``, which are not image tokens)
expands to one token per merged block, row-major: one grid per image with a "patch" of
``patch_size × merge_size`` input pixels, and no CLS.

Example:
    >>> smart_resize(90, 200, factor=28, min_pixels=56 * 56, max_pixels=112 * 112)
    (56, 140)
"""

from __future__ import annotations

import math
from typing import Any

import torch

from somprobe.errors import LayoutError
from somprobe.models.layouts import base
from somprobe.models.layouts.base import ImageEntry, Inputs, PatchGrid, Preprocess, Sizes, TokenIds

NAME = "qwen2_vl"
PROCESSOR_CLASSES = ("Qwen2VLProcessor", "Qwen2_5_VLProcessor")
MODEL_TYPES = ("qwen2_vl", "qwen2_5_vl")


def smart_resize(
    height: int, width: int, *, factor: int, min_pixels: int, max_pixels: int
) -> tuple[int, int]:
    """``(height, width)`` the Qwen2-VL image processor resizes a picture to.

    Sides are rounded to multiples of ``factor``; when the area then leaves
    ``[min_pixels, max_pixels]`` both sides are scaled by one factor (rounded down when
    shrinking, up when growing).

    Raises:
        LayoutError: an aspect ratio above 200, which the processor refuses.
    """
    if max(height, width) / min(height, width) > 200:
        raise LayoutError(
            f"a {width}×{height} image has an aspect ratio above 200, which Qwen2-VL refuses"
        )
    h_bar, w_bar = round(height / factor) * factor, round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def _check_inputs(inputs: Inputs, n_images: int) -> Any:
    """The inputs' ``image_grid_thw`` (or None); refuses other families' inputs."""
    pixel_values = inputs.get("pixel_values")
    grid_thw = inputs.get("image_grid_thw")
    if "image_sizes" in inputs or (
        pixel_values is not None and torch.as_tensor(pixel_values).ndim != 2
    ):
        raise LayoutError(
            "the inputs hold image_sizes or (images, channels, height, width) pixel_values "
            "(a LLaVA or LLaVA-NeXT processor made them) but the processor given is a "
            "Qwen2-VL one; pass the processor that made the inputs"
        )
    if pixel_values is not None and grid_thw is None:
        raise LayoutError("Qwen2-VL inputs with pixel_values need their image_grid_thw too")
    if grid_thw is not None:
        base.check_image_count(n_images, len(grid_thw))
    return grid_thw


def build_entries(
    processor: Any, inputs: Inputs, input_ids: TokenIds, sizes: Sizes
) -> list[ImageEntry]:
    """The image entries of a Qwen2-VL / Qwen2.5-VL batch (see the module docstring).

    Raises:
        LayoutError: inputs from another family's processor, sizes that do not give the
            inputs' ``image_grid_thw``, or image tokens that do not match the images.
    """
    grid_thw = _check_inputs(inputs, len(sizes))
    image_processor = processor.image_processor
    patch = int(image_processor.patch_size)
    merge = int(image_processor.merge_size)
    factor = patch * merge
    size = base.processor_size(image_processor, "size")
    min_pixels = int(size.get("shortest_edge") or getattr(image_processor, "min_pixels", 0) or 0)
    max_pixels = int(size.get("longest_edge") or getattr(image_processor, "max_pixels", 0) or 0)
    resized = []
    for width, height in sizes:
        if getattr(image_processor, "do_resize", True):
            h, w = smart_resize(
                height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels
            )
        else:
            h, w = height, width
            if h % factor or w % factor:
                raise LayoutError(
                    f"with do_resize=False a {width}×{height} image must have sides that are "
                    f"multiples of {factor}"
                )
        resized.append((w, h))
    if grid_thw is not None:
        given = [tuple(int(v) for v in t) for t in torch.as_tensor(grid_thw).tolist()]
        expected = [(1, h // patch, w // patch) for w, h in resized]
        if given != expected:
            raise LayoutError(
                f"the inputs' image_grid_thw {given} differ from what the original sizes give "
                f"{expected}; give the images (or sizes) in the order of the processor"
            )
    counts = [(w // factor) * (h // factor) for w, h in resized]
    runs = base.image_runs(processor, input_ids, counts, "<|image_pad|>")
    return [
        base.one_grid_entry(
            row,
            chunk,
            PatchGrid(
                chunk, h // factor, w // factor, factor, Preprocess.stretch(original, (w, h))
            ),
        )
        for (row, chunk), (w, h), original in zip(runs, resized, sizes, strict=True)
    ]
