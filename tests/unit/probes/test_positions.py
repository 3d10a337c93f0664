"""The number, "." and first attribute-word tokens of each listing line."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from somprobe_testing import Pieces

from somprobe.errors import TagMentionError
from somprobe.measure import find_tag_mentions
from somprobe.probes import POSITIONS, ProbeDataset, build_probe_datasets, listing_positions
from somprobe.tagging import Tag, TagSet

ANSWER = "1. green star\n2. cyan circle\n12. red square"


def _sequence(tokenizer: Any, answer: str = ANSWER) -> tuple[torch.Tensor, tuple[int, int]]:
    prompt = tokenizer.encode("USER: list the tags ASSISTANT:", add_special_tokens=True)
    ans = tokenizer.encode(answer, add_special_tokens=False)
    ids = torch.tensor([prompt + ans + [tokenizer.eos_token_id]])
    return ids, (len(prompt), len(prompt) + len(ans))


def _mentions(tokenizer: Any, ids: torch.Tensor, span: tuple[int, int]) -> pd.DataFrame:
    start, end = span
    m = find_tag_mentions(tokenizer, ids[0, start:end].tolist(), offset=start, batch=0)
    return m.assign(position=[int(p[-1]) for p in m["scored_positions"]])


def _piece(tokenizer: Any, ids: torch.Tensor, position: int) -> str:
    return tokenizer.decode([int(ids[0, position])]).strip()


def test_number_dot_and_attribute_tokens_on_the_tiny_tokenizer(tiny_tokenizer: Any) -> None:
    ids, span = _sequence(tiny_tokenizer)
    out = listing_positions(tiny_tokenizer, ids, [span], _mentions(tiny_tokenizer, ids, span))
    assert POSITIONS == ("number", "dot", "attribute")
    got = [
        tuple(_piece(tiny_tokenizer, ids, p) for p in row)
        for row in out[["position_number", "position_dot", "position_attribute"]].to_numpy()
    ]
    # "12" is "1", "2": the number token is the last digit, as the mentions' position
    assert got == [("1", ".", "green"), ("2", ".", "cyan"), ("2", ".", "red")]
    assert (out["position_number"] == out["position"]).all()
    assert (out["position_dot"] == out["position_number"] + 1).all()
    assert out["token_dot"].tolist() == ["."] * 3
    assert [t.strip() for t in out["token_attribute"]] == ["green", "cyan", "red"]


def _positions(pieces: list[str]) -> pd.DataFrame:
    tok = Pieces(pieces)
    ids = torch.arange(len(pieces))[None]
    m = find_tag_mentions(tok, ids[0].tolist())
    return listing_positions(tok, ids, [(0, len(pieces))], m.assign(position=m["span_end"] - 1))


def test_a_word_split_over_tokens_gives_its_first_token() -> None:
    out = _positions(["1", ".", " ", "gr", "een", " star"])
    assert out[["position_number", "position_dot", "position_attribute"]].values.tolist() == [
        [0, 1, 3]
    ]


@pytest.mark.parametrize(
    ("pieces", "match"),
    [
        (["1.", " red"], "one token"),  # number and "." merged
        (["1", ". red"], "share one token"),  # "." merged with the next word
        (["1", ".", "\n", "2", ".", " red"], "no word after"),  # empty line
        (["1", ")", " red"], r"not '\.'"),  # "1)" listing
        (["1", "."], "no word after"),  # the text ends
    ],
)
def test_unexpected_splits_are_clear_errors(pieces: list[str], match: str) -> None:
    with pytest.raises(TagMentionError, match=match):
        _positions(pieces)


def test_build_probe_datasets_reads_each_position() -> None:
    mask = np.zeros((4, 4), bool)
    mask[:2, :2] = True
    tags = [Tag(i, str(i), mask, mask, (1.0, 1.0), (0, 0, 2, 2), f"c{i}") for i in (1, 2)]

    class Stub:
        def __init__(self) -> None:
            self.layers = [0]

        def hidden(self, batch: int, position: int) -> torch.Tensor:
            return torch.full((1, 2), float(position))

    mentions = pd.DataFrame(
        {"batch": [0, 0], "position": [3, 7], "tag_id": [1, 2], "position_number": [3, 7],
         "position_dot": [4, 8], "position_attribute": [5, 9]}
    )  # fmt: skip
    out = build_probe_datasets(Stub(), mentions, [TagSet(tags, (4, 4))])
    assert list(out) == ["number", "dot", "attribute"]
    assert all(isinstance(d, ProbeDataset) for d in out.values())
    assert out["dot"].features[0, :, 0].tolist() == [4.0, 8.0]
    assert out["attribute"].samples["position"].tolist() == [5, 9]
    assert (out["number"].samples["tag_id"] == out["attribute"].samples["tag_id"]).all()
    assert list(build_probe_datasets(Stub(), mentions, [TagSet(tags, (4, 4))], at=("dot",))) == [
        "dot"
    ]
