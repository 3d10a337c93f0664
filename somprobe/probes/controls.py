"""Controls and baselines for probes at tag tokens: each one able to fail.

A probe at the token naming tag "3" reads the hidden state *of the number token*. A
good score there can come from three things besides the state knowing the tagged object:
the number itself (the token's identity, and tags are numbered smallest object first, so
the number tells the area rank), an image-level summary that any tag token of the image
carries, and a probe expressive enough to memorise labels. Each control below targets one
of these; :func:`~somprobe.probes.run_probes` fits them with the task probe (``controls=``,
names in :data:`CONTROLS`) on the same split, with the same L2 choice by grouped
cross-validation and the same cluster bootstrap, and writes one row per control and one
paired difference ``task − control`` per control to the scores table.

``control`` — Hewitt & Liang control task keyed on the object (default key: ``category``)
    Every object category gets one fixed random label, the same in every image, drawn from
    the task's own labels (:func:`control_labels` with the categories as keys).
    *Controls for* probe expressivity: how well a linear probe maps object identity to
    arbitrary labels. *Knocks over* "the attribute is linearly encoded as such": a control
    as good as the task (``selectivity`` = task − control ≤ 0). It *can fail* only where the
    state encodes the category: a state that does not carries the control at chance.
    *Chance*: the majority class of the control labels (they are few when categories are
    few; the ``chance`` column gives it). When the target is a function of the category
    (the toy world's colour: category "red circle"), a state that knows the category
    decodes both, and selectivity ≈ 0 means the probe cannot tell the attribute from
    category memorisation, not that the state lacks the attribute.

``control_number`` — the old Hewitt & Liang control keyed on the tag number
    One random label per tag number. At a number token the state *is* the number, so this
    control is decodable by construction and ``task − control_number`` is negative by
    construction; kept for comparison with earlier results only.

``binding`` — the label of a *different* object of the same image
    From the same hidden state, predict the attribute of another tagged object of the same
    image (:func:`binding_partners`: the next tag's object, cyclically, or a seeded random
    other object). *Controls for* image-level content: a state that summarises the image
    ("there is something red") rather than being bound to its own object decodes the
    partner's attribute as well as its own. *Knocks over* "the tag token is bound to its
    object": binding close to the task (``task_minus_binding`` ≈ 0). *Chance*: the majority
    class (R² ≈ 0) of the partner labels, *if* objects of one image have independent
    attributes; correlated ones (area along the tag order, one colour per scene) lift it,
    so read it against the task, never alone. Needs two or more objects per image.

``number_baseline`` — predict the attribute from the tag number and list position alone
    Same probe, same split and L2 choice, on one-hot features of the tag number and the
    mention's position in the listing (:func:`number_features`), for every layer alike.
    *Controls for* what the token's identity gives away (area by tag order, a dataset that
    numbers people first). *Knocks over* "the hidden state adds information about the
    object": a task probe no better than this (``task_minus_number_baseline`` interval
    covering 0). *Chance*: the majority class / training mean (the ``baseline`` row); the
    baseline itself is above chance exactly by what the number leaks.

Example:
    >>> import numpy as np
    >>> tags = np.array([1, 2, 1, 3, 2, 1])
    >>> labels = np.array([0, 1, 2, 0, 1, 2])
    >>> ctrl = control_labels(tags, labels, seed=0)
    >>> all(len(set(ctrl[tags == t])) == 1 for t in (1, 2, 3))  # one label per key
    True
    >>> binding_partners(np.array(["a", "a", "a", "b", "b"]), np.array([1, 2, 3, 1, 2]))
    array([1, 2, 0, 4, 3])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from somprobe.errors import ProbeError

#: The controls :func:`~somprobe.probes.run_probes` can fit (its ``controls=``); each adds
#: a row of that name and a ``task_minus_<name>`` row (``selectivity`` for ``control``).
CONTROLS: tuple[str, ...] = ("control", "control_number", "binding", "number_baseline")
BindingMode = Literal["next", "random"]


def control_labels(tag_ids: np.ndarray, labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Control target: each distinct key → one label drawn from the task's labels.

    The keys are what the control is keyed on: object categories for the ``control`` of
    :func:`~somprobe.probes.run_probes`, tag numbers for ``control_number`` (the parameter
    keeps its historical name). Works for class indices and for continuous targets alike
    (a value is drawn from the empirical distribution of ``labels``). Deterministic in
    ``seed`` and the set of keys.

    Raises:
        ProbeError: ``tag_ids`` and ``labels`` differ in length (one label per sample).
    """
    tag_ids = np.asarray(tag_ids)
    labels = np.asarray(labels)
    if tag_ids.shape[:1] != labels.shape[:1]:
        raise ProbeError(
            f"{len(tag_ids)} tag ids but {len(labels)} labels; give one label per sample"
        )
    uniq, inverse = np.unique(tag_ids.astype(str), return_inverse=True)
    rng = np.random.default_rng(seed)
    drawn = labels[rng.integers(0, labels.size, size=uniq.size)]
    return drawn[inverse]


