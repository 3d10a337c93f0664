"""Tiny LLaVA models built offline, loadable with the ordinary Hugging Face classes.

``build_tiny_llava`` writes a directory holding a randomly initialised
``LlavaForConditionalGeneration`` (CLIP vision tower + projector + Llama text model),
its ``LlavaProcessor`` (CLIP-style image processor, the LLaMA-like tokenizer of
:mod:`somprobe.models.tokenizer`, the vicuna_v1 chat template). ``AutoProcessor`` and
``AutoModelForImageTextToText`` load it with no network, exactly as they load
``llava-hf/llava-1.5-7b-hf``, so tests run the same code path as real users.

Example:
    >>> from somprobe.models import build_tiny_llava, load_model
    >>> path = build_tiny_llava("/tmp/tiny-llava", image_size=112, text_layers=2)
    >>> model, processor = load_model(path)
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaImageProcessorPil,
    LlavaProcessor,
    PreTrainedModel,
    ProcessorMixin,
)

from somprobe.errors import InputError, WriteError
from somprobe.io import atomic_write, check_writable
from somprobe.models.tokenizer import IMAGE_TOKEN, build_llama_like_tokenizer


@dataclass(frozen=True)
class TinyLlavaShape:
    """Every knob of a tiny LLaVA. Widths must be divisible by their head counts."""

    image_size: int = 112
    patch_size: int = 14
    vision_layers: int = 2
    vision_width: int = 64
    vision_heads: int = 4
    text_layers: int = 2
    text_width: int = 128
    text_heads: int = 4
    num_key_value_heads: int | None = None
    text_intermediate: int | None = None  # the MLP's width; None: 4 × text_width
    vision_feature_layer: int = -1
    vision_feature_select_strategy: Literal["default", "full"] = "default"
    pad_to_square: bool = False
    max_position_embeddings: int = 2048
    seed: int = 0

    @property
    def grid_side(self) -> int:
        return self.image_size // self.patch_size

    @property
    def image_tokens(self) -> int:
        """Image tokens per image in the prompt (the CLS dropped by "default")."""
        n = self.grid_side**2
        return n if self.vision_feature_select_strategy == "default" else n + 1

    def validate(self) -> None:
        """Raise :class:`InputError` naming the first knob that cannot make a model."""
        counts = (
            "image_size",
            "patch_size",
            "vision_layers",
            "vision_width",
            "vision_heads",
            "text_layers",
            "text_width",
            "text_heads",
            "max_position_embeddings",
        )
        optional = ("num_key_value_heads", "text_intermediate")
        for name in (*counts, *optional, "vision_feature_layer", "seed"):
            value = getattr(self, name)
            if name in optional and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise InputError(
                    f"invalid tiny LLaVA shape: {name} must be an integer, got {value!r}"
                )
            if (name in counts or name in optional) and value < 1:
                raise InputError(f"invalid tiny LLaVA shape: {name} must be ≥ 1, got {value}")
        checks = [
            (self.image_size % self.patch_size == 0, "patch_size must divide image_size"),
            (self.vision_width % self.vision_heads == 0, "vision_heads must divide vision_width"),
            (self.text_width % self.text_heads == 0, "text_width must divide by text_heads"),
            (
                self.num_key_value_heads is None or self.text_heads % self.num_key_value_heads == 0,
                "text_heads must be a multiple of num_key_value_heads",
            ),
            (
                self.vision_feature_select_strategy in ("default", "full"),
                'vision_feature_select_strategy must be "default" or "full"',
            ),
            (
                -self.vision_layers <= self.vision_feature_layer < self.vision_layers,
                f"vision_feature_layer must lie in [-{self.vision_layers}, {self.vision_layers})",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(f"invalid tiny LLaVA shape: {message} (got {self})")


PRESETS: dict[str, TinyLlavaShape] = {
    # The smallest thing that is still a LLaVA: fast unit tests.
    "test": TinyLlavaShape(),
    # LLaVA-1.5's geometry (336 px, patch 14 → 24×24 = 576 image tokens) at small width,
    # for benchmarks whose cost depends on the sequence length.
    "llava-1.5-geometry": TinyLlavaShape(
        image_size=336,
        vision_layers=2,
        vision_width=64,
        text_layers=4,
        text_width=256,
        text_heads=8,
        vision_feature_layer=-2,
    ),
}


def tiny_llava_shape(preset: str = "test", **overrides: Any) -> TinyLlavaShape:
    """A named preset with any fields overridden.

    Raises:
        InputError: an unknown preset or field, or a shape that cannot make a model.
    """
    if preset not in PRESETS:
        raise InputError(f"unknown tiny LLaVA preset {preset!r}; choose one of {sorted(PRESETS)}")
    unknown = set(overrides) - set(TinyLlavaShape.__dataclass_fields__)
    if unknown:
        raise InputError(
            f"unknown tiny LLaVA option(s) {sorted(unknown)}; "
            f"valid: {sorted(TinyLlavaShape.__dataclass_fields__)}"
        )
    shape = replace(PRESETS[preset], **overrides)
    shape.validate()
    return shape


def tiny_llava_config(shape: TinyLlavaShape, vocab_size: int, image_token_id: int) -> LlavaConfig:
    """The ``LlavaConfig`` of a tiny model of the given shape."""
    vision = CLIPVisionConfig(
        hidden_size=shape.vision_width,
        intermediate_size=4 * shape.vision_width,
        num_hidden_layers=shape.vision_layers,
        num_attention_heads=shape.vision_heads,
        image_size=shape.image_size,
        patch_size=shape.patch_size,
        projection_dim=shape.vision_width,
    )
    text = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=shape.text_width,
        intermediate_size=shape.text_intermediate or 4 * shape.text_width,
        num_hidden_layers=shape.text_layers,
        num_attention_heads=shape.text_heads,
        num_key_value_heads=shape.num_key_value_heads or shape.text_heads,
        max_position_embeddings=shape.max_position_embeddings,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=3,
    )
    return LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=image_token_id,
        image_seq_length=shape.image_tokens,
        vision_feature_layer=shape.vision_feature_layer,
        vision_feature_select_strategy=shape.vision_feature_select_strategy,
    )


def build_tiny_processor(shape: TinyLlavaShape) -> LlavaProcessor:
    """The processor of a tiny model: CLIP-style preprocessing and the tiny tokenizer.

    With ``shape.pad_to_square`` the image is padded to a square with the mean colour
    before resizing (LLaVA's "pad"); otherwise the shorter side is resized and the
    center cropped (the HF processor's default).
    """
    tokenizer = build_llama_like_tokenizer()
    image_processor = LlavaImageProcessorPil(
        size={"shortest_edge": shape.image_size},
        crop_size={"height": shape.image_size, "width": shape.image_size},
        do_pad=shape.pad_to_square,
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=shape.patch_size,
        vision_feature_select_strategy=shape.vision_feature_select_strategy,
        num_additional_image_tokens=1,  # the CLIP tower's CLS token
        chat_template=tokenizer.chat_template,
        image_token=IMAGE_TOKEN,
    )


def build_tiny_llava(
    out_dir: str | os.PathLike[str],
    preset: str = "test",
    *,
    dtype: torch.dtype = torch.float32,
    **shape: Any,
) -> Path:
    """Write a tiny, randomly initialised LLaVA and its processor to ``out_dir``.

    Args:
        out_dir: folder to write (created; existing model files are overwritten).
        preset: a key of :data:`PRESETS` ("test", "llava-1.5-geometry").
        dtype: dtype of the saved weights.
        **shape: any field of :class:`TinyLlavaShape` (image_size, patch_size,
            vision_layers, vision_width, vision_heads, text_layers, text_width,
            text_heads, num_key_value_heads, text_intermediate, vision_feature_layer,
            vision_feature_select_strategy, pad_to_square, seed, ...).

    Returns:
        The folder, loadable with :func:`somprobe.load_model` or the HF Auto classes.

    Raises:
        InputError: an unknown preset or option, or a shape that cannot make a model.
        WriteError: ``out_dir`` cannot be created or written.

    Example:
        >>> path = build_tiny_llava("/tmp/m", num_key_value_heads=2, seed=1)
    """
    spec = tiny_llava_shape(preset, **shape)
    out = check_writable(Path(out_dir) / "config.json").parent  # fail before the work
    processor = build_tiny_processor(spec)
    config = tiny_llava_config(
        spec, vocab_size=len(processor.tokenizer), image_token_id=processor.image_token_id
    )
    torch.manual_seed(spec.seed)
    model = LlavaForConditionalGeneration(config)
    return save_tiny_model(model, processor, out, asdict(spec), dtype=dtype)


def save_tiny_model(
    model: PreTrainedModel,
    processor: ProcessorMixin,
    out: Path,
    shape: Mapping[str, Any],
    *,
    dtype: torch.dtype,
) -> Path:
    """Cast a freshly built tiny model to ``dtype`` in eval mode, give it the tokenizer's
    pad/bos/eos ids for generation, and write it, its processor and ``shape`` (as
    ``somprobe_shape.json``) to ``out``.

    Raises:
        WriteError: ``out`` cannot be written.
    """
    torch.nn.Module.to(model, dtype=dtype)
    model.eval()
    tokenizer = processor.tokenizer  # type: ignore[attr-defined]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    try:
        model.save_pretrained(out)
        processor.save_pretrained(out)
    except OSError as err:
        raise WriteError(f"cannot write the tiny model to {out}: {err.strerror or err}") from err
    with atomic_write(out / "somprobe_shape.json") as fh:
        fh.write(json.dumps(dict(shape), indent=2, sort_keys=True) + "\n")
    return out
