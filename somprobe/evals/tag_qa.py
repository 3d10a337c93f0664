"""Tag-QA and short-answer scoring: is a free-form answer right, by question kind?

Rules, by the kinds of :mod:`somprobe.data.tag_qa` and the toy world's instruction QA:

* ``what_is_tagged``, ``colour``, ``shape``: the reference phrase is contained in the
  answer (:func:`somprobe.evals.listing.phrase_matches`, "contains").
* ``which_tag``: the set of numbers in the answer equals the reference's.
* ``how_many``, ``count``, ``count_attr``: the first number in the answer (digits or a
  word "zero".."ten") equals the reference's.
* ``is_there``: yes/no as in POPE; a "yes" reference ("Yes, tag 3.") also needs the
  same set of tag numbers.
* any other kind: equal after normalisation.

Example:
    >>> answer_correct("which_tag", "Tags 3 and 1.", "Tags 1 and 3.")
    True
    >>> answer_correct("how_many", "three", "3")
    True
"""

from __future__ import annotations

import re

import pandas as pd

from somprobe.errors import InputError
from somprobe.evals.listing import normalize, phrase_matches
from somprobe.evals.pope import parse_yes_no

_NUMBER_WORDS = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
)
_NUM = re.compile(r"\b(\d+|" + "|".join(_NUMBER_WORDS) + r")\b", re.IGNORECASE)


def numbers_in(text: str) -> list[int]:
    """Every number in ``text`` (digits or "zero".."ten"), in order."""
    out = []
    for m in _NUM.finditer(text):
        tok = m.group(1).lower()
        out.append(int(tok) if tok.isdigit() else _NUMBER_WORDS.index(tok))
    return out


def answer_correct(kind: str, answer: str, reference: str) -> bool:
    """Whether ``answer`` is right for a question of ``kind`` (see module docstring).

    Raises:
        InputError: the answer or the reference is not a string.
    """
    for what, text in (("answer", answer), ("reference", reference)):
        if not isinstance(text, str):
            raise InputError(f"the {what} must be a string, got {type(text).__name__}")
    if kind in ("what_is_tagged", "colour", "shape"):
        return bool(normalize(reference)) and phrase_matches(answer, reference, "contains")
    if kind == "which_tag":
        return bool(numbers_in(answer)) and set(numbers_in(answer)) == set(numbers_in(reference))
    if kind in ("how_many", "count", "count_attr"):
        got, want = numbers_in(answer), numbers_in(reference)
        return bool(got) and bool(want) and got[0] == want[0]
    if kind == "is_there":
        said, meant = parse_yes_no(answer), parse_yes_no(reference)
        if said != meant or said is None:
            return False
        return meant == "no" or set(numbers_in(answer)) == set(numbers_in(reference))
    return normalize(answer) == normalize(reference)


def summarize_qa(items: pd.DataFrame) -> pd.DataFrame:
    """Tidy rows ``kind``, ``metric`` ("accuracy"), ``value``, ``n``; kind "all" pools.

    ``items`` needs columns ``kind`` and ``correct``; no rows give no metrics.

    Raises:
        InputError: a column is missing.
    """
    missing = [c for c in ("kind", "correct") if c not in items.columns]
    if missing:
        raise InputError(f"QA items lack column(s) {missing}; need kind and correct")
    rows = [{"kind": "all", "metric": "accuracy", "value": float(items["correct"].mean()),
             "n": len(items)}] if len(items) else []  # fmt: skip
    for kind, group in items.groupby("kind", sort=True):
        rows.append(
            {"kind": kind, "metric": "accuracy", "value": float(group["correct"].mean()),
             "n": len(group)}
        )  # fmt: skip
    return pd.DataFrame(rows, columns=["kind", "metric", "value", "n"])


__all__ = ["answer_correct", "numbers_in", "summarize_qa"]
