"""Conversation rendering: vicuna_v1, the checkpoint's chat template, answer spans."""

from __future__ import annotations

import copy

import pytest

from somprobe.data import make_record
from somprobe.data.llava_json import LlavaRecord, Turn
from somprobe.errors import InputError
from somprobe.finetune.template import (
    VICUNA_V1_SYSTEM,
    NoAssistantTurnError,
    render_conversation,
    render_vicuna_v1,
)
from somprobe.models import build_prompt

# The llava-hf/llava-1.5 style: answers followed by a space, no end-of-sequence token.
NO_EOS_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] | upper }}: "
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}{{ '<image>\n' }}"
    "{% endif %}{% endfor %}{% for part in message['content'] %}{% if part['type'] == 'text' %}"
    "{{ part['text'] + ' ' }}{% endif %}{% endfor %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


def two_turns() -> LlavaRecord:
    return make_record("r", "a.png", [("List the items.", "1. red circle"), ("Again?", "no")])


def test_vicuna_v1_matches_llava_format() -> None:
    rendered = render_vicuna_v1(two_turns())
    expected = (
        f"{VICUNA_V1_SYSTEM} USER: <image>\nList the items. ASSISTANT: 1. red circle</s>"
        "USER: Again? ASSISTANT: no</s>"
    )
    assert rendered.text == expected
    assert [rendered.text[a:b] for a, b in rendered.spans] == ["1. red circle</s>", "no</s>"]
    assert rendered.add_special_tokens


def test_vicuna_v1_without_system_and_image_moved_to_front() -> None:
    record = LlavaRecord(
        "r",
        "a.png",
        [Turn("human", "What is tagged 2?\n<image>"), Turn("gpt", " a cat ")],
    )
    rendered = render_vicuna_v1(record, system_prompt="")
    assert rendered.text == "USER: <image>\nWhat is tagged 2? ASSISTANT: a cat</s>"
    assert [rendered.text[a:b] for a, b in rendered.spans] == ["a cat</s>"]


def test_chat_template_equals_inference_prompt(tiny_llava) -> None:  # type: ignore[no-untyped-def]
    _, processor = tiny_llava
    record = make_record("r", "a.png", [("List the items.", "1. red circle")])
    rendered = render_conversation(processor, record, template="auto")
    assert rendered.text == build_prompt(processor, "List the items.", answer="1. red circle")
    assert rendered.text.startswith(build_prompt(processor, "List the items."))
    assert [rendered.text[a:b] for a, b in rendered.spans] == ["1. red circle</s>"]


def test_chat_template_without_eos_gets_one_after_each_answer(tiny_llava) -> None:  # type: ignore[no-untyped-def]
    _, processor = tiny_llava
    processor = copy.copy(processor)
    processor.chat_template = NO_EOS_TEMPLATE
    rendered = render_conversation(processor, two_turns(), template="chat")
    assert rendered.text == (
        "USER: <image>\nList the items. ASSISTANT: 1. red circle</s> USER: Again? "
        "ASSISTANT: no</s> "
    )
    assert [rendered.text[a:b] for a, b in rendered.spans] == ["1. red circle</s>", "no</s>"]


def test_template_that_rewrites_earlier_turns_is_refused(tiny_llava) -> None:  # type: ignore[no-untyped-def]
    _, processor = tiny_llava
    processor = copy.copy(processor)
    processor.chat_template = "{{ messages | length }}" + NO_EOS_TEMPLATE
    with pytest.raises(InputError, match="prefix-stable"):
        render_conversation(processor, two_turns(), template="chat")


def test_auto_falls_back_to_vicuna_without_chat_template(tiny_llava) -> None:  # type: ignore[no-untyped-def]
    _, processor = tiny_llava
    processor = copy.copy(processor)
    processor.chat_template = None
    rendered = render_conversation(processor, two_turns(), template="auto", system_prompt="")
    assert rendered.text.startswith("USER: <image>\nList the items. ASSISTANT: 1. red")
    with pytest.raises(InputError, match="no chat template"):
        render_conversation(processor, two_turns(), template="chat")


def test_no_assistant_turn_and_unknown_template(tiny_llava) -> None:  # type: ignore[no-untyped-def]
    _, processor = tiny_llava
    lonely = LlavaRecord("q", "a.png", [Turn("human", "<image>\nList the items.")])
    with pytest.raises(NoAssistantTurnError, match="id='q'"):
        render_conversation(processor, lonely)
    with pytest.raises(InputError, match="unknown conversation template"):
        render_conversation(processor, two_turns(), template="llama3")  # type: ignore[arg-type]


def test_trailing_question_without_answer_is_not_rendered(tiny_llava) -> None:  # type: ignore[no-untyped-def]
    _, processor = tiny_llava
    record = LlavaRecord(
        "r", None, [Turn("human", "Hi?"), Turn("gpt", "yes"), Turn("human", "And?")]
    )
    rendered = render_conversation(processor, record, template="vicuna_v1", system_prompt="")
    assert rendered.text == "USER: Hi? ASSISTANT: yes</s>"
