"""Models: load real LLaVA checkpoints, build tiny offline ones, prompts and inputs, the
image-token layout, and one adapter per model family (where its modules live)."""

from somprobe.models.adapters import LlavaAdapter, adapter_for
from somprobe.models.inputs import build_prompt, pad_token_id, prepare_inputs, to_model
from somprobe.models.layout import ImageEntry, ImageLayout, PatchGrid, Preprocess
from somprobe.models.loading import load_model
from somprobe.models.tiny import PRESETS, TinyLlavaShape, build_tiny_llava, tiny_llava_shape
from somprobe.models.tokenizer import build_llama_like_tokenizer

__all__ = [
    "PRESETS",
    "ImageEntry",
    "ImageLayout",
    "LlavaAdapter",
    "PatchGrid",
    "Preprocess",
    "TinyLlavaShape",
    "adapter_for",
    "build_llama_like_tokenizer",
    "build_prompt",
    "build_tiny_llava",
    "load_model",
    "pad_token_id",
    "prepare_inputs",
    "tiny_llava_shape",
    "to_model",
]