def binding_partners(
    groups: Sequence[object] | np.ndarray,
    objects: Sequence[object] | np.ndarray,
    mode: BindingMode = "next",
    seed: int = 0,
) -> np.ndarray:
    """For each sample, the index of a sample of a *different* object of the same image.

    Objects of an image are ordered by id (numbers numerically, else as text). ``"next"``:
    the next object, cyclically (the last one's partner is the first); ``"random"``: one
    other object drawn uniformly per object, seeded. Every mention of an object gets the
    same partner, the partner's first mention.

    Args:
        groups: image of each sample.
        objects: object id of each sample within its image (the tag id).

    Raises:
        ProbeError: lengths differ, an unknown mode, or an image with a single object
            (it has no other object to bind to; drop it or leave out the binding control).
    """
    g = np.asarray(groups, dtype=object)
    obj = np.asarray(objects, dtype=object)
    if len(g) != len(obj):
        raise ProbeError(f"{len(g)} groups but {len(obj)} objects; give one per sample")
    if mode not in ("next", "random"):
        raise ProbeError(f"binding mode must be 'next' or 'random', got {mode!r}")
    rng = np.random.default_rng(seed)
    out = np.empty(len(g), dtype=np.int64)
    frame = pd.DataFrame({"g": pd.Series(g).astype(str), "o": obj, "i": np.arange(len(g))})
    lone = []
    for image, rows in frame.groupby("g", sort=True):
        first = rows.drop_duplicates("o").set_index("o")["i"]  # object -> first mention
        ids = sorted(first.index, key=_object_order)
        if len(ids) < 2:
            lone.append(image)
            continue
        if mode == "next":
            partner = {o: ids[(k + 1) % len(ids)] for k, o in enumerate(ids)}
        else:
            partner = {}
            for k, o in enumerate(ids):
                j = int(rng.integers(0, len(ids) - 1))
                partner[o] = ids[j + (j >= k)]  # any index but k
        out[rows["i"].to_numpy()] = [int(first[partner[o]]) for o in rows["o"]]
    if lone:
        raise ProbeError(
            f"{len(lone)} image(s) have one object only (first: {lone[:3]}); the binding "
            "control predicts another object of the same image: drop those images or leave "
            "'binding' out of controls"
        )
    return out


def _object_order(value: object) -> tuple[int, float, str]:
    try:
        return (0, float(value), "")  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return (1, 0.0, str(value))


def listing_order(samples: pd.DataFrame) -> np.ndarray:
    """Each mention's place in its sequence's listing: the rank (0-based) of its token
    ``position`` among the mentions of the same ``image_id`` and ``batch`` item.

    Raises:
        ProbeError: ``samples`` lacks ``image_id``, ``batch`` or ``position``.
    """
    need = ["image_id", "batch", "position"]
    missing = [c for c in need if c not in samples.columns]
    if missing:
        raise ProbeError(f"samples lack column(s) {missing}; a ProbeDataset's samples have them")
    keys = [samples["image_id"].astype(str), samples["batch"]]
    ranks = samples["position"].groupby(keys).rank(method="first")
    return ranks.to_numpy().astype(np.int64) - 1


def number_features(
    tag_ids: Sequence[object] | np.ndarray, list_positions: Sequence[int] | np.ndarray
) -> np.ndarray:
    """``[sample, k]`` features of the number baseline: one-hot tag number ⊕ one-hot list
    position (one column per value seen in any sample; a value seen only at test time
    has its own column, all zero in training, so it predicts the training mean).

    Raises:
        ProbeError: not one list position per tag id.
    """
    tags = np.asarray(tag_ids).astype(str)
    pos = np.asarray(list_positions)
    if tags.shape != pos.shape:
        raise ProbeError(
            f"{tags.size} tag ids but {pos.size} list positions; give one of each per sample"
        )
    parts = []
    for values in (tags, pos.astype(str)):
        _, codes = np.unique(values, return_inverse=True)
        parts.append(np.eye(int(codes.max()) + 1 if codes.size else 0)[codes])
    return np.concatenate(parts, axis=1).astype(np.float32)


def majority_class(labels: np.ndarray) -> int:
    """The most frequent class index (the smallest one on ties).

    Raises:
        ProbeError: no labels, or labels that are not class indices (integers ≥ 0).
    """
    arr = np.asarray(labels)
    if arr.size == 0:
        raise ProbeError("no labels: a majority class needs at least one")
    if arr.dtype.kind not in "biu" or arr.min() < 0:
        raise ProbeError("labels must be class indices (integers ≥ 0); encode the classes first")
    return int(np.bincount(arr.astype(np.int64)).argmax())
