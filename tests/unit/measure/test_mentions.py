"""Tests for somprobe.measure.mentions: tag mentions in token streams of two kinds of tokenizer."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from somprobe.errors import InputError, SomprobeError
from somprobe.measure.mentions import (
    DEFAULT_FORMATS,
    decode_with_offsets,
    find_tag_mentions,
    letter_label,
    letter_to_id,
)
from somprobe.tagging import Tag, TagSet

ALPHABET = list("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.,:;#()[]!?&-'\n ")
ALPHABET += list("éïœ")

# (text, formats, label mode, expected [(tag_id, format, label), ...])
CASES: list[tuple[str, tuple[str, ...], str, list[tuple[int, str, str]]]] = [
    ("1. person\n2. dog\n12. cat", DEFAULT_FORMATS, "number",
     [(1, "listing", "1"), (2, "listing", "2"), (12, "listing", "12")]),
    ("x\n  3) a cat\n\t4. a hat", DEFAULT_FORMATS, "number",
     [(3, "listing", "3"), (4, "listing", "4")]),
    ("123. a very long list", DEFAULT_FORMATS, "number", [(123, "listing", "123")]),
    ("The object tagged with id 9 is a cat.", DEFAULT_FORMATS, "number", [(9, "tag", "9")]),
    ("what is the object tagged with id 19?", DEFAULT_FORMATS, "number", [(19, "tag", "19")]),
    ("tag 3 and [4] and (5) and #6", DEFAULT_FORMATS, "number",
     [(3, "tag", "3"), (4, "bracket", "4"), (5, "bracket", "5"), (6, "hash", "6")]),
    ("there are 3 cats and 12 dogs", DEFAULT_FORMATS, "number", []),
    ("there are 3 cats and 12 dogs", (*DEFAULT_FORMATS, "bare"), "number",
     [(3, "bare", "3"), (12, "bare", "12")]),
    ("tag12 is glued, [7]person and object#8", DEFAULT_FORMATS, "number",
     [(12, "tag", "12"), (7, "bracket", "7"), (8, "hash", "8")]),
    ("see[10] and x(11)", DEFAULT_FORMATS, "number",
     [(10, "bracket", "10"), (11, "bracket", "11")]),
    ("tags 2, 5 and 7 are animals", DEFAULT_FORMATS, "number",
     [(2, "tag", "2"), (5, "tag", "5"), (7, "tag", "7")]),
    ("3.5 meters tall at 10:30, 1,000 ants", (*DEFAULT_FORMATS, "bare"), "number", []),
    ("version2 and 3.5 and 10:30 and 4", (*DEFAULT_FORMATS, "bare"), "number",
     [(4, "bare", "4")]),
    ("Item 1. is not at a line start", DEFAULT_FORMATS, "number", []),
    ("ID 4: a cat", DEFAULT_FORMATS, "number", [(4, "tag", "4")]),
    ("#3 and tag #4 and [ 10 ]", DEFAULT_FORMATS, "number",
     [(3, "hash", "3"), (4, "tag", "4"), (10, "bracket", "10")]),
    ("1. cat\n2. dog\n1. cat again", DEFAULT_FORMATS, "number",
     [(1, "listing", "1"), (2, "listing", "2"), (1, "listing", "1")]),
    ("café 3. x\n4. naïve œuvre", DEFAULT_FORMATS, "number", [(4, "listing", "4")]),
    ("1. cat [2] dog", ("bracket",), "number", [(2, "bracket", "2")]),
    ("a. person\nb) dog\nthe object tagged c is [d] and (e), tag is red", DEFAULT_FORMATS,
     "letter",
     [(1, "listing", "a"), (2, "listing", "b"), (3, "tag", "c"), (4, "bracket", "d"),
      (5, "bracket", "e")]),
    ("object(s) and e.g. this", DEFAULT_FORMATS, "letter", []),
    ("tag aa and #ab", DEFAULT_FORMATS, "letter", [(27, "tag", "aa"), (28, "hash", "ab")]),
]  # fmt: skip

CORPUS = [text for text, *_ in CASES] + [
    "1. person\n2. dog\n3. cat\n4. table\n5. chair\n6. car\n7. bus\n8. tree",
    "10. sky\n11. road\n12. man\n13. woman\n14. bag\n15. ball\n20. cup\n21. fork",
    "the object tagged with id 12 is a dog and tag 13 is a cat [14] (15) #16",
] * 3


def _train(pre_tokenizer, decoder, vocab_size: int, specials: list[str]) -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token="<unk>" if "<unk>" in specials else None))
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoder
    alphabet = ALPHABET
    if isinstance(pre_tokenizer, pre_tokenizers.ByteLevel):
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=alphabet
    )
    tok.train_from_iterator(CORPUS, trainer)
    return tok


@pytest.fixture(scope="module")
def llama_like() -> PreTrainedTokenizerFast:
    """Metaspace + one token per digit, like LLaMA's tokenizer."""
    pre = pre_tokenizers.Sequence(
        [pre_tokenizers.Metaspace(), pre_tokenizers.Digits(individual_digits=True)]
    )
    tok = _train(pre, decoders.Metaspace(), 400, ["<unk>", "<s>", "</s>"])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )


@pytest.fixture(scope="module")
def byte_level() -> PreTrainedTokenizerFast:
    """GPT-2-style byte-level BPE: multi-digit numbers can be single tokens."""
    pre = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok = _train(pre, decoders.ByteLevel(), 500, ["<|endoftext|>"])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")


@pytest.fixture(params=["llama_like", "byte_level"])
def tokenizer(request: pytest.FixtureRequest) -> PreTrainedTokenizerFast:
    return request.getfixturevalue(request.param)


def _reference_span(tokenizer, text: str, char_start: int, char_end: int) -> tuple[int, int]:
    """Token span from the tokenizer's own encode offsets (independent of decoding).

    Tokens that decode to whitespace only (a lone "▁", whose offsets can claim the next
    character) produce none of the label.
    """
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    hits = [
        i
        for i, (lo, hi) in enumerate(enc["offset_mapping"])
        if lo < char_end and hi > char_start and tokenizer.decode([enc["input_ids"][i]]).strip()
    ]
    return min(hits), max(hits) + 1


def test_tokenizers_behave_like_their_models(llama_like, byte_level) -> None:
    # the premise of the table: LLaMA-like splits digits, byte-level keeps some numbers whole
    assert llama_like.convert_ids_to_tokens(llama_like.encode("tag 12", add_special_tokens=False))[
        -3:
    ] == ["▁", "1", "2"]
    toks = byte_level.convert_ids_to_tokens(byte_level.encode("id 12 is", add_special_tokens=False))
    assert any(t.strip("Ġ") == "12" for t in toks)


@pytest.mark.parametrize(("text", "formats", "mode", "expected"), CASES)
def test_mentions_table(tokenizer, text, formats, mode, expected) -> None:
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids) == text  # the tokenizer covers the case
    df = find_tag_mentions(tokenizer, ids, formats=formats, label_mode=mode)
    got = list(zip(df["tag_id"], df["format"], df["label"], strict=True))
    assert got == expected
    for row in df.itertuples():
        assert text[row.char_start : row.char_end] == row.label
        assert (row.span_start, row.span_end) == _reference_span(
            tokenizer, text, row.char_start, row.char_end
        )
        assert row.label in tokenizer.decode(ids[row.span_start : row.span_end])
        assert row.scored_positions == (row.span_end - 1,)
    assert df["hallucinated"].isna().all()
    assert list(df["mention"]) == list(range(len(df)))


def test_llama_digits_are_multi_token_spans(llama_like) -> None:
    text = "1. a\n12. b\n123. c"
    ids = llama_like.encode(text, add_special_tokens=False)
    df = find_tag_mentions(llama_like, ids)
    assert list(df["span_end"] - df["span_start"]) == [1, 2, 3]
    toks = llama_like.convert_ids_to_tokens(ids)
    assert [toks[s:e] for s, e in zip(df["span_start"], df["span_end"], strict=True)] == [
        ["1"],
        ["1", "2"],
        ["1", "2", "3"],
    ]


