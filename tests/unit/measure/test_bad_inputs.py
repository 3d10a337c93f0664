"""Hostile inputs to the public functions of ``somprobe.measure`` (its ``__all__``).

Each case in ``RAISES`` must raise the named :class:`~somprobe.errors.SomprobeError`
subclass with a message matching the pattern; each case in ``DOCUMENTED`` must behave as
the function's docstring says. Calls take one shared context (a tokenizer, a stand-in
trace and layout, a TagSet, scores); the model cases use the session's tiny LLaVA.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from somprobe.errors import CaptureError, InputError, SomprobeError, TagMentionError, WriteError
from somprobe.measure import (
    SCORE_COLUMNS,
    RegionMaps,
    adjust_pvalues,
    aggregate_by_head,
    aggregate_by_layer,
    answer_mentions,
    compare_models,
    decode_with_offsets,
    find_tag_mentions,
    listing_alignment,
    paired_test,
    patch_attention,
    plot_layer_curves,
    plot_layer_head_map,
    plot_top_patches,
    region_maps,
    save_figure,
    score_alignment,
    score_maps,
    sink_patches,
    tag_attention_maps,
    teacher_forced_listing,
)
from somprobe.measure.mentions import MENTION_COLUMNS
from somprobe.tagging import Tag, TaggedImage, TagSet

PATCH = 2  # pixels per patch side of the stand-in layout: an 8×8 image, a 4×4 grid
KEYS = 30  # key columns of the stand-in trace; the image tokens are positions 3..18


class Layout:
    """Stand-in of ImageLayout (one image per sequence)."""

    def __init__(self, size: tuple[int, int] = (8, 8)) -> None:
        self.size = size

    def image_size(self, image: int) -> tuple[int, int]:
        return self.size

    def grid(self, image: int) -> tuple[int, int]:
        return self.size[1] // PATCH, self.size[0] // PATCH

    def image_token_positions(self, image: int) -> list[int]:
        rows, cols = self.grid(image)
        return list(range(3, 3 + rows * cols))

    def mask_to_patches(self, mask: Any, image: int = 0) -> np.ndarray:
        m = np.asarray(mask, dtype=float)
        h, w = m.shape
        return m.reshape(h // PATCH, PATCH, w // PATCH, PATCH).mean(axis=(1, 3))

    def patch_box(self, i: int, image: int = 0, clip: bool = True) -> tuple[int, ...]:
        r, c = divmod(i, self.grid(image)[1])
        return (c * PATCH, r * PATCH, (c + 1) * PATCH, (r + 1) * PATCH)


class Trace:
    """Stand-in of Trace: attention rows (layer, head, key) at captured positions."""

    def __init__(self, rows: dict[tuple[int, int], torch.Tensor]) -> None:
        self.rows = rows
        self.layers = [0, 1]

    def attention(self, batch: int, position: int) -> torch.Tensor:
        if (batch, position) not in self.rows:
            raise CaptureError(f"query position {position} was not captured")
        return self.rows[(batch, position)]

    def key_positions(self, batch: int) -> list[int]:
        return list(range(KEYS))


def _uniform() -> torch.Tensor:
    return torch.full((2, 3, KEYS), 1.0 / KEYS)


def _tagset(size: tuple[int, int] = (8, 8)) -> TagSet:
    w, h = size
    m1 = np.zeros((h, w), bool)
    m1[:4, :4] = True
    m2 = np.zeros((h, w), bool)
    m2[4:, 2:] = True
    tags = [
        Tag(1, "1", m1, m1, (2.0, 2.0), (0, 0, 2, 2), "cat"),
        Tag(2, "2", m2, m2, (5.0, 6.0), (6, 6, 8, 8), "dog"),
    ]
    return TagSet(tags, size)


def _mentions(**change: Any) -> pd.DataFrame:
    df = pd.DataFrame(
        {
            "batch": [0, 0],
            "mention": [0, 1],
            "tag_id": [1, 2],
            "label": ["1", "2"],
            "format": "listing",
            "scored_positions": [(20,), (21,)],
        }
    )
    return df.assign(**change)


def _row_with(value: float) -> torch.Tensor:
    row = _uniform().clone()
    row[0, 0, 5] = value
    return row


@pytest.fixture(scope="module")
def ctx(tiny_tokenizer: Any, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    trace = Trace({(0, 20): _uniform(), (0, 21): _uniform()})
    scores = score_alignment(trace, Layout(), _tagset(), _mentions())
    per = aggregate_by_layer(scores, per_mention=True)
    tmp = tmp_path_factory.mktemp("measure_bad_inputs")
    (tmp / "a_file").write_text("not a folder")
    return SimpleNamespace(
        tok=tiny_tokenizer,
        vocab=len(tiny_tokenizer),
        trace=trace,
        layout=Layout(),
        tagset=_tagset(),
        scores=scores,
        per=per,
        per_b=per.assign(lift_object=per["lift_object"] + np.arange(len(per))),
        image=Image.new("RGB", (8, 8)),
        tmp=tmp,
    )


def _odd_mask_tagset() -> TagSet:
    """A TagSet for an 8×8 image whose tag's mask is 3×3."""
    mask = np.ones((3, 3), bool)
    return TagSet([Tag(1, "1", mask, mask, (1.0, 1.0), (0, 0, 1, 1))], (8, 8))


