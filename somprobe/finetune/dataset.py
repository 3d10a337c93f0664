"""A training dataset over LLaVA JSON records and an image folder.

Each item is one conversation, tokenised as the model sees it: the image placeholder
expanded to the model's image tokens, labels equal to the input ids on the assistant
answers (and their closing ``</s>``) and ``-100`` everywhere else, and the image's
``pixel_values``.

Bad records are found when the dataset is built, before any training step, and are
either skipped and counted (``on_bad_record="skip"``, the default) or raise
(``on_bad_record="error"``):

* ``missing_image``: the record names an image that is not in the image folder;
* ``no_assistant_turn``: the conversation has no ``gpt`` turn;
* ``too_long``: the tokenised sequence (image tokens included) is longer than
  ``max_length`` (default: what the model's position embeddings allow). It is skipped,
  not truncated, so no answer is cut short.

An image that exists but cannot be decoded raises :class:`~somprobe.errors.DataFormatError`
when its item is loaded. :attr:`LlavaSFTDataset.skipped` holds the counts and the first
ids of each kind; the trainer reports them at the end.

Example:
    >>> ds = LlavaSFTDataset("train.json", "images/", processor, image_aspect_ratio="pad")
    >>> item = ds[0]
    >>> item["input_ids"].shape == item["labels"].shape
    True
    >>> ds.skipped.counts
    {'missing_image': 1}
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from jaxtyping import Float, Int
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from somprobe.data.llava_json import LlavaRecord, iter_records
from somprobe.errors import DataFormatError, InputError
from somprobe.finetune.template import (
    NoAssistantTurnError,
    RenderedConversation,
    Template,
    render_conversation,
)

IGNORE_INDEX = -100
AspectRatio = Literal["pad", "crop"]
OnBadRecord = Literal["skip", "error"]
SKIP_REASONS = ("missing_image", "no_assistant_turn", "too_long")


@dataclass
class SkipReport:
    """Records left out of training, by reason, with the first few ids of each.

    Example:
        >>> report = SkipReport()
        >>> report.add("too_long", "r7")
        >>> report.summary()
        'skipped 1 record(s): too_long=1 (e.g. r7)'
    """

    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    max_examples: int = 5

    def add(self, reason: str, record_id: str | int) -> None:
        self.counts[reason] += 1
        ids = self.examples.setdefault(reason, [])
        if len(ids) < self.max_examples:
            ids.append(str(record_id))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        if not self.total:
            return "skipped no records"
        parts = [
            f"{reason}={n} (e.g. {', '.join(self.examples.get(reason, []))})"
            for reason, n in sorted(self.counts.items())
        ]
        return f"skipped {self.total} record(s): " + "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "counts": dict(self.counts), "examples": self.examples}


def expand_to_square(image: Image.Image, fill: tuple[int, int, int]) -> Image.Image:
    """Pad ``image`` to a square with ``fill``, the original centred (LLaVA's "pad").

    Example:
        >>> expand_to_square(Image.new("RGB", (4, 2)), (1, 2, 3)).size
        (4, 4)
    """
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    canvas = Image.new(image.mode, (side, side), fill)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


def mean_colour(processor: Any) -> tuple[int, int, int]:
    """The image processor's mean as 0–255 RGB: LLaVA's padding colour."""
    mean = getattr(processor.image_processor, "image_mean", None) or (0.5, 0.5, 0.5)
    r, g, b = (int(float(m) * 255) for m in mean)  # truncated, as LLaVA does
    return (r, g, b)


def count_image_tokens(processor: Any) -> int:
    """How many placeholder tokens the processor puts for one image (576 for LLaVA-1.5)."""
    size = getattr(processor.image_processor, "crop_size", None) or {"height": 336, "width": 336}
    probe = Image.new("RGB", (int(size["width"]), int(size["height"])))
    enc = processor(text=[processor.image_token], images=[probe], return_tensors="pt")
    return int((enc["input_ids"] == processor.image_token_id).sum())


@dataclass(frozen=True)
class Tokenized:
    """One conversation as ids and labels (image placeholders expanded)."""

    input_ids: Int[np.ndarray, " seq"]
    labels: Int[np.ndarray, " seq"]


def tokenize_conversation(
    tokenizer: Any, rendered: RenderedConversation, image_token: str, image_tokens: int
) -> Tokenized:
    """Expand the image placeholder, tokenise, and label the tokens inside the spans.

    A token is learned when its characters overlap an answer span, or when it holds only
    the blank between the generation cue and the answer. Generation starts right after
    "ASSISTANT:", so the model must learn to write that blank: with digits split, "1. red"
    follows the cue as a lone "▁" then "1", and a masked "▁" would leave the first token
    of every numbered answer untrained (a word piece that carries the space, "▁red", is
    learned either way).

    Raises:
        InputError: the tokenizer is not a fast tokenizer (offsets are needed).
    """
    if not getattr(tokenizer, "is_fast", False):
        raise InputError(
            "finetuning needs a fast (Rust) tokenizer to map answer characters to tokens; "
            "load the processor with use_fast=True"
        )
    text, spans = rendered.text, list(rendered.spans)
    at = text.find(image_token)
    if at >= 0 and image_tokens != 1:
        extra = (image_tokens - 1) * len(image_token)
        text = text[:at] + image_token * image_tokens + text[at + len(image_token) :]
        spans = [(a + extra if a > at else a, b + extra if b > at else b) for a, b in spans]
    enc = tokenizer(
        text, return_offsets_mapping=True, add_special_tokens=rendered.add_special_tokens
    )
    ids = np.asarray(enc["input_ids"], dtype=np.int64)
    offsets = np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)
    learn = np.zeros(len(ids), dtype=bool)
    nonempty = offsets[:, 1] > offsets[:, 0]
    for a, b in spans:
        learn |= nonempty & (offsets[:, 0] < b) & (offsets[:, 1] > a)
        blank = a
        while blank > 0 and text[blank - 1].isspace():
            blank -= 1
        # whitespace-only tokens between the cue and the answer (not ones that also hold cue text)
        learn |= nonempty & (offsets[:, 0] >= blank) & (offsets[:, 1] <= a)
    labels = np.where(learn, ids, IGNORE_INDEX)
    return Tokenized(ids, labels)


class LlavaSFTDataset(torch.utils.data.Dataset):
    """Supervised finetuning items from LLaVA JSON file(s) and an image folder.

    Args:
        data: a LLaVA ``.json``/``.jsonl`` path, several paths, or records.
        image_folder: where the records' ``image`` paths are relative to.
        processor: the model's processor (tokenizer + image processor).
        template: ``"auto"``, ``"chat"`` or ``"vicuna_v1"`` (see :mod:`.template`).
        system_prompt: see :func:`~somprobe.finetune.template.render_conversation`.
        image_aspect_ratio: ``"pad"`` pads to a square with the mean colour before the
            processor (LLaVA-1.5's training setting); ``"crop"`` leaves the image to the
            processor (resize + center crop for the HF LLaVA processors).
        max_length: longest sequence kept, image tokens included; default the smaller of
            the tokenizer's ``model_max_length`` and ``max_position_embeddings`` given.
        max_position_embeddings: the model's limit (pass ``model.config.text_config.
            max_position_embeddings``).
        on_bad_record: ``"skip"`` (count and leave out) or ``"error"`` (raise).

    Raises:
        DataFormatError: a bad record with ``on_bad_record="error"``, or no record left.
        InputError: a bad option, or an image folder that does not exist.
    """

    def __init__(
        self,
        data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | Iterable[LlavaRecord],
        image_folder: str | os.PathLike[str] | None,
        processor: Any,
        *,
        template: Template = "auto",
        system_prompt: str | None = None,
        image_aspect_ratio: AspectRatio = "pad",
        max_length: int | None = None,
        max_position_embeddings: int | None = None,
        on_bad_record: OnBadRecord = "skip",
    ) -> None:
        if image_aspect_ratio not in ("pad", "crop"):
            raise InputError(
                f"image_aspect_ratio must be 'pad' or 'crop', got {image_aspect_ratio!r}"
            )
        if on_bad_record not in ("skip", "error"):
            raise InputError(f"on_bad_record must be 'skip' or 'error', got {on_bad_record!r}")
        if max_length is not None and (
            isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1
        ):
            raise InputError(f"max_length={max_length!r}: give a number of tokens ≥ 1, or None")
        if image_folder is not None and not Path(image_folder).is_dir():
            raise InputError(
                f"image folder {image_folder} does not exist; give the folder the records' "
                "image paths are relative to"
            )
        self.processor = processor
        self.image_folder = Path(image_folder) if image_folder is not None else None
        self.image_aspect_ratio = image_aspect_ratio
        self.fill = mean_colour(processor)
        self.image_token = processor.image_token
        self.image_tokens = count_image_tokens(processor)
        limits = [getattr(processor.tokenizer, "model_max_length", None), max_position_embeddings]
        self.max_length = max_length or min(int(x) for x in limits if x and x < 10**9)
        self.skipped = SkipReport()
        self.ids: list[str | int] = []
        self.images: list[Path | None] = []
        self.tokens: list[Tokenized] = []
        for record in _records(data):
            problem = self._add(record, template, system_prompt)
            if problem is None:
                continue
            reason, message = problem
            if on_bad_record == "error":
                raise DataFormatError(message)
            self.skipped.add(reason, record.id)
        if not self.tokens:
            raise DataFormatError(
                f"no usable training record ({self.skipped.summary()}); check the data file "
                "and the image folder"
            )

    def _add(
        self, record: LlavaRecord, template: Template, system_prompt: str | None
    ) -> tuple[str, str] | None:
        image: Path | None = None
        if record.image is not None:
            if self.image_folder is None:
                raise InputError(
                    f"record id={record.id!r} has an image but no image folder was given; "
                    "pass image_folder"
                )
            image = self.image_folder / record.image
            if not image.is_file():
                return "missing_image", (
                    f"record id={record.id!r}: image {record.image!r} not found at {image}; "
                    "fix the path or the image folder"
                )
        try:
            rendered = render_conversation(
                self.processor, record, template=template, system_prompt=system_prompt
            )
        except NoAssistantTurnError as err:
            return "no_assistant_turn", str(err)
        tokens = tokenize_conversation(
            self.processor.tokenizer,
            rendered,
            self.image_token,
            self.image_tokens if image is not None else 1,
        )
        if len(tokens.input_ids) > self.max_length:
            return "too_long", (
                f"record id={record.id!r}: {len(tokens.input_ids)} tokens (image tokens "
                f"included) exceed the limit of {self.max_length}; shorten it or raise "
                "max_length within the model's position embeddings"
            )
        self.ids.append(record.id)
        self.images.append(image)
        self.tokens.append(tokens)
        return None

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def lengths(self) -> list[int]:
        """Token count of every item (for length-grouped sampling)."""
        return [len(t.input_ids) for t in self.tokens]

    def load_image(self, index: int) -> Float[Tensor, "3 height width"] | None:
        path = self.images[index]
        if path is None:
            return None
        try:
            with Image.open(path) as img:
                rgb = img.convert("RGB")
        except (UnidentifiedImageError, OSError) as err:
            raise DataFormatError(
                f"record id={self.ids[index]!r}: image {path} cannot be read ({err}); "
                "replace the file or remove the record"
            ) from err
        if self.image_aspect_ratio == "pad":
            rgb = expand_to_square(rgb, self.fill)
        pixels = self.processor.image_processor(images=[rgb], return_tensors="pt")
        return pixels["pixel_values"][0]

    def __getitem__(self, index: int) -> dict[str, Any]:
        tokens = self.tokens[index]
        return {
            "input_ids": torch.from_numpy(tokens.input_ids),
            "labels": torch.from_numpy(tokens.labels),
            "pixel_values": self.load_image(index),
        }


def _records(
    data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | Iterable[LlavaRecord],
) -> Iterable[LlavaRecord]:
    if isinstance(data, str | os.PathLike):
        yield from iter_records(Path(data))
        return
    for item in data:
        if isinstance(item, LlavaRecord):
            yield item
        elif isinstance(item, str | os.PathLike):
            yield from iter_records(Path(item))
        else:
            raise InputError(
                f"training data must be LLaVA JSON paths or LlavaRecord objects, got "
                f"{type(item).__name__}"
            )


__all__ = [
    "IGNORE_INDEX",
    "SKIP_REASONS",
    "AspectRatio",
    "LlavaSFTDataset",
    "OnBadRecord",
    "SkipReport",
    "Tokenized",
    "count_image_tokens",
    "expand_to_square",
    "mean_colour",
    "tokenize_conversation",
]
