"""POPE-style existence evaluation: yes/no answers scored per negative-sampling setting.

An answer is read as the first of the words "yes", "no" or "not" it contains ("not"
reads as no; case and punctuation ignored); an answer with none of them is *unparsed*.
Metrics, with "yes" as the positive class: ``accuracy`` (unparsed answers count as
wrong), ``precision`` = TP / answered-yes (0 when nothing was answered yes),
``recall`` = TP / labelled-yes, ``f1``, ``yes_ratio`` = answered-yes / all, and
``unparsed_rate``.

Example:
    >>> m = pope_metrics(["yes", "no", "no", "yes"], ["Yes.", "No", "yes", "I cannot tell"])
    >>> m["accuracy"], m["precision"], m["recall"], m["yes_ratio"]
    (0.5, 0.5, 0.5, 0.5)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

import pandas as pd

from somprobe.errors import InputError

Answer = Literal["yes", "no"]
_WORD = re.compile(r"\b(yes|no|not)\b", re.IGNORECASE)


def parse_yes_no(text: str) -> Answer | None:
    """``"yes"``, ``"no"`` or None (no yes/no/not word).

    Example:
        >>> parse_yes_no("No, there is not."), parse_yes_no("Yes"), parse_yes_no("blue")
        ('no', 'yes', None)

    Raises:
        InputError: ``text`` is not a string.
    """
    if not isinstance(text, str):
        raise InputError(f"an answer must be a string, got {type(text).__name__}")
    m = _WORD.search(text)
    if m is None:
        return None
    return "yes" if m.group(1).lower() == "yes" else "no"


def pope_metrics(labels: Sequence[str], answers: Sequence[str]) -> dict[str, float]:
    """Accuracy, precision, recall, F1, yes-ratio and unparsed rate (see module docstring).

    Raises:
        InputError: lengths differ, no items, a label other than "yes"/"no", or an answer
            that is not a string.
    """
    if len(labels) != len(answers):
        raise InputError(f"{len(labels)} labels but {len(answers)} answers; give one per item")
    if not labels:
        raise InputError("no items to score")
    bad = sorted({str(v) for v in labels} - {"yes", "no"})
    if bad:
        raise InputError(f"labels must be 'yes' or 'no', got {bad}")
    preds = [parse_yes_no(a) for a in answers]
    n = len(labels)
    tp = sum(p == "yes" and y == "yes" for p, y in zip(preds, labels, strict=True))
    said_yes = sum(p == "yes" for p in preds)
    pos = sum(y == "yes" for y in labels)
    correct = sum(p == y for p, y in zip(preds, labels, strict=True))
    precision = tp / said_yes if said_yes else 0.0
    recall = tp / pos if pos else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": correct / n,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "yes_ratio": said_yes / n,
        "unparsed_rate": sum(p is None for p in preds) / n,
        "n": float(n),
    }


def summarize_pope(items: pd.DataFrame) -> pd.DataFrame:
    """Tidy rows ``setting``, ``metric``, ``value``, ``n`` from a per-item table.

    ``items`` needs columns ``setting``, ``label`` ("yes"/"no") and ``answer``; no rows
    give no metrics.

    Raises:
        InputError: a column is missing, or as :func:`pope_metrics`.
    """
    missing = [c for c in ("setting", "label", "answer") if c not in items.columns]
    if missing:
        raise InputError(f"POPE items lack column(s) {missing}; need setting, label and answer")
    rows = []
    for setting, group in items.groupby("setting", sort=False):
        m = pope_metrics(list(group["label"]), list(group["answer"]))
        n = int(m.pop("n"))
        rows += [{"setting": setting, "metric": k, "value": v, "n": n} for k, v in m.items()]
    return pd.DataFrame(rows, columns=["setting", "metric", "value", "n"])


__all__ = ["parse_yes_no", "pope_metrics", "summarize_pope"]
