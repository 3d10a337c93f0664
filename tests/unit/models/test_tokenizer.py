import pytest


@pytest.mark.parametrize("number", ["7", "12", "305", "2024"])
def test_numbers_split_into_one_token_per_digit(tiny_tokenizer, number):
    ids = tiny_tokenizer(f"tag {number}", add_special_tokens=False).input_ids
    tokens = tiny_tokenizer.convert_ids_to_tokens(ids)
    digits = [t for t in tokens if t.isdigit()]
    assert digits == list(number)
    assert all(len(t) == 1 for t in digits)


def test_digits_split_even_when_glued_to_text(tiny_tokenizer):
    tokens = tiny_tokenizer.convert_ids_to_tokens(
        tiny_tokenizer("item12x", add_special_tokens=False).input_ids
    )
    assert "1" in tokens and "2" in tokens
    assert not any(len(t) > 1 and any(ch.isdigit() for ch in t) for t in tokens)


@pytest.mark.parametrize(
    "text",
    [
        "1. red circle\n2. blue square",
        "What is tagged with id 9?",
        "café – 東京 ✓",
        "spaced  out  ",
    ],
)
def test_decode_round_trips_any_text(tiny_tokenizer, text):
    ids = tiny_tokenizer(text, add_special_tokens=False).input_ids
    assert tiny_tokenizer.decode(ids) == text
    assert tiny_tokenizer.unk_token_id not in ids


def test_image_token_is_one_special_token(tiny_tokenizer):
    ids = tiny_tokenizer("<image>", add_special_tokens=False).input_ids
    assert len(ids) == 1
    assert tiny_tokenizer.convert_ids_to_tokens(ids) == ["<image>"]


def test_sequences_start_with_bos(tiny_tokenizer):
    ids = tiny_tokenizer("hello").input_ids
    assert ids[0] == tiny_tokenizer.bos_token_id


def test_building_twice_gives_the_same_vocabulary(tiny_tokenizer):
    from somprobe.models import build_llama_like_tokenizer

    assert build_llama_like_tokenizer().get_vocab() == tiny_tokenizer.get_vocab()


def test_chat_template_is_vicuna_v1(tiny_tokenizer):
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "List."}]},
        {"role": "assistant", "content": [{"type": "text", "text": "1. cat"}]},
    ]
    text = tiny_tokenizer.apply_chat_template(messages, tokenize=False)
    assert text == "USER: <image>\nList. ASSISTANT: 1. cat</s>"
    prompt = tiny_tokenizer.apply_chat_template(
        messages[:1], tokenize=False, add_generation_prompt=True
    )
    assert prompt == "USER: <image>\nList. ASSISTANT:"