def _maps() -> RegionMaps:
    return RegionMaps.from_parts(object=np.eye(4), mark=np.zeros((4, 4)))


def _figure() -> Any:
    return plt.figure()


Case = tuple[str, Callable[[SimpleNamespace], object], type[SomprobeError], str]

RAISES: list[Case] = [
    # find_tag_mentions / decode_with_offsets: token ids and arguments
    ("mentions-id-outside-vocab", lambda c: find_tag_mentions(c.tok, [c.vocab + 5]),
     InputError, "outside the tokenizer's vocabulary"),
    ("mentions-negative-id", lambda c: find_tag_mentions(c.tok, [-1, 3]), InputError, "non-negative"),
    ("mentions-2d-ids", lambda c: find_tag_mentions(c.tok, [[1, 2], [3, 4]]), InputError, "1-D"),
    ("mentions-float-ids", lambda c: find_tag_mentions(c.tok, [1.5, 2.0]), InputError, "integers"),
    ("mentions-no-tokenizer", lambda c: find_tag_mentions(None, [1, 2]), InputError, "decode"),
    ("mentions-negative-batch", lambda c: find_tag_mentions(c.tok, [1], batch=-1), InputError, "batch"),
    ("mentions-text-batch", lambda c: find_tag_mentions(c.tok, [1], batch="0"), InputError, "batch"),
    ("mentions-negative-offset", lambda c: find_tag_mentions(c.tok, [1], offset=-1),
     InputError, "offset"),
    ("mentions-unknown-format", lambda c: find_tag_mentions(c.tok, [1], formats=("quoted",)),
     InputError, "format"),
    ("mentions-score-token", lambda c: find_tag_mentions(c.tok, [1], score_token="middle"),
     InputError, "score_token"),
    ("mentions-text-tag-ids", lambda c: find_tag_mentions(c.tok, [1], tag_ids=["1"]),
     InputError, "tag_ids"),
    ("decode-id-outside-vocab", lambda c: decode_with_offsets(c.tok, [c.vocab]),
     InputError, "outside the tokenizer's vocabulary"),
    ("decode-float-ids", lambda c: decode_with_offsets(c.tok, [1.5]), InputError, "integers"),
    ("decode-2d-ids", lambda c: decode_with_offsets(c.tok, [[1, 2]]), InputError, "1-D"),
    ("decode-none", lambda c: decode_with_offsets(c.tok, None), InputError, "token_ids"),
    # score_maps, RegionMaps, region_maps, sink_patches: arrays
    ("maps-nan-attention", lambda c: score_maps(np.full((4, 4), np.nan), _maps()), InputError, "NaN"),
    ("maps-negative-attention", lambda c: score_maps(-np.ones((4, 4)), _maps()),
     InputError, "non-negative"),
    ("maps-wrong-grid", lambda c: score_maps(np.ones((3, 3)), _maps()), InputError, "grid"),
    ("maps-1d-attention", lambda c: score_maps(np.ones(16), _maps()), InputError, "grid"),
    ("maps-k-zero", lambda c: score_maps(np.ones((4, 4)), _maps(), k=0), InputError, "k must"),
    ("maps-k-negative", lambda c: score_maps(np.ones((4, 4)), _maps(), k=-2), InputError, "k must"),
    ("maps-k-fraction", lambda c: score_maps(np.ones((4, 4)), _maps(), k=2.5), InputError, "k must"),
    ("maps-threshold-zero", lambda c: score_maps(np.ones((4, 4)), _maps(), hit_threshold=0),
     InputError, "hit_threshold"),
    ("maps-threshold-nan", lambda c: score_maps(np.ones((4, 4)), _maps(), hit_threshold=np.nan),
     InputError, "hit_threshold"),
    ("maps-target", lambda c: score_maps(np.ones((4, 4)), _maps(), target="box"),
     InputError, "target"),
    ("maps-exclude-shape",
     lambda c: score_maps(np.ones((4, 4)), _maps(), exclude=np.ones((3, 3), bool)),
     InputError, "exclude"),
    ("maps-mark-free-max-negative",
     lambda c: score_maps(np.ones((4, 4)), _maps(), mark_free_max=-0.1),
     InputError, "mark_free_max"),
    ("maps-mark-free-max-above-one",
     lambda c: score_maps(np.ones((4, 4)), _maps(), mark_free_max=1.5),
     InputError, "mark_free_max"),
    ("maps-mark-free-max-word",
     lambda c: score_maps(np.ones((4, 4)), _maps(), mark_free_max="none"),
     InputError, "mark_free_max"),
    ("maps-text-mass-shape",
     lambda c: score_maps(np.ones((2, 4, 4)), _maps(), text_mass=np.ones(3)),
     InputError, "text_mass"),
    ("maps-text-mass-negative",
     lambda c: score_maps(np.ones((4, 4)) / 32, _maps(), text_mass=-0.5),
     InputError, "text_mass"),
    ("maps-extra-mass-inf",
     lambda c: score_maps(np.ones((4, 4)) / 32, _maps(), image_extra_mass=np.inf),
     InputError, "image_extra_mass"),
    ("regionmaps-marks-shape",
     lambda c: RegionMaps.from_parts(object=np.zeros((2, 2)), mark=np.zeros((2, 2)),
                                     marks=np.zeros((3, 3))),
     InputError, "marks"),
    ("regionmaps-marks-above-one",
     lambda c: RegionMaps.from_parts(object=np.zeros((2, 2)), mark=np.zeros((2, 2)),
                                     marks=np.full((2, 2), 1.5)),
     InputError, "marks"),
    ("regionmaps-overlap",
     lambda c: RegionMaps.from_parts(object=np.ones((2, 2)), mark=np.ones((2, 2))),
     InputError, "overlap"),
    ("regionmaps-above-one",
     lambda c: RegionMaps.from_parts(object=np.full((2, 2), 2.0), mark=np.zeros((2, 2))),
     InputError, r"\[0, 1\]"),
    ("regionmaps-nan",
     lambda c: RegionMaps.from_parts(object=np.full((2, 2), np.nan), mark=np.zeros((2, 2))),
     InputError, r"\[0, 1\]"),
    ("regionmaps-shapes",
     lambda c: RegionMaps.from_parts(object=np.zeros((2, 2)), mark=np.zeros((3, 3))),
     InputError, "shape"),
    ("region-maps-mask-size",
     lambda c: region_maps(_odd_mask_tagset(), 1, c.layout.mask_to_patches),
     InputError, "mask has shape"),
    ("sinks-ndim", lambda c: sink_patches(np.ones((4, 4))), InputError, "query, layer, head"),
    ("sinks-no-query", lambda c: sink_patches(np.ones((0, 1, 1, 2, 2))), InputError, "one query"),
    ("sinks-factor-zero", lambda c: sink_patches(np.ones((2, 1, 1, 2, 2)), factor=0),
     InputError, "factor"),
    ("sinks-factor-nan", lambda c: sink_patches(np.ones((2, 1, 1, 2, 2)), factor=np.nan),
     InputError, "factor"),
    ("sinks-nan", lambda c: sink_patches(np.full((2, 1, 1, 2, 2), np.nan)), InputError, "NaN"),
    ("sinks-negative", lambda c: sink_patches(-np.ones((2, 1, 1, 2, 2))),
     InputError, "non-negative"),
    # score_alignment, patch_attention: mentions, trace and TagSets that do not fit
    ("align-missing-column",
     lambda c: score_alignment(c.trace, c.layout, c.tagset, _mentions().drop(columns="tag_id")),
     InputError, "tag_id"),
    ("align-mentions-not-frame", lambda c: score_alignment(c.trace, c.layout, c.tagset, [1, 2]),
     InputError, "DataFrame"),
    ("align-position-not-captured",
     lambda c: score_alignment(c.trace, c.layout, c.tagset, _mentions(scored_positions=[(99,)] * 2)),
     TagMentionError, "not in the trace"),
    ("align-no-positions",
     lambda c: score_alignment(c.trace, c.layout, c.tagset, _mentions(scored_positions=[(), ()])),
     InputError, "no scored positions"),
    ("align-negative-batch",
     lambda c: score_alignment(c.trace, c.layout, [c.tagset], _mentions(batch=-1)),
     InputError, "batch"),
    ("align-batch-without-tagset",
     lambda c: score_alignment(c.trace, c.layout, [c.tagset], _mentions(batch=3)),
     TagMentionError, "no TagSet"),
    ("align-text-tag-id",
     lambda c: score_alignment(c.trace, c.layout, c.tagset, _mentions(tag_id=["a", "b"])),
     InputError, "tag_id"),
    ("align-image-size-mismatch",
     lambda c: score_alignment(c.trace, Layout((10, 8)), c.tagset, _mentions()),
     TagMentionError, "TagSet is for a 8×8 image"),
    ("align-nan-attention",
     lambda c: score_alignment(Trace({(0, 20): _row_with(np.nan), (0, 21): _uniform()}),
                               c.layout, c.tagset, _mentions()),
     InputError, "NaN"),
    ("align-negative-attention",
     lambda c: score_alignment(Trace({(0, 20): _row_with(-0.1), (0, 21): _uniform()}),
                               c.layout, c.tagset, _mentions()),
     InputError, "non-negative"),
    ("align-short-row",
     lambda c: score_alignment(Trace({(0, 20): torch.ones(2, 3, 5), (0, 21): _uniform()}),
                               c.layout, c.tagset, _mentions()),
     CaptureError, "key columns"),
    ("align-layer-count",
     lambda c: score_alignment(Trace({(0, 20): torch.ones(3, 3, KEYS), (0, 21): _uniform()}),
                               c.layout, c.tagset, _mentions()),
     CaptureError, "layer=2"),
    ("align-k-zero", lambda c: score_alignment(c.trace, c.layout, c.tagset, _mentions(), k=0),
     InputError, "k must"),
    ("align-sinks-word",
     lambda c: score_alignment(c.trace, c.layout, c.tagset, _mentions(), sinks="all"),
     InputError, "sinks"),
    ("align-sink-mask-shape",
     lambda c: score_alignment(c.trace, c.layout, c.tagset, _mentions(),
                               sinks=np.zeros((3, 3), bool)),
     InputError, "sink mask"),
    ("align-sink-mask-dtype",
     lambda c: score_alignment(c.trace, c.layout, c.tagset, _mentions(), sinks=np.zeros((4, 4))),
     InputError, "boolean"),
    ("align-sink-factor",
     lambda c: score_alignment(c.trace, c.layout, c.tagset, _mentions(), sinks="auto",
                               sink_factor=0),
     InputError, "factor"),
    ("align-target", lambda c: score_alignment(c.trace, c.layout, c.tagset, _mentions().iloc[:0],
                                               target="box"),
     InputError, "target"),
    ("align-mark-free-max",
     lambda c: score_alignment(c.trace, c.layout, c.tagset, _mentions(), mark_free_max=2),
     InputError, "mark_free_max"),
    ("align-tagset-not-tagset", lambda c: score_alignment(c.trace, c.layout, "x", _mentions()),
     InputError, "not a TagSet"),
    ("patches-position-not-captured", lambda c: patch_attention(c.trace, c.layout, 0, [99]),
     TagMentionError, "not in the trace"),
    ("patches-no-positions", lambda c: patch_attention(c.trace, c.layout, 0, []),
     InputError, "no scored positions"),
    # aggregates
    ("by-layer-no-layer", lambda c: aggregate_by_layer(c.scores.drop(columns="layer")),
     InputError, "layer"),
    ("by-layer-no-scores",
     lambda c: aggregate_by_layer(c.scores[["batch", "mention", "layer", "head"]]),
     InputError, "score column"),
    ("by-layer-not-frame", lambda c: aggregate_by_layer([1, 2]), InputError, "DataFrame"),
    ("by-head-no-head", lambda c: aggregate_by_head(c.scores.drop(columns="head")),
     InputError, "head"),
    # statistics
    ("compare-missing-metric",
     lambda c: compare_models(c.per, c.per.drop(columns="lift_object"), "lift_object",
                              pair_on=["batch", "mention"], cluster="batch"),
     InputError, "lacks column"),
    ("compare-duplicate-keys",
     lambda c: compare_models(c.scores, c.scores, "lift_object", pair_on=["batch", "mention"],
                              cluster="batch"),
     InputError, "several rows"),
    ("compare-zero-resamples",
     lambda c: compare_models(c.per, c.per_b, "lift_object", pair_on=["batch", "mention"],
                              cluster="batch", n_resamples=0),
     InputError, "n_resamples"),
    ("compare-negative-resamples",
     lambda c: compare_models(c.per, c.per_b, "lift_object", pair_on=["batch", "mention"],
                              cluster="batch", n_resamples=-5),
     InputError, "n_resamples"),
    ("compare-zero-permutations",
     lambda c: compare_models(c.per, c.per_b, "lift_object", pair_on=["batch", "mention"],
                              cluster="batch", n_permutations=0),
     InputError, "n_permutations"),
    ("compare-ci-method",
     lambda c: compare_models(c.per, c.per, "lift_object", pair_on=["batch", "mention"],
                              cluster="batch", ci_method="jackknife"),
     InputError, "ci_method"),
    ("compare-alternative",
     lambda c: compare_models(c.per, c.per_b, "lift_object", pair_on=["batch", "mention"],
                              cluster="batch", alternative="up"),
     InputError, "alternative"),
    ("compare-correction",
     lambda c: compare_models(c.per, c.per, "lift_object", pair_on=["batch", "mention"],
                              cluster="batch", correction="bonferroni"),
     InputError, "correction"),
    ("compare-confidence",
     lambda c: compare_models(c.per, c.per, "lift_object", pair_on=["batch", "mention"],
                              cluster="batch", confidence=95),
     InputError, "confidence"),
    ("compare-no-metric",
     lambda c: compare_models(c.per, c.per, [], cluster="batch"), InputError, "metric"),
    ("compare-text-metric",
     lambda c: compare_models(c.per, c.per, "label", pair_on=["batch", "mention"],
                              cluster="batch"),
     InputError, "numeric"),
    ("compare-empty",
     lambda c: compare_models(c.per.iloc[:0], c.per.iloc[:0], "lift_object",
                              pair_on=["batch", "mention"], cluster="batch"),
     InputError, "no rows"),
    ("compare-by-pair-overlap",
     lambda c: compare_models(c.per, c.per, "lift_object", by=["batch"], pair_on=["batch"],
                              cluster=None),
     InputError, "must not share"),
    ("compare-no-cluster",
     lambda c: compare_models(c.per, c.per_b, "lift_object", pair_on=["batch", "mention"]),
     InputError, "cluster=None"),
    ("compare-missing-cluster-column",
     lambda c: compare_models(c.per, c.per_b, "lift_object", pair_on=["batch", "mention"],
                              cluster="image"),
     InputError, "cluster column 'image'"),
    ("compare-cluster-differs-between-tables",
     lambda c: compare_models(c.per.assign(image="img0"), c.per_b.assign(image="img1"),
                              "lift_object", pair_on=["batch", "mention"], cluster="image"),
     InputError, "different cluster"),
    ("compare-cluster-differs-between-groups",
     lambda c: compare_models(c.per.assign(image=c.per["layer"]), c.per_b.assign(image=0),
                              "lift_object", pair_on=["batch", "mention"], cluster="image"),
     InputError, "several clusters"),
    ("compare-cluster-nan",
     lambda c: compare_models(c.per.assign(image=np.nan), c.per_b.assign(image=np.nan),
                              "lift_object", pair_on=["batch", "mention"], cluster="image"),
     InputError, "missing cluster"),
    ("compare-cluster-in-by",
     lambda c: compare_models(c.per, c.per_b, "lift_object", by=["layer", "batch"],
                              pair_on=["mention"], cluster="batch"),
     InputError, "cluster"),
    ("compare-cluster-not-a-name",
     lambda c: compare_models(c.per, c.per_b, "lift_object", pair_on=["batch", "mention"],
                              cluster=["batch"]),
     InputError, "cluster"),
    ("compare-not-a-frame",
     lambda c: compare_models(c.per.to_dict(), c.per_b, "lift_object",
                              pair_on=["batch", "mention"], cluster="batch"),
     InputError, "DataFrame"),
    ("paired-lengths", lambda c: paired_test(np.ones(3), np.ones(4)), InputError, "one length"),
    ("paired-nan", lambda c: paired_test(np.array([1.0, np.nan, 2.0]), np.array([2.0, 3.0, 1.0])),
     InputError, "NaN"),
    ("paired-zero-resamples",
     lambda c: paired_test(np.array([1.0, 0.0, 2.0]), np.array([2.0, 3.0, 1.0]), n_resamples=0),
     InputError, "n_resamples"),
    ("paired-confidence",
     lambda c: paired_test(np.array([1.0, 0.0, 2.0]), np.array([2.0, 3.0, 1.0]), confidence=2),
     InputError, "confidence"),
    ("adjust-method", lambda c: adjust_pvalues([0.1], "x"), InputError, "correction"),
    ("adjust-out-of-range", lambda c: adjust_pvalues([-0.1, 2.0]), InputError, r"\[0, 1\]"),
    ("adjust-max-t", lambda c: adjust_pvalues([0.1], "maxT"), InputError, "compare_scores"),
    # figures
    ("curves-no-model", lambda c: plot_layer_curves({}), InputError, "at least one model"),
    ("curves-missing-column",
     lambda c: plot_layer_curves({"a": c.per.drop(columns="lift_object")}, ["lift_object"]),
     InputError, "lift_object"),
    ("curves-default-missing-column",
     lambda c: plot_layer_curves({"a": c.per.drop(columns="lift_object_markfree")}),
     InputError, "lift_object_markfree"),
    ("curves-absolute-missing-mass",
     lambda c: plot_layer_curves({"a": c.per.drop(columns="mass_object")},
                                 ["image_share_object"], absolute=True),
     InputError, "mass_object"),
    ("curves-chance-column-missing",
     lambda c: plot_layer_curves({"a": c.per}, ["topk_hit"], chance_lines={"topk_hit": "x"}),
     InputError, "'x'"),
    ("curves-chance-metric-not-plotted",
     lambda c: plot_layer_curves({"a": c.per}, ["topk_hit"], chance_lines={"auroc": "chance_auroc"}),
     InputError, "not plotted"),
    ("curves-chance-not-mapping",
     lambda c: plot_layer_curves({"a": c.per}, ["topk_hit"], chance_lines="chance_topk"),
     InputError, "mapping"),
    ("curves-empty-scores", lambda c: plot_layer_curves({"a": c.per.iloc[:0]}),
     InputError, "no rows"),
    ("curves-no-metric", lambda c: plot_layer_curves({"a": c.per}, []), InputError, "metric"),
    ("head-map-missing-column", lambda c: plot_layer_head_map(c.scores.drop(columns="head")),
     InputError, "head"),
    ("head-map-empty", lambda c: plot_layer_head_map(c.scores.iloc[:0]), InputError, "no rows"),
    ("top-patches-no-maps", lambda c: plot_top_patches(c.image, {}, c.layout, c.tagset),
     InputError, "no attention maps"),
    ("top-patches-unknown-tag",
     lambda c: plot_top_patches(c.image, {"a": {9: np.ones((4, 4))}}, c.layout, c.tagset),
     InputError, "no tag 9"),
    ("top-patches-map-shape",
     lambda c: plot_top_patches(c.image, {"a": {1: np.ones((3, 3))}}, c.layout, c.tagset),
     InputError, "grid"),
    ("top-patches-k-zero",
     lambda c: plot_top_patches(c.image, {"a": {1: np.ones((4, 4))}}, c.layout, c.tagset, k=0),
     InputError, "k must"),
    ("top-patches-image-size",
     lambda c: plot_top_patches(Image.new("RGB", (20, 8)), {"a": {1: np.ones((4, 4))}}, c.layout,
                                c.tagset),
     InputError, "20×8"),
    ("save-under-a-file", lambda c: save_figure(_figure(), c.tmp / "a_file" / "fig.png"),
     WriteError, "a_file"),
    ("save-onto-a-folder", lambda c: save_figure(_figure(), c.tmp), WriteError, "folder"),
    ("save-not-a-figure", lambda c: save_figure(None, c.tmp / "fig.png"), InputError, "Figure"),
    # answer_mentions
    ("answers-lengths",
     lambda c: answer_mentions(c.tok, torch.zeros(2, 5, dtype=torch.long), [(0, 5)], [c.tagset] * 2),
     InputError, "spans"),
    ("answers-span-past-end",
     lambda c: answer_mentions(c.tok, torch.zeros(1, 5, dtype=torch.long), [(3, 99)], [c.tagset]),
     InputError, "span"),
    ("answers-span-reversed",
     lambda c: answer_mentions(c.tok, torch.zeros(1, 5, dtype=torch.long), [(4, 2)], [c.tagset]),
     InputError, "span"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("call", "error", "match"), [pytest.param(c, e, m, id=i) for i, c, e, m in RAISES]
)
def test_hostile_input_raises_a_somprobe_error(
    ctx: SimpleNamespace, call: Callable[[SimpleNamespace], object], error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        call(ctx)
    plt.close("all")


def _empty_mentions(c: SimpleNamespace) -> None:
    df = find_tag_mentions(c.tok, [])
    assert df.empty and list(df.columns) == list(MENTION_COLUMNS)


def _zero_attention(c: SimpleNamespace) -> None:
    # all-zero attention has no shares: NaN, not a division warning or a made-up number;
    # its masses are 0 and, as the rest of a softmax row, the text took it all
    s = score_maps(np.zeros((4, 4)), _maps())
    assert np.isnan(s["image_share_object"]) and np.isnan(s["lift_object"])
    assert s["mass_image"] == 0.0 and s["mass_object"] == 0.0 and s["mass_text"] == 1.0
    assert np.isnan(s["sink_share"])


def _hallucinated_tag(c: SimpleNamespace) -> None:
    trace = Trace({(0, 20): _uniform(), (0, 21): _uniform()})
    df = score_alignment(trace, c.layout, c.tagset, _mentions(tag_id=[1, 7]))
    own = df[df["tag_id"] == 7]
    assert own["hallucinated"].all() and own["image_share_object"].isna().all()
    assert own["mass_object"].isna().all() and own["mass_object_markfree"].isna().all()
    assert own["topk_hit"].isna().all() and own["chance_topk"].isna().all()
    assert not own["image_share_other"].isna().any() and not own["mass_other"].isna().any()
    assert (own["n_target"] == 0).all()


def _no_mentions(c: SimpleNamespace) -> None:
    df = score_alignment(c.trace, c.layout, c.tagset, _mentions().iloc[:0])
    assert df.empty and set(SCORE_COLUMNS) <= set(df.columns) and "sink_rule" in df.columns


def _no_target_patch(c: SimpleNamespace) -> None:
    # a tag whose object is all under its mark: no target patch, so NaN (never 0) and
    # not counted in the aggregate's n
    mask = np.zeros((8, 8), bool)
    mask[:2, :2] = True
    ts = TagSet([Tag(1, "1", mask, mask, (1.0, 1.0), (0, 0, 2, 2)), _tagset().tags[1]], (8, 8))
    df = score_alignment(c.trace, c.layout, ts, _mentions())
    one = df[df["tag_id"] == 1]
    assert one[["topk_hit", "topk_any", "pointing", "auroc"]].isna().all().all()
    assert (one["n_target"] == 0).all()
    by_layer = aggregate_by_layer(df)
    assert (by_layer["n_mentions"] == 2).all() and (by_layer["n_topk_hit"] == 1).all()


def _too_few_tags_for_auto_sinks(c: SimpleNamespace) -> None:
    # two tags cannot hold the median rule: "auto" excludes nothing and says so
    assert (c.scores["sink_rule"] == "skipped").all() and (c.scores["n_excluded"] == 0).all()
    off = score_alignment(c.trace, c.layout, c.tagset, _mentions(), sinks=None)
    assert (off["sink_rule"] == "none").all()


def _empty_aggregates(c: SimpleNamespace) -> None:
    assert aggregate_by_layer(c.scores.iloc[:0]).empty
    assert aggregate_by_head(c.scores.iloc[:0]).empty


def _paired_nothing(c: SimpleNamespace) -> None:
    r = paired_test(np.array([]), np.array([]))
    assert r["n_pairs"] == 0 and np.isnan(r["p_value"]) and np.isnan(r["ci_low"])


def _unmatched_rows(c: SimpleNamespace) -> None:
    out = compare_models(
        c.per, c.per_b.iloc[:2], "lift_object", pair_on=["batch", "mention"], cluster="batch"
    )
    assert (out["n_unmatched_a"] > 0).any() and (out["n_pairs"] >= 0).all()


def _independent_pairs(c: SimpleNamespace) -> None:
    # cluster=None: the caller declares the pairs independent; each pair is its own cluster
    out = compare_models(c.per, c.per_b, "lift_object", pair_on=["batch", "mention"], cluster=None)
    assert (out["n_clusters"] == out["n_pairs"]).all()


def _nan_pvalues(c: SimpleNamespace) -> None:
    out = adjust_pvalues([0.01, np.nan, 0.04])
    assert np.isnan(out[1]) and out[0] == pytest.approx(0.02)


DOCUMENTED: list[tuple[str, Callable[[SimpleNamespace], None]]] = [
    ("mentions-of-no-tokens-are-an-empty-table", _empty_mentions),
    ("zero-attention-gives-nan-shares", _zero_attention),
    ("hallucinated-tag-keeps-rows-with-nan-own-scores", _hallucinated_tag),
    ("no-mentions-give-an-empty-score-table", _no_mentions),
    ("no-target-patch-gives-nan-not-zero", _no_target_patch),
    ("auto-sinks-on-too-few-tags-are-skipped-and-said", _too_few_tags_for_auto_sinks),
    ("empty-scores-aggregate-to-empty-tables", _empty_aggregates),
    ("no-pairs-give-nan-statistics", _paired_nothing),
    ("unmatched-rows-are-counted-not-tested", _unmatched_rows),
    ("cluster-none-makes-every-pair-its-own-cluster", _independent_pairs),
    ("nan-pvalues-stay-nan", _nan_pvalues),
]


@pytest.mark.parametrize("check", [pytest.param(f, id=i) for i, f in DOCUMENTED])
def test_edge_input_behaves_as_documented(
    ctx: SimpleNamespace, check: Callable[[SimpleNamespace], None]
) -> None:
    check(ctx)


# ------------------------------------------------------------------ the recipes, on a model


def _toy(n: int = 2) -> list[TaggedImage]:
    from somprobe.data.toyworld import WorldConfig, make_scene, tag_scene

    return [tag_scene(make_scene(WorldConfig(), (0, 1, i))) for i in range(n)]


def _shrunk() -> TaggedImage:
    item = _toy(1)[0]
    return TaggedImage(item.image.resize((60, 60)), item.tagset)


ModelCase = tuple[str, Callable[[Any, Any], object], type[SomprobeError], str]

MODEL_RAISES: list[ModelCase] = [
    ("listing-batch-size-zero",
     lambda m, p: listing_alignment(m, p, _toy(), batch_size=0, progress=False),
     InputError, "batch_size"),
    ("listing-k-zero", lambda m, p: listing_alignment(m, p, _toy(), k=0, progress=False),
     InputError, "k must"),
    ("listing-target", lambda m, p: listing_alignment(m, p, _toy(), target="box", progress=False),
     InputError, "target"),
    ("listing-mark-free-max",
     lambda m, p: listing_alignment(m, p, _toy(), mark_free_max=-1, progress=False),
     InputError, "mark_free_max"),
    ("listing-hit-threshold",
     lambda m, p: listing_alignment(m, p, _toy(), hit_threshold=0, progress=False),
     InputError, "hit_threshold"),
    ("listing-no-new-tokens",
     lambda m, p: listing_alignment(m, p, _toy(), mode="generated", max_new_tokens=0,
                                    progress=False),
     InputError, "max_new_tokens"),
    ("listing-mode", lambda m, p: listing_alignment(m, p, _toy(), mode="free", progress=False),
     InputError, "mode"),
    ("listing-no-images", lambda m, p: listing_alignment(m, p, [], progress=False),
     InputError, "no tagged images"),
    ("listing-one-item-not-a-list",
     lambda m, p: listing_alignment(m, p, _toy(1)[0], progress=False),
     InputError, "TaggedImage"),
    ("listing-image-size-mismatch", lambda m, p: listing_alignment(m, p, [_shrunk()], progress=False),
     InputError, "60×60"),
    ("listing-image-ids",
     lambda m, p: listing_alignment(m, p, _toy(), image_ids=["a"], progress=False),
     InputError, "image ids"),
    ("listing-layer-out-of-range",
     lambda m, p: listing_alignment(m, p, _toy(), layers=[99], progress=False),
     CaptureError, "layer 99"),
    ("forced-answers-length",
     lambda m, p: teacher_forced_listing(m, p, _toy(), answers=["1. x"]),
     InputError, "answers"),
    ("forced-image-size-mismatch", lambda m, p: teacher_forced_listing(m, p, [_shrunk()]),
     InputError, "60×60"),
    ("forced-no-images", lambda m, p: teacher_forced_listing(m, p, []), InputError, "no"),
    ("maps-layer-out-of-range", lambda m, p: tag_attention_maps(m, p, _toy(1)[0], 99),
     CaptureError, "layer 99"),
    ("maps-image-size-mismatch", lambda m, p: tag_attention_maps(m, p, _shrunk(), 0),
     InputError, "60×60"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("call", "error", "match"), [pytest.param(c, e, m, id=i) for i, c, e, m in MODEL_RAISES]
)
def test_hostile_recipe_input_raises_a_somprobe_error(
    tiny_llava: Any, call: Callable[[Any, Any], object], error: type, match: str
) -> None:
    model, processor = tiny_llava
    with pytest.raises(error, match=match):
        call(model, processor)


def test_answers_naming_no_tag_give_no_mentions_and_no_scores(tiny_llava: Any) -> None:
    model, processor = tiny_llava
    scores, mentions = listing_alignment(
        model, processor, _toy(), answers=["nothing here", "none"], progress=False
    )
    assert scores.empty and mentions.empty
