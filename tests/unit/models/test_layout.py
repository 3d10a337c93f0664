"""ImageLayout: token positions and the exact patch ↔ pixel geometry."""

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoProcessor

from somprobe.errors import InputError, LayoutError
from somprobe.models import ImageLayout, build_prompt, build_tiny_llava, prepare_inputs

SIZES = {"square": (90, 90), "wide": (160, 70), "tall": (50, 130)}


@pytest.fixture(scope="module", params=["crop", "pad"])
def processor(request, tmp_path_factory):
    path = build_tiny_llava(
        tmp_path_factory.mktemp(request.param), pad_to_square=request.param == "pad"
    )
    return AutoProcessor.from_pretrained(path)


def _layout(processor, images, questions):
    prompts = [build_prompt(processor, q) for q in questions]
    inputs = prepare_inputs(processor, images, prompts)
    return inputs, ImageLayout.from_inputs(processor, inputs, images=images)


def test_positions_equal_image_token_positions_single(processor):
    inputs, layout = _layout(processor, [Image.new("RGB", (70, 50))], ["Describe."])
    expected = torch.nonzero(inputs["input_ids"][0] == processor.image_token_id).flatten()
    assert layout.patch_positions(0).tolist() == expected.tolist()
    assert layout.grid(0) == (8, 8)
    assert layout.batch_of(0) == 0


def test_positions_batched_and_left_padded(processor):
    images = [Image.new("RGB", (70, 50)), Image.new("RGB", (40, 90))]
    questions = ["Hi.", "List all of the tagged items in this picture one by one, please."]
    inputs, layout = _layout(processor, images, questions)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    assert (mask[0] == 0).any(), "the shorter prompt should be left-padded"
    assert mask[0, 0] == 0 and mask[0, -1] == 1
    for row in range(2):
        expected = torch.nonzero(ids[row] == processor.image_token_id).flatten().tolist()
        assert layout.patch_positions(row).tolist() == expected
        assert layout.images_in(row) == [row]
        assert layout.image_size(row) == images[row].size


def test_full_strategy_keeps_cls_out_of_the_patch_grid(tmp_path):
    processor = AutoProcessor.from_pretrained(
        build_tiny_llava(tmp_path, vision_feature_select_strategy="full")
    )
    inputs, layout = _layout(processor, [Image.new("RGB", (64, 64))], ["x"])
    found = torch.nonzero(inputs["input_ids"][0] == processor.image_token_id).flatten().tolist()
    assert len(found) == 65
    assert layout.images[0].cls_position == found[0]
    assert layout.patch_positions(0).tolist() == found[1:]
    assert layout.image_token_positions(0).tolist() == found


def test_two_images_in_one_prompt(processor):
    images = [Image.new("RGB", (64, 64)), Image.new("RGB", (30, 80))]
    prompt = build_prompt(processor, "Compare <image> with the first.")
    inputs = prepare_inputs(processor, images, [prompt])
    layout = ImageLayout.from_inputs(processor, inputs, images=images)
    assert layout.images_in(0) == [0, 1]
    a, b = layout.patch_positions(0), layout.patch_positions(1)
    assert len(a) == len(b) == 64 and a.max() < b.min()


@pytest.mark.parametrize("kind", sorted(SIZES))
def test_geometry_whole_image_covers_image_area(processor, kind):
    width, height = SIZES[kind]
    _, layout = _layout(processor, [Image.new("RGB", (width, height))], ["x"])
    coverage = layout.mask_to_patches(np.ones((height, width), bool))
    pre = layout.images[0].grids[0].preprocess
    if pre.style == "crop":
        # the crop window lies inside the resized image: every patch fully covered
        np.testing.assert_allclose(coverage, 1.0)
    else:
        # padding covers nothing: the covered area equals the image's share of the square
        side = max(width, height)
        np.testing.assert_allclose(coverage.mean(), width * height / side**2, rtol=0.02)
        assert coverage.min() == 0.0 if width != height else coverage.min() == 1.0


@pytest.mark.parametrize("kind", sorted(SIZES))
def test_patch_boxes_tile_the_visible_window(processor, kind):
    width, height = SIZES[kind]
    _, layout = _layout(processor, [Image.new("RGB", (width, height))], ["x"])
    rows, cols = layout.grid(0)
    boxes = np.array([layout.patch_box(i) for i in range(rows * cols)])
    # neighbours share edges; the union is a rectangle
    grid = boxes.reshape(rows, cols, 4)
    np.testing.assert_allclose(grid[:, 1:, 0], grid[:, :-1, 2])
    np.testing.assert_allclose(grid[1:, :, 1], grid[:-1, :, 3])
    pre = layout.images[0].grids[0].preprocess
    x0, y0, x1, y1 = grid[0, 0, 0], grid[0, 0, 1], grid[-1, -1, 2], grid[-1, -1, 3]
    if pre.style == "pad":  # the whole padded square is visible, centred on the image
        side = max(width, height)
        np.testing.assert_allclose([x1 - x0, y1 - y0], [side, side], rtol=1e-9)
        np.testing.assert_allclose([(x0 + x1) / 2, (y0 + y1) / 2], [width / 2, height / 2], atol=1)
    else:  # a centred square of side = shorter side (up to the resize's rounding)
        short = min(width, height)
        np.testing.assert_allclose([x1 - x0, y1 - y0], [short, short], rtol=0.02)
        np.testing.assert_allclose([(x0 + x1) / 2, (y0 + y1) / 2], [width / 2, height / 2], atol=1)


