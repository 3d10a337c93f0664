"""Where a generated answer ends: ``eos_token_ids`` and ``answer_ends``."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from somprobe.errors import InputError
from somprobe.models.inputs import answer_ends, eos_token_ids


def _reference_end(row: list[int], prompt_len: int, eos: set[int], keep_eos: bool) -> int:
    """The end by a plain scan of the row (independent of the tensor code)."""
    for i in range(prompt_len, len(row)):
        if row[i] in eos:
            return i + 1 if keep_eos else i
    return len(row)


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(st.lists(st.integers(0, 6), min_size=5, max_size=5), min_size=1, max_size=4),
    prompt_len=st.integers(0, 5),
    eos=st.sets(st.integers(0, 6), max_size=3),
    keep_eos=st.booleans(),
)
def test_answer_ends_match_a_plain_scan(
    rows: list[list[int]], prompt_len: int, eos: set[int], keep_eos: bool
) -> None:
    ends = answer_ends(torch.tensor(rows), prompt_len, eos, keep_eos=keep_eos)
    assert ends == [_reference_end(r, prompt_len, eos, keep_eos) for r in rows]


def test_answer_ends_ignore_eos_inside_the_prompt() -> None:
    out = torch.tensor([[2, 5, 2, 7, 2, 2], [1, 5, 9, 7, 8, 3]])
    assert answer_ends(out, 3, {2}, keep_eos=False) == [4, 6]
    assert answer_ends(out, 3, {2}, keep_eos=True) == [5, 6]


@pytest.mark.parametrize(
    ("sequences", "prompt_len", "match"),
    [
        (torch.zeros(4, dtype=torch.long), 0, "batch, position"),
        (torch.zeros(2, 4, dtype=torch.long), 5, "outside"),
        (torch.zeros(2, 4, dtype=torch.long), -1, "outside"),
    ],
)
def test_answer_ends_reject_bad_shapes(
    sequences: torch.Tensor, prompt_len: int, match: str
) -> None:
    with pytest.raises(InputError, match=match):
        answer_ends(sequences, prompt_len, {2}, keep_eos=True)


def test_eos_token_ids_prefer_the_generation_config() -> None:
    tokenizer = SimpleNamespace(eos_token_id=2)
    model = SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=[2, 32007]))
    assert eos_token_ids(model, tokenizer) == {2, 32007}
    plain = SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=None))
    assert eos_token_ids(plain, tokenizer) == {2}
    assert eos_token_ids(plain, SimpleNamespace(tokenizer=tokenizer)) == {2}
    assert eos_token_ids(object(), SimpleNamespace(eos_token_id=None)) == set()
