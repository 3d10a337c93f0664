"""Listing parser and list-wise scores on the formats models really produce."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from somprobe.errors import InputError
from somprobe.evals.listing import (
    ListedItem,
    parse_listing,
    phrase_matches,
    score_listing,
    summarize_listing,
)

TRUTH = {"1": "red circle", "2": "blue square", "3": "green star"}


def labels(text: str) -> list[str]:
    return [i.label for i in parse_listing(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1. red circle\n2. blue square\n3. green star", ["1", "2", "3"]),
        ("1. red circle, 2. blue square, 3. green star.", ["1", "2", "3"]),
        ("1) red circle; 2) blue square and 3) green star", ["1", "2", "3"]),
        ("[1] red circle [2] blue square", ["1", "2"]),
        ("Tag 1: red circle\nTag 2 - blue square\n#3 green star", ["1", "2", "3"]),
        ("Sure! Here they are:\n  1. red circle\n  3. green star", ["1", "3"]),
        ("01. red circle", ["1"]),
        ("The image has 3 shapes and 2.5 circles.", []),
        ("", []),
    ],
)
def test_parse_formats(text: str, expected: list[str]) -> None:
    assert labels(text) == expected


def test_phrases_are_trimmed() -> None:
    items = parse_listing("1. a red circle, 2. the blue square and 3. green star.")
    assert items == [
        ListedItem("1", "a red circle"),
        ListedItem("2", "the blue square"),
        ListedItem("3", "green star"),
    ]


def test_matching_rules() -> None:
    assert phrase_matches("a small red circle", "red circle")
    assert not phrase_matches("red", "red circle")
    assert not phrase_matches("circle red", "red circle")
    assert phrase_matches("The red circle.", "red circle", "exact")
    assert not phrase_matches("small red circle", "red circle", "exact")
    with pytest.raises(InputError):
        phrase_matches("x", "red", "fuzzy")  # type: ignore[arg-type]


def test_perfect_listing() -> None:
    s = score_listing(parse_listing("1. red circle\n2. blue square\n3. green star"), TRUTH)
    assert (s["listed"], s["correct"], s["list_accuracy"], s["recall"], s["exact"]) == (
        3, 3, 1.0, 1.0, True,
    )  # fmt: skip


def test_missing_items_lower_recall_only() -> None:
    s = score_listing(parse_listing("1. red circle\n3. green star"), TRUTH)
    assert s["list_accuracy"] == 1.0 and s["recall"] == pytest.approx(2 / 3) and not s["exact"]


def test_repeated_and_out_of_range_tags() -> None:
    text = "1. red circle\n1. red circle\n2. blue circle\n4. yellow star\n12. cyan cross"
    s = score_listing(parse_listing(text), TRUTH)
    assert (s["listed"], s["correct"], s["wrong"], s["repeated"], s["hallucinated"]) == (
        5, 1, 1, 1, 2,
    )  # fmt: skip
    assert s["list_accuracy"] == pytest.approx(1 / 5)
    assert s["recall"] == pytest.approx(1 / 3)
    assert s["hallucinated_rate"] == pytest.approx(2 / 5)


def test_empty_answer_gives_nan_accuracy_and_zero_recall() -> None:
    s = score_listing(parse_listing("I see some shapes."), TRUTH)
    assert s["listed"] == 0 and math.isnan(s["list_accuracy"]) and s["recall"] == 0.0
    with pytest.raises(InputError):
        score_listing([], {})


def test_attributes_and_pooled_summary() -> None:
    attrs = {k: dict(zip(("colour", "shape"), v.split(), strict=True)) for k, v in TRUTH.items()}
    a = score_listing(parse_listing("1. red square\n2. blue square"), TRUTH, attributes=attrs)
    b = score_listing(parse_listing("3. green star\n9. red circle"), TRUTH, attributes=attrs)
    assert (a["colour_hits"], a["shape_hits"], a["attr_items"]) == (2, 1, 2)
    table = pd.DataFrame([a, b])
    summary = summarize_listing(table).set_index("metric")["value"]
    # pooled by hand: correct 1 + 1 of listed 2 + 2; tags 3 + 3
    assert summary["list_accuracy"] == pytest.approx(2 / 4)
    assert summary["recall"] == pytest.approx(2 / 6)
    assert summary["hallucinated_rate"] == pytest.approx(1 / 4)
    assert summary["colour_accuracy"] == pytest.approx(3 / 3)
    assert summary["shape_accuracy"] == pytest.approx(2 / 3)
    assert summary["exact_rate"] == 0.0
