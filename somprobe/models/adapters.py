"""One adapter per model family: where the parts somprobe hooks into live.

Capture (the Recorder and both framework backends) and finetuning ask the adapter for
modules instead of spelling out module paths, so a new family is one new adapter.

Example:
    >>> adapter = adapter_for(model)  # doctest: +SKIP
    >>> adapter.num_layers, adapter.num_heads, adapter.decoder_layers_path  # doctest: +SKIP
    (2, 4, 'model.language_model.layers')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from torch import nn

from somprobe.errors import InputError, UnsupportedModelError


def resolve_path(root: Any, path: str) -> Any:
    """``root.a.b.c`` for ``path = "a.b.c"`` (modules, or wrappers such as nnsight's
    envoys that mirror the module tree)."""
    obj = root
    for name in path.split("."):
        obj = getattr(obj, name)
    return obj


@dataclass(frozen=True)
class LlavaAdapter:
    """HF ``LlavaForConditionalGeneration`` (LLaVA-1.5 and its finetunes, tiny models).

    The other families subclass it and override the paths that differ.
    """

    model: Any

    #: the layout family (see :mod:`somprobe.models.layouts`)
    family: ClassVar[str] = "llava"
    #: what this family's processor makes: the rank of ``pixel_values`` and the extra
    #: image inputs that come with them (checked by :func:`check_inputs`)
    pixel_rank: ClassVar[int] = 4
    image_inputs: ClassVar[tuple[str, ...]] = ()

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


@dataclass(frozen=True)
class LlavaNextAdapter(LlavaAdapter):
    """HF ``LlavaNextForConditionalGeneration`` (LLaVA-NeXT / LLaVA-1.6, anyres tiles).

    The same module paths as LLaVA-1.5 in transformers 5, plus the learned
    ``image_newline`` vector that ends each row of the tile grid.
    """

    family: ClassVar[str] = "llava_next"
    pixel_rank: ClassVar[int] = 5
    image_inputs: ClassVar[tuple[str, ...]] = ("image_sizes",)
    image_newline_path: ClassVar[str] = "model.image_newline"

    @property
    def image_newline(self) -> nn.Parameter:
        return resolve_path(self.model, self.image_newline_path)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Qwen2VLAdapter(LlavaAdapter):
    """HF ``Qwen2_5_VLForConditionalGeneration`` / ``Qwen2VLForConditionalGeneration``.

    The vision tower is ``model.visual`` and its patch merger (2×2 patches → one token,
    projected to the text width) plays the projector's part.
    """

    family: ClassVar[str] = "qwen2_vl"
    pixel_rank: ClassVar[int] = 2
    image_inputs: ClassVar[tuple[str, ...]] = ("image_grid_thw",)
    vision_tower_path: ClassVar[str] = "model.visual"
    projector_path: ClassVar[str] = "model.visual.merger"


#: model_type → adapter class, one entry per supported family.
ADAPTERS: dict[str, type[LlavaAdapter]] = {
    "llava": LlavaAdapter,
    "llava_next": LlavaNextAdapter,
    "qwen2_vl": Qwen2VLAdapter,
    "qwen2_5_vl": Qwen2VLAdapter,
}

#: The architectures somprobe supports, for messages.
SUPPORTED_ARCHITECTURES = (
    "LlavaForConditionalGeneration (LLaVA-1.5)",
    "LlavaNextForConditionalGeneration (LLaVA-NeXT)",
    "Qwen2VLForConditionalGeneration (Qwen2-VL)",
    "Qwen2_5_VLForConditionalGeneration (Qwen2.5-VL)",
)


def adapter_for(model: Any) -> LlavaAdapter:
    """The adapter of ``model``, or a clear error for an unsupported family.

    Example:
        >>> type(adapter_for(model)).__name__  # doctest: +SKIP
        'LlavaNextAdapter'
    """
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    adapter = ADAPTERS.get(model_type) if isinstance(model_type, str) else None
    if adapter is not None and hasattr(getattr(model, "model", None), "language_model"):
        return adapter(model)
    raise UnsupportedModelError(
        f"somprobe can capture from LLaVA models and their relatives: "
        f"{', '.join(SUPPORTED_ARCHITECTURES)}; got {type(model).__name__} "
        f"(model_type={model_type!r}). Load one with somprobe.load_model."
    )


#: Every family's extra image inputs, to name the processor that made some inputs.
_IMAGE_INPUTS = {"image_sizes": "LLaVA-NeXT", "image_grid_thw": "Qwen2-VL / Qwen2.5-VL"}
_PIXEL_RANKS = {4: "LLaVA-1.5", 5: "LLaVA-NeXT", 2: "Qwen2-VL / Qwen2.5-VL"}


def check_processor(model: Any, processor: Any) -> None:
    """Refuse a processor of another family than ``model`` (or another image token).

    Raises:
        UnsupportedModelError: the model or the processor is of no supported family.
        InputError: the processor was made for another family, or its image token is not
            the model's.

    Example:
        >>> check_processor(model, processor)  # the pair load_model returned: no error
        ... # doctest: +SKIP
    """
    from somprobe.models.layouts import family_for

    adapter = adapter_for(model)
    family = family_for(processor)
    if family.name != adapter.family:
        raise InputError(
            f"the processor ({type(processor).__name__}, family {family.name!r}) does not fit "
            f"the model ({type(model).__name__}, family {adapter.family!r}); pass the processor "
            "that was loaded with the model (load_model returns both)"
        )
    token = getattr(processor, "image_token_id", None)
    if token is not None and int(token) != adapter.image_token_id:
        raise InputError(
            f"the processor's image token id {token} is not the model's "
            f"({adapter.image_token_id}); pass the processor that was loaded with the model"
        )


def check_inputs(model: Any, inputs: Mapping[str, Any]) -> None:
    """Refuse image inputs that another family's processor made for ``model``.

    A LLaVA-1.5 model takes ``pixel_values`` of shape (images, channels, height, width);
    LLaVA-NeXT (images, tiles, channels, height, width) with ``image_sizes``; Qwen2-VL
    flattened patches (patches, features) with ``image_grid_thw``. Inputs without
    ``pixel_values`` pass.

    Raises:
        InputError: pixel inputs of another family's processor.
        UnsupportedModelError: the model is of no supported family.
    """
    adapter = adapter_for(model)
    pixels = inputs.get("pixel_values")
    if pixels is None:
        return
    rank = int(np.ndim(pixels))
    foreign = [k for k in _IMAGE_INPUTS if k in inputs and k not in adapter.image_inputs]
    missing = [k for k in adapter.image_inputs if k not in inputs]
    if rank == adapter.pixel_rank and not foreign and not missing:
        return
    source = (
        _IMAGE_INPUTS[foreign[0]] if foreign else _PIXEL_RANKS.get(rank, "an unknown processor")
    )
    raise InputError(
        f"these inputs look made by a {source} processor (pixel_values of rank {rank}"
        f"{', with ' + ', '.join(foreign) if foreign else ''}"
        f"{', without ' + ', '.join(missing) if missing else ''}) but the model is a "
        f"{type(model).__name__} (family {adapter.family!r}); make the inputs with the "
        "processor that was loaded with the model"
    )
