"""Tiny models of the other supported families, built offline with random weights.

``build_tiny_llava_next`` writes a ``LlavaNextForConditionalGeneration`` (CLIP tower,
projector, ``image_newline``, Llama text model) with its ``LlavaNextProcessor`` (anyres
tiles over small ``image_grid_pinpoints``) and the same digit-splitting tokenizer and
vicuna_v1 template as :func:`somprobe.models.build_tiny_llava`.

``build_tiny_qwen2_5_vl`` writes a ``Qwen2_5_VLForConditionalGeneration`` (the real
patch-14, 2×2-merge, window-attention geometry at small width and pixel budget) with
the same tokenizer plus Qwen's ChatML and vision special tokens. transformers' full
Qwen2.5-VL processor needs torchvision (for videos); without it
:func:`load_qwen2_5_vl_processor` (which :func:`somprobe.load_model` uses) builds an
images-only one from the same files.

The folders load with :func:`somprobe.load_model` with no network.

Example:
    >>> from somprobe.models import load_model
    >>> from somprobe.models.tiny_families import build_tiny_llava_next
    >>> model, processor = load_model(build_tiny_llava_next("/tmp/tiny-next"))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from transformers import (
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    LlavaNextImageProcessorPil,
    LlavaNextProcessor,
)

from somprobe.errors import InputError, ModelLoadError
from somprobe.io import atomic_write, check_writable
from somprobe.models.tiny import (
    TinyLlavaShape,
    save_tiny_model,
    tiny_llava_config,
    tiny_llava_shape,
)
from somprobe.models.tokenizer import IMAGE_TOKEN, build_llama_like_tokenizer

#: Pinpoints ``[height, width]`` in tiles of the 56 px base: 1×2, 2×1, 2×2, 1×3, 3×1.
NEXT_PINPOINTS: tuple[tuple[int, int], ...] = ((1, 2), (2, 1), (2, 2), (1, 3), (3, 1))


def _pinpoints(tile: int, pinpoints: Sequence[Sequence[int]] | None) -> list[list[int]]:
    """Pixel pinpoints ``[height, width]``, checked to be positive multiples of ``tile``."""
    if pinpoints is None:
        return [[h * tile, w * tile] for h, w in NEXT_PINPOINTS]
    out: list[list[int]] = []
    for point in pinpoints:
        values = list(point) if isinstance(point, Sequence) and not isinstance(point, str) else []
        ok = len(values) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 and v % tile == 0
            for v in values
        )
        if not ok:
            raise InputError(
                f"grid_pinpoints must be [height, width] pairs of positive multiples of the "
                f"image_size {tile}, got {point!r}"
            )
        out.append([int(v) for v in values])
    if not out:
        raise InputError("grid_pinpoints is empty; give at least one [height, width]")
    return out


def build_tiny_llava_next_processor(
    shape: TinyLlavaShape, pinpoints: list[list[int]]
) -> LlavaNextProcessor:
    """A ``LlavaNextProcessor`` with square tiles of ``shape.image_size`` pixels."""
    tokenizer = build_llama_like_tokenizer()
    side = shape.image_size
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": side},
        crop_size={"height": side, "width": side},
        image_grid_pinpoints=pinpoints,
    )
    return LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=shape.patch_size,
        vision_feature_select_strategy=shape.vision_feature_select_strategy,
        num_additional_image_tokens=1 if shape.vision_feature_select_strategy == "default" else 0,
        chat_template=tokenizer.chat_template,
        image_token=IMAGE_TOKEN,
    )


def build_tiny_llava_next(
    out_dir: str | os.PathLike[str],
    *,
    grid_pinpoints: Sequence[Sequence[int]] | None = None,
    dtype: torch.dtype = torch.float32,
    **shape: Any,
) -> Path:
    """Write a tiny, randomly initialised LLaVA-NeXT and its processor to ``out_dir``.

    Args:
        out_dir: folder to write (created; existing model files are overwritten).
        grid_pinpoints: anyres canvases ``[height, width]`` in pixels, multiples of
            ``image_size``; by default 1×2, 2×1, 2×2, 1×3 and 3×1 tiles.
        dtype: dtype of the saved weights.
        **shape: fields of :class:`~somprobe.models.tiny.TinyLlavaShape`; ``image_size``
            (default 56, the base image and tile side) and ``patch_size`` (14) set the
            geometry. Only the "default" select strategy is supported (the model's
            unpadding needs whole tiles, without the CLS).

    Returns:
        The folder, loadable with :func:`somprobe.load_model`.

    Raises:
        InputError: a bad option, shape or pinpoint list.
        WriteError: ``out_dir`` cannot be created or written.

    Example:
        >>> path = build_tiny_llava_next("/tmp/next", grid_pinpoints=[[56, 112], [112, 56]])
    """
    shape.setdefault("image_size", 56)
    if shape.get("pad_to_square"):
        raise InputError("pad_to_square is a LLaVA-1.5 option; LLaVA-NeXT pads its tiles itself")
    if shape.get("vision_feature_select_strategy", "default") != "default":
        raise InputError(
            'a tiny LLaVA-NeXT supports vision_feature_select_strategy="default" only '
            "(the CLIP tower's CLS would break the tiles)"
        )
    spec = tiny_llava_shape("test", **shape)
    pinpoints = _pinpoints(spec.image_size, grid_pinpoints)
    out = check_writable(Path(out_dir) / "config.json").parent
    processor = build_tiny_llava_next_processor(spec, pinpoints)
    base = tiny_llava_config(
        spec, vocab_size=len(processor.tokenizer), image_token_id=processor.image_token_id
    )
    config = LlavaNextConfig(
        vision_config=base.vision_config,
        text_config=base.text_config,
        image_token_index=processor.image_token_id,
        image_grid_pinpoints=pinpoints,
        image_seq_length=spec.grid_side**2,
        vision_feature_layer=spec.vision_feature_layer,
        vision_feature_select_strategy=spec.vision_feature_select_strategy,
    )
    torch.manual_seed(spec.seed)
    model = LlavaNextForConditionalGeneration(config)
    shape_json = {**asdict(spec), "grid_pinpoints": pinpoints}
    return save_tiny_model(model, processor, out, shape_json, dtype=dtype)


# -- Qwen2.5-VL ---------------------------------------------------------------------------------

QWEN_IMAGE_TOKEN = "<|image_pad|>"
QWEN_SPECIAL_TOKENS = (
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    QWEN_IMAGE_TOKEN,
    "<|video_pad|>",
)

# Qwen's ChatML: images of a turn are <|vision_start|><|image_pad|><|vision_end|>, first.
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}"
    "{{ '<|vision_start|><|image_pad|><|vision_end|>' }}{% endif %}{% endfor %}"
    "{% for part in message['content'] %}{% if part['type'] == 'text' %}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ part['text'] }}"
    "{% endgeneration %}{% else %}{{ part['text'] }}{% endif %}"
    "{% endif %}{% endfor %}"
    "{{ '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_qwen_like_tokenizer() -> Any:
    """The digit-splitting tiny tokenizer with Qwen's vision and ChatML special tokens.

    Example:
        >>> tok = build_qwen_like_tokenizer()
        >>> tok.image_token
        '<|image_pad|>'
    """
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    base = build_llama_like_tokenizer()
    backend = base.backend_tokenizer
    backend.add_special_tokens(list(QWEN_SPECIAL_TOKENS))
    backend.post_processor = processors.TemplateProcessing(single="$A", pair="$A $B:1")
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=None,
        eos_token="<|im_end|>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_special_tokens={
            "image_token": QWEN_IMAGE_TOKEN,
            "video_token": "<|video_pad|>",
            "vision_bos_token": "<|vision_start|>",
            "vision_eos_token": "<|vision_end|>",
        },
        padding_side="left",
        model_max_length=4096,
        chat_template=QWEN_CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False,
    )


def _torchvision_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torchvision") is not None


def images_only_qwen2_5_vl_processor(image_processor: Any, tokenizer: Any) -> Any:
    """A ``Qwen2_5_VLProcessor`` without its video processor.

    transformers' video processors need torchvision; this subclass skips the video part
    (images and text work exactly as in the full processor), so Qwen2.5-VL inputs can be
    made where torchvision is not installed.

    Example:
        >>> processor = images_only_qwen2_5_vl_processor(image_processor, tokenizer)
        ... # doctest: +SKIP
    """
    from transformers import Qwen2_5_VLProcessor
    from transformers.processing_utils import ProcessorMixin

    class ImagesOnlyQwen2_5_VLProcessor(Qwen2_5_VLProcessor):
        def __init__(
            self, image_processor: Any = None, tokenizer: Any = None, chat_template: Any = None
        ) -> None:
            self.image_token = getattr(tokenizer, "image_token", None) or QWEN_IMAGE_TOKEN
            self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
            self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
            self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    return ImagesOnlyQwen2_5_VLProcessor(
        image_processor, tokenizer, chat_template=tokenizer.chat_template
    )


def load_qwen2_5_vl_processor(path: str | os.PathLike[str]) -> Any:
    """The processor of a Qwen2.5-VL folder: the full one where torchvision is installed,
    else :func:`images_only_qwen2_5_vl_processor` from the folder's tokenizer and image
    processor.

    Raises:
        ModelLoadError: the folder has no loadable tokenizer or image processor.
    """
    from transformers import AutoProcessor, AutoTokenizer, Qwen2VLImageProcessorPil

    if _torchvision_available():
        return AutoProcessor.from_pretrained(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        image_processor = Qwen2VLImageProcessorPil.from_pretrained(path)
    except Exception as err:  # a missing or broken file anywhere in from_pretrained
        raise ModelLoadError(
            f"could not load a Qwen2.5-VL processor from {path}: {type(err).__name__}: {err}"
        ) from err
    return images_only_qwen2_5_vl_processor(image_processor, tokenizer)


def build_tiny_qwen2_5_vl(
    out_dir: str | os.PathLike[str],
    *,
    min_pixels: int = 56 * 56,
    max_pixels: int = 112 * 112,
    vision_layers: int = 2,
    vision_width: int = 64,
    vision_heads: int = 4,
    text_layers: int = 2,
    text_width: int = 128,
    text_heads: int = 4,
    num_key_value_heads: int = 2,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write a tiny, randomly initialised Qwen2.5-VL and its processor to ``out_dir``.

    The geometry is the real one (patch 14, 2×2 merge, temporal patch 2, window
    attention); only the pixel budget (``min_pixels``..``max_pixels``, so 4 to 16 image
    tokens by default) and the widths are small.

    Raises:
        InputError: a knob that cannot make a model.
        WriteError: ``out_dir`` cannot be written.

    Example:
        >>> path = build_tiny_qwen2_5_vl("/tmp/tiny-qwen", max_pixels=224 * 224)
    """
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2VLImageProcessorPil,
    )

    knobs = {
        "min_pixels": min_pixels,
        "max_pixels": max_pixels,
        "vision_layers": vision_layers,
        "vision_width": vision_width,
        "vision_heads": vision_heads,
        "text_layers": text_layers,
        "text_width": text_width,
        "text_heads": text_heads,
        "num_key_value_heads": num_key_value_heads,
    }
    for name, value in knobs.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(
                f"invalid tiny Qwen2.5-VL: {name} must be an integer ≥ 1, got {value!r}"
            )
    head_dim, rem = divmod(text_width, text_heads)
    if rem or head_dim % 4 or vision_width % vision_heads or text_heads % num_key_value_heads:
        raise InputError(
            "invalid tiny Qwen2.5-VL: text_width/text_heads must be a multiple of 4, heads must "
            "divide widths and num_key_value_heads divide text_heads"
        )
    if min_pixels > max_pixels:
        raise InputError(f"min_pixels {min_pixels} exceeds max_pixels {max_pixels}")
    out = check_writable(Path(out_dir) / "config.json").parent
    tokenizer = build_qwen_like_tokenizer()
    image_processor = Qwen2VLImageProcessorPil(
        size={"shortest_edge": min_pixels, "longest_edge": max_pixels}
    )
    processor = images_only_qwen2_5_vl_processor(image_processor, tokenizer)
    half = head_dim // 2  # rotary pairs, split over (time, height, width)
    section = [half - 2 * (half // 3), half // 3, half // 3]
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": text_width,
            "intermediate_size": 4 * text_width,
            "num_hidden_layers": text_layers,
            "num_attention_heads": text_heads,
            "num_key_value_heads": num_key_value_heads,
            "max_position_embeddings": 4096,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": section,
            },
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "depth": vision_layers,
            "hidden_size": vision_width,
            "intermediate_size": 2 * vision_width,
            "num_heads": vision_heads,
            "out_hidden_size": text_width,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 56,
            "fullatt_block_indexes": [vision_layers - 1],
        },
        image_token_id=ids[QWEN_IMAGE_TOKEN],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    save_tiny_model(model, processor, out, {**knobs, "seed": seed}, dtype=dtype)
    _declare_full_processor(out, min_pixels, max_pixels)
    return out


def _declare_full_processor(out: Path, min_pixels: int, max_pixels: int) -> None:
    """Make the saved folder name transformers' own processor classes, so that
    ``AutoProcessor`` loads a full ``Qwen2_5_VLProcessor`` where torchvision is installed."""
    config_path = out / "processor_config.json"
    config = json.loads(config_path.read_text()) if config_path.exists() else {}
    config["processor_class"] = "Qwen2_5_VLProcessor"
    video = {
        "video_processor_type": "Qwen2VLVideoProcessor",
        "processor_class": "Qwen2_5_VLProcessor",
        "size": {"shortest_edge": min_pixels, "longest_edge": max_pixels},
        "patch_size": 14,
        "temporal_patch_size": 2,
        "merge_size": 2,
    }
    for name, data in (
        ("processor_config.json", config),
        ("video_preprocessor_config.json", video),
    ):
        with atomic_write(out / name) as fh:
            fh.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
