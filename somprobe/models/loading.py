"""Load a Hugging Face LLaVA-family checkpoint (real or tiny) with its processor.

Supported: LLaVA-1.5 (``llava``), LLaVA-NeXT (``llava_next``), Qwen2-VL and Qwen2.5-VL
(``qwen2_vl``, ``qwen2_5_vl``).

Example:
    >>> from somprobe import load_model
    >>> model, processor = load_model("llava-hf/llava-1.5-7b-hf", dtype="float16",
    ...                               device_map="auto")  # needs the weights cached
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from transformers import (
    AutoConfig,
    AutoModelForImageTextToText,
    AutoProcessor,
    PreTrainedModel,
    ProcessorMixin,
)

from somprobe.errors import InputError, ModelLoadError, UnsupportedModelError
from somprobe.models.adapters import SUPPORTED_ARCHITECTURES

SUPPORTED_MODEL_TYPES = ("llava", "llava_next", "qwen2_vl", "qwen2_5_vl")

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | str | None:
    """Turn "bf16"/"float16"/... into a torch dtype; None and "auto" pass through."""
    if dtype is None or isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    if dtype not in _DTYPES:
        raise ModelLoadError(f"unknown dtype {dtype!r}; use one of {sorted(_DTYPES)} or 'auto'")
    return _DTYPES[dtype]


def _hub_error(name: str, err: Exception) -> ModelLoadError:
    local = Path(name).expanduser()
    if local.exists():
        return ModelLoadError(
            f"could not load a LLaVA model from {local}: {type(err).__name__}: {err}"
        )
    return ModelLoadError(
        f"{name!r} is neither a local folder nor a checkpoint in the local Hugging Face cache, "
        "and this run is offline (or the hub cannot be reached). Download it once on a "
        f"machine with network, e.g. `hf download {name}` (or `huggingface-cli download "
        f"{name}`), copy the cache (~/.cache/huggingface) here or pass the downloaded "
        "folder's path instead. Original error: "
        f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    )


def _broken_weights(name: str) -> str:
    """The first ``*.safetensors`` file of a local checkpoint whose header cannot be read."""
    from safetensors import SafetensorError, safe_open

    folder = Path(name).expanduser()
    if not folder.is_dir():
        return "a weights file (*.safetensors)"
    for path in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(path), "pt"):
                pass
        except (SafetensorError, OSError):
            return str(path)
    return f"a weights file in {folder}"


def _load_processor(name: str, model_type: str) -> ProcessorMixin:
    """``AutoProcessor``, except for Qwen2.5-VL without torchvision (transformers' video
    processor needs it): then an images-only processor from the folder's parts."""
    if model_type == "qwen2_5_vl":
        from somprobe.models.tiny_families import load_qwen2_5_vl_processor

        return load_qwen2_5_vl_processor(name)  # type: ignore[no-any-return]
    return AutoProcessor.from_pretrained(name)  # type: ignore[no-any-return]


def load_model(
    name_or_path: str | os.PathLike[str],
    *,
    dtype: str | torch.dtype | None = None,
    device_map: str | dict[str, Any] | None = None,
    attn_implementation: str = "sdpa",
    **model_kwargs: Any,
) -> tuple[PreTrainedModel, ProcessorMixin]:
    """Load a LLaVA checkpoint and its processor, in eval mode.

    Args:
        name_or_path: a hub name (``llava-hf/llava-1.5-7b-hf``) found in the local cache, or
            a folder (e.g. one written by :func:`somprobe.models.build_tiny_llava`).
        dtype: "float32" / "float16" / "bfloat16" (or a torch dtype, or "auto");
            None keeps the checkpoint's default (float32 for the tiny models).
        device_map: passed to ``from_pretrained`` (e.g. "auto" to shard a 13B model
            over the visible GPUs).
        attn_implementation: "sdpa" (default; the Recorder keeps it), or "eager".
        **model_kwargs: passed on to ``from_pretrained``.

    Returns:
        ``(model, processor)``: e.g. a ``LlavaForConditionalGeneration`` (or
        ``LlavaNextForConditionalGeneration``, ...) and its processor.

    Raises:
        ModelLoadError: the checkpoint cannot be found offline, or is broken (a truncated
            or corrupt weights or tokenizer file, weights that do not fit its config, an
            unknown attention implementation).
        UnsupportedModelError: the checkpoint is of no supported family.
        InputError: ``name_or_path`` is not a string or path.
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise InputError(
            f"name_or_path must be a hub name or a folder, got {type(name_or_path).__name__}"
        )
    name = os.fspath(name_or_path)
    try:
        config = AutoConfig.from_pretrained(name)
    except Exception as err:  # missing offline, or a config.json that is cut or malformed
        raise _hub_error(name, err) from err
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise UnsupportedModelError(
            f"{name!r} is a {model_type!r} model; somprobe supports {SUPPORTED_MODEL_TYPES}: "
            f"{', '.join(SUPPORTED_ARCHITECTURES)} checkpoints such as "
            "llava-hf/llava-1.5-7b-hf or llava-hf/llava-v1.6-mistral-7b-hf"
        )
    torch_dtype = resolve_dtype(dtype)
    try:
        processor = _load_processor(name, model_type)
        model = AutoModelForImageTextToText.from_pretrained(
            name,
            dtype=torch_dtype,
            device_map=device_map,
            attn_implementation=attn_implementation,
            **model_kwargs,
        )
    except SafetensorError as err:
        raise ModelLoadError(
            f"could not load a LLaVA model from {name}: {_broken_weights(name)} is truncated or "
            f"corrupt ({err}); download it again (or rebuild it, for a tiny model)"
        ) from err
    except torch.OutOfMemoryError:
        raise
    except Exception as err:  # a broken checkpoint fails anywhere inside from_pretrained
        raise _hub_error(name, err) from err
    model.eval()
    return model, processor
