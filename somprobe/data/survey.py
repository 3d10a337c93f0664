"""Listing-style survey: how many answers in a dataset list items one by one, numbered.

This reproduces the kind of count in SoM-LLaVA's Table 1 (listing-style answers are
rare in existing instruction data). Each assistant (``gpt``) turn is classified:

* ``item_listing`` — a numbered list of *items*: at least ``min_items`` lines numbered
  1, 2, 3, … in order (``"1. cat"``, ``"2) dog"``, ``"(3) cup"``; lines between them
  are allowed) whose item texts are short: median at most ``max_item_words`` words.
  This is the style of a SoM tag listing.
* ``numbered_other`` — a numbered list of the same form whose items are long, such as
  the steps of a recipe ("1. Preheat the oven to 200 degrees and line a tray with
  paper."), instructions or numbered explanations. These are *not* counted as listing
  style; they get their own row so nothing disappears from the report. A list of very
  short steps ("1. Mix.", "2. Bake.") reads like an item list and is counted as
  ``item_listing``: the detector judges the form, not the meaning.
* ``none`` — anything else (including a single numbered line, or numbers that do not
  start at 1 or do not go up by one).

A record's style is that of its most listing-like gpt turn
(``item_listing`` > ``numbered_other`` > ``none``).

Example:
    >>> classify_answer("1. person\\n2. cat\\n3. cup")
    'item_listing'
    >>> classify_answer("Sure! 1. The first step is long enough to be a full sentence here.")
    'none'
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from somprobe.data.llava_json import LlavaRecord, iter_records
from somprobe.errors import InputError

Style = Literal["item_listing", "numbered_other", "none"]
STYLES: tuple[Style, ...] = ("item_listing", "numbered_other", "none")
_RANK = {"none": 0, "numbered_other": 1, "item_listing": 2}

_NUMBERED = re.compile(r"^\s*(?:\((\d{1,3})\)|(\d{1,3})[.)])\s+(\S.*?)\s*$")
_MARKUP = re.compile(r"[*_`]+")


def numbered_items(text: str) -> list[str]:
    """Texts of the lines numbered 1, 2, 3, … in order (the first such run found).

    Example:
        >>> numbered_items("Here:\\n1. cat\\nnote\\n2. dog\\n4. cup")
        ['cat', 'dog']
    """
    items: list[str] = []
    for line in text.splitlines():
        m = _NUMBERED.match(line)
        if not m:
            continue
        number = int(m.group(1) or m.group(2))
        if number == len(items) + 1:
            items.append(m.group(3))
        elif number == 1 and len(items) < 2:
            items = [m.group(3)]  # a fresh list starts; keep the later one if longer
    return items


def _words(item: str) -> int:
    return len(_MARKUP.sub("", item).split())


def check_thresholds(min_items: int, max_item_words: int) -> None:
    """Both thresholds must be at least 1 (a list has an item, an item has a word).

    Raises:
        InputError: naming the bad value.
    """
    for name, value in (("min_items", min_items), ("max_item_words", max_item_words)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise InputError(
                f"{name}={value!r}: give a whole number ≥ 1 (defaults: min_items=2, "
                "max_item_words=8)"
            )


def classify_answer(text: str, *, min_items: int = 2, max_item_words: int = 8) -> Style:
    """The listing style of one answer (see the module docs for the rules).

    Raises:
        InputError: a threshold below 1 (:func:`check_thresholds`).
    """
    check_thresholds(min_items, max_item_words)
    if not isinstance(text, str):
        raise InputError(f"an answer must be a string, got {type(text).__name__}")
    items = numbered_items(text)
    if len(items) < min_items:
        return "none"
    median = float(np.median([_words(i) for i in items]))
    return "item_listing" if median <= max_item_words else "numbered_other"


def is_listing_style(text: str, *, min_items: int = 2, max_item_words: int = 8) -> bool:
    """True when :func:`classify_answer` says ``item_listing``."""
    return classify_answer(text, min_items=min_items, max_item_words=max_item_words) == (
        "item_listing"
    )


def survey_records(
    records: Iterable[LlavaRecord],
    *,
    dataset: str = "data",
    min_items: int = 2,
    max_item_words: int = 8,
) -> pd.DataFrame:
    """Count listing styles over records; a tidy table.

    Returns:
        One row per ``(dataset, unit, style)`` with ``unit`` in {"record", "turn"} (turn
        = gpt turn) and columns ``count``, ``total``, ``share``; every style appears,
        with count 0 if unseen.

    Raises:
        InputError: a threshold below 1 (:func:`check_thresholds`).
    """
    check_thresholds(min_items, max_item_words)
    counts = {("record", s): 0 for s in STYLES} | {("turn", s): 0 for s in STYLES}
    n_records = n_turns = 0
    for rec in records:
        best: Style = "none"
        for turn in rec.conversations:
            if turn.role != "gpt":
                continue
            style = classify_answer(turn.value, min_items=min_items, max_item_words=max_item_words)
            counts[("turn", style)] += 1
            n_turns += 1
            if _RANK[style] > _RANK[best]:
                best = style
        counts[("record", best)] += 1
        n_records += 1
    rows = []
    for (unit, style), count in counts.items():
        total = n_records if unit == "record" else n_turns
        share = count / total if total else 0.0
        rows.append(
            {"dataset": dataset, "unit": unit, "style": style, "count": count,
             "total": total, "share": share}
        )  # fmt: skip
    return pd.DataFrame(rows)


def survey_file(
    path: str | Path,
    *,
    dataset: str | None = None,
    min_items: int = 2,
    max_item_words: int = 8,
) -> pd.DataFrame:
    """:func:`survey_records` over a LLaVA file, streamed (named after the file by default)."""
    return survey_records(
        iter_records(path),
        dataset=dataset or Path(path).name,
        min_items=min_items,
        max_item_words=max_item_words,
    )


__all__ = [
    "STYLES",
    "Style",
    "check_thresholds",
    "classify_answer",
    "is_listing_style",
    "numbered_items",
    "survey_file",
    "survey_records",
]
