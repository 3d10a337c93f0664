"""Models: load real LLaVA checkpoints, build tiny offline ones, and map image tokens."""

from somprobe.models.inputs import build_prompt, prepare_inputs
from somprobe.models.layout import ImageEntry, ImageLayout, PatchGrid, Preprocess
from somprobe.models.loading import load_model
from somprobe.models.tiny import PRESETS, TinyLlavaShape, build_tiny_llava, tiny_llava_shape
from somprobe.models.tokenizer import build_llama_like_tokenizer

__all__ = [
    "PRESETS",
    "ImageEntry",
    "ImageLayout",
    "PatchGrid",
    "Preprocess",
    "TinyLlavaShape",
    "build_llama_like_tokenizer",
    "build_prompt",
    "build_tiny_llava",
    "load_model",
    "prepare_inputs",
    "tiny_llava_shape",
]
