"""One adapter per model family: where the parts somprobe hooks into live.

Example:
    >>> adapter = adapter_for(model)
    >>> adapter.num_layers, adapter.num_heads
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from somprobe.errors import UnsupportedModelError


@dataclass(frozen=True)
class LlavaAdapter:
    """HF ``LlavaForConditionalGeneration`` (LLaVA-1.5 and its finetunes, tiny models)."""

    model: Any

    @property
    def language_model(self) -> nn.Module:
        return self.model.model.language_model  # type: ignore[union-attr,return-value]

    @property
    def text_config(self) -> Any:
        return self.model.config.text_config

    @property
    def layers(self) -> nn.ModuleList:
        return self.language_model.layers  # type: ignore[return-value]

    @property
    def embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()  # type: ignore[no-any-return]

    def attention(self, layer: int) -> nn.Module:
        module: nn.Module = self.layers[layer].self_attn  # type: ignore[assignment]
        return module

    @property
    def num_layers(self) -> int:
        return int(self.text_config.num_hidden_layers)

    @property
    def num_heads(self) -> int:
        return int(self.text_config.num_attention_heads)

    @property
    def num_kv_heads(self) -> int:
        return int(getattr(self.text_config, "num_key_value_heads", None) or self.num_heads)

    @property
    def image_token_id(self) -> int:
        return int(self.model.config.image_token_id)


def adapter_for(model: Any) -> LlavaAdapter:
    """The adapter of ``model``, or a clear error for an unsupported family."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type == "llava" and hasattr(getattr(model, "model", None), "language_model"):
        return LlavaAdapter(model)
    raise UnsupportedModelError(
        f"somprobe can capture from LLaVA models (LlavaForConditionalGeneration); got "
        f"{type(model).__name__} (model_type={model_type!r}). Load one with somprobe.load_model."
    )
