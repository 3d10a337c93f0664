"""Attention-to-region scores: where does a tag's attention go, on the image and off it?

For one query (a token that writes a tag) and its attention row, the image patches are
split into five disjoint parts, defined on the pixels of the original image and then
measured per patch as the fraction of the patch they cover:

========== ==========================================================================
part       pixels
========== ==========================================================================
mark       the tag's own mark box (the drawn label), whatever lies under it
object     the tag's own region minus its mark box
other_mark other tags' mark boxes, outside the tag's own region and mark box
other      other tags' regions, outside all of the above
rest       everything else (background, untagged stuff)
========== ==========================================================================

plus one part that overlaps them, **object_markfree**: the object's coverage in the
patches that hold no mark pixels (of any tag, own or other, wherever drawn; a patch may
hold up to ``mark_free_max`` of its area in mark pixels, default 0). A patch's attention
is split among the parts in proportion to its coverage (a patch covered 75 % by the
object and 25 % by the mark gives 3/4 of its attention to the object), so attention that
only reads the drawn digit still lands partly on "object"; ``object_markfree`` cannot be
reached that way.

**Absolute and conditional scores.** The trace rows are the full softmax row's
probabilities at the image columns (what HF eager ``output_attentions`` gives), so their
sum is the absolute attention mass on the image, and the rest of the row went to text.
Every score, per query, per layer, per head (vectorised over any leading dimensions):

==================================== =============================================================
column                               definition
==================================== =============================================================
``mass_<part>``  (absolute)          attention of the full row on the part's kept patches
                                     (sinks removed), split by coverage; ``<part>`` is each of
                                     object, object_markfree, mark, other, other_mark, rest
``mass_sink``    (absolute)          attention on the excluded (sink) patches
``mass_image``   (absolute)          attention on all scored image tokens (every image
                                     token with a box in the picture, see below): the five
                                     disjoint parts + ``mass_sink``
``mass_image_extra`` (absolute)      attention on image tokens without a box (a CLS token,
                                     LLaVA-NeXT's image-newline tokens); 0 for LLaVA-1.5
``mass_text``    (absolute)          attention on the non-image keys: read directly from a
                                     ``key_mode="all"`` trace, else ``1 - mass_image -
                                     mass_image_extra``; NaN when the input is not a
                                     probability row (the image alone sums to more than 1)
``sink_share``   (conditional)       ``mass_sink / mass_image``
``n_excluded``                       patches excluded as sinks
``image_share_<part>`` (conditional) ``mass_<part> / (mass_image - mass_sink)``: the part's
                                     share of the image attention (the five disjoint parts sum
                                     to 1); NaN when the kept patches hold no attention
``area_<part>``                      the part's share of the kept patches' area (mean coverage)
``lift_<part>``                      ``image_share / area``: 1.0 for a uniform map, NaN when the
                                     area is 0
``topk_hit``                         fraction of the ``k`` most-attended kept patches that are
                                     in the target; ``topk_any``: 1.0 if any of them is;
                                     ``pointing``: 1.0 if the most-attended kept patch is
``auroc``                            attention as a per-patch detector of the target patches
                                     among the kept ones; equals ``sklearn.metrics.
                                     roc_auc_score(in_target, attention)`` (ties count 1/2)
``chance_topk``, ``chance_pointing`` their value under a uniformly random ranking of the kept
                                     patches: ``n_target / n_kept``
``chance_topk_any``                  ``1 - C(n_kept - n_target, k') / C(n_kept, k')`` with
                                     ``k' = min(k, n_kept)``
``chance_auroc``                     0.5 where ``auroc`` is defined
``n_kept``, ``n_target``             kept patches; kept patches in the target
==================================== =============================================================

``mass_*`` answer "how much of this token's attention went there"; ``image_share_*`` and
``lift_*`` answer "given that it looked at the image, where" and can rise while the mass
falls. Report both (the measurement rules of ``DESIGN.md``).

**Which image tokens are scored.** Every image token whose box in the original picture
the layout knows (:func:`scored_tokens`, through ``ImageLayout.token_boxes`` /
``mask_to_tokens``): LLaVA-1.5's and Qwen2-VL's one patch grid, laid out as that
``(rows, cols)`` grid; LLaVA-NeXT's base-image patches *and* its anyres tile patches,
laid out as one row ``(1, tokens)`` in sequence order. A "patch" below is such a token.
Tokens without a box (a CLS, LLaVA-NeXT's image newlines) are not scored; their
attention is ``mass_image_extra``.

**Target.** A patch is *in the target* when the target covers at least ``hit_threshold``
of it (default 0.5). ``target="object_markfree"`` (default): the object's patches that
qualify *and* hold no mark pixels, so a model that reads its own digit (or another tag's
digit drawn on the object) cannot score on top-k, pointing or AUROC; the cost is that
small objects, whose every qualifying patch touches a mark, have no target. ``"object"``
counts qualifying object patches whatever marks they hold (the coverage-split object,
comparable with earlier results), ``"mark"`` the own mark's patches and ``"object+mark"``
both. Ties in attention go to the lower patch index (row-major order). ``n_target`` (per
row) and the aggregates' ``n_topk_hit`` say how many objects had a target; where small
objects matter, a lower ``hit_threshold`` gives them one, at the price of counting
patches that are mostly something else.

**Undefined is NaN, never 0.** A query whose target has no kept qualifying patch
(``n_target == 0``) gets NaN for ``topk_hit``, ``topk_any``, ``pointing``, ``auroc`` and
their chance levels; ``auroc`` is also NaN when every kept patch is in the target. A tag
not on the image (hallucinated) gets NaN for every score of its own region. A map with
no attention on the kept patches has NaN shares and lifts (its masses say 0). The
aggregates (:func:`aggregate_by_layer`, :func:`aggregate_by_head`) leave NaN out of each
mean and report, per metric, ``n_<metric>``: how many mentions (or rows) had a value.

**Attention sinks** are excluded by default (``sinks="auto"`` of
:func:`score_alignment`). A few image tokens can take a large part of every query's
attention whatever the query says; excluded patches leave every ``mass_<part>`` (their
attention is reported as ``mass_sink``), the image shares are renormalised over the kept
patches, the areas recomputed over them, and top-k, pointing and AUROC see only them.
:func:`sink_patches` finds sinks by this rule, applied per image over all the image's
scored mentions: in each layer, a patch is a sink when its *median* share of the image
attention over the image's queries, averaged over heads, exceeds ``factor`` times the
uniform share ``1/patches`` (default ``factor=10``). The median keeps an object that only
its own mentions attend to from being taken for a sink, which holds only when no tag
accounts for half or more of the image's mentions (so at least 3 different tags). On an
image where it does not hold, "auto" excludes nothing and says so: the id column
``sink_rule`` is "auto" where the rule was applied (it may find no sink), "skipped" where
it could not be, "mask" for a mask given by the caller and "none" for ``sinks=None``.

Example:
    >>> import numpy as np
    >>> maps = RegionMaps.from_parts(object=np.eye(4), mark=np.zeros((4, 4)))
    >>> s = score_maps(np.full((4, 4), 1 / 32), maps)
    >>> float(s["lift_object"]), float(s["image_share_object"]), float(s["mass_object"])
    (1.0, 0.25, 0.125)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd
from jaxtyping import Bool, Float, Int
from scipy.special import comb
from scipy.stats import rankdata

from somprobe.errors import CaptureError, InputError, LayoutError, TagMentionError
from somprobe.tagging.types import Box, TagSet

Target = Literal["object_markfree", "object", "mark", "object+mark"]
_TARGETS: tuple[str, ...] = ("object_markfree", "object", "mark", "object+mark")
#: The five disjoint parts of the image, in the order of :meth:`RegionMaps.stack`.
PARTS: tuple[str, ...] = ("object", "mark", "other", "other_mark", "rest")
#: The parts scored (``mass_``, ``image_share_``, ``area_``, ``lift_``): the five disjoint
#: parts and ``object_markfree`` (the object in patches free of mark pixels).
SHARE_PARTS: tuple[str, ...] = ("object", "object_markfree", "mark", "other", "other_mark", "rest")
#: Each metric with a chance level and the column that holds it.
CHANCE_COLUMNS: dict[str, str] = {
    "topk_hit": "chance_topk",
    "topk_any": "chance_topk_any",
    "pointing": "chance_pointing",
    "auroc": "chance_auroc",
}
#: Score columns of :func:`score_maps` and :func:`score_alignment`, in order: absolute
#: masses, sinks, shares conditional on the image, areas, lifts, the patch-ranking metrics,
#: their chance levels and the patch counts behind them.
SCORE_COLUMNS: tuple[str, ...] = (
    *(f"mass_{p}" for p in SHARE_PARTS),
    "mass_sink",
    "mass_image",
    "mass_image_extra",
    "mass_text",
    "sink_share",
    "n_excluded",
    *(f"image_share_{p}" for p in SHARE_PARTS),
    *(f"area_{p}" for p in SHARE_PARTS),
    *(f"lift_{p}" for p in SHARE_PARTS),
    "topk_hit",
    "topk_any",
    "pointing",
    "auroc",
    "chance_topk",
    "chance_topk_any",
    "chance_pointing",
    "chance_auroc",
    "n_kept",
    "n_target",
)
#: Parts whose mass-weighted lift the aggregates report (``lift_<part>_weighted``).
WEIGHTED_PARTS: tuple[str, ...] = ("object", "object_markfree", "mark")
_OWN_PARTS = WEIGHTED_PARTS  # the tag's own parts (the same three)
# scores that describe the tag's own region; NaN for a tag that is not on the image
_OWN_REGION_COLUMNS: tuple[str, ...] = (
    *(f"{kind}_{p}" for kind in ("mass", "image_share", "area", "lift") for p in _OWN_PARTS),
    "topk_hit",
    "topk_any",
    "pointing",
    "auroc",
    *CHANCE_COLUMNS.values(),
)
_COUNT_COLUMNS: tuple[str, ...] = ("n_excluded", "n_kept", "n_target")
_ID_COLUMNS: tuple[str, ...] = (
    "batch",
    "mention",
    "tag_id",
    "label",
    "format",
    "position",
    "n_positions",
    "hallucinated",
    "sink_rule",
)
SinkRule = Literal["auto", "skipped", "mask", "none"]
_COVER_TOL = 1e-6


# --------------------------------------------------------------------------------------
# region maps


@dataclass(frozen=True)
class RegionMaps:
    """Per-patch coverage (0..1) of the disjoint parts a tag's attention is split into.

    Build with :meth:`from_parts` (validates) or :func:`region_maps` (from a TagSet).
    ``rest`` is whatever the other parts leave of each patch. ``marks`` is the coverage
    by the pixels of every tag's mark box (own and others', wherever drawn, so it may
    overlap the object): the patches it touches are not mark-free. Left out it is
    ``mark + other_mark``, which misses other tags' marks drawn inside the object.
    """

    object: Float[np.ndarray, "rows cols"]
    mark: Float[np.ndarray, "rows cols"]
    other: Float[np.ndarray, "rows cols"]
    other_mark: Float[np.ndarray, "rows cols"]
    marks: Float[np.ndarray, "rows cols"] | None = None

    @classmethod
    def from_parts(
        cls,
        *,
        object: Any,
        mark: Any,
        other: Any = None,
        other_mark: Any = None,
        marks: Any = None,
    ) -> RegionMaps:
        """Check and build; ``other``/``other_mark`` default to all zeros, ``marks`` to
        ``mark + other_mark``.

        Example:
            >>> RegionMaps.from_parts(object=np.ones((2, 2)), mark=np.zeros((2, 2))).shape
            (2, 2)
        """
        obj = np.asarray(object, dtype=np.float64)
        parts = {"object": obj}
        for name, value in (("mark", mark), ("other", other), ("other_mark", other_mark)):
            arr = np.zeros_like(obj) if value is None else np.asarray(value, dtype=np.float64)
            parts[name] = arr
        checked = dict(parts)
        if marks is not None:
            checked["marks"] = np.asarray(marks, dtype=np.float64)
        for name, arr in checked.items():
            if arr.ndim != 2 or arr.shape != obj.shape:
                raise InputError(
                    f"coverage map {name!r} has shape {arr.shape}; every map must be one "
                    f"(rows, cols) grid like the object's {obj.shape}"
                )
            if (
                not np.all(np.isfinite(arr))
                or arr.min() < -_COVER_TOL
                or arr.max() > 1 + _COVER_TOL
            ):
                raise InputError(
                    f"coverage map {name!r} must hold fractions in [0, 1] (the part of each "
                    "patch covered), found values outside"
                )
        total = np.sum(np.stack(list(parts.values())), axis=0)
        if total.max() > 1 + 1e-4:
            raise InputError(
                "coverage maps overlap: in some patch object + mark + other + other_mark "
                f"cover {total.max():.3f} > 1; the parts must be disjoint pixel sets "
                "(use region_maps to build them from a TagSet)"
            )
        return cls(**{k: np.clip(v, 0.0, 1.0) for k, v in checked.items()})

    @property
    def shape(self) -> tuple[int, int]:
        return self.object.shape  # type: ignore[return-value]

    def mark_pixels(self) -> Float[np.ndarray, "rows cols"]:
        """Coverage of every patch by mark pixels of any tag (``marks``, or its default)."""
        if self.marks is not None:
            return np.asarray(self.marks, dtype=np.float64)
        return np.clip(self.mark + self.other_mark, 0.0, 1.0)

    def stack(self) -> Float[np.ndarray, "part patch"]:
        """All five parts (``PARTS`` order, rest last) flattened to ``(5, rows*cols)``."""
        four = np.stack([self.object, self.mark, self.other, self.other_mark]).reshape(4, -1)
        rest = np.clip(1.0 - four.sum(axis=0), 0.0, 1.0)
        return np.concatenate([four, rest[None]], axis=0)


def _box_mask(box: Box, height: int, width: int) -> Bool[np.ndarray, "height width"]:
    x0, y0, x1, y1 = (int(v) for v in box)
    out = np.zeros((height, width), dtype=bool)
    out[max(y0, 0) : max(min(y1, height), 0), max(x0, 0) : max(min(x1, width), 0)] = True
    return out


def region_pixel_masks(tagset: TagSet, tag_id: int) -> dict[str, Bool[np.ndarray, "h w"]]:
    """The disjoint pixel masks (object, mark, other, other_mark) of one tag.

    A ``tag_id`` not in the TagSet (a hallucinated tag) has empty object and mark, and
    every tag counts as "other".

    Example:
        >>> masks = region_pixel_masks(tagset, 2)  # doctest: +SKIP
        >>> sorted(masks)  # doctest: +SKIP
        ['mark', 'object', 'other', 'other_mark']
    """
    width, height = tagset.image_size
    own = next((t for t in tagset.tags if t.id == tag_id), None)
    empty = np.zeros((height, width), dtype=bool)
    own_mask = empty if own is None else np.asarray(own.mask, dtype=bool)
    if own_mask.shape != (height, width):
        raise InputError(
            f"tag {tag_id}'s mask has shape {own_mask.shape} but the TagSet's image is "
            f"{width}×{height}; masks must be (height, width) of the original image"
        )
    mark = empty.copy() if own is None else _box_mask(own.mark_box, height, width)
    other_masks = np.zeros_like(empty)
    other_boxes = np.zeros_like(empty)
    for t in tagset.tags:
        if t.id == tag_id:
            continue
        other_masks |= np.asarray(t.mask, dtype=bool)
        other_boxes |= _box_mask(t.mark_box, height, width)
    obj = own_mask & ~mark
    other_mark = other_boxes & ~mark & ~own_mask
    other = other_masks & ~mark & ~own_mask & ~other_mark
    return {"object": obj, "mark": mark, "other": other, "other_mark": other_mark}


def region_maps(
    tagset: TagSet,
    tag_id: int,
    to_patches: Callable[[Bool[np.ndarray, "h w"]], Float[np.ndarray, "rows cols"]],
    marks: Float[np.ndarray, "rows cols"] | None = None,
) -> RegionMaps:
    """Coverage maps of one tag's parts, through ``to_patches`` (a layout's mask→patches).

    ``marks``: the coverage of every tag's mark (``to_patches(mark_pixel_mask(tagset))``),
    the same for all tags of an image; computed here when not given.

    Example:
        >>> maps = region_maps(tagset, 3, lambda m: layout.mask_to_patches(m, 0))
        ... # doctest: +SKIP
    """
    masks = region_pixel_masks(tagset, tag_id)
    parts = {k: to_patches(v) for k, v in masks.items()}
    if marks is None:
        marks = to_patches(mark_pixel_mask(tagset))
    return RegionMaps.from_parts(**parts, marks=marks)


def mark_pixel_mask(tagset: TagSet) -> Bool[np.ndarray, "h w"]:
    """The pixels of every tag's mark box (the union), on the original image.

    Example:
        >>> mark_pixel_mask(tagset).sum()  # doctest: +SKIP
    """
    width, height = tagset.image_size
    out = np.zeros((height, width), dtype=bool)
    for t in tagset.tags:
        out |= _box_mask(t.mark_box, height, width)
    return out


# --------------------------------------------------------------------------------------
# scores on arrays


def _check_attention(attn: Any, grid: tuple[int, int]) -> np.ndarray:
    a = np.asarray(attn, dtype=np.float64)
    if a.ndim < 2 or a.shape[-2:] != tuple(grid):
        raise InputError(
            f"attention has shape {a.shape} but the coverage maps are a {grid} grid; the "
            "last two dimensions of the attention must be (rows, cols) of the patch grid"
        )
    if not np.all(np.isfinite(a)):
        raise InputError("attention holds NaN or infinite values")
    if a.size and a.min() < 0:
        raise InputError("attention must be non-negative (probabilities after softmax)")
    return a


def _check_lead(value: Any, lead: tuple[int, ...], name: str) -> np.ndarray:
    """A per-query mass (``text_mass``, ``image_extra_mass``) broadcast to ``lead``."""
    arr = np.asarray(value, dtype=np.float64)
    try:
        arr = np.broadcast_to(arr, lead)
    except ValueError as err:
        raise InputError(
            f"{name} has shape {arr.shape}; it must broadcast to the attention's leading "
            f"dimensions {lead}"
        ) from err
    if not np.all(np.isfinite(arr) | np.isnan(arr)) or np.nanmin(arr, initial=0.0) < 0:
        raise InputError(f"{name} must hold non-negative masses (or NaN where unknown)")
    return arr


def check_options(
    *, k: Any = 5, hit_threshold: Any = 0.5, target: Any = "object_markfree",
    mark_free_max: Any = 0.0,
) -> None:  # fmt: skip
    """Raise :class:`~somprobe.errors.InputError` for a scoring option out of its range
    (those of :func:`score_maps`), before any work is done."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise InputError(f"k must be a positive integer, got {k!r}")
    if not 0 < hit_threshold <= 1:
        raise InputError(f"hit_threshold must be in (0, 1], got {hit_threshold!r}")
    if target not in _TARGETS:
        raise InputError(
            f"target must be 'object_markfree', 'object', 'mark' or 'object+mark', got {target!r}"
        )
    if (
        isinstance(mark_free_max, bool)
        or not isinstance(mark_free_max, int | float | np.integer | np.floating)
        or not 0 <= mark_free_max <= 1
    ):
        raise InputError(
            f"mark_free_max must be a fraction of a patch in [0, 1], got {mark_free_max!r}"
        )


