"""Prompts and processor inputs for LLaVA models, with clear errors.

Example:
    >>> prompt = build_prompt(processor, "List the tagged items one by one.")
    >>> inputs = prepare_inputs(processor, [image], [prompt])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from transformers import BatchFeature

from somprobe.errors import InputError, LayoutError
from somprobe.tagging.rgb import as_rgb_array


def build_prompt(
    processor: Any, question: str, *, answer: str | None = None, with_image: bool = True
) -> str:
    """One user turn (with the image placeholder first), rendered by the chat template.

    Without ``answer`` the prompt ends with the generation cue ("ASSISTANT:"); with it,
    the answer is appended as the assistant turn (for teacher forcing).

    Raises:
        InputError: ``question`` (or a given ``answer``) is not a string.
    """
    if not isinstance(question, str):
        raise InputError(f"question must be a string, got {type(question).__name__}")
    if answer is not None and not isinstance(answer, str):
        raise InputError(f"answer must be a string or None, got {type(answer).__name__}")
    content: list[dict[str, str]] = [{"type": "image"}] if with_image else []
    content.append({"type": "text", "text": question})
    messages: list[dict[str, Any]] = [{"role": "user", "content": content}]
    if answer is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    if getattr(processor, "chat_template", None):
        return str(processor.apply_chat_template(messages, add_generation_prompt=answer is None))
    # vicuna_v1, LLaVA-1.5's conversation format, for processors without a template
    image = f"{getattr(processor, 'image_token', '<image>')}\n" if with_image else ""
    text = f"USER: {image}{question} ASSISTANT:"
    return text if answer is None else f"{text} {answer}"


def as_pil_image(image: Any, index: int = 0) -> Image.Image:
    """A PIL image as is; a numpy array converted by :func:`somprobe.tagging.as_rgb_array`
    (grayscale, RGBA over white, 16-bit and [0, 1] floats scaled) to an RGB image.

    Raises:
        InputError: anything else, an array :func:`~somprobe.tagging.as_rgb_array`
            rejects, or an image without pixels.
    """
    if isinstance(image, Image.Image):
        if image.width < 1 or image.height < 1:
            raise InputError(f"image {index} has size {image.size}; it must be at least 1×1")
        return image
    if isinstance(image, np.ndarray):
        try:
            return Image.fromarray(as_rgb_array(image))
        except InputError as err:
            raise InputError(f"image {index}: {err}") from err
    raise InputError(
        f"image {index} is a {type(image).__name__}; pass PIL images or numpy arrays "
        "((H, W) or (H, W, 3|4))"
    )


def _texts(prompts: Any) -> list[str]:
    if isinstance(prompts, str) or not isinstance(prompts, Sequence):
        raise InputError(
            f"prompts must be a list of strings (one per sequence), got {type(prompts).__name__}"
        )
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise InputError(f"prompt {i} is a {type(prompt).__name__}; prompts are strings")
    if not prompts:
        raise InputError("no prompts: give at least one prompt (build_prompt makes one)")
    return list(prompts)


def prepare_inputs(
    processor: Any,
    images: Sequence[Image.Image | np.ndarray],
    prompts: Sequence[str],
    *,
    padding_side: str = "left",
    return_tensors: str = "pt",
) -> BatchFeature:
    """Run the processor on images and prompts; left-pad for batched generation.

    Images are PIL images or numpy arrays; arrays are converted as
    :func:`somprobe.tagging.as_rgb_array` documents (the same conversion tagging uses).

    Raises:
        LayoutError: the prompts' ``<image>`` placeholders and the images do not match.
        InputError: an image is neither a PIL image nor a convertible array, or has no
            pixels; prompts are not a non-empty list of strings; a bad ``padding_side``.
    """
    if isinstance(images, (Image.Image, np.ndarray, str, bytes)) or not isinstance(
        images, Iterable
    ):
        raise InputError(f"images must be a list of images, got {type(images).__name__}")
    images = [as_pil_image(image, i) for i, image in enumerate(images)]
    prompts = _texts(prompts)
    if padding_side not in ("left", "right"):
        raise InputError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    token = getattr(processor, "image_token", "<image>")
    placeholders = sum(p.count(token) for p in prompts)
    if placeholders != len(images):
        raise LayoutError(
            f"the prompts hold {placeholders} {token} placeholder(s) for {len(images)} image(s); "
            f"put exactly one {token} per image in the prompt (build_prompt does this)"
        )
    tokenizer = processor.tokenizer
    previous = tokenizer.padding_side
    tokenizer.padding_side = padding_side
    try:
        return processor(
            images=images or None,
            text=list(prompts),
            return_tensors=return_tensors,
            padding=len(prompts) > 1,
        )
    except ValueError as err:
        raise LayoutError(f"the processor rejected the inputs: {err}") from err
    finally:
        tokenizer.padding_side = previous


def to_model(model: nn.Module, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """``inputs`` on the model's device, pixel values in the model's dtype (numpy arrays,
    as ``return_tensors="np"`` gives them, become tensors).

    Example:
        >>> out = model(**to_model(model, prepare_inputs(processor, [image], [prompt])))
        ... # doctest: +SKIP
    """
    if not isinstance(inputs, Mapping):
        raise InputError(
            f"inputs must be a mapping (the processor's output), got {type(inputs).__name__}"
        )
    parameter = next(model.parameters(), None) if isinstance(model, nn.Module) else None
    if parameter is None:
        raise InputError(
            f"model must be a torch module with parameters, got {type(model).__name__}"
        )
    out = {
        k: torch.as_tensor(v) if isinstance(v, np.ndarray) and v.dtype.kind in "biuf" else v
        for k, v in inputs.items()
    }
    out = {k: v.to(parameter.device) if isinstance(v, Tensor) else v for k, v in out.items()}
    if isinstance(out.get("pixel_values"), Tensor):
        out["pixel_values"] = out["pixel_values"].to(parameter.dtype)
    return out


def pad_token_id(tokenizer: Any) -> int | None:
    """The tokenizer's padding id, else its end-of-sequence id (LLaMA has no pad token).

    A processor is accepted too (its ``.tokenizer`` is used).
    """
    if not hasattr(tokenizer, "pad_token_id") and hasattr(tokenizer, "tokenizer"):
        tokenizer = tokenizer.tokenizer
    if not (hasattr(tokenizer, "pad_token_id") and hasattr(tokenizer, "eos_token_id")):
        raise InputError(
            f"pad_token_id needs a tokenizer (with pad_token_id and eos_token_id), got "
            f"{type(tokenizer).__name__}"
        )
    pad = tokenizer.pad_token_id
    return pad if pad is not None else tokenizer.eos_token_id


def eos_token_ids(model: Any, tokenizer: Any) -> set[int]:
    """The token ids that end generation: the model's generation config's, else the tokenizer's.

    A processor is accepted for ``tokenizer`` (its ``.tokenizer`` is used). Empty when
    neither names one.
    """
    if not hasattr(tokenizer, "eos_token_id") and hasattr(tokenizer, "tokenizer"):
        tokenizer = tokenizer.tokenizer
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        return set()
    return {int(v) for v in (eos if isinstance(eos, (list, tuple)) else [eos])}


def answer_ends(
    sequences: Tensor, prompt_len: int, eos_ids: Iterable[int], *, keep_eos: bool
) -> list[int]:
    """Per generated row, the position where its answer ends (exclusive).

    The answer starts at ``prompt_len`` and ends at its first end-of-sequence token, kept
    (``keep_eos=True``) or not; a row that never wrote one runs to its last token.

    Example:
        >>> ends = answer_ends(out, inputs["input_ids"].shape[1], {2}, keep_eos=False)
        >>> answers = [out[b, inputs["input_ids"].shape[1] : e] for b, e in enumerate(ends)]
    """
    if sequences.ndim != 2:
        raise InputError(f"sequences must be (batch, position), got shape {tuple(sequences.shape)}")
    if not 0 <= prompt_len <= sequences.shape[1]:
        raise InputError(
            f"prompt_len {prompt_len} is outside the sequences' {sequences.shape[1]} positions"
        )
    ids = torch.tensor(sorted(set(eos_ids)), dtype=torch.long, device=sequences.device)
    stops = torch.isin(sequences[:, prompt_len:], ids)
    ends = []
    for row in stops:
        hits = row.nonzero()
        ends.append(
            prompt_len + int(hits[0]) + int(keep_eos) if len(hits) else int(sequences.shape[1])
        )
    return ends
