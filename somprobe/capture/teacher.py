"""Teacher forcing: run prompt + a given answer in one pass and capture at answer tokens.

A model that would not write the listing itself (a baseline, an untrained model) can
still be measured on the ground-truth listing: the answer is appended as the assistant
turn and the Recorder captures at the answer tokens chosen.

Example:
    >>> result = teacher_force(model, processor, [image], ["List the tagged items."],
    ...                        ["1. red circle\\n2. blue square"], queries="answer")
    >>> result.trace.queries, result.answer_spans[0]   # (start, end) positions
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import BatchFeature

from somprobe.capture.recorder import Recorder
from somprobe.capture.trace import Trace
from somprobe.errors import CaptureError, InputError
from somprobe.models.adapters import check_processor
from somprobe.models.inputs import build_prompt, prepare_inputs, to_model
from somprobe.models.layout import ImageLayout


@dataclass
class TeacherForced:
    """The trace, the inputs, the image layout and each answer's token span."""

    trace: Trace
    inputs: BatchFeature
    layout: ImageLayout
    answer_spans: list[tuple[int, int]]
    logits: torch.Tensor | None = None


def _as_list(value: Any, what: str) -> list[Any]:
    if isinstance(value, (str, bytes, Image.Image, np.ndarray)) or not isinstance(value, Sequence):
        raise InputError(f"{what} must be a list (one per example), got {type(value).__name__}")
    return list(value)


def teacher_force(
    model: Any,
    processor: Any,
    images: Sequence[Image.Image | np.ndarray],
    questions: Sequence[str],
    answers: Sequence[str],
    *,
    queries: str | Callable[[int], bool] = "answer",
    layers: Iterable[int] | None = None,
    heads: Iterable[int] | None = None,
    keys: str = "image",
    attention: bool = True,
    hidden_states: bool = True,
    keep_logits: bool = False,
) -> TeacherForced:
    """Run each (image, question, answer) in one forward pass and capture.

    Args:
        images: PIL images or arrays (as :func:`somprobe.models.prepare_inputs` takes them).
        questions, answers: one string of each per image.
        queries: ``"answer"`` captures every answer token; a predicate on token ids
            captures the answer tokens for which it is true (e.g. digits).

    Raises:
        InputError: lists of different lengths or none at all, a non-string question or
            answer, an unknown ``queries``, images that are not images, a processor of
            another model family than ``model``.
        CaptureError: bad layers or heads, an answer whose first token cannot be found.
    """
    images = _as_list(images, "images")
    questions = _as_list(questions, "questions")
    answers = _as_list(answers, "answers")
    if not (len(images) == len(questions) == len(answers)):
        raise InputError(
            f"got {len(images)} images, {len(questions)} questions and {len(answers)} answers; "
            "give one of each per example"
        )
    if not images:
        raise InputError("no examples: give at least one image, question and answer")
    for what, texts in (("question", questions), ("answer", answers)):
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise InputError(f"{what} {i} is a {type(text).__name__}; give strings")
    if not (callable(queries) or queries == "answer"):
        raise InputError(f"queries must be 'answer' or a token-id predicate, got {queries!r}")
    check_processor(model, processor)
    full = [build_prompt(processor, q, answer=a) for q, a in zip(questions, answers, strict=True)]
    inputs = prepare_inputs(processor, images, full)
    prefixes = prepare_inputs(processor, images, [build_prompt(processor, q) for q in questions])
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    spans: list[tuple[int, int]] = []
    for b in range(ids.shape[0]):
        prefix = prefixes["input_ids"][b][prefixes["attention_mask"][b].bool()]
        row = ids[b][mask[b].bool()]
        if not torch.equal(row[: len(prefix)], prefix):
            raise CaptureError(
                f"example {b}: the prompt's tokens change when the answer is appended, so the "
                "answer's first token cannot be located; start the answer with a space or newline"
            )
        pad = int((~mask[b].bool()).sum())
        spans.append((pad + len(prefix), ids.shape[1]))
    positions: dict[int, list[int]] = {}
    for b, (start, end) in enumerate(spans):
        wanted = range(start, end)
        if callable(queries):
            wanted = [p for p in wanted if queries(int(ids[b, p]))]  # type: ignore[assignment]
        positions[b] = list(wanted)
    layout = ImageLayout.from_inputs(processor, inputs, images=list(images))
    model_inputs = to_model(model, inputs)
    recorder = Recorder(
        model,
        queries=positions,
        layers=layers,
        heads=heads,
        keys=keys,
        attention=attention,
        hidden_states=hidden_states,
    )
    with torch.no_grad(), recorder:
        output = model(**model_inputs, use_cache=False)
    return TeacherForced(
        trace=recorder.trace,
        inputs=inputs,
        layout=layout,
        answer_spans=spans,
        logits=output.logits.detach().cpu() if keep_logits else None,
    )