@pytest.mark.parametrize("score_token", ["first", "last", "mean"])
def test_score_token_and_offset(llama_like, score_token) -> None:
    text = "tag 123 and tag 4"
    ids = llama_like.encode(text, add_special_tokens=False)
    base = find_tag_mentions(llama_like, ids)
    df = find_tag_mentions(llama_like, ids, score_token=score_token, offset=100, batch=3)
    assert list(df["span_start"]) == list(base["span_start"] + 100)
    assert (df["batch"] == 3).all()
    for row in df.itertuples():
        span = tuple(range(row.span_start, row.span_end))
        want = {"first": span[:1], "last": span[-1:], "mean": span}[score_token]
        assert row.scored_positions == want


def test_hallucinated_and_repeated(tokenizer) -> None:
    text = "1. cat\n2. dog\n15. kite\n1. cat again\n0. none"
    ids = tokenizer.encode(text, add_special_tokens=False)
    df = find_tag_mentions(tokenizer, ids, tag_ids=[1, 2, 3])
    assert list(df["tag_id"]) == [1, 2, 15, 1, 0]
    assert list(df["hallucinated"]) == [False, False, True, False, True]
    assert list(df["occurrence"]) == [0, 0, 0, 1, 0]
    assert df["hallucinated"].dtype == "boolean"


def _tagset(labels: list[str], mode: str) -> TagSet:
    mask = np.ones((4, 4), dtype=bool)
    tags = [
        Tag(
            id=i + 1, label=lab, mask=mask, original_mask=mask, center=(1, 1), mark_box=(0, 0, 1, 1)
        )
        for i, lab in enumerate(labels)
    ]
    return TagSet(tags=tags, image_size=(4, 4), label_mode=mode)  # type: ignore[arg-type]


def test_tagset_gives_mode_labels_and_known_ids(llama_like) -> None:
    ids = llama_like.encode("a. cat\nb. dog\ntag c is [e]", add_special_tokens=False)
    df = find_tag_mentions(llama_like, ids, tag_ids=_tagset(["a", "b"], "letter"))
    assert list(df["tag_id"]) == [1, 2, 3, 5]
    assert list(df["hallucinated"]) == [False, False, True, True]
    with pytest.raises(InputError, match="letter"):
        find_tag_mentions(llama_like, ids, tag_ids=_tagset(["a"], "letter"), label_mode="number")


def test_inputs_as_tensor_and_array(byte_level) -> None:
    ids = byte_level.encode("1. cat\n[2] dog", add_special_tokens=False)
    want = find_tag_mentions(byte_level, ids)
    for form in (torch.tensor(ids), np.array(ids, dtype=np.int32)):
        pd.testing.assert_frame_equal(find_tag_mentions(byte_level, form), want)


def test_special_tokens_hold_no_text(llama_like) -> None:
    bos, eos = llama_like.bos_token_id, llama_like.eos_token_id
    ids = [bos, *llama_like.encode("1. cat\n2. dog", add_special_tokens=False), eos]
    df = find_tag_mentions(llama_like, ids)
    plain = find_tag_mentions(llama_like, ids[1:-1])
    assert list(df["span_start"]) == list(plain["span_start"] + 1)


def test_empty_result_has_columns_and_types(byte_level) -> None:
    df = find_tag_mentions(byte_level, byte_level.encode("no tags here"))
    assert df.empty
    assert df["tag_id"].dtype == np.int64 and df["hallucinated"].dtype == "boolean"
    assert "scored_positions" in df.columns
    assert find_tag_mentions(byte_level, []).empty


class _Capitalising:
    """Decodes like the wrapped tokenizer but upper-cases the first character.

    Short windows then disagree with the full text, which forces the exact prefix pass.
    """

    def __init__(self, inner: PreTrainedTokenizerFast) -> None:
        self.inner = inner
        self.calls = 0

    def decode(self, ids, **kwargs) -> str:
        self.calls += 1
        s = self.inner.decode(ids, **kwargs)
        return s[:1].upper() + s[1:]


