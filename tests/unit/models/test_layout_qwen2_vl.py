"""Qwen2.5-VL image-token layout: smart resize, 2×2 merged tokens, checked by painting."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from somprobe_testing import (
    PAINT_SIZES,
    check_painted_tokens,
    check_sizes_out_of_order,
    check_two_sizes_and_a_forward_pass,
    layout_of,
)
from transformers import AutoProcessor
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
    smart_resize as hf_smart_resize,
)

from somprobe.errors import InputError, LayoutError
from somprobe.models import ImageLayout, build_prompt, build_tiny_llava, load_model, prepare_inputs
from somprobe.models.adapters import Qwen2VLAdapter, adapter_for
from somprobe.models.layouts.qwen2_vl import smart_resize
from somprobe.models.tiny_families import build_tiny_llava_next, build_tiny_qwen2_5_vl

torch.set_num_threads(1)

SIZES = {**PAINT_SIZES, "larger-than-max-pixels": (500, 260)}


@pytest.fixture(scope="module")
def qwen(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    return load_model(build_tiny_qwen2_5_vl(tmp_path_factory.mktemp("tiny-qwen")))


def _reference_colours(processor: Any, image: Image.Image, resample: Any) -> np.ndarray:
    """Each image token's mean colour, from the processor's flattened patches.

    The processor lays out the patches so that each 2×2 merge block is ``merge²``
    consecutive rows of ``pixel_values``, and the model's patch merger turns each such
    run into one token, in order; so token ``k`` is the mean of rows ``4k..4k+3``.
    """
    ip = processor.image_processor
    out = ip(
        images=[image], do_normalize=False, do_rescale=False, resample=resample, return_tensors="np"
    )
    m, p, t = ip.merge_size, ip.patch_size, ip.temporal_patch_size
    patches = out["pixel_values"].reshape(-1, m * m, 3, t, p, p).astype(np.float64)
    return patches.mean(axis=(1, 3, 4, 5)) / 255.0


@pytest.mark.parametrize("kind", sorted(SIZES))
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("resample", ["nearest", "bicubic"])
def test_mask_to_tokens_matches_the_merged_patches(
    qwen: Any, kind: str, seed: int, resample: str
) -> None:
    _, processor = qwen

    def reference(image: Image.Image, mode: Any) -> np.ndarray:
        return _reference_colours(processor, image, mode)

    layout, masks = check_painted_tokens(processor, reference, SIZES[kind], seed, resample)
    for mask in masks:  # one grid: the tokens are its patches, row-major
        np.testing.assert_allclose(
            layout.mask_to_tokens(mask), layout.mask_to_patches(mask).ravel()
        )


@pytest.mark.parametrize("kind", sorted(SIZES))
def test_grid_and_vision_markers(qwen: Any, kind: str) -> None:
    _, processor = qwen
    width, height = SIZES[kind]
    inputs, layout = layout_of(processor, [Image.new("RGB", (width, height))], ["x"])
    ids = inputs["input_ids"][0]
    tokens = layout.image_token_positions(0)
    assert tokens.tolist() == torch.nonzero(ids == processor.image_token_id).flatten().tolist()
    rows, cols = layout.grid(0)
    t, gh, gw = inputs["image_grid_thw"][0].tolist()
    assert (t, gh, gw) == (1, 2 * rows, 2 * cols) and len(tokens) == rows * cols
    assert layout.num_grids(0) == 1 and layout.images[0].cls_position is None
    tok = processor.tokenizer
    assert ids[tokens[0] - 1] == tok.convert_tokens_to_ids("<|vision_start|>")
    assert ids[tokens[-1] + 1] == tok.convert_tokens_to_ids("<|vision_end|>")
    boxes = layout.token_boxes(0)
    np.testing.assert_allclose(boxes[0, :2], [0, 0], atol=1e-9)
    np.testing.assert_allclose(boxes[-1, 2:], [width, height], atol=1e-9)
    np.testing.assert_allclose(layout.mask_to_tokens(np.ones((height, width), bool)), 1.0)


def test_batch_of_two_sizes_and_a_forward_pass(qwen: Any) -> None:
    check_two_sizes_and_a_forward_pass(*qwen)


def test_token_counts_equal_the_processor_for_many_sizes(qwen: Any) -> None:
    _, processor = qwen
    ip = processor.image_processor
    rng = np.random.default_rng(0)
    sizes = [(int(w), int(h)) for w, h in rng.integers(1, 900, size=(300, 2))]
    sizes = [s for s in sizes if max(s) / min(s) <= 200] + [(1, 1), (28, 28), (600, 3)]
    counts = processor._get_num_multimodal_tokens(image_sizes=[(h, w) for w, h in sizes])
    for (w, h), expected in zip(sizes, counts["num_image_tokens"], strict=True):
        rh, rw = smart_resize(
            h, w, factor=28, min_pixels=ip.size["shortest_edge"], max_pixels=ip.size["longest_edge"]
        )
        assert (rh // 28) * (rw // 28) == expected, (w, h)
        assert (rh, rw) == hf_smart_resize(
            h, w, 28, ip.size["shortest_edge"], ip.size["longest_edge"]
        )


def test_adapter_paths(qwen: Any) -> None:
    model, _ = qwen
    adapter = adapter_for(model)
    assert isinstance(adapter, Qwen2VLAdapter) and adapter.family == "qwen2_vl"
    assert adapter.vision_tower is model.model.visual
    assert adapter.projector is model.model.visual.merger
    assert len(adapter.layers) == adapter.num_layers == 2
    assert adapter.image_token_id == model.config.image_token_id
    assert adapter.attention(0) is model.model.language_model.layers[0].self_attn


def test_bad_tiny_qwen_options(tmp_path: Any) -> None:
    with pytest.raises(InputError, match="text_heads"):
        build_tiny_qwen2_5_vl(tmp_path, text_width=100, text_heads=3)
    with pytest.raises(InputError, match="min_pixels"):
        build_tiny_qwen2_5_vl(tmp_path, min_pixels=10_000, max_pixels=100)


def test_extreme_aspect_ratio_is_a_layout_error(qwen: Any) -> None:
    _, processor = qwen
    ids = torch.tensor([[processor.image_token_id] * 4])
    with pytest.raises(LayoutError, match="aspect ratio"):
        ImageLayout.from_inputs(processor, {"input_ids": ids}, image_sizes=[(1000, 4)])


@pytest.fixture(scope="module")
def other_processors(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    llava = AutoProcessor.from_pretrained(build_tiny_llava(tmp_path_factory.mktemp("llava")))
    nxt = AutoProcessor.from_pretrained(build_tiny_llava_next(tmp_path_factory.mktemp("next")))
    return llava, nxt


def test_processor_and_inputs_of_different_families(qwen: Any, other_processors: Any) -> None:
    _, processor = qwen
    llava, nxt = other_processors
    image = Image.new("RGB", (100, 60))
    qwen_inputs = prepare_inputs(processor, [image], [build_prompt(processor, "x")])
    for other in (llava, nxt):
        with pytest.raises(LayoutError, match="Qwen2-VL processor made them"):
            ImageLayout.from_inputs(other, qwen_inputs, images=[image])
        inputs = prepare_inputs(other, [image], [build_prompt(other, "x")])
        with pytest.raises(LayoutError, match="LLaVA"):
            ImageLayout.from_inputs(processor, inputs, images=[image])


def test_sizes_in_the_wrong_order(qwen: Any) -> None:
    check_sizes_out_of_order(qwen[1], "image_grid_thw")
