import json

import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor, LlavaForConditionalGeneration

from somprobe.errors import InputError
from somprobe.models import build_prompt, build_tiny_llava, prepare_inputs


def test_round_trip_through_hf_auto_classes(tiny_llava_path):
    processor = AutoProcessor.from_pretrained(tiny_llava_path)
    model = AutoModelForImageTextToText.from_pretrained(tiny_llava_path)
    assert isinstance(model, LlavaForConditionalGeneration)
    again = AutoModelForImageTextToText.from_pretrained(tiny_llava_path)
    for (name, a), (_, b) in zip(
        model.state_dict().items(), again.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert processor.image_token_id == model.config.image_token_id
    assert processor.patch_size == model.config.vision_config.patch_size


def test_same_seed_same_weights_other_seed_other_weights(tmp_path):
    a = build_tiny_llava(tmp_path / "a", seed=3)
    b = build_tiny_llava(tmp_path / "b", seed=3)
    c = build_tiny_llava(tmp_path / "c", seed=4)
    wa, wb, wc = (AutoModelForImageTextToText.from_pretrained(p).lm_head.weight for p in (a, b, c))
    assert torch.equal(wa, wb)
    assert not torch.equal(wa, wc)


def test_generate_runs_on_image_and_prompt(tiny_llava):
    model, processor = tiny_llava
    image = Image.new("RGB", (130, 90), (40, 120, 200))
    inputs = prepare_inputs(processor, [image], [build_prompt(processor, "List the items.")])
    out = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert out.shape == (1, inputs["input_ids"].shape[1] + 5)
    assert torch.equal(out[0, : inputs["input_ids"].shape[1]], inputs["input_ids"][0])


@pytest.mark.parametrize(
    ("options", "check"),
    [
        ({"num_key_value_heads": 2}, lambda c: c.text_config.num_key_value_heads == 2),
        ({"text_intermediate": 344}, lambda c: c.text_config.intermediate_size == 344),
        ({}, lambda c: c.text_config.intermediate_size == 4 * c.text_config.hidden_size),
        (
            {"vision_feature_select_strategy": "full"},
            lambda c: c.vision_feature_select_strategy == "full" and c.image_seq_length == 65,
        ),
        ({"vision_feature_layer": -2, "vision_layers": 3}, lambda c: c.vision_feature_layer == -2),
        (
            {"image_size": 56, "patch_size": 7, "text_width": 64, "text_heads": 2},
            lambda c: c.vision_config.image_size == 56 and c.text_config.hidden_size == 64,
        ),
    ],
)
def test_shape_options_reach_the_config_and_the_model_runs(tmp_path, options, check):
    path = build_tiny_llava(tmp_path, **options)
    config = json.loads((path / "config.json").read_text())
    model = AutoModelForImageTextToText.from_pretrained(path)
    assert check(model.config), config
    processor = AutoProcessor.from_pretrained(path)
    inputs = prepare_inputs(processor, [Image.new("RGB", (60, 80))], [build_prompt(processor, "x")])
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape[:2] == inputs["input_ids"].shape


def test_llava_15_geometry_preset_has_576_image_tokens(tmp_path):
    from somprobe.models import tiny_llava_shape

    shape = tiny_llava_shape("llava-1.5-geometry")
    assert shape.image_tokens == 576
    assert (shape.image_size, shape.patch_size) == (336, 14)


@pytest.mark.parametrize(
    "options",
    [
        {"image_size": 100, "patch_size": 14},
        {"text_width": 130, "text_heads": 4},
        {"text_heads": 4, "num_key_value_heads": 3},
        {"text_intermediate": 0},
        {"text_intermediate": 2.5},
        {"vision_feature_select_strategy": "cls"},
        {"vision_feature_layer": 5},
        {"colour": "red"},
    ],
)
def test_bad_shapes_raise_clear_errors(tmp_path, options):
    with pytest.raises(InputError):
        build_tiny_llava(tmp_path, **options)


def test_unknown_preset(tmp_path):
    with pytest.raises(InputError, match="preset"):
        build_tiny_llava(tmp_path, preset="huge")
