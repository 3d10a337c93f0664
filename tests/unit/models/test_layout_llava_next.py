"""LLaVA-NeXT image-token layout: anyres tiles, unpadding, newlines, checked by painting."""

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
from transformers.models.llava_next.modeling_llava_next import image_size_to_num_patches

from somprobe.errors import InputError, LayoutError, UnsupportedModelError
from somprobe.models import (
    ImageLayout,
    build_prompt,
    build_tiny_llava,
    load_model,
    prepare_inputs,
)
from somprobe.models.adapters import LlavaNextAdapter, adapter_for
from somprobe.models.layouts.llava_next import anyres_plan, best_resolution
from somprobe.models.tiny_families import build_tiny_llava_next

torch.set_num_threads(1)

# (width, height): the tiny model's tile is 56 px, its largest canvases 112×112, 168×56, 56×168
SIZES = {**PAINT_SIZES, "larger-than-all-canvases": (500, 260)}


@pytest.fixture(scope="module")
def next_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    return load_model(build_tiny_llava_next(tmp_path_factory.mktemp("tiny-next")))


def _reference_colours(model: Any, processor: Any, image: Image.Image, resample: Any) -> np.ndarray:
    """Each image token's mean colour in [0, 1], straight from the processor's pixel values.

    The tiles' pixels are averaged per patch and packed by the model's own
    ``pack_image_features`` (stitching, unpadding, newlines as NaN), so the token order
    and the unpadding come from transformers, not from somprobe's layout.
    """
    out = processor.image_processor(
        images=[image], do_normalize=False, do_rescale=False, resample=resample, return_tensors="np"
    )
    hw = [int(v) for v in out["image_sizes"][0]]
    config = model.config
    n_tiles = image_size_to_num_patches(
        hw, config.image_grid_pinpoints, config.vision_config.image_size
    )
    tiles = torch.as_tensor(out["pixel_values"][0][:n_tiles], dtype=torch.float64) / 255.0
    p = config.vision_config.patch_size
    g = config.vision_config.image_size // p
    features = tiles.reshape(n_tiles, 3, g, p, g, p).mean(dim=(3, 5))
    features = features.permute(0, 2, 3, 1).reshape(n_tiles, g * g, 3)
    packed, _ = model.model.pack_image_features(
        [features],
        torch.tensor([hw]),
        vision_feature_select_strategy="default",
        image_newline=torch.full((3,), float("nan"), dtype=torch.float64),
    )
    return packed[0].numpy()


@pytest.mark.parametrize("kind", sorted(SIZES))
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("resample", ["nearest", "bicubic"])
def test_mask_to_tokens_matches_what_the_processor_put_in_each_token(
    next_model: Any, kind: str, seed: int, resample: str
) -> None:
    """Paint rectangles, run the real processor, compare every token (base and tiles);
    the newlines (NaN in the reference) have no box."""
    model, processor = next_model

    def reference(image: Image.Image, mode: Any) -> np.ndarray:
        return _reference_colours(model, processor, image, mode)

    check_painted_tokens(processor, reference, SIZES[kind], seed, resample)


@pytest.mark.parametrize("kind", sorted(SIZES))
def test_grids_newlines_and_base_geometry(next_model: Any, kind: str) -> None:
    _, processor = next_model
    width, height = SIZES[kind]
    inputs, layout = layout_of(processor, [Image.new("RGB", (width, height))], ["x"])
    found = torch.nonzero(inputs["input_ids"][0] == processor.image_token_id).flatten().numpy()
    tokens = layout.image_token_positions(0)
    np.testing.assert_array_equal(tokens, found)
    assert layout.num_grids(0) == 2 and layout.grid(0) == (4, 4)
    rows, cols = layout.grid(0, grid=1)
    assert len(tokens) == 16 + rows * (cols + 1)
    # base first, then each tile row followed by one newline
    np.testing.assert_array_equal(layout.patch_positions(0, grid=0), tokens[:16])
    rest = tokens[16:].reshape(rows, cols + 1)
    np.testing.assert_array_equal(layout.patch_positions(0, grid=1), rest[:, :cols].ravel())
    kinds = layout.token_grid(0)
    assert (kinds[:16] == 0).all() and (kinds[16:].reshape(rows, cols + 1)[:, -1] == -1).all()
    boxes = layout.token_boxes(0)
    assert np.isnan(boxes[kinds == -1]).all() and not np.isnan(boxes[kinds >= 0]).any()
    # the base image is the whole picture, stretched
    base = boxes[:16].reshape(4, 4, 4)
    np.testing.assert_allclose(base[0, 0, :2], [0, 0], atol=1e-9)
    np.testing.assert_allclose(base[-1, -1, 2:], [width, height], atol=1e-9)
    # a full mask covers every base token fully, and tile tokens by their image share
    coverage = layout.mask_to_tokens(np.ones((height, width), bool))
    np.testing.assert_allclose(coverage[:16], 1.0)
    assert (coverage[kinds == 1] > 0).all() and (coverage[kinds == 1] <= 1).all()
    # grid 0 is what mask_to_patches and patch_box speak of
    np.testing.assert_allclose(
        layout.mask_to_patches(np.ones((height, width), bool)).ravel(), coverage[:16]
    )
    assert layout.patch_box(5) == tuple(boxes[5])
    np.testing.assert_allclose(layout.box_to_tokens((0, 0, width, height)), coverage)


def test_batch_of_two_sizes_matches_the_processor_and_the_model(next_model: Any) -> None:
    """Different tile counts in one batch (pixel_values padded), and a forward pass."""
    inputs = check_two_sizes_and_a_forward_pass(*next_model)
    assert inputs["pixel_values"].shape[:2] == (2, 4)  # 3 real tiles + base, and 4


