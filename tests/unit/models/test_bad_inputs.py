"""Hostile inputs to somprobe.models: every one is a SomprobeError that says what to do,
or the documented behaviour; never a raw traceback or a silently wrong result."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from somprobe.errors import (
    InputError,
    LayoutError,
    ModelLoadError,
    SomprobeError,
    UnsupportedModelError,
    WriteError,
)
from somprobe.models import (
    ImageLayout,
    adapter_for,
    build_llama_like_tokenizer,
    build_prompt,
    build_tiny_llava,
    load_model,
    pad_token_id,
    prepare_inputs,
    tiny_llava_shape,
    to_model,
)

# -- load_model on damaged checkpoints -----------------------------------------------------------


def _cut(name: str, keep: float | int) -> Callable[[Path], None]:
    def mutate(folder: Path) -> None:
        data = (folder / name).read_bytes()
        size = int(len(data) * keep) if isinstance(keep, float) else keep
        (folder / name).write_bytes(data[:size])

    return mutate


def _write(name: str, text: str) -> Callable[[Path], None]:
    return lambda folder: (folder / name).write_text(text)


def _remove(name: str) -> Callable[[Path], None]:
    return lambda folder: (folder / name).unlink()


def _narrow_text_model(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    config["text_config"]["hidden_size"] = 64
    (folder / "config.json").write_text(json.dumps(config))


CHECKPOINTS: list[tuple[Callable[[Path], None], type[SomprobeError], str]] = [
    (_cut("model.safetensors", 0.5), ModelLoadError, "model.safetensors is truncated or corrupt"),
    (_cut("model.safetensors", 10), ModelLoadError, "model.safetensors is truncated or corrupt"),
    (_cut("model.safetensors", 0), ModelLoadError, "model.safetensors is truncated or corrupt"),
    (_remove("model.safetensors"), ModelLoadError, "no file named model.safetensors"),
    (_cut("config.json", 0.5), ModelLoadError, "not a valid JSON file"),
    (_write("config.json", "[]"), ModelLoadError, "could not load"),
    (_write("config.json", '{"model_type": "gpt2"}'), UnsupportedModelError, "gpt2"),
    (_cut("tokenizer.json", 0.5), ModelLoadError, "could not load"),
    (_write("tokenizer.json", "{}"), ModelLoadError, "could not load"),
    (_remove("tokenizer.json"), ModelLoadError, "could not load"),
    (_cut("tokenizer_config.json", 0.5), ModelLoadError, "could not load"),
    (_cut("processor_config.json", 0.5), ModelLoadError, "could not load"),
    (
        _write("processor_config.json", '{"image_processor": {"size": "abc"}}'),
        ModelLoadError,
        "could not load",
    ),
    (_narrow_text_model, ModelLoadError, "could not load"),
]


@pytest.mark.parametrize(("damage", "error", "match"), CHECKPOINTS)
def test_load_model_on_a_damaged_checkpoint(tiny_llava_path, tmp_path, damage, error, match):  # type: ignore[no-untyped-def]
    folder = Path(shutil.copytree(tiny_llava_path, tmp_path / "model"))
    damage(folder)
    with pytest.raises(error, match=match):
        load_model(folder)


LOAD_ARGUMENTS: list[tuple[Any, dict[str, Any], type[SomprobeError], str]] = [
    ("nowhere", {}, ModelLoadError, "neither a local folder"),
    (None, {}, InputError, "hub name or a folder"),
    (3, {}, InputError, "hub name or a folder"),
    ("config.json", {}, ModelLoadError, "could not load"),
    ("", {"dtype": "int8"}, ModelLoadError, "unknown dtype"),
    ("", {"dtype": 5}, ModelLoadError, "unknown dtype"),
    ("", {"attn_implementation": "fastest"}, ModelLoadError, "fastest"),
]


@pytest.mark.parametrize(("where", "options", "error", "match"), LOAD_ARGUMENTS)
def test_load_model_arguments(tiny_llava_path, where, options, error, match):  # type: ignore[no-untyped-def]
    path = tiny_llava_path / where if isinstance(where, str) else where
    with pytest.raises(error, match=match):
        load_model(path, **options)


# -- tiny models and the tokenizer ------------------------------------------------------------------

SHAPES: list[tuple[dict[str, Any], str]] = [
    ({"patch_size": 0}, "patch_size must be ≥ 1"),
    ({"image_size": 0}, "image_size must be ≥ 1"),
    ({"text_heads": 0}, "text_heads must be ≥ 1"),
    ({"vision_heads": 0}, "vision_heads must be ≥ 1"),
    ({"num_key_value_heads": 0}, "num_key_value_heads must be ≥ 1"),
    ({"text_layers": 0}, "text_layers must be ≥ 1"),
    ({"text_layers": -1}, "text_layers must be ≥ 1"),
    ({"text_width": -4}, "text_width must be ≥ 1"),
    ({"max_position_embeddings": 0}, "max_position_embeddings must be ≥ 1"),
    ({"image_size": "112"}, "image_size must be an integer"),
    ({"text_layers": 1.5}, "text_layers must be an integer"),
    ({"text_width": 130}, "text_width must divide"),
    ({"vision_feature_layer": 5}, "vision_feature_layer"),
    ({"vision_feature_select_strategy": "cls"}, "vision_feature_select_strategy"),
    ({"colour": "red"}, "unknown tiny LLaVA option"),
]


@pytest.mark.parametrize(("overrides", "match"), SHAPES)
def test_tiny_shapes(overrides, match):  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match=match):
        tiny_llava_shape(**overrides)


def test_tiny_model_with_an_unknown_preset_or_option(tmp_path):  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match="preset"):
        build_tiny_llava(tmp_path, preset="huge")
    with pytest.raises(InputError, match="unknown tiny LLaVA option"):
        build_tiny_llava(tmp_path, colour="red")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("where", ["a-file/model", "a-file"])
def test_tiny_model_written_where_it_cannot_be(tmp_path, where):  # type: ignore[no-untyped-def]
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(WriteError, match="cannot write"):
        build_tiny_llava(tmp_path / where)
    assert (tmp_path / "a-file").read_text() == "x"


@pytest.mark.parametrize("size", [-1, 2.5, "100", True])
def test_tokenizer_vocabulary_size(size):  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match="vocab_size"):
        build_llama_like_tokenizer(size)


# -- prompts and inputs -----------------------------------------------------------------------------

IMAGE = Image.new("RGB", (50, 40), (200, 30, 30))


def _prompt(processor: Any) -> str:
    return build_prompt(processor, "List the tagged items.")


PREPARE_CALLS: list[tuple[Callable[[Any], tuple[Any, Any]], dict[str, Any], type, str]] = [
    (lambda p: ([[1, 2]], [_prompt(p)]), {}, InputError, "image 0 is a list"),
    (lambda p: ([torch.zeros(3, 4, 4)], [_prompt(p)]), {}, InputError, "image 0 is a Tensor"),
    (lambda p: ([None], [_prompt(p)]), {}, InputError, "image 0 is a NoneType"),
    (lambda p: ([Image.new("RGB", (0, 0))], [_prompt(p)]), {}, InputError, "at least 1×1"),
    (lambda p: ([np.zeros((0, 4, 3), np.uint8)], [_prompt(p)]), {}, InputError, "no pixels"),
    (lambda p: ([np.full((4, 4), 2.0)], [_prompt(p)]), {}, InputError, r"image 0: .*\[0, 1\]"),
    (lambda p: ([np.zeros((4, 4, 5), np.uint8)], [_prompt(p)]), {}, InputError, "shape"),
    (lambda p: (IMAGE, [_prompt(p)]), {}, InputError, "images must be a list"),
    (lambda p: ([IMAGE], _prompt(p)), {}, InputError, "prompts must be a list"),
    (lambda p: ([IMAGE], [None]), {}, InputError, "prompt 0 is a NoneType"),
    (lambda p: ([], []), {}, InputError, "no prompts"),
    (lambda p: ([IMAGE], ["no placeholder"]), {}, LayoutError, "placeholder"),
    (lambda p: ([IMAGE, IMAGE], [_prompt(p)]), {}, LayoutError, "placeholder"),
    (lambda p: ([IMAGE], [_prompt(p)]), {"padding_side": "middle"}, InputError, "padding_side"),
    (lambda p: ([IMAGE], [_prompt(p)]), {"return_tensors": "xx"}, LayoutError, "rejected"),
]


@pytest.mark.parametrize(("make", "options", "error", "match"), PREPARE_CALLS)
def test_prepare_inputs_calls(tiny_llava, make, options, error, match):  # type: ignore[no-untyped-def]
    _, processor = tiny_llava
    images, prompts = make(processor)
    with pytest.raises(error, match=match):
        prepare_inputs(processor, images, prompts, **options)


@pytest.mark.parametrize(
    "pixels",
    [
        np.asarray(IMAGE),  # (H, W, 3) uint8
        np.asarray(IMAGE).astype(np.float32) / 255.0,  # floats in [0, 1]
        np.dstack([np.asarray(IMAGE), np.full((40, 50), 255, np.uint8)]),  # opaque RGBA
    ],
)
def test_prepare_inputs_and_layout_take_arrays_like_pil_images(tiny_llava, pixels):  # type: ignore[no-untyped-def]
    _, processor = tiny_llava
    prompts = [_prompt(processor)]
    from_pil = prepare_inputs(processor, [IMAGE], prompts)
    from_array = prepare_inputs(processor, [pixels], prompts)
    assert torch.equal(from_array["input_ids"], from_pil["input_ids"])
    torch.testing.assert_close(from_array["pixel_values"], from_pil["pixel_values"])
    layout = ImageLayout.from_inputs(processor, from_array, images=[pixels])
    assert layout.image_size(0) == (50, 40)
    reference = ImageLayout.from_inputs(processor, from_pil, images=[IMAGE])
    assert np.array_equal(layout.patch_positions(0), reference.patch_positions(0))


def test_grayscale_array_is_an_rgb_image(tiny_llava):  # type: ignore[no-untyped-def]
    _, processor = tiny_llava
    gray = np.full((40, 50), 100, np.uint8)
    got = prepare_inputs(processor, [gray], [_prompt(processor)])
    want = prepare_inputs(processor, [Image.new("RGB", (50, 40), (100,) * 3)], [_prompt(processor)])
    torch.testing.assert_close(got["pixel_values"], want["pixel_values"])


PROMPTS: list[tuple[Any, Any, str]] = [
    (None, None, "question must be a string"),
    (5, None, "question must be a string"),
    ("q", 5, "answer must be a string or None"),
    (["q"], None, "question must be a string"),
]


@pytest.mark.parametrize(("question", "answer", "match"), PROMPTS)
def test_build_prompt_arguments(tiny_llava, question, answer, match):  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match=match):
        build_prompt(tiny_llava[1], question, answer=answer)


# -- the image layout -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def layout_inputs(tiny_llava):  # type: ignore[no-untyped-def]
    _, processor = tiny_llava
    inputs = prepare_inputs(processor, [IMAGE], [_prompt(processor)])
    return processor, inputs, ImageLayout.from_inputs(processor, inputs, images=[IMAGE])


FROM_INPUTS: list[tuple[dict[str, Any], Callable[[Any], Any] | None, type, str]] = [
    ({}, None, InputError, "exactly one of"),
    ({"images": [IMAGE], "image_sizes": [(50, 40)]}, None, InputError, "exactly one of"),
    ({"images": IMAGE}, None, InputError, "images must be a list"),
    ({"images": [[1, 2]]}, None, InputError, "image 0 is a list"),
    ({"images": [np.zeros(5)]}, None, InputError, r"shape \(5,\)"),
    ({"image_sizes": [(1, 2, 3)]}, None, InputError, "image size 0 must be"),
    ({"image_sizes": [(50.5, 40)]}, None, InputError, "image size 0 must be"),
    ({"image_sizes": [None]}, None, InputError, "image size 0 must be"),
    ({"image_sizes": [(0, 40)]}, None, InputError, "must be positive"),
    ({"image_sizes": [(50, 40), (50, 40)]}, None, LayoutError, "processed image"),
    ({"images": [IMAGE]}, lambda i: {"pixel_values": i["pixel_values"]}, InputError, "input_ids"),
    ({"images": [IMAGE]}, lambda i: i["input_ids"], InputError, "input_ids"),
    ({"images": []}, lambda i: {"input_ids": i["input_ids"]}, LayoutError, "<image> tokens"),
]


@pytest.mark.parametrize(("options", "change", "error", "match"), FROM_INPUTS)
def test_layout_from_inputs(layout_inputs, options, change, error, match):  # type: ignore[no-untyped-def]
    processor, inputs, _ = layout_inputs
    with pytest.raises(error, match=match):
        ImageLayout.from_inputs(processor, change(inputs) if change else inputs, **options)


LAYOUT_CALLS: list[tuple[Callable[[ImageLayout], Any], str]] = [
    (lambda lay: lay.grid(5), "image 5 out of range"),
    (lambda lay: lay.grid(-1), "image -1 out of range"),
    (lambda lay: lay.grid(0, grid=3), "grid 3 out of range"),
    (lambda lay: lay.grid("0"), "image index must be an integer"),
    (lambda lay: lay.patch_positions(0, grid=1), "grid 1 out of range"),
    (lambda lay: lay.patch_box(-1), "patch -1 out of range"),
    (lambda lay: lay.patch_box(64), "patch 64 out of range"),
    (lambda lay: lay.patch_box("a"), "patch index must be an integer"),
    (lambda lay: lay.patch_box(0, image=2), "image 2 out of range"),
    (lambda lay: lay.image_size(3), "image 3 out of range"),
    (lambda lay: lay.batch_of(1), "image 1 out of range"),
    (lambda lay: lay.mask_to_patches(np.zeros((3, 3), bool)), r"expected shape \(40, 50\)"),
    (lambda lay: lay.mask_to_patches(np.zeros((40, 50, 3), bool)), r"expected shape \(40, 50\)"),
    (lambda lay: lay.mask_to_patches(np.full((40, 50), 3)), r"\[0, 1\]"),
    (lambda lay: lay.mask_to_patches(np.full((40, 50), np.nan)), r"\[0, 1\]"),
    (lambda lay: lay.mask_to_patches(np.full((40, 50), "a")), "dtype"),
    (lambda lay: lay.box_to_patches((5, 5, 1, 1)), "negative size"),
    (lambda lay: lay.box_to_patches((5, 5, 1)), "four finite numbers"),
    (lambda lay: lay.box_to_patches("abcd"), "four numbers"),
    (lambda lay: lay.box_to_patches((np.nan, 0, 1, 1)), "four finite numbers"),
    (lambda lay: lay.box_to_patches(None), "four numbers"),
]


@pytest.mark.parametrize(("call", "match"), LAYOUT_CALLS)
def test_layout_calls(layout_inputs, call, match):  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match=match):
        call(layout_inputs[2])


def test_empty_mask_covers_no_patch(layout_inputs):  # type: ignore[no-untyped-def]
    coverage = layout_inputs[2].mask_to_patches(np.zeros((40, 50), bool))
    assert coverage.shape == (8, 8) and not coverage.any()
    assert layout_inputs[2].images_in(7) == []


# -- adapters, to_model, pad_token_id ----------------------------------------------------------------

OTHER_CALLS: list[tuple[Callable[[Any, Any], Any], type, str]] = [
    (lambda m, p: adapter_for(None), UnsupportedModelError, "LLaVA"),
    (lambda m, p: adapter_for(torch.nn.Linear(2, 2)), UnsupportedModelError, "LLaVA"),
    (lambda m, p: to_model(m, "input_ids"), InputError, "inputs must be a mapping"),
    (lambda m, p: to_model(m, [1, 2]), InputError, "inputs must be a mapping"),
    (lambda m, p: to_model(torch.nn.Identity(), {}), InputError, "with parameters"),
    (lambda m, p: to_model(None, {}), InputError, "with parameters"),
    (lambda m, p: pad_token_id(None), InputError, "needs a tokenizer"),
    (lambda m, p: pad_token_id("tokenizer"), InputError, "needs a tokenizer"),
]


@pytest.mark.parametrize(("call", "error", "match"), OTHER_CALLS)
def test_other_calls(tiny_llava, call, error, match):  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=match):
        call(*tiny_llava)


def test_pad_token_id_takes_a_processor_and_to_model_numpy_inputs(tiny_llava):  # type: ignore[no-untyped-def]
    model, processor = tiny_llava
    assert pad_token_id(processor) == pad_token_id(processor.tokenizer) is not None
    inputs = prepare_inputs(processor, [IMAGE], [_prompt(processor)], return_tensors="np")
    moved = to_model(model, inputs)
    assert isinstance(moved["input_ids"], torch.Tensor)
    assert moved["pixel_values"].dtype == torch.float32
    with torch.no_grad():
        model(**moved)
