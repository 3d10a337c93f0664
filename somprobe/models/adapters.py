"""One adapter per model family: where the parts somprobe hooks into live.

Capture (the Recorder and both framework backends) and finetuning ask the adapter for
modules instead of spelling out module paths, so a new family is one new adapter.

Example:
    >>> adapter = adapter_for(model)  # doctest: +SKIP
    >>> adapter.num_layers, adapter.num_heads, adapter.decoder_layers_path  # doctest: +SKIP
    (2, 4, 'model.language_model.layers')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from somprobe.errors import UnsupportedModelError


def resolve_path(root: Any, path: str) -> Any:
    """``root.a.b.c`` for ``path = "a.b.c"`` (modules, or wrappers such as nnsight's
    envoys that mirror the module tree)."""
    obj = root
    for name in path.split("."):
        obj = getattr(obj, name)
    return obj


@dataclass(frozen=True)
class LlavaAdapter:
    """HF ``LlavaForConditionalGeneration`` (LLaVA-1.5 and its finetunes, tiny models)."""

    model: Any

    #: module paths from the top-level model
    language_model_path: ClassVar[str] = "model.language_model"
    decoder_layers_path: ClassVar[str] = "model.language_model.layers"
    vision_tower_path: ClassVar[str] = "model.vision_tower"
    projector_path: ClassVar[str] = "model.multi_modal_projector"
    lm_head_path: ClassVar[str] = "lm_head"

    @property
    def language_model(self) -> nn.Module:
        return resolve_path(self.model, self.language_model_path)  # type: ignore[no-any-return]

    @property
    def vision_tower(self) -> nn.Module:
        return resolve_path(self.model, self.vision_tower_path)  # type: ignore[no-any-return]

    @property
    def projector(self) -> nn.Module:
        return resolve_path(self.model, self.projector_path)  # type: ignore[no-any-return]

    @property
    def lm_head(self) -> nn.Module:
        return resolve_path(self.model, self.lm_head_path)  # type: ignore[no-any-return]

    @property
    def text_config(self) -> Any:
        return self.model.config.text_config

    @property
    def layers(self) -> nn.ModuleList:
        return resolve_path(self.model, self.decoder_layers_path)  # type: ignore[no-any-return]

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
