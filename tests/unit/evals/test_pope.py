"""POPE metrics: a hand computation and scikit-learn agree with pope_metrics."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

from somprobe.errors import InputError
from somprobe.evals.pope import parse_yes_no, pope_metrics, summarize_pope


def test_parse() -> None:
    assert parse_yes_no("Yes, there is.") == "yes"
    assert parse_yes_no("no") == "no"
    assert parse_yes_no("There is not a red star.") == "no"
    assert parse_yes_no("Nothing here") is None  # "no" must be a whole word
    assert parse_yes_no("eyes") is None


def test_hand_computation() -> None:
    labels = ["yes", "yes", "yes", "no", "no", "no", "no", "yes"]
    answers = ["Yes", "No", "yes.", "Yes", "No", "no", "blue", "???"]
    # preds: y n y y n n - -   TP=2, FP=1, said yes=3, positives=4, correct=4
    m = pope_metrics(labels, answers)
    assert m["accuracy"] == pytest.approx(4 / 8)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 4)
    assert m["f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    assert m["yes_ratio"] == pytest.approx(3 / 8)
    assert m["unparsed_rate"] == pytest.approx(2 / 8)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["yes", "no"]), st.sampled_from(["Yes", "No", "hm"])),
                min_size=1, max_size=40))  # fmt: skip
def test_matches_sklearn(pairs: list[tuple[str, str]]) -> None:
    labels = [p[0] for p in pairs]
    answers = [p[1] for p in pairs]
    preds = [a.lower() if a in ("Yes", "No") else "unparsed" for a in answers]
    m = pope_metrics(labels, answers)
    p, r, f, _ = precision_recall_fscore_support(
        labels, preds, labels=["yes"], average=None, zero_division=0
    )
    assert m["accuracy"] == pytest.approx(accuracy_score(labels, preds))
    assert (m["precision"], m["recall"], m["f1"]) == pytest.approx((p[0], r[0], f[0]))
    assert m["yes_ratio"] == pytest.approx(preds.count("yes") / len(preds))


def test_bad_input_and_summary() -> None:
    with pytest.raises(InputError):
        pope_metrics(["yes"], [])
    with pytest.raises(InputError):
        pope_metrics(["maybe"], ["yes"])
    items = pd.DataFrame(
        {"setting": ["random", "random", "adversarial", "adversarial"],
         "label": ["yes", "no", "yes", "no"], "answer": ["Yes", "No", "Yes", "Yes"]}
    )  # fmt: skip
    s = summarize_pope(items).set_index(["setting", "metric"])["value"]
    assert s[("random", "accuracy")] == 1.0
    assert s[("adversarial", "accuracy")] == 0.5 and s[("adversarial", "yes_ratio")] == 1.0
