"""Short-answer scoring rules by question kind."""

from __future__ import annotations

import pandas as pd
import pytest

from somprobe.evals.tag_qa import answer_correct, numbers_in, summarize_qa


@pytest.mark.parametrize(
    ("kind", "answer", "reference", "ok"),
    [
        ("what_is_tagged", "It is a red circle.", "red circle", True),
        ("what_is_tagged", "a blue circle", "red circle", False),
        ("which_tag", "Tags 3 and 1.", "Tags 1 and 3.", True),
        ("which_tag", "Tag 3.", "Tags 1 and 3.", False),
        ("how_many", "There are two.", "2", True),
        ("how_many", "3", "2", False),
        ("is_there", "No.", "No.", True),
        ("is_there", "Yes, tag 4.", "Yes, tag 4.", True),
        ("is_there", "Yes, tag 2.", "Yes, tag 4.", False),
        ("is_there", "maybe", "No.", False),
        ("colour", "Red", "Red", True),
        ("shape", "square", "Triangle", False),
        ("other", "The Answer", "the answer", True),
    ],
)
def test_answer_correct(kind: str, answer: str, reference: str, ok: bool) -> None:
    assert answer_correct(kind, answer, reference) is ok


def test_numbers_and_summary() -> None:
    assert numbers_in("tags 12, three and 4") == [12, 3, 4]
    items = pd.DataFrame({"kind": ["a", "a", "b"], "correct": [True, False, True]})
    s = summarize_qa(items).set_index("kind")["value"]
    assert s["all"] == pytest.approx(2 / 3) and s["a"] == 0.5 and s["b"] == 1.0
