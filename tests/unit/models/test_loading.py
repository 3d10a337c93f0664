import json

import pytest
import torch
from transformers import LlavaForConditionalGeneration

from somprobe.errors import ModelLoadError, SomprobeError, UnsupportedModelError
from somprobe.models import load_model
from somprobe.models.adapters import SUPPORTED_ARCHITECTURES


def test_loads_tiny_model_with_sdpa_in_eval_mode(tiny_llava_path):
    model, processor = load_model(tiny_llava_path)
    assert isinstance(model, LlavaForConditionalGeneration)
    assert model.config._attn_implementation == "sdpa"
    assert not model.training
    assert processor.tokenizer is not None


def test_dtype_names(tiny_llava_path):
    model, _ = load_model(tiny_llava_path, dtype="bf16")
    assert next(model.parameters()).dtype == torch.bfloat16
    with pytest.raises(ModelLoadError, match="dtype"):
        load_model(tiny_llava_path, dtype="float8")


def test_hub_name_offline_says_how_to_download():
    with pytest.raises(ModelLoadError) as info:
        load_model("llava-hf/llava-1.5-7b-hf")
    message = str(info.value)
    assert "download" in message and "llava-hf/llava-1.5-7b-hf" in message
    assert isinstance(info.value, SomprobeError)


def test_missing_local_folder(tmp_path):
    with pytest.raises(ModelLoadError):
        load_model(tmp_path / "nowhere")


def test_non_llava_checkpoint_is_rejected(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(UnsupportedModelError, match="gpt2") as err:
        load_model(tmp_path)
    for name in SUPPORTED_ARCHITECTURES:  # the message names every supported family
        assert name in str(err.value)


def test_to_model_moves_tensors_and_casts_pixel_values(tiny_llava) -> None:  # type: ignore[no-untyped-def]
    import torch

    from somprobe.models import to_model

    model, _ = tiny_llava
    inputs = {
        "input_ids": torch.ones(1, 3, dtype=torch.long),
        "pixel_values": torch.zeros(1, 3, 4, 4, dtype=torch.float16),
        "note": "kept",
    }
    out = to_model(model, inputs)
    assert out["pixel_values"].dtype == next(model.parameters()).dtype == torch.float32
    assert out["input_ids"].dtype == torch.long and out["note"] == "kept"
    assert inputs["pixel_values"].dtype == torch.float16  # the caller's inputs are untouched
