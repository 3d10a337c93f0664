"""Prompts and processor inputs for LLaVA models, with clear errors.

Example:
    >>> prompt = build_prompt(processor, "List the tagged items one by one.")
    >>> inputs = prepare_inputs(processor, [image], [prompt])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from PIL import Image
from torch import Tensor, nn
from transformers import BatchFeature

from somprobe.errors import InputError, LayoutError


def build_prompt(
    processor: Any, question: str, *, answer: str | None = None, with_image: bool = True
) -> str:
    """One user turn (with the image placeholder first), rendered by the chat template.

    Without ``answer`` the prompt ends with the generation cue ("ASSISTANT:"); with it,
    the answer is appended as the assistant turn (for teacher forcing).
    """
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


def prepare_inputs(
    processor: Any,
    images: Sequence[Image.Image],
    prompts: Sequence[str],
    *,
    padding_side: str = "left",
    return_tensors: str = "pt",
) -> BatchFeature:
    """Run the processor on images and prompts; left-pad for batched generation.

    Raises:
        LayoutError: the prompts' ``<image>`` placeholders and the images do not match.
        InputError: an image is not a PIL image.
    """
    images = list(images)
    for i, image in enumerate(images):
        if not isinstance(image, Image.Image):
            raise InputError(f"image {i} is a {type(image).__name__}; pass PIL images")
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
    """``inputs`` on the model's device, pixel values in the model's dtype.

    Example:
        >>> out = model(**to_model(model, prepare_inputs(processor, [image], [prompt])))
        ... # doctest: +SKIP
    """
    parameter = next(model.parameters())
    out = {k: v.to(parameter.device) if isinstance(v, Tensor) else v for k, v in inputs.items()}
    if isinstance(out.get("pixel_values"), Tensor):
        out["pixel_values"] = out["pixel_values"].to(parameter.dtype)
    return out


def pad_token_id(tokenizer: Any) -> int | None:
    """The tokenizer's padding id, else its end-of-sequence id (LLaMA has no pad token)."""
    pad = tokenizer.pad_token_id
    return pad if pad is not None else tokenizer.eos_token_id