def test_fallback_when_windows_disagree(tokenizer) -> None:
    text = "xy 1. cat\n12. dog and tag 7, [8]"
    ids = tokenizer.encode(text, add_special_tokens=False)
    want = find_tag_mentions(tokenizer, ids)
    quirky = _Capitalising(tokenizer)
    got = find_tag_mentions(quirky, ids)
    pd.testing.assert_frame_equal(got, want)
    assert quirky.calls > 2 * len(ids)  # the windowed pass ran, then the prefix pass


def test_split_multibyte_characters_map_to_their_byte_tokens(byte_level) -> None:
    text = "café 3. x\n4. œ"
    ids = byte_level.encode(text, add_special_tokens=False)
    dec = decode_with_offsets(byte_level, ids)
    assert dec.text == text
    e_acute = text.index("é")
    lo, hi = dec.token_span(e_acute, e_acute + 1)
    assert byte_level.decode(ids[lo:hi]).endswith("é")
    assert hi - lo >= 1


def test_letter_labels_round_trip() -> None:
    assert [letter_label(i) for i in (1, 2, 26, 27, 28, 52, 53, 702)] == [
        "a", "b", "z", "aa", "ab", "az", "ba", "zz",
    ]  # fmt: skip
    assert all(letter_to_id(letter_label(i)) == i for i in range(1, 800))
    with pytest.raises(InputError):
        letter_label(0)
    with pytest.raises(InputError):
        letter_to_id("A")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"formats": ("listing", "quoted")}, "unknown tag mention format"),
        ({"formats": "listing"}, "unknown tag mention format"),
        ({"label_mode": "roman"}, "label_mode"),
        ({"score_token": "middle"}, "score_token"),
        ({"offset": -1}, "offset"),
        ({"label_mode": "letter", "formats": ("bare",)}, "bare"),
        ({"tag_ids": ["1"]}, "tag_ids"),
    ],
)
def test_bad_arguments(byte_level, kwargs, match) -> None:
    ids = byte_level.encode("1. cat", add_special_tokens=False)
    with pytest.raises(InputError, match=match):
        find_tag_mentions(byte_level, ids, **kwargs)


@pytest.mark.parametrize("bad", [[[1, 2], [3, 4]], [1.5, 2.0], [-1, 3]])
def test_bad_token_ids(byte_level, bad) -> None:
    with pytest.raises(SomprobeError):
        find_tag_mentions(byte_level, bad)


WORDS = ["cat", "dog", "a red ball", "the table", "tree", "x", "café"]


@settings(max_examples=25, deadline=None)
@given(
    numbers=st.lists(st.integers(min_value=0, max_value=999), min_size=1, max_size=8),
    words=st.lists(st.sampled_from(WORDS), min_size=8, max_size=8),
    style=st.sampled_from([". ", ") ", ".", "]"]),
    noise=st.integers(min_value=0, max_value=99),
)
def test_listing_property(llama_like, byte_level, numbers, words, style, noise) -> None:
    if style == "]":
        lines = [f"[{n}]{w} has {noise} legs" for n, w in zip(numbers, words, strict=False)]
    else:
        lines = [f"{n}{style}{w} has {noise} legs" for n, w in zip(numbers, words, strict=False)]
    text = "\n".join(lines)
    for tok in (llama_like, byte_level):
        ids = tok.encode(text, add_special_tokens=False)
        df = find_tag_mentions(tok, ids, tag_ids=range(1, 10))
        assert list(df["tag_id"]) == numbers
        assert list(df["hallucinated"]) == [not 1 <= n <= 9 for n in numbers]
        for row in df.itertuples():
            assert (row.span_start, row.span_end) == _reference_span(
                tok, text, row.char_start, row.char_end
            )


@pytest.mark.parametrize("where", ["alone", "after a mention"])
def test_token_id_outside_the_vocabulary_is_named(tokenizer, where) -> None:
    # a decoder drops an unknown id silently: the mentions would simply be missing
    size = len(tokenizer)
    ids = tokenizer.encode("1. cat", add_special_tokens=False) if where != "alone" else []
    with pytest.raises(InputError, match=rf"token id {size + 7} .*vocabulary of {size}"):
        find_tag_mentions(tokenizer, [*ids, size + 7])
    with pytest.raises(InputError, match=rf"token id {size}\b"):
        decode_with_offsets(tokenizer, [*ids, size])
