"""The model-family adapter owns the module paths that capture and finetuning use."""

from __future__ import annotations

import pytest
import torch

from somprobe.errors import InputError, UnsupportedModelError
from somprobe.finetune.trainer import model_parts
from somprobe.models import adapter_for
from somprobe.models.adapters import resolve_path


def test_llava_paths_name_the_modules_they_resolve_to(tiny_llava) -> None:  # type: ignore[no-untyped-def]
    model, _ = tiny_llava
    adapter = adapter_for(model)
    assert adapter.language_model is model.model.language_model
    assert adapter.layers is model.model.language_model.layers
    assert adapter.vision_tower is model.model.vision_tower
    assert adapter.projector is model.model.multi_modal_projector
    assert adapter.lm_head is model.lm_head
    assert resolve_path(model, adapter.decoder_layers_path) is adapter.layers
    assert adapter.attention(1) is model.model.language_model.layers[1].self_attn
    parts = model_parts(model)
    assert parts["vision"] == [adapter.vision_tower]
    assert parts["lm"] == [adapter.language_model, adapter.lm_head]


def test_other_models_are_refused() -> None:
    with pytest.raises(UnsupportedModelError, match="LLaVA models"):
        adapter_for(torch.nn.Linear(2, 2))
    with pytest.raises(InputError, match="finetune expects a LlavaForConditionalGeneration"):
        model_parts(torch.nn.Linear(2, 2))
