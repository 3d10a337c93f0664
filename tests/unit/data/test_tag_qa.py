from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from somprobe.data.tag_qa import COCO_CATEGORIES, QA_KINDS, qa_record, tag_questions
from somprobe.errors import InputError
from tests.unit.data.conftest import build_tagset

CATS = ["cat", "dog", "cat", "umbrella", "cat", None]


def _number(q: str) -> str:
    return re.findall(r"\b(\d+)\b", q)[0]


def _category(q: str, present: set[str]) -> str:
    names = sorted(present | set(COCO_CATEGORIES), key=len, reverse=True)
    found = [c for c in names if re.search(rf"\b{re.escape(c)}\b", q)]
    return found[0]


@pytest.mark.parametrize("seed", range(5))
def test_every_answer_matches_the_ground_truth(seed: int) -> None:
    ts = build_tagset(CATS)
    counts = Counter(c for c in CATS if c)
    by_label = {t.label: t.category for t in ts.tags}
    tags_of = {c: [t.label for t in ts.tags if t.category == c] for c in counts}
    pairs = tag_questions(ts, np.random.default_rng(seed), n=50)
    assert {p.kind for p in pairs} == set(QA_KINDS)
    for p in pairs:
        if p.kind == "what_is_tagged":
            assert p.answer == by_label[_number(p.question)]
        else:
            cat = _category(p.question, set(counts))
            if p.kind == "how_many":
                assert p.answer == str(counts[cat])
            elif p.kind == "which_tag":
                assert re.findall(r"\d+", p.answer) == tags_of[cat]
            elif cat in counts:
                assert p.answer.startswith("Yes") and re.findall(r"\d+", p.answer) == tags_of[cat]
            else:
                assert p.answer == "No."
    # no tag without category is asked about with the default describer
    assert all(_number(p.question) != "6" for p in pairs if p.kind == "what_is_tagged")


def test_negatives_are_absent_and_balanced() -> None:
    ts = build_tagset(["cat", "dog", "person"])
    pairs = tag_questions(ts, np.random.default_rng(0), n=100, kinds=["is_there"])
    yes = [p for p in pairs if p.answer.startswith("Yes")]
    no = [p for p in pairs if p.answer == "No."]
    assert len(yes) == len(no) == 3
    for p in no:
        assert _category(p.question, set()) not in {"cat", "dog", "person"}


def test_negatives_case_insensitive_and_vocabulary_exhaustion() -> None:
    ts = build_tagset(["Cat"])
    pairs = tag_questions(ts, np.random.default_rng(0), n=10, kinds=["is_there"],
                          vocabulary=["cat", "CAT"])  # fmt: skip
    assert [p.answer for p in pairs] == ["Yes, tag 1."]


def test_deterministic_and_capped() -> None:
    ts = build_tagset(CATS)
    a = tag_questions(ts, np.random.default_rng(7), n=4)
    b = tag_questions(ts, np.random.default_rng(7), n=4)
    assert a == b and len(a) == 4
    assert len({p.kind for p in a}) == 4  # spread over the kinds
    assert len({p.question for p in tag_questions(ts, np.random.default_rng(7), n=99)}) > 10


def test_bad_arguments() -> None:
    ts = build_tagset(["cat"])
    with pytest.raises(InputError, match="unknown QA kinds"):
        tag_questions(ts, np.random.default_rng(0), kinds=["colour"])  # type: ignore[list-item]
    with pytest.raises(InputError, match="at least one"):
        tag_questions(ts, np.random.default_rng(0), n=0)


def test_record_and_no_question_case() -> None:
    r = qa_record("q", "im.png", build_tagset(["cat", "dog"]), np.random.default_rng(0), n=3)
    assert r is not None and len(r.conversations) == 6
    assert r.conversations[0].value.startswith("<image>\n")
    assert qa_record("q", "im.png", build_tagset([None]), np.random.default_rng(0),
                     kinds=["what_is_tagged"]) is None  # fmt: skip
