"""Questions about untagged toy scenes: captions, colour / shape / count, existence.

These make the *instruction* mix (the analogue of LLaVA-665k: no tags on the images)
and the POPE-style existence evaluation. Every answer is computed from the scene's
ground truth. Objects are described in reading order (top to bottom, then left to right).

Existence negatives, per POPE's three settings, adapted to a world of colour × shape:

* ``random``: an absent category drawn uniformly.
* ``popular``: the absent categories most frequent in a reference count (POPE: the most
  frequent objects of the dataset), ties broken at random.
* ``adversarial``: absent categories that *re-bind* what is present — the colour of one
  present object with the shape of another (e.g. "red square" when a red circle and a
  blue square are shown); then those sharing a colour or a shape with a present object;
  then random. (POPE uses co-occurring objects; in this world, attribute binding is the
  confusion that matters.)

Example:
    >>> from somprobe.data.toyworld.scenes import WorldConfig, make_scene
    >>> scene = make_scene(WorldConfig(), 3)
    >>> caption(scene).startswith("There are")
    True
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from somprobe.data.toyworld.scenes import ToyObject, ToyScene, WorldConfig
from somprobe.errors import InputError


class SceneContents(Protocol):
    """What the existence questions read from a scene: its objects and its world.

    A :class:`~somprobe.data.toyworld.scenes.ToyScene` is one; so is
    :class:`SceneFacts`, which keeps no image or masks (for holding many scenes).
    """

    @property
    def objects(self) -> list[ToyObject]: ...

    @property
    def config(self) -> WorldConfig: ...


@dataclass(frozen=True)
class SceneFacts:
    """A scene's objects and world without its pixels (a few hundred bytes, not ~1 MB).

    Example:
        >>> from somprobe.data.toyworld.scenes import make_scene, world
        >>> scene = make_scene(world("v2"), 0)
        >>> present_categories(SceneFacts.of(scene)) == present_categories(scene)
        True
    """

    objects: list[ToyObject]
    config: WorldConfig

    @classmethod
    def of(cls, scene: SceneContents) -> SceneFacts:
        return cls(list(scene.objects), scene.config)


PopeSetting = Literal["random", "popular", "adversarial"]
POPE_SETTINGS: tuple[PopeSetting, ...] = ("random", "popular", "adversarial")
INSTRUCT_KINDS: tuple[str, ...] = ("caption", "colour", "shape", "count", "count_attr", "exists")

EXISTS_TEMPLATE = "Is there a {cat} in the image?"
_NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_CAPTION_Q = (
    "Describe the image.",
    "What is in this picture?",
    "Give a short description of the image.",
    "List the shapes you can see.",
)


@dataclass(frozen=True)
class Question:
    """One question with its answer and the rule that made it."""

    kind: str
    question: str
    answer: str


def reading_order(objects: Sequence[ToyObject]) -> list[ToyObject]:
    """Objects sorted top to bottom, then left to right (by centre)."""
    return sorted(objects, key=lambda o: (o.center[1], o.center[0]))


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def caption(scene: ToyScene) -> str:
    """``"There are 3 shapes: a small red circle, a large blue square and ..."``."""
    items = [f"{_article(o.size)} {o.size} {o.category}" for o in reading_order(scene.objects)]
    n = len(items)
    head = "There is 1 shape" if n == 1 else f"There are {n} shapes"
    return f"{head}: {_join(items)}."


def present_categories(scene: SceneContents) -> list[str]:
    """Distinct categories in the scene, in reading order."""
    return list(dict.fromkeys(o.category for o in reading_order(scene.objects)))


def instruct_candidates(
    scene: ToyScene, rng: np.random.Generator, negatives: Sequence[str] = ()
) -> dict[str, list[Question]]:
    """All questions of each kind that the scene supports (shuffled per kind)."""
    objs = scene.objects
    cfg = scene.config
    colours = Counter(o.colour for o in objs)
    shapes = Counter(o.shape for o in objs)
    out: dict[str, list[Question]] = {k: [] for k in INSTRUCT_KINDS}
    out["caption"].append(
        Question("caption", _CAPTION_Q[int(rng.integers(len(_CAPTION_Q)))], caption(scene))
    )
    for o in objs:
        if shapes[o.shape] == 1:
            q = f"What colour is the {o.shape}?"
            out["colour"].append(Question("colour", q, o.colour.capitalize()))
        if colours[o.colour] == 1:
            q = f"What shape is the {o.colour} object?"
            out["shape"].append(Question("shape", q, o.shape.capitalize()))
    out["count"].append(Question("count", "How many shapes are there?", str(len(objs))))
    for c in sorted(set(cfg.colours)):
        if c in colours or rng.random() < 0.3:
            q = f"How many {c} objects are there?"
            out["count_attr"].append(Question("count_attr", q, str(colours.get(c, 0))))
    for s in sorted(set(cfg.shapes)):
        if s in shapes or rng.random() < 0.3:
            # a plain "s" (so "crosss"): the shipped v2 models were trained on this text,
            # and the v2 data must rebuild exactly; a later world may spell it "crosses"
            q = f"How many {s}s are there?"
            out["count_attr"].append(Question("count_attr", q, str(shapes.get(s, 0))))
    for cat in present_categories(scene):
        out["exists"].append(Question("exists", EXISTS_TEMPLATE.format(cat=cat), "Yes"))
    for cat in negatives:
        out["exists"].append(Question("exists", EXISTS_TEMPLATE.format(cat=cat), "No"))
    for kind in out:
        out[kind] = [out[kind][int(i)] for i in rng.permutation(len(out[kind]))]
    return out


def instruct_questions(
    scene: ToyScene, rng: np.random.Generator, *, n: int = 4, kinds: Sequence[str] = INSTRUCT_KINDS
) -> list[Question]:
    """Up to ``n`` questions, kinds taken in turn in a random order; existence balanced.

    Existence negatives for training mix the random and adversarial settings (half each),
    as many as there are positives.
    """
    bad = [k for k in kinds if k not in INSTRUCT_KINDS]
    if bad or not kinds or n < 1:
        raise InputError(f"kinds must be from {INSTRUCT_KINDS} and n ≥ 1, got {kinds}, n={n}")
    k = len(present_categories(scene))
    negatives = pope_negatives(scene, "adversarial", (k + 1) // 2, rng) + pope_negatives(
        scene, "random", k // 2, rng
    )
    cands = instruct_candidates(scene, rng, list(dict.fromkeys(negatives)))
    queues = [cands[kind] for kind in dict.fromkeys(kinds)]
    picked: list[Question] = []
    order = rng.permutation(len(queues))
    while len(picked) < n and any(queues):
        for i in order:
            if queues[i] and len(picked) < n:
                picked.append(queues[i].pop(0))
    return picked


def category_counts(scenes: Sequence[SceneContents]) -> dict[str, int]:
    """How many objects of each category the scenes hold (POPE's "popular" reference)."""
    counts: Counter[str] = Counter()
    for scene in scenes:
        counts.update(o.category for o in scene.objects)
    return dict(counts)


def pope_negatives(
    scene: SceneContents,
    setting: PopeSetting,
    n: int,
    rng: np.random.Generator,
    *,
    popularity: Mapping[str, int] | None = None,
) -> list[str]:
    """``n`` distinct absent categories for ``setting`` (fewer if the world has fewer).

    Raises:
        InputError: an unknown setting, or ``popular`` without ``popularity``.
    """
    cfg: WorldConfig = scene.config
    present = {o.category for o in scene.objects}
    absent = [c for c in cfg.categories if c not in present]
    n = min(n, len(absent))
    if n <= 0:
        return []
    order = [absent[int(i)] for i in rng.permutation(len(absent))]
    if setting == "random":
        return order[:n]
    if setting == "popular":
        if popularity is None:
            raise InputError("the popular setting needs category counts (popularity=...)")
        return sorted(order, key=lambda c: -popularity.get(c, 0))[:n]
    if setting == "adversarial":
        colours = {o.colour for o in scene.objects}
        shapes = {o.shape for o in scene.objects}

        def rank(cat: str) -> int:
            colour, shape = cat.split(" ", 1)
            shared = (colour in colours) + (shape in shapes)
            return -shared

        return sorted(order, key=rank)[:n]
    raise InputError(f"unknown POPE setting {setting!r}; choose from {POPE_SETTINGS}")


__all__ = [
    "EXISTS_TEMPLATE",
    "INSTRUCT_KINDS",
    "POPE_SETTINGS",
    "PopeSetting",
    "Question",
    "SceneContents",
    "SceneFacts",
    "caption",
    "category_counts",
    "instruct_candidates",
    "instruct_questions",
    "pope_negatives",
    "present_categories",
    "reading_order",
]