def _painted(width, height, seed):
    """An image with three rectangles in pure red, green and blue on black, and masks."""
    rng = np.random.default_rng(seed)
    pixels = np.zeros((height, width, 3), np.uint8)
    masks = []
    for channel in range(3):
        x0, y0 = rng.integers(0, width - 10), rng.integers(0, height - 10)
        x1, y1 = rng.integers(x0 + 8, width + 1), rng.integers(y0 + 8, height + 1)
        mask = np.zeros((height, width), bool)
        mask[y0:y1, x0:x1] = True
        mask &= pixels.sum(-1) == 0  # later rectangles do not overwrite earlier ones
        pixels[mask, channel] = 255
        masks.append(mask)
    return Image.fromarray(pixels), masks


@pytest.mark.parametrize("kind", sorted(SIZES))
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("resample", ["nearest", "bicubic"])
def test_mask_to_patches_matches_what_the_processor_put_in_each_patch(
    processor, kind, seed, resample
):
    """Independent check: paint regions, push the picture through the real processor."""
    width, height = SIZES[kind]
    image, masks = _painted(width, height, seed)
    _, layout = _layout(processor, [image], ["x"])
    pixel_values = processor.image_processor(
        images=[image],
        do_normalize=False,
        do_rescale=False,
        image_mean=[0.0, 0.0, 0.0],  # pad colour black, like the background
        resample=Image.Resampling.NEAREST if resample == "nearest" else Image.Resampling.BICUBIC,
        return_tensors="np",
    )["pixel_values"][0]
    rows, cols = layout.grid(0)
    p = processor.patch_size
    observed = pixel_values.reshape(3, rows, p, cols, p).mean(axis=(2, 4)) / 255.0
    for channel, mask in enumerate(masks):
        predicted = layout.mask_to_patches(mask)
        error = np.abs(np.clip(observed[channel], 0, 1) - predicted)
        assert error.mean() < 0.02, (kind, channel, error.mean())
        assert error.max() < 0.2, (kind, channel, error.max())


def test_box_to_patches_equals_mask_of_the_box(processor):
    width, height = 160, 70
    _, layout = _layout(processor, [Image.new("RGB", (width, height))], ["x"])
    mask = np.zeros((height, width), bool)
    mask[10:40, 30:95] = True
    expected = layout.mask_to_patches(mask)
    np.testing.assert_allclose(layout.box_to_patches((30, 10, 95, 40)), expected)


def test_original_to_input_inverts_the_patch_map(processor):
    _, layout = _layout(processor, [Image.new("RGB", (50, 130))], ["x"])
    grid = layout.images[0].grids[0]
    x0, y0, _, _ = grid.patch_box(10)
    ix, iy = grid.preprocess.original_to_input(x0, y0)
    r, c = divmod(10, grid.cols)
    np.testing.assert_allclose([ix, iy], [c * grid.patch_size, r * grid.patch_size], atol=1e-9)


def test_mask_of_wrong_shape(processor):
    _, layout = _layout(processor, [Image.new("RGB", (70, 50))], ["x"])
    with pytest.raises(InputError, match=r"\(50, 70\)"):
        layout.mask_to_patches(np.ones((70, 50), bool))


def test_prompt_without_image_token(processor):
    with pytest.raises(LayoutError, match="placeholder"):
        prepare_inputs(processor, [Image.new("RGB", (20, 20))], ["USER: hi ASSISTANT:"])


def test_prompt_with_more_image_tokens_than_images(processor):
    prompt = build_prompt(processor, "and <image> too")
    with pytest.raises(LayoutError, match="2 <image> placeholder"):
        prepare_inputs(processor, [Image.new("RGB", (20, 20))], [prompt])


def test_layout_rejects_mismatched_sizes(processor):
    inputs = prepare_inputs(processor, [Image.new("RGB", (20, 20))], [build_prompt(processor, "x")])
    with pytest.raises(LayoutError):
        ImageLayout.from_inputs(processor, inputs, image_sizes=[(20, 20), (30, 30)])
    with pytest.raises(InputError):
        ImageLayout.from_inputs(processor, inputs)


def test_layout_rejects_unexpanded_prompt(processor):
    ids = processor.tokenizer(build_prompt(processor, "x"), return_tensors="pt").input_ids
    with pytest.raises(LayoutError, match="expanded"):
        ImageLayout.from_inputs(processor, {"input_ids": ids}, image_sizes=[(20, 20)])


def test_out_of_range_patch_and_image(processor):
    _, layout = _layout(processor, [Image.new("RGB", (20, 20))], ["x"])
    with pytest.raises(InputError):
        layout.patch_box(64)
    with pytest.raises(InputError):
        layout.grid(1)
