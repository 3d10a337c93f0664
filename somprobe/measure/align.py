"""Attention-to-region scores: where does a tag's attention over the image go?

For one query (a token that writes a tag) and the attention it pays to the image
patches, the patches are split into five disjoint parts, defined on the pixels of the
original image and then measured per patch as the fraction of the patch they cover:

========== ==========================================================================
part       pixels
========== ==========================================================================
mark       the tag's own mark box (the drawn label), whatever lies under it
object     the tag's own region minus its mark box
other_mark other tags' mark boxes, outside the tag's own region and mark box
other      other tags' regions, outside all of the above
rest       everything else (background, untagged stuff)
========== ==========================================================================

A patch's attention is split among the parts in proportion to its coverage: a patch
holding attention ``a`` and covered 30 % by the object and 70 % by background gives
``0.3·a`` to the object and ``0.7·a`` to the rest. Scores (all per query, per layer, per
head, vectorised over any leading dimensions):

* ``share_<part>``: the part's share of the attention mass over the image patches
  (shares sum to 1);
* ``area_<part>``: the part's share of the image area in patch units (mean coverage);
* ``lift_<part> = share / area``: 1.0 for a uniform map, NaN when the area is 0;
* ``topk_hit``: fraction of the ``k`` most-attended patches that are *in the target*;
  ``topk_any``: 1.0 if any of them is; ``pointing``: 1.0 if the most-attended patch is.
  A patch is *in the target* when the target covers at least ``hit_threshold`` of it
  (default 0.5). The target is the tag's object (default), its mark, or both. Ties in
  attention go to the lower patch index (row-major order);
* ``auroc``: attention as a per-patch detector of the target patches; equals
  ``sklearn.metrics.roc_auc_score(in_target, attention)`` (ties count one half), NaN
  when no patch, or every patch, is in the target.

A map with no attention mass on the kept patches (all zeros, or every patch excluded)
has no shares: its shares and lifts are NaN (``image_mass`` says 0), not an error.

**Attention sinks.** A few image tokens can take a large part of every query's
attention whatever the query says. Passing ``exclude`` (or ``sinks=`` to
:func:`score_alignment`) drops those patches: their attention is removed and the rest
renormalised to sum to 1, the areas are recomputed over the kept patches, and top-k,
pointing and AUROC only see the kept patches. ``sink_share`` reports the image mass
removed. :func:`sink_patches` finds sinks by a documented rule: in each layer, a patch
is a sink when its *median* share of the image attention over all scored queries of the
image, averaged over heads, exceeds ``factor`` times the uniform share ``1/patches``
(default ``factor=10``). The median keeps an object that only its own mentions attend
to from being taken for a sink, so use the rule on images with mentions of several
different tags; with fewer, pass an explicit mask.

Example:
    >>> import numpy as np
    >>> maps = RegionMaps.from_parts(object=np.eye(4), mark=np.zeros((4, 4)))
    >>> s = score_maps(np.full((4, 4), 1 / 16), maps)
    >>> float(s["lift_object"]), float(s["share_object"])
    (1.0, 0.25)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd
from jaxtyping import Bool, Float
from scipy.stats import rankdata

from somprobe.errors import CaptureError, InputError, LayoutError, TagMentionError
from somprobe.tagging.types import Box, TagSet

Target = Literal["object", "mark", "object+mark"]
PARTS: tuple[str, ...] = ("object", "mark", "other", "other_mark", "rest")
#: Score columns of :func:`score_maps` and :func:`score_alignment`, in order.
SCORE_COLUMNS: tuple[str, ...] = (
    "image_mass",
    "sink_share",
    "n_excluded",
    *(f"share_{p}" for p in PARTS),
    *(f"lift_{p}" for p in PARTS),
    *(f"area_{p}" for p in PARTS),
    "topk_hit",
    "topk_any",
    "pointing",
    "auroc",
)
# scores that describe the tag's own region; NaN for a tag that is not on the image
_OWN_REGION_COLUMNS: tuple[str, ...] = (
    "share_object",
    "share_mark",
    "lift_object",
    "lift_mark",
    "area_object",
    "area_mark",
    "topk_hit",
    "topk_any",
    "pointing",
    "auroc",
)
_ID_COLUMNS: tuple[str, ...] = (
    "batch",
    "mention",
    "tag_id",
    "label",
    "format",
    "position",
    "n_positions",
    "hallucinated",
)
_COVER_TOL = 1e-6


# --------------------------------------------------------------------------------------
# region maps


@dataclass(frozen=True)
class RegionMaps:
    """Per-patch coverage (0..1) of the disjoint parts a tag's attention is split into.

    Build with :meth:`from_parts` (validates) or :func:`region_maps` (from a TagSet).
    ``rest`` is whatever the other parts leave of each patch.
    """

    object: Float[np.ndarray, "rows cols"]
    mark: Float[np.ndarray, "rows cols"]
    other: Float[np.ndarray, "rows cols"]
    other_mark: Float[np.ndarray, "rows cols"]

    @classmethod
    def from_parts(
        cls,
        *,
        object: Any,
        mark: Any,
        other: Any = None,
        other_mark: Any = None,
    ) -> RegionMaps:
        """Check and build; ``other``/``other_mark`` default to all zeros.

        Example:
            >>> RegionMaps.from_parts(object=np.ones((2, 2)), mark=np.zeros((2, 2))).shape
            (2, 2)
        """
        obj = np.asarray(object, dtype=np.float64)
        parts = {"object": obj}
        for name, value in (("mark", mark), ("other", other), ("other_mark", other_mark)):
            arr = np.zeros_like(obj) if value is None else np.asarray(value, dtype=np.float64)
            parts[name] = arr
        for name, arr in parts.items():
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
        return cls(**{k: np.clip(v, 0.0, 1.0) for k, v in parts.items()})

    @property
    def shape(self) -> tuple[int, int]:
        return self.object.shape  # type: ignore[return-value]

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
) -> RegionMaps:
    """Coverage maps of one tag's parts, through ``to_patches`` (a layout's mask→patches).

    Example:
        >>> maps = region_maps(tagset, 3, lambda m: layout.mask_to_patches(m, 0))
        ... # doctest: +SKIP
    """
    masks = region_pixel_masks(tagset, tag_id)
    return RegionMaps.from_parts(**{k: to_patches(v) for k, v in masks.items()})


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


def score_maps(
    attn: Float[np.ndarray, "*lead rows cols"],
    maps: RegionMaps,
    *,
    k: int = 5,
    hit_threshold: float = 0.5,
    target: Target = "object",
    exclude: Bool[np.ndarray, "*lead rows cols"] | None = None,
) -> dict[str, np.ndarray]:
    """Every score of one query's image attention against one tag's region maps.

    Args:
        attn: attention over the image patches, any leading dims (layer, head, ...);
            need not sum to 1 (it is normalised over the kept patches).
        maps: the tag's coverage maps.
        k: how many top patches ``topk_hit``/``topk_any`` look at (fewer if fewer kept).
        hit_threshold: a patch is in the target when covered at least this much.
        target: "object", "mark" or "object+mark" for top-k, pointing and AUROC.
        exclude: patches to drop (attention sinks), broadcastable to ``attn``.

    Returns:
        ``{column: array of shape attn.shape[:-2]}`` for every name in
        :data:`SCORE_COLUMNS`.

    Example:
        >>> maps = RegionMaps.from_parts(object=np.eye(3), mark=np.zeros((3, 3)))
        >>> float(score_maps(np.eye(3), maps)["share_object"])
        1.0
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise InputError(f"k must be a positive integer, got {k!r}")
    if not 0 < hit_threshold <= 1:
        raise InputError(f"hit_threshold must be in (0, 1], got {hit_threshold!r}")
    if target not in ("object", "mark", "object+mark"):
        raise InputError(f"target must be 'object', 'mark' or 'object+mark', got {target!r}")
    a = _check_attention(attn, maps.shape)
    lead = a.shape[:-2]
    n_patch = a.shape[-2] * a.shape[-1]
    a = a.reshape(*lead, n_patch)
    cover = maps.stack()  # (5, P)

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

    with np.errstate(invalid="ignore", divide="ignore"):
        raw_total = a.sum(axis=-1)
        kept = np.where(keep, a, 0.0)
        total = kept.sum(axis=-1)
        p = kept / total[..., None]
        shares = p @ cover.T  # (..., 5)
        areas = (keep.astype(np.float64) @ cover.T) / n_kept[..., None]
        lifts = np.where(areas > 0, shares / areas, np.nan)
        sink_share = np.where(raw_total > 0, 1.0 - total / raw_total, np.nan)

    tcov = {"object": cover[0], "mark": cover[1], "object+mark": cover[0] + cover[1]}[target]
    in_target = tcov >= hit_threshold - 1e-9  # (P,)
    scores = np.where(keep, a, -np.inf)
    order = np.argsort(-scores, axis=-1, kind="stable")[..., :k]
    kk = np.minimum(k, n_kept)
    rank_ok = np.arange(order.shape[-1]) < kk[..., None]
    hits = in_target[order] & rank_ok
    with np.errstate(invalid="ignore", divide="ignore"):
        topk_hit = np.where(kk > 0, hits.sum(axis=-1) / kk, np.nan)
        topk_any = np.where(kk > 0, hits.any(axis=-1).astype(np.float64), np.nan)
        pointing = np.where(kk > 0, in_target[np.argmax(scores, axis=-1)].astype(float), np.nan)

        # AUROC by ranks: excluded patches tie at -inf below every kept one, so kept ranks
        # are shifted by exactly the number excluded.
        ranks = rankdata(scores, axis=-1) if scores.size else scores
        pos = in_target & keep
        n_pos = pos.sum(axis=-1)
        n_neg = n_kept - n_pos
        rank_sum = np.where(pos, ranks, 0.0).sum(axis=-1) - (n_patch - n_kept) * n_pos
        auroc = (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
        auroc = np.where((n_pos > 0) & (n_neg > 0), auroc, np.nan)

    out: dict[str, np.ndarray] = {
        "image_mass": raw_total,
        "sink_share": sink_share,
        "n_excluded": (n_patch - n_kept).astype(np.int64),
    }
    for i, part in enumerate(PARTS):
        out[f"share_{part}"] = shares[..., i]
    for i, part in enumerate(PARTS):
        out[f"lift_{part}"] = lifts[..., i]
    for i, part in enumerate(PARTS):
        out[f"area_{part}"] = areas[..., i]
    out.update(topk_hit=topk_hit, topk_any=topk_any, pointing=pointing, auroc=auroc)
    return {name: np.asarray(out[name]) for name in SCORE_COLUMNS}


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
    and every image token to be a patch.
    """

    def image_token_positions(self, image: int) -> Any: ...

    def grid(self, image: int) -> tuple[int, int]: ...

    def image_size(self, image: int) -> tuple[int, int]: ...

    def mask_to_patches(self, mask: Any, image: int = 0) -> Any: ...


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
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


def _image_columns(
    trace: TraceLike, layout: LayoutLike, batch: int, image: int
) -> tuple[np.ndarray, int, int]:
    rows, cols = (int(v) for v in layout.grid(image))
    image_pos = _patch_positions(layout, image)
    if len(image_pos) != rows * cols:
        raise LayoutError(
            f"batch {batch}: the layout has {len(image_pos)} image tokens but a "
            f"{rows}×{cols} patch grid; they must match"
        )
    try:
        keys = trace.key_positions(batch)
    except CaptureError:
        if getattr(trace, "key_mode", None) != "all":
            raise
        # every key captured: column i is position i
        return np.array(image_pos, dtype=np.int64), rows, cols
    key_index = {int(p): i for i, p in enumerate(keys)}
    missing = [p for p in image_pos if p not in key_index]
    if missing:
        raise CaptureError(
            f"batch {batch}: the trace has no key columns for {len(missing)} image tokens "
            f"(first at position {missing[0]}); capture attention over all image tokens"
        )
    return np.array([key_index[p] for p in image_pos], dtype=np.int64), rows, cols


def _query_rows(
    trace: TraceLike,
    batch: int,
    positions: Sequence[int],
    columns: np.ndarray,
    grid: tuple[int, int],
    tag_id: int | None = None,
) -> np.ndarray:
    """Mean over ``positions`` of the attention over the image, shape (layer, head, r, c)."""
    rows = []
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
        if a.ndim != 3 or a.shape[0] != len(trace.layers) or a.shape[2] <= columns.max():
            raise CaptureError(
                f"trace.attention({batch}, {pos}) has shape {a.shape}; expected "
                f"(layer={len(trace.layers)}, head, key) covering the image key columns"
            )
        rows.append(a[..., columns])
    mean = np.mean(rows, axis=0)
    return mean.reshape(*mean.shape[:2], *grid)


def patch_attention(
    trace: TraceLike, layout: LayoutLike, batch: int, positions: Sequence[int]
) -> Float[np.ndarray, "layer head rows cols"]:
    """The mean attention of the query ``positions`` of sequence ``batch`` over the image
    patches, laid on the patch grid: ``(layer, head, rows, cols)`` (float64).

    Example:
        >>> grid = patch_attention(trace, layout, 0, [87])  # doctest: +SKIP
        >>> grid[-1].mean(0)            # last layer, heads averaged  # doctest: +SKIP
    """
    image = _image_of(layout, batch)
    columns, rows, cols = _image_columns(trace, layout, batch, image)
    return _query_rows(trace, batch, _mention_positions(positions), columns, (rows, cols))


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
    target: Target = "object",
    sinks: Literal["auto"] | np.ndarray | Mapping[int, np.ndarray] | None = None,
    sink_factor: float = 10.0,
) -> pd.DataFrame:
    """Score every mention's attention against its tag's region, per layer and head.

    Args:
        trace: holds ``attention(batch, position) -> (layer, head, key)``, ``layers`` and
            ``key_positions(batch)``.
        layout: maps image tokens to the patch grid and masks to patch coverage.
        tagset: the TagSet of the image (or one per batch: a list or a dict).
        mentions: from :func:`somprobe.measure.mentions.find_tag_mentions` (needs ``tag_id`` and
            ``scored_positions``; ``batch`` defaults to 0). Several scored positions
            are scored on their mean attention row.
        k, hit_threshold, target: see :func:`score_maps`.
        sinks: None; "auto" (:func:`sink_patches` over the image's mentions); or a
            boolean ``(rows, cols)`` or ``(layer, rows, cols)`` mask (or a dict by batch).
        sink_factor: the factor of the "auto" rule.

    Returns:
        One row per mention × layer × head: ``batch, mention, tag_id, label, format,
        position`` (first scored position), ``n_positions, hallucinated, layer, head``
        and :data:`SCORE_COLUMNS`. A hallucinated tag keeps its row with NaN for every
        score of its own region.

    Example:
        >>> mentions = find_tag_mentions(tokenizer, ids, tag_ids=tagset)  # doctest: +SKIP
        >>> df = score_alignment(trace, layout, tagset, mentions)  # doctest: +SKIP
        >>> aggregate_by_layer(df)[["layer", "lift_object"]]  # doctest: +SKIP
    """
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
        columns, n_rows, n_cols = _image_columns(trace, layout, int(batch), image)
        idx = m.index[batches == batch]
        rows_att = [
            _query_rows(
                trace,
                int(batch),
                _mention_positions(m.at[i, "scored_positions"]),
                columns,
                (n_rows, n_cols),
                int(m.at[i, "tag_id"]),
            )
            for i in idx
        ]
        exclude = _resolve_sinks(sinks, int(batch), rows_att, len(layers), (n_rows, n_cols),
                                 sink_factor)  # fmt: skip
        cache: dict[int, RegionMaps] = {}

        def to_patches(mask: np.ndarray, _image: int = image) -> np.ndarray:
            return _to_numpy(layout.mask_to_patches(mask, _image))

        for i, att in zip(idx, rows_att, strict=True):
            tag_id = int(m.at[i, "tag_id"])
            if tag_id not in cache:
                cache[tag_id] = region_maps(ts, tag_id, to_patches)
            scores = score_maps(
                att, cache[tag_id], k=k, hit_threshold=hit_threshold, target=target,
                exclude=None if exclude is None else exclude[:, None],
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
                    "layer": np.repeat(layers, n_head),
                    "head": np.tile(np.arange(n_head), n_layer),
                    **{name: v.reshape(-1) for name, v in scores.items()},
                }
            )
            if hallucinated:
                block.loc[:, list(_OWN_REGION_COLUMNS)] = np.nan
            blocks.append(block)
    if not blocks:
        return pd.DataFrame(
            {c: pd.Series(dtype=float) for c in (*_ID_COLUMNS, "layer", "head", *SCORE_COLUMNS)}
        )
    return pd.concat(blocks, ignore_index=True)


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


def _resolve_sinks(
    sinks: Any,
    batch: int,
    rows_att: list[np.ndarray],
    n_layers: int,
    grid: tuple[int, int],
    factor: float,
) -> np.ndarray | None:
    """The (layer, rows, cols) sink mask of one batch item, or None."""
    if sinks is None:
        return None
    if isinstance(sinks, str):
        if sinks != "auto":
            raise InputError(f"sinks must be None, 'auto' or a boolean mask, got {sinks!r}")
        if not rows_att:
            return None
        return sink_patches(np.stack(rows_att), factor=factor)
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
    return mask


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
        raise InputError(f"scores have no score column (e.g. share_object); got {list(df.columns)}")
    return metrics


def aggregate_by_layer(df: pd.DataFrame, *, per_mention: bool = False) -> pd.DataFrame:
    """Average the scores over heads, per layer.

    Args:
        df: from :func:`score_alignment`.
        per_mention: True: one row per mention × layer (scores averaged over heads; the
            input of :func:`somprobe.measure.stats.compare_models`). False: one row per layer,
            the per-mention values averaged over mentions, with ``n_mentions``.

    NaN scores (e.g. the AUROC of a region covering no patch, or a hallucinated tag's
    own-region scores) are left out of each mean.

    Example:
        >>> aggregate_by_layer(df)[["layer", "share_object", "n_mentions"]]  # doctest: +SKIP
    """
    metrics = _metric_columns(df, ["layer"])
    keys = [c for c in ("batch", "mention") if c in df.columns]
    ids = [c for c in _ID_COLUMNS if c in df.columns and c not in keys]
    grouped = df.groupby([*keys, "layer"], sort=True, dropna=False)
    per = grouped[metrics].mean()
    first = grouped[ids].first()
    per = pd.concat([first, per], axis=1).reset_index()
    per.insert(len(keys) + len(ids) + 1, "n_heads", grouped.size().to_numpy())
    if per_mention:
        return per
    out = per.groupby("layer", sort=True)[metrics].mean()
    out.insert(0, "n_mentions", per.groupby("layer", sort=True).size())
    return out.reset_index()


def aggregate_by_head(df: pd.DataFrame) -> pd.DataFrame:
    """One row per layer × head: scores averaged over mentions, with ``n_mentions``.

    Example:
        >>> heat = aggregate_by_head(df).pivot(index="layer", columns="head",
        ...                                    values="lift_object")  # doctest: +SKIP
    """
    metrics = _metric_columns(df, ["layer", "head"])
    grouped = df.groupby(["layer", "head"], sort=True)
    out = grouped[metrics].mean()
    out.insert(0, "n_mentions", grouped.size())
    return out.reset_index()


__all__ = [
    "PARTS",
    "SCORE_COLUMNS",
    "LayoutLike",
    "RegionMaps",
    "TraceLike",
    "aggregate_by_head",
    "aggregate_by_layer",
    "patch_attention",
    "region_maps",
    "region_pixel_masks",
    "score_alignment",
    "score_maps",
    "sink_patches",
]
