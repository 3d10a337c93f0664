"""Models: load real checkpoints (LLaVA-1.5, LLaVA-NeXT, Qwen2.5-VL), build tiny offline
ones, prompts and inputs, the image-token layout (one geometry per family, in
:mod:`somprobe.models.layouts`), and one adapter per model family (where its modules live)."""

from somprobe.models.adapters import (
    LlavaAdapter,
    LlavaNextAdapter,
    Qwen2VLAdapter,
    adapter_for,
    check_inputs,
    check_processor,
)
from somprobe.models.inputs import build_prompt, pad_token_id, prepare_inputs, to_model
from somprobe.models.layout import ImageEntry, ImageLayout, PatchGrid, Preprocess
from somprobe.models.loading import load_model
from somprobe.models.tiny import PRESETS, TinyLlavaShape, build_tiny_llava, tiny_llava_shape
from somprobe.models.tiny_families import build_tiny_llava_next, build_tiny_qwen2_5_vl
from somprobe.models.tokenizer import build_llama_like_tokenizer

__all__ = [
    "PRESETS",
    "ImageEntry",
    "ImageLayout",
    "LlavaAdapter",
    "LlavaNextAdapter",
    "PatchGrid",
    "Preprocess",
    "Qwen2VLAdapter",
    "TinyLlavaShape",
    "adapter_for",
    "build_llama_like_tokenizer",
    "build_prompt",
    "build_tiny_llava",
    "build_tiny_llava_next",
    "build_tiny_qwen2_5_vl",
    "check_inputs",
    "check_processor",
    "load_model",
    "pad_token_id",
    "prepare_inputs",
    "tiny_llava_shape",
    "to_model",
]
