"""Rule-based tag-QA: questions about a tagged image answered from its TagSet.

Four kinds, each with several wordings:

* ``what_is_tagged`` — "What is the object tagged with 3?" → the tag's phrase.
* ``which_tag`` — "Which tag is on the cat?" → "Tag 3." (all tags of that category).
* ``how_many`` — "How many tags mark a cat?" → "2".
* ``is_there`` — "Is there a dog among the tagged objects?" → "Yes, tag 4." or "No.";
  negatives use categories from ``vocabulary`` that no tag in the image has (compared
  case-insensitively), drawn so that yes and no are equally frequent where possible.

Tags without a category take part only in ``what_is_tagged`` (and only with a describer
that can phrase them). Questions are drawn with a seeded generator: the same TagSet and
generator state give the same questions.

Example:
    >>> import numpy as np
    >>> from somprobe.tagging.types import Tag, TagSet
    >>> m = np.ones((2, 2), bool)
    >>> ts = TagSet([Tag(1, "1", m, m, (0.5, 0.5), (0, 0, 1, 1), category="cat")], (2, 2))
    >>> qa = tag_questions(ts, np.random.default_rng(0), n=2, kinds=("how_many",))
    >>> qa[0].answer
    '1'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

from somprobe.data.listing import Describer, label_describer
from somprobe.data.llava_json import LlavaRecord, make_record
from somprobe.errors import InputError
from somprobe.tagging.types import TagSet

QAKind = Literal["what_is_tagged", "which_tag", "how_many", "is_there"]
QA_KINDS: tuple[QAKind, ...] = ("what_is_tagged", "which_tag", "how_many", "is_there")

# The 80 COCO object categories: the default pool of negatives for ``is_there``.
COCO_CATEGORIES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat",
    "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack",
    "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball",
    "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket",
    "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair",
    "couch", "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse",
    "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier",
    "toothbrush",
)  # fmt: skip

_WHAT = (
    "What is the object tagged with {label}?",
    "What does tag {label} mark?",
    "Which object carries the tag {label}?",
    "What is under the mark {label}?",
)
_WHICH_ONE = (
    "Which tag is on the {cat}?",
    "What number is the {cat} tagged with?",
    "Which mark identifies the {cat}?",
)
_WHICH_MANY = (
    "Which tags are on {a} {cat}?",
    "What numbers are the {cat} objects tagged with?",
    "Which marks identify {a} {cat}?",
)
_HOW_MANY = (
    "How many tags mark {a} {cat}?",
    "How many of the tagged objects are {a} {cat}?",
    "Count the tags placed on {a} {cat}.",
)
_IS_THERE = (
    "Is there {a} {cat} among the tagged objects?",
    "Does any tag mark {a} {cat}?",
    "Is {a} {cat} one of the tagged items?",
)


@dataclass(frozen=True)
class QAPair:
    """One question with its ground-truth answer and the rule (kind) that made it."""

    kind: QAKind
    question: str
    answer: str


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _join_labels(labels: list[str]) -> str:
    if len(labels) == 1:
        return f"Tag {labels[0]}."
    return f"Tags {', '.join(labels[:-1])} and {labels[-1]}."


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _candidates(
    tagset: TagSet,
    rng: np.random.Generator,
    kinds: Sequence[QAKind],
    vocabulary: Sequence[str],
    describer: Describer | None,
    image: Image.Image | None,
) -> dict[QAKind, list[QAPair]]:
    by_cat: dict[str, list[str]] = {}
    for tag in tagset.tags:
        if tag.category and tag.category.strip():
            by_cat.setdefault(" ".join(tag.category.split()), []).append(tag.label)
    out: dict[QAKind, list[QAPair]] = {k: [] for k in kinds}
    if "what_is_tagged" in out:
        describe = describer or label_describer
        for tag in tagset.tags:
            if describer is None and not (tag.category and tag.category.strip()):
                continue
            q = _pick(rng, _WHAT).format(label=tag.label)
            out["what_is_tagged"].append(QAPair("what_is_tagged", q, describe(tag, image).strip()))
    for cat, labels in by_cat.items():
        a = _article(cat)
        if "which_tag" in out:
            pool = _WHICH_ONE if len(labels) == 1 else _WHICH_MANY
            q = _pick(rng, pool).format(a=a, cat=cat)
            out["which_tag"].append(QAPair("which_tag", q, _join_labels(labels)))
        if "how_many" in out:
            q = _pick(rng, _HOW_MANY).format(a=a, cat=cat)
            out["how_many"].append(QAPair("how_many", q, str(len(labels))))
        if "is_there" in out:
            q = _pick(rng, _IS_THERE).format(a=a, cat=cat)
            out["is_there"].append(QAPair("is_there", q, f"Yes, {_join_labels(labels).lower()}"))
    if "is_there" in out:
        present = {c.lower() for c in by_cat}
        absent = sorted({v for v in vocabulary if v.lower() not in present})
        n_neg = min(len(absent), max(len(by_cat), 1))
        for idx in rng.choice(len(absent), size=n_neg, replace=False) if n_neg else []:
            cat = absent[int(idx)]
            q = _pick(rng, _IS_THERE).format(a=_article(cat), cat=cat)
            out["is_there"].append(QAPair("is_there", q, "No."))
    return out


def tag_questions(
    tagset: TagSet,
    rng: np.random.Generator,
    *,
    n: int = 4,
    kinds: Sequence[QAKind] = QA_KINDS,
    vocabulary: Sequence[str] = COCO_CATEGORIES,
    describer: Describer | None = None,
    image: Image.Image | None = None,
) -> list[QAPair]:
    """Up to ``n`` distinct questions, spread over ``kinds`` in turn (random kind order).

    Fewer than ``n`` come back when the TagSet does not support more (e.g. one tag).

    Raises:
        InputError: an unknown kind or ``n < 1``.
    """
    if n < 1:
        raise InputError(f"n={n}: ask for at least one question per image")
    unknown = [k for k in kinds if k not in QA_KINDS]
    if unknown or not kinds:
        raise InputError(f"unknown QA kinds {unknown or kinds!r}; choose from {QA_KINDS}")
    cands = _candidates(tagset, rng, list(dict.fromkeys(kinds)), vocabulary, describer, image)
    queues: list[list[QAPair]] = []
    for kind in cands:
        items = cands[kind]
        order = rng.permutation(len(items))
        queues.append([items[int(i)] for i in order])
    kind_order = rng.permutation(len(queues))
    picked: list[QAPair] = []
    while len(picked) < n and any(queues):
        for k in kind_order:
            if queues[k] and len(picked) < n:
                picked.append(queues[k].pop(0))
    return picked


def qa_record(
    record_id: str,
    image_path: str,
    tagset: TagSet,
    rng: np.random.Generator,
    *,
    n: int = 4,
    kinds: Sequence[QAKind] = QA_KINDS,
    vocabulary: Sequence[str] = COCO_CATEGORIES,
    describer: Describer | None = None,
    image: Image.Image | None = None,
) -> LlavaRecord | None:
    """A multi-turn LLaVA record of tag questions, or None when no question can be asked."""
    pairs = tag_questions(
        tagset, rng, n=n, kinds=kinds, vocabulary=vocabulary, describer=describer, image=image
    )
    if not pairs:
        return None
    return make_record(record_id, image_path, [(p.question, p.answer) for p in pairs])


__all__ = [
    "COCO_CATEGORIES",
    "QA_KINDS",
    "QAKind",
    "QAPair",
    "qa_record",
    "tag_questions",
]