def score_maps(
    attn: Float[np.ndarray, "*lead rows cols"],
    maps: RegionMaps,
    *,
    k: int = 5,
    hit_threshold: float = 0.5,
    target: Target = "object_markfree",
    exclude: Bool[np.ndarray, "*lead rows cols"] | None = None,
    mark_free_max: float = 0.0,
    text_mass: Any = None,
    image_extra_mass: Any = None,
) -> dict[str, np.ndarray]:
    """Every score of one query's image attention against one tag's region maps.

    Args:
        attn: attention over the image patches, any leading dims (layer, head, ...): the
            full softmax row's probabilities at the patch columns, so that its sum is the
            absolute mass on the image (any non-negative map works; its masses are then
            in its own units and ``mass_text`` is NaN if it sums to more than 1).
        maps: the tag's coverage maps.
        k: how many top patches ``topk_hit``/``topk_any`` look at (fewer if fewer kept).
        hit_threshold: a patch is in the target when covered at least this much.
        target: "object_markfree" (default), "object", "mark" or "object+mark" for top-k,
            pointing and AUROC (see the module notes).
        exclude: patches to drop (attention sinks), broadcastable to ``attn``.
        mark_free_max: the largest fraction of a patch that mark pixels (of any tag) may
            cover for the patch to count as mark-free (default 0: none at all).
        text_mass: the row's mass on text keys, broadcastable to the leading dims
            (default ``1 - mass_image - mass_image_extra``, NaN below -1e-4).
        image_extra_mass: the row's mass on image tokens outside the grid (default 0).

    Returns:
        ``{column: array of shape attn.shape[:-2]}`` for every name in
        :data:`SCORE_COLUMNS`.

    Example:
        >>> maps = RegionMaps.from_parts(object=np.eye(3), mark=np.zeros((3, 3)))
        >>> float(score_maps(np.eye(3) / 6, maps)["image_share_object"])
        1.0
    """
    check_options(k=k, hit_threshold=hit_threshold, target=target, mark_free_max=mark_free_max)
    a = _check_attention(attn, maps.shape)
    lead = a.shape[:-2]
    n_patch = a.shape[-2] * a.shape[-1]
    a = a.reshape(*lead, n_patch)
    five = maps.stack()  # (5, P), PARTS order
    markfree = maps.mark_pixels().reshape(-1) <= mark_free_max + 1e-9
    cover_by = {p: five[i] for i, p in enumerate(PARTS)}
    cover_by["object_markfree"] = np.where(markfree, five[0], 0.0)
    cover = np.stack([cover_by[p] for p in SHARE_PARTS])  # (6, P), SHARE_PARTS order

    if exclude is None:
        keep = np.ones_like(a, dtype=bool)
    else:
        ex = np.asarray(exclude, dtype=bool)
        if ex.ndim < 2 or ex.shape[-2:] != maps.shape:
            raise InputError(
                f"exclude has shape {ex.shape}; it must end in the patch grid {maps.shape}"
            )
        try:
            ex = np.broadcast_to(ex, (*lead, *maps.shape))
        except ValueError as err:
            raise InputError(
                f"exclude of shape {ex.shape} does not broadcast to the attention's "
                f"{(*lead, *maps.shape)}"
            ) from err
        keep = ~ex.reshape(*lead, n_patch)
    n_kept = keep.sum(axis=-1)

    extra = np.zeros(lead) if image_extra_mass is None else _check_lead(
        image_extra_mass, lead, "image_extra_mass"
    )  # fmt: skip
    with np.errstate(invalid="ignore", divide="ignore"):
        mass_image = a.sum(axis=-1)
        kept = np.where(keep, a, 0.0)
        mass_sink = np.where(keep, 0.0, a).sum(axis=-1)
        kept_total = kept.sum(axis=-1)
        masses = kept @ cover.T  # (..., 6)
        shares = masses / kept_total[..., None]
        areas = (keep.astype(np.float64) @ cover.T) / n_kept[..., None]
        lifts = np.where(areas > 0, shares / areas, np.nan)
        sink_share = np.where(mass_image > 0, mass_sink / mass_image, np.nan)
    if text_mass is None:
        left = 1.0 - mass_image - extra
        mass_text = np.where(left < -1e-4, np.nan, np.maximum(left, 0.0))
    else:
        mass_text = _check_lead(text_mass, lead, "text_mass")

    tcov = cover_by["object"] + cover_by["mark"] if target == "object+mark" else cover_by[target]
    in_target = tcov >= hit_threshold - 1e-9  # (P,)
    pos = in_target & keep
    n_pos = pos.sum(axis=-1)
    n_neg = n_kept - n_pos
    defined = n_pos > 0  # a target patch among the kept ones (so n_kept > 0 too)
    scores = np.where(keep, a, -np.inf)
    order = np.argsort(-scores, axis=-1, kind="stable")[..., :k]
    kk = np.minimum(k, n_kept)
    rank_ok = np.arange(order.shape[-1]) < kk[..., None]
    hits = in_target[order] & rank_ok
    with np.errstate(invalid="ignore", divide="ignore"):
        topk_hit = np.where(defined, hits.sum(axis=-1) / kk, np.nan)
        topk_any = np.where(defined, hits.any(axis=-1).astype(np.float64), np.nan)
        pointing = np.where(defined, in_target[np.argmax(scores, axis=-1)].astype(float), np.nan)

        # AUROC by ranks: excluded patches tie at -inf below every kept one, so kept ranks
        # are shifted by exactly the number excluded.
        ranks = rankdata(scores, axis=-1) if scores.size else scores
        rank_sum = np.where(pos, ranks, 0.0).sum(axis=-1) - (n_patch - n_kept) * n_pos
        auroc = (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
        auroc_defined = defined & (n_neg > 0)
        auroc = np.where(auroc_defined, auroc, np.nan)

        # chance: a uniformly random ranking of the kept patches
        chance_topk = np.where(defined, n_pos / n_kept, np.nan)
        none_hit = comb(n_neg, kk) / comb(n_kept, kk)  # hypergeometric: no target in top k'
        chance_topk_any = np.where(defined, 1.0 - none_hit, np.nan)
        chance_auroc = np.where(auroc_defined, 0.5, np.nan)

    out: dict[str, np.ndarray] = {
        "mass_sink": mass_sink,
        "mass_image": mass_image,
        "mass_image_extra": extra,
        "mass_text": mass_text,
        "sink_share": sink_share,
        "n_excluded": (n_patch - n_kept).astype(np.int64),
        "topk_hit": topk_hit,
        "topk_any": topk_any,
        "pointing": pointing,
        "auroc": auroc,
        "chance_topk": chance_topk,
        "chance_topk_any": chance_topk_any,
        "chance_pointing": chance_topk,
        "chance_auroc": chance_auroc,
        "n_kept": n_kept.astype(np.int64),
        "n_target": n_pos.astype(np.int64),
    }
    for i, part in enumerate(SHARE_PARTS):
        out[f"mass_{part}"] = masses[..., i]
        out[f"image_share_{part}"] = shares[..., i]
        out[f"area_{part}"] = areas[..., i]
        out[f"lift_{part}"] = lifts[..., i]
    return {name: np.array(out[name]) for name in SCORE_COLUMNS}


def sink_patches(
    attn: Float[np.ndarray, "query layer head rows cols"], *, factor: float = 10.0
) -> Bool[np.ndarray, "layer rows cols"]:
    """Attention-sink patches per layer (see the module notes for the rule).

    Example:
        >>> a = np.full((3, 1, 2, 4, 4), 0.1 / 15); a[..., 0, 0] = 0.9
        >>> sink_patches(a)[0].sum()
        np.int64(1)
    """
    a = np.asarray(attn, dtype=np.float64)
    if a.ndim != 5:
        raise InputError(
            f"sink_patches wants attention of shape (query, layer, head, rows, cols), got {a.shape}"
        )
    if a.shape[0] == 0:
        raise InputError("sink_patches needs at least one query")
    if not (np.isfinite(factor) and factor > 0):
        raise InputError(f"factor must be a positive number, got {factor!r}")
    if not np.all(np.isfinite(a)):
        raise InputError("attention holds NaN or infinite values")
    if a.size and a.min() < 0:
        raise InputError("attention must be non-negative (probabilities after softmax)")
    n_patch = a.shape[-2] * a.shape[-1]
    total = a.sum(axis=(-2, -1), keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, a / total, 0.0)
    typical = np.median(share, axis=0).mean(axis=1)  # (layer, rows, cols)
    return typical > factor / n_patch


# --------------------------------------------------------------------------------------
# Trace-facing


class TraceLike(Protocol):
    """What :func:`score_alignment` needs from a capture trace.

    ``key_positions`` may raise :class:`~somprobe.errors.CaptureError` when the trace has
    ``key_mode == "all"``: column ``i`` is then position ``i``.
    """

    layers: list[int]

    def attention(self, batch: int, position: int) -> Any: ...  # (layer, head, key)

    def key_positions(self, batch: int) -> Any: ...  # absolute positions of the key columns


class LayoutLike(Protocol):
    """What :func:`score_alignment` needs from an image-token layout.

    The index argument is the image; a layout that also has ``images_in(batch)`` (images
    of a sequence) and ``patch_positions(image)`` (the grid's tokens, without a CLS
    token) is used through them, otherwise image ``i`` is taken to be sequence ``i``
    and every image token to be a patch. A layout with the per-token calls
    ``token_boxes(image)`` and ``mask_to_tokens(mask, image)`` (and ``num_grids``) is
    scored on every token with a box (:func:`scored_tokens`).
    """

    def image_token_positions(self, image: int) -> Any: ...

    def grid(self, image: int) -> tuple[int, int]: ...

    def image_size(self, image: int) -> tuple[int, int]: ...

    def mask_to_patches(self, mask: Any, image: int = 0) -> Any: ...


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def _tagset_for(tagset: TagSet | Sequence[TagSet] | Mapping[int, TagSet], batch: int) -> TagSet:
    if isinstance(tagset, TagSet):
        return tagset
    try:
        found = tagset[batch]
    except (KeyError, IndexError) as err:
        raise TagMentionError(
            f"mentions refer to batch {batch} but no TagSet was given for it; pass one "
            "TagSet per batch item (a list indexed by batch, or a dict batch → TagSet)"
        ) from err
    if not isinstance(found, TagSet):
        raise InputError(f"tagset for batch {batch} is a {type(found).__name__}, not a TagSet")
    return found


def _image_of(layout: LayoutLike, batch: int) -> int:
    """The layout's image index for sequence ``batch`` (one image per sequence)."""
    images_in = getattr(layout, "images_in", None)
    if images_in is None:
        return batch
    images = list(images_in(batch))
    if len(images) != 1:
        raise LayoutError(
            f"sequence {batch} holds {len(images)} images; tag scoring needs exactly one "
            "image per sequence"
        )
    return int(images[0])


def _patch_positions(layout: LayoutLike, image: int) -> list[int]:
    getter = getattr(layout, "patch_positions", None) or layout.image_token_positions
    return [int(p) for p in getter(image)]


@dataclass(frozen=True)
class ScoredTokens:
    """The image tokens of one image that scores see, and the map they are laid on.

    With the layout's per-token calls (``token_boxes``, ``mask_to_tokens``), these are
    every image token with a box in the picture, in sequence order (LLaVA-NeXT: the base
    patches, then the tile patches; image-newline and CLS tokens have no box and are
    left out). When they are exactly the layout's one patch grid (LLaVA-1.5, Qwen2-VL),
    the map is that ``(rows, cols)`` grid, row-major; otherwise (several grids) it is
    ``(1, tokens)``. A layout without per-token calls is scored on its one grid.

    Example:
        >>> scored = scored_tokens(layout, 0)  # doctest: +SKIP
        >>> scored.shape, len(scored.positions)  # doctest: +SKIP
        ((24, 24), 576)
    """

    positions: Int[np.ndarray, " tokens"]
    shape: tuple[int, int]
    layout: Any
    image: int
    boxed: Bool[np.ndarray, " image_tokens"] | None  # None: the layout's one grid

    def to_map(self, mask: Bool[np.ndarray, "h w"]) -> Float[np.ndarray, "rows cols"]:
        """Fraction of each scored token's box that ``mask`` (original pixels) covers."""
        if self.boxed is None:
            return _to_numpy(self.layout.mask_to_patches(mask, self.image))
        cover = _to_numpy(self.layout.mask_to_tokens(mask, self.image))
        return cover[self.boxed].reshape(self.shape)

    def box(self, index: int, *, clip: bool = True) -> tuple[float, float, float, float]:
        """Box ``(x0, y0, x1, y1)`` in original pixels of the map's cell ``index`` (flat)."""
        if self.boxed is None:
            return tuple(self.layout.patch_box(int(index), self.image, clip=clip))  # type: ignore[return-value]
        boxes = np.asarray(self.layout.token_boxes(self.image, clip=clip))[self.boxed]
        x0, y0, x1, y1 = (float(v) for v in boxes[int(index)])
        return x0, y0, x1, y1


def scored_tokens(layout: LayoutLike, image: int) -> ScoredTokens:
    """The image tokens of ``image`` that :func:`score_alignment` scores (see
    :class:`ScoredTokens`).

    Raises:
        LayoutError: a grid whose token count is not ``rows × cols``, or an image with
            no token that has a box.
    """
    per_token = getattr(layout, "mask_to_tokens", None)
    boxes_of = getattr(layout, "token_boxes", None)
    if per_token is None or boxes_of is None:
        rows, cols = (int(v) for v in layout.grid(image))
        grid_pos = _patch_positions(layout, image)
        if len(grid_pos) != rows * cols:
            raise LayoutError(
                f"image {image}: the layout has {len(grid_pos)} image tokens but a "
                f"{rows}×{cols} patch grid; they must match"
            )
        return ScoredTokens(np.asarray(grid_pos, dtype=np.int64), (rows, cols), layout, image, None)
    tokens = np.asarray(layout.image_token_positions(image), dtype=np.int64)
    boxed = np.asarray(~np.isnan(np.asarray(boxes_of(image), dtype=np.float64)).any(axis=1))
    positions = tokens[boxed]
    if not len(positions):
        raise LayoutError(f"image {image} has no image token with a box to score")
    rows, cols = (int(v) for v in layout.grid(image))
    grids = int(layout.num_grids(image)) if hasattr(layout, "num_grids") else 1
    one_grid = grids == 1 and np.array_equal(positions, _patch_positions(layout, image))
    shape = (rows, cols) if one_grid else (1, len(positions))
    if shape[0] * shape[1] != len(positions):
        raise LayoutError(
            f"image {image}: the layout has {len(positions)} image tokens with a box but a "
            f"{rows}×{cols} patch grid; they must match"
        )
    return ScoredTokens(positions, shape, layout, image, boxed)


@dataclass(frozen=True)
class _Columns:
    """Where one sequence's image lies in its trace rows."""

    grid: np.ndarray  # the key columns of the patch grid, row-major
    extra: np.ndarray  # the key columns of the captured image tokens outside the grid
    all_keys: bool  # key_mode="all": every key captured, the text mass can be read
    rows: int
    cols: int


def _image_columns(
    trace: TraceLike, layout: LayoutLike, batch: int, image: int
) -> tuple[_Columns, ScoredTokens]:
    scored = scored_tokens(layout, image)
    rows, cols = scored.shape
    image_pos = [int(p) for p in scored.positions]
    extra = sorted({int(p) for p in layout.image_token_positions(image)} - set(image_pos))
    try:
        keys = trace.key_positions(batch)
    except CaptureError:
        if getattr(trace, "key_mode", None) != "all":
            raise
        # every key captured: column i is position i
        grid = np.array(image_pos, dtype=np.int64)
        return _Columns(grid, np.array(extra, dtype=np.int64), True, rows, cols), scored
    key_index = {int(p): i for i, p in enumerate(keys)}
    missing = [p for p in image_pos if p not in key_index]
    if missing:
        raise CaptureError(
            f"batch {batch}: the trace has no key columns for {len(missing)} image tokens "
            f"(first at position {missing[0]}); capture attention over all image tokens"
        )
    grid = np.array([key_index[p] for p in image_pos], dtype=np.int64)
    extra_cols = np.array([key_index[p] for p in extra if p in key_index], dtype=np.int64)
    return _Columns(grid, extra_cols, False, rows, cols), scored


def _query_rows(
    trace: TraceLike,
    batch: int,
    positions: Sequence[int],
    where: _Columns,
    tag_id: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over ``positions`` of the attention over the patch grid ``(layer, head, r, c)``,
    of the mass on the image tokens outside the grid and of the mass on text
    ``(layer, head)``."""
    grids, extra_mass, text_mass = [], [], []
    for pos in positions:
        try:
            att = trace.attention(batch, int(pos))
        except (KeyError, IndexError, ValueError, CaptureError) as err:
            what = "the query" if tag_id is None else f"the mention of tag {tag_id}"
            raise TagMentionError(
                f"{what} at token position {pos} (batch {batch}) is not "
                f"in the trace ({err}); capture that query position, or check the offset "
                "given to find_tag_mentions"
            ) from err
        a = _to_numpy(att)
        if a.ndim != 3 or a.shape[0] != len(trace.layers) or a.shape[2] <= where.grid.max():
            raise CaptureError(
                f"trace.attention({batch}, {pos}) has shape {a.shape}; expected "
                f"(layer={len(trace.layers)}, head, key) covering the image key columns"
            )
        grid = a[..., where.grid]
        extra = a[..., where.extra[where.extra < a.shape[2]]].sum(axis=-1)
        on_image = grid.sum(axis=-1) + extra
        if where.all_keys:  # read directly: every key that is no image token is text
            text = np.maximum(a.sum(axis=-1) - on_image, 0.0)
        else:  # the row is a softmax row: what the image tokens do not take went to text
            left = 1.0 - on_image
            text = np.where(left < -1e-4, np.nan, np.maximum(left, 0.0))
        grids.append(grid)
        extra_mass.append(extra)
        text_mass.append(text)
    mean = np.mean(grids, axis=0)
    return (
        mean.reshape(*mean.shape[:2], where.rows, where.cols),
        np.mean(extra_mass, axis=0),
        np.mean(text_mass, axis=0),
    )


def patch_attention(
    trace: TraceLike, layout: LayoutLike, batch: int, positions: Sequence[int]
) -> Float[np.ndarray, "layer head rows cols"]:
    """The mean attention of the query ``positions`` of sequence ``batch`` over the image
    patches, laid on the patch grid: ``(layer, head, rows, cols)`` (float64); for a
    layout of several grids (LLaVA-NeXT) ``(layer, head, 1, tokens)`` over every token
    with a box (see :func:`scored_tokens`).

    Example:
        >>> grid = patch_attention(trace, layout, 0, [87])  # doctest: +SKIP
        >>> grid[-1].mean(0)            # last layer, heads averaged  # doctest: +SKIP
    """
    image = _image_of(layout, batch)
    where, _ = _image_columns(trace, layout, batch, image)
    return _query_rows(trace, batch, _mention_positions(positions), where)[0]


def _mention_positions(value: Any) -> tuple[int, ...]:
    if isinstance(value, int | np.integer):
        return (int(value),)
    positions = tuple(int(v) for v in value)
    if not positions:
        raise InputError("a mention has no scored positions")
    return positions


def score_alignment(
    trace: TraceLike,
    layout: LayoutLike,
    tagset: TagSet | Sequence[TagSet] | Mapping[int, TagSet],
    mentions: pd.DataFrame,
    *,
    k: int = 5,
    hit_threshold: float = 0.5,
    target: Target = "object_markfree",
    mark_free_max: float = 0.0,
    sinks: Literal["auto"] | np.ndarray | Mapping[int, np.ndarray] | None = "auto",
    sink_factor: float = 10.0,
) -> pd.DataFrame:
    """Score every mention's attention against its tag's region, per layer and head.

    Args:
        trace: holds ``attention(batch, position) -> (layer, head, key)``, ``layers`` and
            ``key_positions(batch)``; the rows are softmax probabilities of the full row
            (the Recorder's), at the image keys (``key_mode="image"``) or at every key
            (``key_mode="all"``, whose text mass is then read directly).
        layout: maps image tokens to the patch grid and masks to patch coverage.
        tagset: the TagSet of the image (or one per batch: a list or a dict).
        mentions: from :func:`somprobe.measure.mentions.find_tag_mentions` (needs ``tag_id`` and
            ``scored_positions``; ``batch`` defaults to 0). Several scored positions
            are scored on their mean attention row.
        k, hit_threshold, target, mark_free_max: see :func:`score_maps`.
        sinks: "auto" (default: :func:`sink_patches` over each image's mentions, where the
            median rule holds, see the module notes); None (keep every patch); or a
            boolean ``(rows, cols)`` or ``(layer, rows, cols)`` mask (or a dict by batch)
            over the map :func:`scored_tokens` gives (``(1, tokens)`` for LLaVA-NeXT).
        sink_factor: the factor of the "auto" rule.

    Returns:
        One row per mention × layer × head: ``batch, mention, tag_id, label, format,
        position`` (first scored position), ``n_positions, hallucinated, sink_rule``
        ("auto", "skipped", "mask" or "none": how sinks were chosen on this image),
        ``layer, head`` and :data:`SCORE_COLUMNS`. A hallucinated tag keeps its row with
        NaN for every score of its own region.

    Example:
        >>> mentions = find_tag_mentions(tokenizer, ids, tag_ids=tagset)  # doctest: +SKIP
        >>> df = score_alignment(trace, layout, tagset, mentions)  # doctest: +SKIP
        >>> aggregate_by_layer(df)[["layer", "mass_object_markfree", "lift_object"]]
        ... # doctest: +SKIP
    """
    check_options(k=k, hit_threshold=hit_threshold, target=target, mark_free_max=mark_free_max)
    if not isinstance(mentions, pd.DataFrame):
        raise InputError(
            f"mentions must be a DataFrame (find_tag_mentions makes one), got "
            f"{type(mentions).__name__}"
        )
    missing_cols = {"tag_id", "scored_positions"} - set(mentions.columns)
    if missing_cols:
        raise InputError(
            f"mentions lack column(s) {sorted(missing_cols)}; use find_tag_mentions to make them"
        )
    layers = [int(v) for v in trace.layers]
    m = mentions.reset_index(drop=True)
    for col in ("tag_id", "batch", "mention"):
        if col in m:
            m[col] = _id_column(m[col], col)
    batches = m["batch"] if "batch" in m else pd.Series(0, index=m.index)
    mention_ids = m["mention"].astype(int) if "mention" in m else pd.Series(m.index, index=m.index)

    blocks: list[pd.DataFrame] = []
    for batch in sorted(batches.unique()):
        ts = _tagset_for(tagset, int(batch))
        image = _image_of(layout, int(batch))
        size = tuple(int(v) for v in layout.image_size(image))
        if tuple(ts.image_size) != size:
            raise TagMentionError(
                f"the TagSet is for a {ts.image_size[0]}×{ts.image_size[1]} image but batch "
                f"{batch}'s image is {size[0]}×{size[1]}; use the TagSet made for this image"
            )
        where, scored = _image_columns(trace, layout, int(batch), image)
        idx = m.index[batches == batch]
        rows_att = [
            _query_rows(
                trace,
                int(batch),
                _mention_positions(m.at[i, "scored_positions"]),
                where,
                int(m.at[i, "tag_id"]),
            )
            for i in idx
        ]
        exclude, rule = _resolve_sinks(
            sinks,
            int(batch),
            [r[0] for r in rows_att],
            [int(m.at[i, "tag_id"]) for i in idx],
            len(layers),
            (where.rows, where.cols),
            sink_factor,
        )
        cache: dict[int, RegionMaps] = {}

        to_patches = scored.to_map
        marks = to_patches(mark_pixel_mask(ts))  # every tag's mark: once per image
        for i, (att, extra, text) in zip(idx, rows_att, strict=True):
            tag_id = int(m.at[i, "tag_id"])
            if tag_id not in cache:
                cache[tag_id] = region_maps(ts, tag_id, to_patches, marks)
            scores = score_maps(
                att, cache[tag_id], k=k, hit_threshold=hit_threshold, target=target,
                exclude=None if exclude is None else exclude[:, None],
                mark_free_max=mark_free_max, text_mass=text, image_extra_mass=extra,
            )  # fmt: skip
            hallucinated = tag_id not in ts.ids
            n_layer, n_head = att.shape[:2]
            positions = _mention_positions(m.at[i, "scored_positions"])
            block = pd.DataFrame(
                {
                    "batch": int(batch),
                    "mention": int(mention_ids[i]),
                    "tag_id": tag_id,
                    "label": m.at[i, "label"] if "label" in m else str(tag_id),
                    "format": m.at[i, "format"] if "format" in m else None,
                    "position": positions[0],
                    "n_positions": len(positions),
                    "hallucinated": hallucinated,
                    "sink_rule": rule,
                    "layer": np.repeat(layers, n_head),
                    "head": np.tile(np.arange(n_head), n_layer),
                    **{name: v.reshape(-1) for name, v in scores.items()},
                }
            )
            if hallucinated:
                block.loc[:, list(_OWN_REGION_COLUMNS)] = np.nan
            blocks.append(block)
    if not blocks:
        return _empty_scores()
    return pd.concat(blocks, ignore_index=True)


def _empty_scores(leading: Sequence[str] = ()) -> pd.DataFrame:
    """A score table with no rows: every column of :func:`score_alignment` (``leading``
    first), typed as a filled one would be."""
    dtypes: dict[str, Any] = {c: float for c in SCORE_COLUMNS}
    dtypes.update({c: np.int64 for c in (*_ID_COLUMNS, "layer", "head", *_COUNT_COLUMNS)})
    dtypes.update({c: object for c in (*leading, "label", "format", "sink_rule")})
    dtypes["hallucinated"] = bool
    columns = (*leading, *_ID_COLUMNS, "layer", "head", *SCORE_COLUMNS)
    return pd.DataFrame({c: pd.Series(dtype=dtypes[c]) for c in columns})


def _id_column(values: pd.Series, name: str) -> pd.Series:
    """A mentions column of non-negative whole numbers as int64 (``tag_id``, ``batch``)."""
    numbers = pd.to_numeric(values, errors="coerce")
    bad = numbers.isna() | (numbers < 0) | (numbers != np.floor(numbers))
    if bad.any():
        first = values[bad].iloc[0]
        raise InputError(
            f"mentions column {name!r} must hold non-negative whole numbers, got {first!r}"
        )
    return numbers.astype(np.int64)


def median_rule_holds(tag_ids: Sequence[int]) -> bool:
    """Whether the "auto" sink rule can be used on an image whose mentions name
    ``tag_ids``: no tag accounts for half or more of the mentions (so that a patch only
    one tag's mentions attend to cannot reach the median), which needs at least 3 tags.

    Example:
        >>> median_rule_holds([1, 2, 3]), median_rule_holds([1, 2]), median_rule_holds([1, 1, 2, 3])
        (True, False, False)
    """
    counts = Counter(int(t) for t in tag_ids)
    return bool(counts) and 2 * max(counts.values()) < len(tag_ids)


def _resolve_sinks(
    sinks: Any,
    batch: int,
    rows_att: list[np.ndarray],
    tag_ids: list[int],
    n_layers: int,
    grid: tuple[int, int],
    factor: float,
) -> tuple[np.ndarray | None, SinkRule]:
    """The (layer, rows, cols) sink mask of one batch item (or None), and the rule used."""
    if sinks is None:
        return None, "none"
    if isinstance(sinks, str):
        if sinks != "auto":
            raise InputError(f"sinks must be None, 'auto' or a boolean mask, got {sinks!r}")
        if not (np.isfinite(factor) and factor > 0):
            raise InputError(f"factor must be a positive number, got {factor!r}")
        if not rows_att or not median_rule_holds(tag_ids):
            return None, "skipped"
        return sink_patches(np.stack(rows_att), factor=factor), "auto"
    if isinstance(sinks, Mapping):
        if batch not in sinks:
            raise InputError(f"sinks has no mask for batch {batch}")
        sinks = sinks[batch]
    mask = np.asarray(sinks)
    if mask.dtype != bool:
        raise InputError(f"a sink mask must be boolean, got dtype {mask.dtype}")
    if mask.shape == grid:
        mask = np.broadcast_to(mask, (n_layers, *grid))
    if mask.shape != (n_layers, *grid):
        raise InputError(
            f"sink mask has shape {mask.shape}; expected {grid} or ({n_layers}, *{grid})"
        )
    return mask, "mask"


# --------------------------------------------------------------------------------------
# aggregated views


def _metric_columns(df: pd.DataFrame, needs: Sequence[str] = ()) -> list[str]:
    """The score columns of ``df``, after checking it is a score table with ``needs``."""
    if not isinstance(df, pd.DataFrame):
        raise InputError(f"scores must be a DataFrame (score_alignment's), got {type(df).__name__}")
    missing = [c for c in needs if c not in df.columns]
    if missing:
        raise InputError(f"scores lack column(s) {missing}; pass score_alignment's table")
    metrics = [c for c in SCORE_COLUMNS if c in df.columns]
    if not metrics:
        raise InputError(
            f"scores have no score column (e.g. mass_object, image_share_object); got "
            f"{list(df.columns)}"
        )
    return metrics


def _weighted_lifts(df: pd.DataFrame, by: list[str], units: list[str]) -> pd.DataFrame:
    """Per group of ``by``: ``lift_<part>_weighted = Σ mass_<part> / Σ (kept mass ·
    area_<part>)`` over the group's rows, and ``n_lift_<part>_weighted``, the number of
    distinct ``units`` (mentions) with a row that has both; parts lacking a column are
    left out."""
    out: dict[str, pd.Series] = {}
    if not {"mass_image", "mass_sink"} <= set(df.columns):
        return pd.DataFrame(out)
    kept = df["mass_image"] - df["mass_sink"]
    for part in WEIGHTED_PARTS:
        if not {f"mass_{part}", f"area_{part}"} <= set(df.columns):
            continue
        num, den = df[f"mass_{part}"], kept * df[f"area_{part}"]
        ok = num.notna() & den.notna()
        tmp = df[by + [u for u in units if u not in by]].assign(
            _num=num.where(ok, 0.0), _den=den.where(ok, 0.0), _ok=ok
        )
        grouped = tmp.groupby(by, sort=True)
        total_num, total_den = grouped["_num"].sum(), grouped["_den"].sum()
        lift = (total_num / total_den.where(total_den > 0)).astype(float)
        if units:
            used = tmp.groupby(by + units, sort=True)["_ok"].any().groupby(by, sort=True).sum()
        else:
            used = grouped["_ok"].sum()
        out[f"lift_{part}_weighted"] = lift
        out[f"n_lift_{part}_weighted"] = used.astype(np.int64)
    return pd.DataFrame(out)


def _place_weighted(metrics: pd.DataFrame, weighted: pd.DataFrame) -> pd.DataFrame:
    """``metrics`` with the weighted lifts right after the last ``lift_`` column."""
    lifts = [c for c in weighted.columns if c.startswith("lift_")]
    if not lifts:
        return metrics
    cols = list(metrics.columns)
    at = max((i for i, c in enumerate(cols) if c.startswith("lift_")), default=len(cols) - 1)
    out = pd.concat([metrics, weighted[lifts]], axis=1)
    return out[cols[: at + 1] + lifts + cols[at + 1 :]]


def _counts(defined: pd.DataFrame, metrics: list[str], weighted: pd.DataFrame) -> pd.DataFrame:
    """``n_<metric>`` for every metric (count columns aside), then the weighted lifts'."""
    named = {m: f"n_{m}" for m in metrics if m not in _COUNT_COLUMNS}
    counts = defined[list(named)].rename(columns=named).astype(np.int64)
    extra = [c for c in weighted.columns if c.startswith("n_")]
    return pd.concat([counts, weighted[extra]], axis=1)


def aggregate_by_layer(df: pd.DataFrame, *, per_mention: bool = False) -> pd.DataFrame:
    """Average the scores over heads, per layer.

    Args:
        df: from :func:`score_alignment`.
        per_mention: True: one row per mention × layer (scores averaged over heads, with
            ``n_heads``; the input of :func:`somprobe.measure.stats.compare_models`).
            False: one row per layer, the per-mention values averaged over mentions.

    NaN scores (a target with no qualifying patch, a hallucinated tag's own-region scores,
    the shares of a map with no mass) are left out of each mean, never counted as 0. The
    per-layer table says how many mentions each mean used: ``n_mentions`` (all mentions
    of the layer) and, for every score column ``<metric>``, ``n_<metric>`` (mentions with a
    value), after the scores. Both tables also hold ``lift_<part>_weighted`` for the parts
    in :data:`WEIGHTED_PARTS` (after the lifts): ``Σ mass_<part> / Σ ((mass_image -
    mass_sink) · area_<part>)`` over the rows aggregated (all heads of the mentions), the
    lift of the pooled attention, which large-mass queries weigh more in than the mean of
    per-mention lifts does; ``n_lift_<part>_weighted`` counts the mentions it used.
    Without sinks, ``mass_image - mass_sink`` is ``mass_image``.

    Example:
        >>> aggregate_by_layer(df)[["layer", "topk_hit", "chance_topk", "n_topk_hit"]]
        ... # doctest: +SKIP
    """
    metrics = _metric_columns(df, ["layer"])
    keys = [c for c in ("batch", "mention") if c in df.columns]
    ids = [c for c in _ID_COLUMNS if c in df.columns and c not in keys]
    grouped = df.groupby([*keys, "layer"], sort=True, dropna=False)
    per = grouped[metrics].mean()
    weighted = _weighted_lifts(df, [*keys, "layer"], [])
    first = grouped[ids].first()
    per = pd.concat([first, _place_weighted(per, weighted)], axis=1).reset_index()
    per.insert(len(keys) + len(ids) + 1, "n_heads", grouped.size().to_numpy())
    if per_mention:
        return per
    by_layer = per.groupby("layer", sort=True)
    layer_weighted = _weighted_lifts(df, ["layer"], keys)
    out = _place_weighted(by_layer[metrics].mean(), layer_weighted)
    out = pd.concat([out, _counts(by_layer[metrics].count(), metrics, layer_weighted)], axis=1)
    out.insert(0, "n_mentions", by_layer.size())
    return out.reset_index()


def aggregate_by_head(df: pd.DataFrame) -> pd.DataFrame:
    """One row per layer × head: scores averaged over mentions (NaN left out), with
    ``n_mentions``, the weighted lifts and ``n_<metric>`` as in :func:`aggregate_by_layer`.

    Example:
        >>> heat = aggregate_by_head(df).pivot(index="layer", columns="head",
        ...                                    values="lift_object")  # doctest: +SKIP
    """
    metrics = _metric_columns(df, ["layer", "head"])
    grouped = df.groupby(["layer", "head"], sort=True)
    weighted = _weighted_lifts(df, ["layer", "head"], [])
    out = _place_weighted(grouped[metrics].mean(), weighted)
    out = pd.concat([out, _counts(grouped[metrics].count(), metrics, weighted)], axis=1)
    out.insert(0, "n_mentions", grouped.size())
    return out.reset_index()


__all__ = [
    "CHANCE_COLUMNS",
    "PARTS",
    "SCORE_COLUMNS",
    "SHARE_PARTS",
    "WEIGHTED_PARTS",
    "LayoutLike",
    "RegionMaps",
    "ScoredTokens",
    "TraceLike",
    "aggregate_by_head",
    "aggregate_by_layer",
    "check_options",
    "mark_pixel_mask",
    "median_rule_holds",
    "patch_attention",
    "region_maps",
    "region_pixel_masks",
    "score_alignment",
    "score_maps",
    "scored_tokens",
    "sink_patches",
]
