"""Hostile inputs to the public functions of ``somprobe.evals`` (its ``__all__``).

Each case in ``RAISES`` must raise the named :class:`~somprobe.errors.SomprobeError`
subclass with a message matching the pattern; each case in ``DOCUMENTED`` must behave as
the function's docstring says. Nothing here loads a model: every bad input is caught
before one would be used (``model`` and ``processor`` are ``None``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from somprobe.errors import DataFormatError, InputError, SomprobeError
from somprobe.evals import (
    EvalItem,
    ListedItem,
    answer_correct,
    evaluate,
    generate_answers,
    load_eval_file,
    parse_listing,
    parse_yes_no,
    phrase_matches,
    pope_metrics,
    score_listing,
    score_task,
    summarize_listing,
    summarize_pope,
    summarize_qa,
)

TURNS = [{"from": "human", "value": "<image>\nList the tagged items."},
         {"from": "gpt", "value": "1. cat"}]  # fmt: skip


def _record(truth: Any, **change: Any) -> dict[str, Any]:
    return {"id": "r1", "image": "img.png", "conversations": TURNS, "eval": truth, **change}


LISTING = {"task": "listing", "tags": {"1": "cat"}}
POPE = {"task": "pope", "setting": "random", "label": "yes", "object": "cat"}


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("evals_bad_inputs")
    (root / "img.png").write_bytes(b"")

    def write(name: str, content: Any) -> Path:
        path = root / name
        path.write_text(content if isinstance(content, str) else json.dumps(content))
        return path

    good = json.dumps([_record(LISTING)])
    files = {
        "listing": write("listing.json", good),
        "truncated": write("truncated.json", good[: len(good) // 2]),
        "object": write("object.json", {"records": []}),
        "no_eval": write(
            "no_eval.json", [{k: v for k, v in _record(LISTING).items() if k != "eval"}]
        ),
        "no_task": write("no_task.json", [_record({"tags": {"1": "cat"}})]),
        "eval_text": write("eval_text.json", [_record("listing")]),
        "no_turns": write("no_turns.json", [_record(LISTING, conversations=[])]),
        "binary": write("binary.json", "\x00\x01\x02"),
        "no_tags": write("no_tags.json", [_record({"task": "listing"})]),
        "tags_list": write("tags_list.json", [_record({"task": "listing", "tags": ["cat"]})]),
        "no_setting": write("no_setting.json", [_record({"task": "pope", "label": "yes"})]),
        "maybe": write("maybe.json", [_record({**POPE, "label": "maybe"})]),
        "empty": write("empty.json", "[]"),
    }
    # eval splits: an empty listing file, and POPE files that hold listing records
    empty_split = root / "empty_split"
    empty_split.mkdir()
    (empty_split / "listing.json").write_text("[]")
    mixed = root / "mixed_split"
    mixed.mkdir()
    for setting in ("random", "popular", "adversarial"):
        (mixed / f"pope_{setting}.json").write_text(good)
    items = load_eval_file(files["listing"])
    return SimpleNamespace(root=root, files=files, items=items, empty_split=empty_split,
                           mixed=mixed)  # fmt: skip


def _listing_scores(**change: Any) -> pd.DataFrame:
    row = {"tags": 2, "listed": 2, "correct": 1, "wrong": 1, "repeated": 0,
           "hallucinated": 0, "exact": False}  # fmt: skip
    return pd.DataFrame([{**row, **change}])


Case = tuple[str, Callable[[SimpleNamespace], object], type[SomprobeError], str]

RAISES: list[Case] = [
    # load_eval_file: malformed files
    ("file-truncated-json", lambda c: load_eval_file(c.files["truncated"]),
     DataFormatError, "not valid JSON"),
    ("file-missing", lambda c: load_eval_file(c.root / "nope.json"), InputError, "no such file"),
    ("file-is-a-folder", lambda c: load_eval_file(c.root), InputError, "check the path"),
    ("file-an-object", lambda c: load_eval_file(c.files["object"]), DataFormatError, "id"),
    ("file-binary", lambda c: load_eval_file(c.files["binary"]), DataFormatError, "expected"),
    ("record-without-eval", lambda c: load_eval_file(c.files["no_eval"]),
     DataFormatError, "'eval'"),
    ("record-eval-without-task", lambda c: load_eval_file(c.files["no_task"]),
     DataFormatError, "'task'"),
    ("record-eval-a-string", lambda c: load_eval_file(c.files["eval_text"]),
     DataFormatError, "'eval'"),
    ("record-without-turns", lambda c: load_eval_file(c.files["no_turns"]),
     DataFormatError, "conversations"),
    ("listing-record-without-tags", lambda c: load_eval_file(c.files["no_tags"]),
     DataFormatError, "tags"),
    ("listing-record-tags-a-list", lambda c: load_eval_file(c.files["tags_list"]),
     DataFormatError, "tags"),
    ("pope-record-without-setting", lambda c: load_eval_file(c.files["no_setting"]),
     DataFormatError, "setting"),
    ("pope-record-label-maybe", lambda c: load_eval_file(c.files["maybe"]),
     DataFormatError, "label"),
    ("file-limit-zero", lambda c: load_eval_file(c.files["listing"], limit=0), InputError, "limit"),
    ("file-limit-negative", lambda c: load_eval_file(c.files["listing"], limit=-1),
     InputError, "limit"),
    # score_task
    ("score-unknown-task", lambda c: score_task("smell", c.items, ["x"]), InputError, "unknown task"),
    ("score-answer-count", lambda c: score_task("listing", c.items, []), InputError, "answers"),
    ("score-no-items", lambda c: score_task("pope", [], []), InputError, "no items"),
    ("score-answer-none", lambda c: score_task("listing", c.items, [None]), InputError, "string"),
    ("score-items-of-another-task", lambda c: score_task("pope", c.items, ["yes"]),
     DataFormatError, "'listing'"),
    ("score-items-not-eval-items", lambda c: score_task("listing", ["1. cat"], ["1. cat"]),
     InputError, "EvalItem"),
    # evaluate: caught before the model is used
    ("evaluate-missing-split",
     lambda c: evaluate(None, None, c.root / "nowhere", tasks=("listing",)), InputError, "missing"),
    ("evaluate-no-tasks", lambda c: evaluate(None, None, c.root, tasks=()), InputError, "task"),
    ("evaluate-tasks-a-string", lambda c: evaluate(None, None, c.root, tasks="listing"),
     InputError, "list of task names"),
    ("evaluate-limit-zero", lambda c: evaluate(None, None, c.root, tasks=("listing",), limit=0),
     InputError, "limit"),
    ("evaluate-batch-size-zero",
     lambda c: evaluate(None, None, c.root, tasks=("listing",), batch_size=0),
     InputError, "batch_size"),
    ("evaluate-no-new-tokens",
     lambda c: evaluate(None, None, c.root, tasks=("listing",), max_new_tokens=0),
     InputError, "max_new_tokens"),
    ("evaluate-empty-file", lambda c: evaluate(None, None, c.empty_split, tasks=("listing",)),
     InputError, "no records"),
    ("evaluate-records-of-another-task",
     lambda c: evaluate(None, None, c.mixed, tasks=("pope",)), DataFormatError, "'listing'"),
    # generate_answers
    ("generate-lengths", lambda c: generate_answers(None, None, ["a.png"], []),
     InputError, "questions"),
    ("generate-batch-size-zero", lambda c: generate_answers(None, None, [], [], batch_size=0),
     InputError, "batch_size"),
    ("generate-negative-budget",
     lambda c: generate_answers(None, None, [c.root / "img.png"], ["q"], max_new_tokens=-1),
     InputError, "max_new_tokens"),
    ("generate-budget-count",
     lambda c: generate_answers(None, None, [c.root / "img.png"], ["q"], max_new_tokens=[1, 2]),
     InputError, "max_new_tokens"),
    ("generate-missing-image",
     lambda c: generate_answers(None, None, [c.root / "none.png"], ["q"]),
     InputError, "does not exist"),
    # listing parse and score
    ("parse-none", lambda c: parse_listing(None), InputError, "string"),
    ("phrase-unknown-mode", lambda c: phrase_matches("red cat", "cat", "fuzzy"), InputError, "match"),
    ("phrase-empty-truth", lambda c: phrase_matches("cat", ""), InputError, "no words"),
    ("phrase-none", lambda c: phrase_matches(None, "cat"), InputError, "string"),
    ("listing-empty-truth", lambda c: score_listing([], {}), InputError, "no tags"),
    ("listing-unknown-mode", lambda c: score_listing([], {"1": "cat"}, match="fuzzy"),
     InputError, "match"),
    ("listing-truth-not-text", lambda c: score_listing([ListedItem("1", "cat")], {"1": 5}),
     InputError, "string"),
    ("listing-truth-blank", lambda c: score_listing([ListedItem("1", "cat")], {"1": "  "}),
     InputError, "no words"),
    ("listing-items-not-parsed", lambda c: score_listing(["1. cat"], {"1": "cat"}),
     InputError, "ListedItem"),
    ("listing-attributes-shape",
     lambda c: score_listing([ListedItem("1", "cat")], {"1": "cat"}, attributes={"1": "red"}),
     InputError, "attributes"),
    ("summary-listing-columns", lambda c: summarize_listing(pd.DataFrame({"x": [1]})),
     InputError, "listed"),
    ("summary-pope-columns", lambda c: summarize_pope(pd.DataFrame({"label": ["yes"]})),
     InputError, "setting"),
    ("summary-pope-label",
     lambda c: summarize_pope(pd.DataFrame({"setting": ["random"], "label": ["maybe"],
                                            "answer": ["yes"]})),
     InputError, "labels"),
    ("summary-qa-columns", lambda c: summarize_qa(pd.DataFrame({"kind": ["colour"]})),
     InputError, "correct"),
    # POPE and short answers
    ("pope-lengths", lambda c: pope_metrics(["yes"], []), InputError, "answers"),
    ("pope-nothing", lambda c: pope_metrics([], []), InputError, "no items"),
    ("pope-label-maybe", lambda c: pope_metrics(["maybe"], ["yes"]), InputError, "labels"),
    ("pope-answer-none", lambda c: pope_metrics(["yes"], [None]), InputError, "string"),
    ("yes-no-none", lambda c: parse_yes_no(None), InputError, "string"),
    ("yes-no-number", lambda c: parse_yes_no(5), InputError, "string"),
    ("answer-none", lambda c: answer_correct("colour", None, "red"), InputError, "string"),
    ("reference-none", lambda c: answer_correct("colour", "red", None), InputError, "string"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("call", "error", "match"), [pytest.param(c, e, m, id=i) for i, c, e, m in RAISES]
)
def test_hostile_input_raises_a_somprobe_error(
    ctx: SimpleNamespace, call: Callable[[SimpleNamespace], object], error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        call(ctx)


def _empty_file(c: SimpleNamespace) -> None:
    assert load_eval_file(c.files["empty"]) == []


def _limited(c: SimpleNamespace) -> None:
    items = load_eval_file(c.files["listing"], limit=1)
    assert len(items) == 1 and isinstance(items[0], EvalItem)


def _nothing_to_generate(c: SimpleNamespace) -> None:
    assert generate_answers(None, None, [], []) == []


def _empty_listing(c: SimpleNamespace) -> None:
    assert parse_listing("") == [] and parse_listing("no numbers here") == []
    s = score_listing([], {"1": "cat"})
    assert s["listed"] == 0 and math.isnan(s["list_accuracy"]) and s["recall"] == 0.0


def _empty_summaries(c: SimpleNamespace) -> None:
    assert summarize_listing(pd.DataFrame()).empty
    assert summarize_pope(pd.DataFrame({"setting": [], "label": [], "answer": []})).empty
    assert summarize_qa(pd.DataFrame({"kind": [], "correct": []})).empty


def _no_tags(c: SimpleNamespace) -> None:
    out = summarize_listing(_listing_scores(tags=0, listed=0, correct=0, wrong=0)).set_index(
        "metric"
    )["value"]
    assert math.isnan(out["recall"]) and math.isnan(out["list_accuracy"])


def _unparsed(c: SimpleNamespace) -> None:
    assert parse_yes_no("blue") is None
    m = pope_metrics(["yes", "no"], ["blue", "no"])
    assert m["unparsed_rate"] == 0.5 and m["accuracy"] == 0.5


DOCUMENTED: list[tuple[str, Callable[[SimpleNamespace], None]]] = [
    ("an-empty-eval-file-has-no-items", _empty_file),
    ("limit-takes-the-first-records", _limited),
    ("no-questions-no-answers", _nothing_to_generate),
    ("a-listing-without-items-lists-nothing", _empty_listing),
    ("empty-tables-summarise-to-empty", _empty_summaries),
    ("no-tags-give-nan-rates", _no_tags),
    ("answers-without-yes-or-no-are-unparsed", _unparsed),
]


@pytest.mark.parametrize("check", [pytest.param(f, id=i) for i, f in DOCUMENTED])
def test_edge_input_behaves_as_documented(
    ctx: SimpleNamespace, check: Callable[[SimpleNamespace], None]
) -> None:
    check(ctx)
