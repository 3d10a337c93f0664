"""Render a LLaVA conversation as training text, with the character spans to learn.

Two conversation formats:

* ``"vicuna_v1"``: LLaVA-1.5's own format (the one SoM-LLaVA trained with):
  ``"{system} USER: <image>\\n{q1} ASSISTANT: {a1}</s>USER: {q2} ASSISTANT: {a2}</s>"``.
* ``"chat"``: the checkpoint's chat template (``processor.apply_chat_template``), so the
  model is trained on exactly the text :func:`somprobe.models.build_prompt` builds at
  inference. The assistant spans are found by rendering each prefix of the conversation;
  an end-of-sequence token is added after an answer when the template has none, so the
  model learns to stop.

``"auto"`` picks ``"chat"`` when the processor has a chat template, else ``"vicuna_v1"``.

Each assistant span covers the answer's text (from its first non-blank character) and the
closing ``</s>``; everything else (system prompt, ``USER:``, questions, ``ASSISTANT:``,
image placeholder) is context whose labels are masked, except a token that holds only the
blank after ``ASSISTANT:``, which the dataset learns too (see
:func:`somprobe.finetune.dataset.tokenize_conversation`).

Example:
    >>> rendered = render_conversation(processor, record, template="auto")
    >>> [rendered.text[a:b] for a, b in rendered.spans]
    ['1. red circle</s>']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from somprobe.data.llava_json import IMAGE_TOKEN, LlavaRecord, Turn
from somprobe.errors import DataFormatError, InputError

Template = Literal["auto", "chat", "vicuna_v1"]
TEMPLATES: tuple[str, ...] = ("auto", "chat", "vicuna_v1")

#: LLaVA-1.5's vicuna_v1 system prompt.
VICUNA_V1_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)


class NoAssistantTurnError(DataFormatError):
    """The conversation has no assistant (``gpt``) turn, so there is nothing to learn."""


@dataclass(frozen=True)
class RenderedConversation:
    """Training text with the image placeholder (not yet expanded) and the spans to learn.

    Attributes:
        text: the rendered conversation; holds ``image_token`` once when the record
            has an image.
        spans: ``(start, end)`` character ranges of ``text`` whose tokens are learned.
        add_special_tokens: whether the tokenizer should add its BOS (False when the
            template already wrote one).
    """

    text: str
    spans: tuple[tuple[int, int], ...]
    add_special_tokens: bool


def _question_text(turn: Turn, first: bool, has_image: bool) -> str:
    # As LLaVA does: the placeholder is moved to the front of the first question.
    if first and has_image:
        return turn.value.replace(IMAGE_TOKEN, "").strip()
    return turn.value


def _pairs(record: LlavaRecord) -> list[tuple[str, str]]:
    """(question, answer) pairs; a trailing unanswered question is dropped."""
    turns = record.conversations
    if len(turns) < 2:
        raise NoAssistantTurnError(
            f"record id={record.id!r}: the conversation has no assistant ('gpt') turn, so "
            "nothing can be learned from it; add an answer or remove the record"
        )
    has_image = record.image is not None
    return [
        (_question_text(turns[i], i == 0, has_image), turns[i + 1].value)
        for i in range(0, len(turns) - 1, 2)
    ]


def render_vicuna_v1(
    record: LlavaRecord,
    *,
    image_token: str = IMAGE_TOKEN,
    eos_token: str = "</s>",
    system_prompt: str | None = VICUNA_V1_SYSTEM,
) -> RenderedConversation:
    """LLaVA-1.5's vicuna_v1 format (separators ``" "`` and ``"</s>"``).

    Example:
        >>> r = render_vicuna_v1(record, system_prompt=None)
        >>> r.text
        'USER: <image>\\nList the items. ASSISTANT: 1. cat</s>'
    """
    parts: list[str] = [f"{system_prompt} "] if system_prompt else []
    spans: list[tuple[int, int]] = []
    pos = sum(len(p) for p in parts)
    for k, (question, answer) in enumerate(_pairs(record)):
        image = f"{image_token}\n" if k == 0 and record.image is not None else ""
        prompt = f"USER: {image}{question} ASSISTANT: "
        parts.append(prompt)
        pos += len(prompt)
        content = answer.strip()
        parts.append(content + eos_token)
        spans.append((pos, pos + len(content) + len(eos_token)))
        pos += len(content) + len(eos_token)
    return RenderedConversation("".join(parts), tuple(spans), add_special_tokens=True)


def _messages(record: LlavaRecord, system_prompt: str | None) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if system_prompt:
        messages.append({"role": "system", "content": [{"type": "text", "text": system_prompt}]})
    for k, (question, answer) in enumerate(_pairs(record)):
        content: list[dict[str, str]] = []
        if k == 0 and record.image is not None:
            content.append({"type": "image"})
        content.append({"type": "text", "text": question})
        messages.append({"role": "user", "content": content})
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return messages


def render_chat(
    processor: Any, record: LlavaRecord, *, system_prompt: str | None = None
) -> RenderedConversation:
    """Render with the processor's chat template; spans from prefix renders.

    Raises:
        InputError: the processor has no chat template, or the template is not
            prefix-stable (rendering a longer conversation changes the earlier text);
            use ``template="vicuna_v1"`` then.
    """
    if not getattr(processor, "chat_template", None):
        raise InputError(
            "the processor has no chat template; use template='vicuna_v1' (LLaVA-1.5's format)"
        )
    tokenizer = processor.tokenizer
    eos = tokenizer.eos_token or ""
    messages = _messages(record, system_prompt)

    def render(msgs: Sequence[dict[str, Any]], generation: bool) -> str:
        return str(processor.apply_chat_template(list(msgs), add_generation_prompt=generation))

    full = render(messages, False)
    answers: list[tuple[int, int, bool]] = []  # (start, end, eos follows)
    for k, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = render(messages[:k], True)
        upto = render(messages[: k + 1], False)
        if not (upto.startswith(before) and full.startswith(upto)):
            raise InputError(
                "the processor's chat template is not prefix-stable (a longer conversation "
                "re-renders earlier turns), so the answers cannot be located; use "
                "template='vicuna_v1'"
            )
        region = upto[len(before) :]
        answer = message["content"][0]["text"].strip()
        at = region.find(answer) if answer else -1
        if at < 0:  # the template rewrote the answer: learn the whole stripped region
            stripped = region.strip()
            at = region.find(stripped) if stripped else len(region) - len(region.lstrip())
            answer = stripped
        start = len(before) + at
        end = start + len(answer)
        has_eos = bool(eos) and full.startswith(eos, end)
        answers.append((start, end + (len(eos) if has_eos else 0), has_eos))
    # insert an EOS after every answer that lacks one, shifting later spans
    pieces: list[str] = []
    spans: list[tuple[int, int]] = []
    cursor = shift = 0
    for start, end, has_eos in answers:
        pieces.append(full[cursor:end])
        cursor = end
        new_start = start + shift
        if not has_eos and eos:
            pieces.append(eos)
            shift += len(eos)
        spans.append((new_start, end + shift))
    pieces.append(full[cursor:])
    text = "".join(pieces)
    bos = tokenizer.bos_token
    return RenderedConversation(
        text, tuple(spans), add_special_tokens=not (bos and text.startswith(bos))
    )


def render_conversation(
    processor: Any,
    record: LlavaRecord,
    *,
    template: Template = "auto",
    system_prompt: str | None = None,
) -> RenderedConversation:
    """Render ``record`` in the chosen format (see the module docstring).

    ``system_prompt=None`` means: LLaVA's for ``vicuna_v1``, none for ``chat``; pass
    ``""`` for none in either.

    Raises:
        NoAssistantTurnError: the conversation has no assistant turn.
        InputError: unknown template, or a chat template that cannot be used.
    """
    if template not in TEMPLATES:
        raise InputError(f"unknown conversation template {template!r}; use one of {TEMPLATES}")
    if template == "auto":
        template = "chat" if getattr(processor, "chat_template", None) else "vicuna_v1"
    if template == "chat":
        return render_chat(processor, record, system_prompt=system_prompt or None)
    tokenizer = processor.tokenizer
    return render_vicuna_v1(
        record,
        image_token=getattr(processor, "image_token", IMAGE_TOKEN),
        eos_token=tokenizer.eos_token or "</s>",
        system_prompt=VICUNA_V1_SYSTEM if system_prompt is None else system_prompt,
    )


__all__ = [
    "TEMPLATES",
    "VICUNA_V1_SYSTEM",
    "NoAssistantTurnError",
    "RenderedConversation",
    "Template",
    "render_chat",
    "render_conversation",
    "render_vicuna_v1",
]
