from __future__ import annotations

import numpy as np
import pytest

from somprobe.data.listing import (
    LISTING_INSTRUCTIONS,
    label_describer,
    listing_answer,
    listing_lines,
    listing_record,
    sample_instruction,
)
from somprobe.errors import InputError
from tests.unit.data.conftest import build_tagset


def test_lines_follow_tag_order_and_labels() -> None:
    ts = build_tagset(["person", "cat", "traffic  light"])
    assert listing_lines(ts) == ["1. person", "2. cat", "3. traffic light"]
    # reference: built from the TagSet fields directly
    assert listing_answer(ts).split("\n") == [
        f"{t.label}. {' '.join(t.category.split())}"
        for t in ts.tags  # type: ignore[union-attr]
    ]


def test_letter_labels() -> None:
    assert listing_lines(build_tagset(["a", "b"], label_mode="letter")) == ["a. a", "b. b"]


def test_custom_describer_gets_each_tag() -> None:
    ts = build_tagset(["cat", None])
    seen: list[int] = []

    def describe(tag, image=None):  # type: ignore[no-untyped-def]
        seen.append(tag.id)
        return f"thing with area {tag.area}"

    assert listing_lines(ts, describe) == ["1. thing with area 16", "2. thing with area 16"]
    assert seen == [1, 2]


def test_default_describer_needs_a_category() -> None:
    with pytest.raises(InputError, match="tag 2 has no category"):
        listing_answer(build_tagset(["cat", None]))
    assert label_describer(build_tagset(["cat"]).tags[0]) == "cat"


@pytest.mark.parametrize("bad", ["", "  ", "two\nlines"])
def test_describer_output_checked(bad: str) -> None:
    with pytest.raises(InputError, match="tag 1"):
        listing_lines(build_tagset(["cat"]), lambda tag, image=None: bad)


def test_instruction_pool() -> None:
    assert len(LISTING_INSTRUCTIONS) >= 40
    assert len(set(LISTING_INSTRUCTIONS)) == len(LISTING_INSTRUCTIONS)
    assert all(s[-1] in ".?" and s[0].isupper() for s in LISTING_INSTRUCTIONS)
    assert not any("<image>" in s for s in LISTING_INSTRUCTIONS)


def test_sampling_is_seeded_and_covers_pool() -> None:
    a = [sample_instruction(np.random.default_rng(3)) for _ in range(3)]
    assert len(set(a)) == 1
    rng = np.random.default_rng(0)
    draws = [sample_instruction(rng) for _ in range(2000)]
    assert set(draws) == set(LISTING_INSTRUCTIONS)
    with pytest.raises(InputError, match="empty"):
        sample_instruction(rng, [])


def test_listing_record() -> None:
    ts = build_tagset(["dog", "cup"])
    r = listing_record("r1", "images/x.png", ts, np.random.default_rng(1))
    assert r.conversations[0].value.startswith("<image>\n")
    assert r.conversations[0].value.removeprefix("<image>\n") in LISTING_INSTRUCTIONS
    assert r.conversations[1].value == "1. dog\n2. cup"
    with pytest.raises(InputError, match="no tags"):
        listing_record("r2", "x.png", build_tagset([]), np.random.default_rng(1))