def test_two_images_in_one_prompt(next_model: Any) -> None:
    _, processor = next_model
    images = [Image.new("RGB", (64, 64)), Image.new("RGB", (30, 80))]
    prompt = build_prompt(processor, "Compare <image> with the first.")
    inputs = prepare_inputs(processor, images, [prompt])
    layout = ImageLayout.from_inputs(processor, inputs, images=images)
    found = torch.nonzero(inputs["input_ids"][0] == processor.image_token_id).flatten()
    a, b = layout.image_token_positions(0), layout.image_token_positions(1)
    assert layout.images_in(0) == [0, 1] and a.max() < b.min()
    assert np.concatenate([a, b]).tolist() == found.tolist()


def test_token_counts_equal_the_processor_for_many_sizes(next_model: Any) -> None:
    _, processor = next_model
    rng = np.random.default_rng(0)
    pinpoints = processor.image_processor.image_grid_pinpoints
    sizes = [(int(w), int(h)) for w, h in rng.integers(1, 700, size=(300, 2))]
    sizes += [(1, 1), (1, 500), (500, 1), (56, 56), (112, 56), (57, 55)]
    counts = processor._get_num_multimodal_tokens(image_sizes=[(h, w) for w, h in sizes])
    for (w, h), expected in zip(sizes, counts["num_image_tokens"], strict=True):
        assert anyres_plan((w, h), pinpoints, tile=56, patch=14).n_tokens == expected, (w, h)


def test_best_resolution_matches_transformers() -> None:
    from transformers.image_processing_utils import select_best_resolution

    pinpoints = [[56, 112], [112, 56], [112, 112], [56, 168], [168, 56]]
    rng = np.random.default_rng(1)
    for w, h in rng.integers(1, 600, size=(200, 2)):
        assert best_resolution((int(w), int(h)), pinpoints) == tuple(
            select_best_resolution((int(h), int(w)), pinpoints)
        )


# -- the model, the adapter and loading --------------------------------------------------------


def test_adapter_paths(next_model: Any) -> None:
    model, _ = next_model
    adapter = adapter_for(model)
    assert isinstance(adapter, LlavaNextAdapter) and adapter.family == "llava_next"
    assert type(adapter.vision_tower).__name__ == "CLIPVisionModel"
    assert type(adapter.projector).__name__ == "LlavaNextMultiModalProjector"
    assert len(adapter.layers) == adapter.num_layers == 2
    assert adapter.image_newline.shape == (model.config.text_config.hidden_size,)
    assert adapter.image_token_id == model.config.image_token_id
    assert adapter.lm_head is model.lm_head


def test_unsupported_model_names_the_supported_ones() -> None:
    with pytest.raises(UnsupportedModelError, match="LlavaNextForConditionalGeneration"):
        adapter_for(torch.nn.Linear(2, 2))


def test_bad_tiny_next_options(tmp_path: Any) -> None:
    with pytest.raises(InputError, match="multiples"):
        build_tiny_llava_next(tmp_path, grid_pinpoints=[[56, 100]])
    with pytest.raises(InputError, match="default"):
        build_tiny_llava_next(tmp_path, vision_feature_select_strategy="full")
    with pytest.raises(InputError, match="pad_to_square"):
        build_tiny_llava_next(tmp_path, pad_to_square=True)


# -- mismatches ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def llava_processor(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return AutoProcessor.from_pretrained(build_tiny_llava(tmp_path_factory.mktemp("tiny-llava")))


def test_llava_processor_with_next_inputs(next_model: Any, llava_processor: Any) -> None:
    _, processor = next_model
    image = Image.new("RGB", (100, 60))
    inputs = prepare_inputs(processor, [image], [build_prompt(processor, "x")])
    with pytest.raises(LayoutError, match="LLaVA-NeXT processor made them"):
        ImageLayout.from_inputs(llava_processor, inputs, images=[image])


def test_next_processor_with_llava_inputs(next_model: Any, llava_processor: Any) -> None:
    _, processor = next_model
    image = Image.new("RGB", (100, 60))
    inputs = prepare_inputs(llava_processor, [image], [build_prompt(llava_processor, "x")])
    with pytest.raises(LayoutError, match=r"LLaVA-1\.5"):
        ImageLayout.from_inputs(processor, inputs, images=[image])
    ids_only = {"input_ids": inputs["input_ids"]}  # 64 tokens where NeXT needs 16 + tiles
    with pytest.raises(LayoutError, match="not made by this processor"):
        ImageLayout.from_inputs(processor, ids_only, images=[image])


def test_sizes_that_differ_from_the_inputs(next_model: Any) -> None:
    check_sizes_out_of_order(next_model[1], "image_sizes")


def test_unknown_processor() -> None:
    with pytest.raises(UnsupportedModelError, match="LlavaNextProcessor"):
        ImageLayout.from_inputs(object(), {"input_ids": torch.zeros(1, 3)}, image_sizes=[(4, 4)])


def test_bad_masks_and_images(next_model: Any) -> None:
    _, processor = next_model
    _, layout = layout_of(processor, [Image.new("RGB", (70, 50))], ["x"])
    with pytest.raises(InputError, match=r"\(50, 70\)"):
        layout.mask_to_tokens(np.ones((70, 50), bool))
    with pytest.raises(InputError, match="image 1 out of range"):
        layout.token_boxes(1)
    with pytest.raises(InputError, match="grid 2 out of range"):
        layout.grid(0, grid=2)
    with pytest.raises(InputError, match="four"):
        layout.box_to_tokens((1, 2, 3))
