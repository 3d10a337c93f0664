"""Tag listing: parse a model's free-form listing and score it against the TagSet.

**Parsing.** An item starts at a *marker*: a tag number followed by ``.``, ``)``, ``:``,
``]`` or `` -`` (``"3. red circle"``, ``"3) ..."``, ``"[3] ..."``, ``"(3) ..."``), or a number
after ``tag`` / ``#`` (``"Tag 3: ..."``, ``"#3 ..."``). A marker must start the text or
follow whitespace, ``,`` or ``;`` and must not be followed by a digit (``"3.5"`` is not a
marker). The item's phrase runs to the next marker; separators (``,``, ``;``, ``.``, a
trailing ``and``) are trimmed. So numbered lines, comma-separated items and run-on text
all parse the same way. Text before the first marker is ignored.

**Scoring** (one listing against the truth ``{label: phrase}``), item by item in order:

* ``hallucinated``: the label is not a tag of the image (out of range, e.g. "9" of 5);
* ``repeated``: the label was already listed earlier in this answer;
* ``correct``: otherwise, if the phrase matches the truth (see :func:`phrase_matches`);
* ``wrong``: otherwise.

``list_accuracy = correct / listed`` (the paper's list-wise accuracy: items listed
correctly / items listed; NaN when nothing was listed), ``recall = correct / tags``,
``hallucinated_rate = hallucinated / listed``, ``exact = (correct == listed == tags)``.
Summaries pool the counts over images (micro averages).

Example:
    >>> items = parse_listing("1. red circle\\n2. blue square\\n7. green star")
    >>> s = score_listing(items, {"1": "red circle", "2": "blue circle"})
    >>> s["correct"], s["listed"], s["list_accuracy"], s["hallucinated"]
    (1, 3, 0.3333333333333333, 1)
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd

from somprobe.errors import InputError

MatchMode = Literal["exact", "contains"]
STATUSES = ("correct", "wrong", "repeated", "hallucinated")

_MARKER = re.compile(
    r"(?<![^\s,;])"  # start of text or after whitespace / comma / semicolon
    r"(?:(?:tag\s*|#)(?P<a>\d+)(?:\s*[.:)\-])?"  # "tag 3", "tag 3:", "#3"
    r"|[\[(]?(?P<b>\d+)(?:\s*[.):\]]|\s+-))"  # "3.", "3)", "3:", "[3]", "(3)", "3 -"
    r"(?!\d)",
    re.IGNORECASE,
)
_ARTICLES = {"a", "an", "the"}
_TRAILING = re.compile(r"(?:[\s,;.]|\band\b)+$", re.IGNORECASE)


@dataclass(frozen=True)
class ListedItem:
    """One parsed item: the tag label written and the phrase after it."""

    label: str
    phrase: str


def parse_listing(text: str) -> list[ListedItem]:
    """The items of a listing, in the order written (see the module docstring).

    Example:
        >>> [i.label for i in parse_listing("1. cat, 2. dog and 3) bird")]
        ['1', '2', '3']
    """
    if not isinstance(text, str):
        raise InputError(f"a listing must be a string, got {type(text).__name__}")
    marks = list(_MARKER.finditer(text))
    items = []
    for k, m in enumerate(marks):
        end = marks[k + 1].start() if k + 1 < len(marks) else len(text)
        phrase = _TRAILING.sub("", text[m.end() : end].strip()).strip()
        label = str(int(m.group("a") or m.group("b")))
        items.append(ListedItem(label, phrase))
    return items


def normalize(phrase: str) -> list[str]:
    """Lower-case words, punctuation removed, articles dropped."""
    words = re.sub(r"[^0-9a-z]+", " ", phrase.lower()).split()
    return [w for w in words if w not in _ARTICLES]


def phrase_matches(phrase: str, truth: str, mode: MatchMode = "contains") -> bool:
    """Whether a listed phrase names the truth.

    ``"exact"``: equal after :func:`normalize`. ``"contains"`` (default): the truth's
    normalised words appear as a contiguous run in the phrase ("small red circle" names
    "red circle"; "red" alone does not).

    Raises:
        InputError: a phrase that is not a string, a truth with no words, or an unknown
            mode.
    """
    _check_match(mode)
    for what, text in (("phrase", phrase), ("truth phrase", truth)):
        if not isinstance(text, str):
            raise InputError(f"the {what} must be a string, got {type(text).__name__}")
    p, t = normalize(phrase), normalize(truth)
    if not t:
        raise InputError(f"the truth phrase {truth!r} has no words to match")
    if mode == "exact":
        return p == t
    return any(p[i : i + len(t)] == t for i in range(len(p) - len(t) + 1))


def _check_match(mode: object) -> None:
    if mode not in ("exact", "contains"):
        raise InputError(f"match must be 'exact' or 'contains', got {mode!r}")


def classify_items(
    items: Sequence[ListedItem], truth: Mapping[str, str], *, match: MatchMode = "contains"
) -> list[str]:
    """The status of each item (one of :data:`STATUSES`), in order."""
    seen: set[str] = set()
    out = []
    for item in items:
        if item.label not in truth:
            out.append("hallucinated")
        elif item.label in seen:
            out.append("repeated")
        else:
            ok = phrase_matches(item.phrase, truth[item.label], match)
            out.append("correct" if ok else "wrong")
        seen.add(item.label)
    return out


def score_listing(
    items: Sequence[ListedItem],
    truth: Mapping[str, str],
    *,
    match: MatchMode = "contains",
    attributes: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, Any]:
    """Counts and rates of one listing (see the module docstring).

    ``attributes`` (``{label: {"colour": "red", "shape": "circle"}}``) adds, per attribute,
    the number of first-time, in-range items whose phrase contains that attribute's word
    (``<name>_hits``) out of ``attr_items`` such items.

    Raises:
        InputError: no truth, a truth phrase that is not a string with words, items that
            are not :class:`ListedItem` (parse them with :func:`parse_listing`), malformed
            ``attributes`` or an unknown ``match``.
    """
    _check_match(match)
    if not truth:
        raise InputError("the truth has no tags; a listing cannot be scored against nothing")
    for label, phrase in truth.items():
        if not isinstance(phrase, str):
            raise InputError(
                f"the truth phrase of tag {label!r} must be a string, got {type(phrase).__name__}"
            )
        if not normalize(phrase):
            raise InputError(f"the truth phrase {phrase!r} of tag {label!r} has no words to match")
    bad = [it for it in items if not isinstance(it, ListedItem)]
    if bad:
        raise InputError(
            f"items must be ListedItem (from parse_listing), got {type(bad[0]).__name__}"
        )
    if attributes is not None and not (
        isinstance(attributes, Mapping)
        and all(
            isinstance(a, Mapping) and all(isinstance(w, str) for w in a.values())
            for a in attributes.values()
        )
    ):
        raise InputError(
            "attributes must map tag labels to {attribute: word} mappings, e.g. "
            "{'1': {'colour': 'red'}}"
        )
    statuses = classify_items(items, truth, match=match)
    counts = {s: statuses.count(s) for s in STATUSES}
    listed = len(items)
    out: dict[str, Any] = {
        "tags": len(truth),
        "listed": listed,
        **counts,
        "list_accuracy": counts["correct"] / listed if listed else math.nan,
        "recall": counts["correct"] / len(truth),
        "hallucinated_rate": counts["hallucinated"] / listed if listed else math.nan,
        "exact": counts["correct"] == listed == len(truth),
    }
    if attributes is not None:
        valid = [it for it, s in zip(items, statuses, strict=True) if s in ("correct", "wrong")]
        out["attr_items"] = len(valid)
        names = sorted({k for a in attributes.values() for k in a})
        for name in names:
            out[f"{name}_hits"] = sum(
                phrase_matches(it.phrase, attributes[it.label][name])
                for it in valid
                if name in attributes.get(it.label, {})
            )
    return out


def summarize_listing(scores: pd.DataFrame) -> pd.DataFrame:
    """Pooled (micro) metrics over images: tidy rows ``metric``, ``value``, ``n``.

    ``scores`` has one row per image with the columns of :func:`score_listing`; no rows
    give no metrics, and no listed items (or no tags) give NaN rates.

    Raises:
        InputError: ``scores`` lacks a column of :func:`score_listing`.
    """
    if not isinstance(scores, pd.DataFrame) or scores.empty:
        return pd.DataFrame(columns=["metric", "value", "n"])
    need = ["tags", "listed", "correct", "hallucinated", "repeated", "exact"]
    missing = [c for c in need if c not in scores.columns]
    if missing:
        raise InputError(f"listing scores lack column(s) {missing}; pass score_listing rows")
    listed, tags = int(scores["listed"].sum()), int(scores["tags"].sum())
    correct = int(scores["correct"].sum())
    rows = [
        ("list_accuracy", correct / listed if listed else math.nan),
        ("recall", correct / tags if tags else math.nan),
        ("hallucinated_rate", scores["hallucinated"].sum() / listed if listed else math.nan),
        ("repeated_rate", scores["repeated"].sum() / listed if listed else math.nan),
        ("exact_rate", float(scores["exact"].mean())),
        ("items_per_image", listed / len(scores)),
    ]
    if "attr_items" in scores:
        n_attr = int(scores["attr_items"].sum())
        for col in [c for c in scores.columns if c.endswith("_hits")]:
            value = scores[col].sum() / n_attr if n_attr else math.nan
            rows.append((f"{col[: -len('_hits')]}_accuracy", value))
    return pd.DataFrame(
        {"metric": [r[0] for r in rows], "value": [float(r[1]) for r in rows], "n": len(scores)}
    )


__all__ = [
    "STATUSES",
    "ListedItem",
    "MatchMode",
    "classify_items",
    "normalize",
    "parse_listing",
    "phrase_matches",
    "score_listing",
    "summarize_listing",
]
