"""Hostile inputs to the public functions of ``somprobe.probes`` (its ``__all__``).

Each case in ``RAISES`` must raise the named :class:`~somprobe.errors.SomprobeError`
subclass with a message matching the pattern; each case in ``DOCUMENTED`` must behave as
the function's docstring says.
"""

from __future__ import annotations

import dataclasses
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
from somprobe_testing import Pieces

from somprobe.errors import (
    DataFormatError,
    InputError,
    ProbeError,
    SomprobeError,
    TagMentionError,
)
from somprobe.probes import (
    ProbeDataset,
    ProbeResult,
    binding_partners,
    build_probe_dataset,
    build_probe_datasets,
    compare_probes,
    control_labels,
    fit_logistic,
    fit_ridge,
    fit_standardizer,
    group_folds,
    holdout_mask,
    listing_order,
    listing_positions,
    majority_class,
    number_features,
    plot_probe_curves,
    predict_logits,
    probe_layers,
    region_targets,
    run_probes,
    spectral_preconditioner,
)
from somprobe.tagging import Tag, TagSet

N, IMAGES = 60, 20
Y = np.tile(["red", "blue", "green"], IMAGES)
GROUPS = np.repeat(np.arange(IMAGES), 3)
FAST = {"n_folds": 3, "n_boot": 5, "lambdas": [1e-2], "ridge_lambdas": [1.0]}


class Stub:
    """A capture stand-in: ``hidden(batch, position)`` is ``[2 layers, 3 dims]``."""

    def __init__(self, queries: pd.DataFrame | None = None, width: int = 3) -> None:
        self.layers = [0, 1]
        self.width = width
        if queries is not None:
            self.queries = queries

    def hidden(self, batch: int, position: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(100 * batch + position)
        return torch.randn(2, self.width, generator=g)


class Lossy(Stub):
    """A capture whose ``hidden`` raises KeyError for a position it does not hold."""

    def hidden(self, batch: int, position: int) -> torch.Tensor:
        raise KeyError(position)


class Flat(Stub):
    """A capture whose ``hidden`` returns one flat vector instead of ``[layer, dim]``."""

    def hidden(self, batch: int, position: int) -> torch.Tensor:
        return torch.ones(6)


class Widening(Stub):
    """A capture whose hidden states change width from one position to the next."""

    def hidden(self, batch: int, position: int) -> torch.Tensor:
        return torch.ones(2, 3 + position % 2)


class NaNs(Stub):
    def hidden(self, batch: int, position: int) -> torch.Tensor:
        return torch.full((2, 3), float("nan"))


def _tagset(meta: dict[str, Any] | None = None, mask_shape: tuple[int, int] = (4, 8)) -> TagSet:
    tags = []
    for i in (1, 2):
        mask = np.zeros(mask_shape, bool)
        mask[: 1 + i, : 2 * i] = True
        colour = ["red", "blue"][i - 1]
        meta_i = {"colour": colour, **(meta or {})}
        tags.append(Tag(i, str(i), mask, mask, (1.0, 1.0), (0, 0, 1, 1), "cat", metadata=meta_i))
    return TagSet(tags, (8, 4))


def _mentions(**change: Any) -> pd.DataFrame:
    return pd.DataFrame({"batch": [0, 0], "position": [5, 6], "tag_id": [1, 2]}).assign(**change)


def _features(n: int = N, d: int = 5) -> torch.Tensor:
    return torch.randn(2, n, d, generator=torch.Generator().manual_seed(0))


def _dataset(n_images: int = IMAGES) -> ProbeDataset:
    tagsets = [_tagset()] * n_images
    rows = [(b, t) for b in range(n_images) for t in (1, 2)]
    mentions = pd.DataFrame(
        {
            "batch": [b for b, _ in rows],
            "position": range(len(rows)),
            "tag_id": [t for _, t in rows],
        }
    )
    return build_probe_dataset(Stub(), mentions, tagsets)


def _one_object_image() -> ProbeDataset:
    """Twenty images with tags 1 and 2 (two categories), then one image with tag 1 only."""
    first, second = _tagset().tags
    tagset = TagSet([first, dataclasses.replace(second, category="dog")], (8, 4))
    rows = [(b, t) for b in range(IMAGES) for t in (1, 2)] + [(IMAGES, 1)]
    mentions = pd.DataFrame(
        {
            "batch": [b for b, _ in rows],
            "position": range(len(rows)),
            "tag_id": [t for _, t in rows],
        }
    )
    return build_probe_dataset(Stub(), mentions, [tagset] * (IMAGES + 1))


LISTING = Pieces(["1", ".", " red", "\n", "2", ".", " blue"])
LISTING_IDS = torch.arange(7)[None]


def _listing_mentions(**change: Any) -> pd.DataFrame:
    return pd.DataFrame(
        {"batch": [0, 0], "tag_id": [1, 2], "span_start": [0, 4], "span_end": [1, 5],
         "position": [0, 4]}
    ).assign(**change)  # fmt: skip


def _positioned() -> pd.DataFrame:
    return _mentions(position_number=[5, 6], position_dot=[7, 8], position_attribute=[9, 10])


def _result(per_sample: Callable[[pd.DataFrame], pd.DataFrame] = lambda df: df) -> ProbeResult:
    res = probe_layers(_features(), {"colour": Y}, GROUPS, **FAST)
    return ProbeResult(res.scores, per_sample(res.per_sample), res.cv)


@pytest.fixture(scope="module")
def ctx() -> SimpleNamespace:
    X = _features()
    weights = torch.ones(1, N)
    return SimpleNamespace(
        X=X,
        y=torch.as_tensor(np.unique(Y, return_inverse=True)[1])[None],
        weights=weights,
        lam=torch.full((2, 1), 1e-2),
        st=fit_standardizer(X, weights),
        result=_result(),
        dataset=_dataset(),
    )


def _logistic(c: SimpleNamespace, **change: Any) -> object:
    args = {"X": c.X, "y": c.y, "weights": c.weights, "lam": c.lam, "n_classes": 3, **change}
    return fit_logistic(**args)


Case = tuple[str, Callable[[SimpleNamespace], object], type[SomprobeError], str]

RAISES: list[Case] = [
    # build_probe_dataset: mentions, TagSets and captures that do not fit
    ("dataset-missing-column",
     lambda c: build_probe_dataset(Stub(), _mentions().drop(columns="position"), [_tagset()]),
     TagMentionError, "need columns"),
    ("dataset-no-mentions", lambda c: build_probe_dataset(Stub(), _mentions().iloc[:0], [_tagset()]),
     TagMentionError, "empty"),
    ("dataset-mentions-not-frame", lambda c: build_probe_dataset(Stub(), [1, 2], [_tagset()]),
     InputError, "DataFrame"),
    ("dataset-batch-out-of-range",
     lambda c: build_probe_dataset(Stub(), _mentions(batch=3), [_tagset()]),
     TagMentionError, "batch item 3"),
    ("dataset-negative-batch",
     lambda c: build_probe_dataset(Stub(), _mentions(batch=-1), [_tagset()]),
     TagMentionError, "batch"),
    ("dataset-tag-not-on-image",
     lambda c: build_probe_dataset(Stub(), _mentions(tag_id=7), [_tagset()]),
     TagMentionError, "names tag 7"),
    ("dataset-negative-position",
     lambda c: build_probe_dataset(Stub(), _mentions(position=-3), [_tagset()]),
     TagMentionError, "position"),
    ("dataset-fractional-position",
     lambda c: build_probe_dataset(Stub(), _mentions(position=5.7), [_tagset()]),
     TagMentionError, "whole"),
    ("dataset-text-position",
     lambda c: build_probe_dataset(Stub(), _mentions(position="a"), [_tagset()]),
     TagMentionError, "position"),
    ("dataset-no-tagsets", lambda c: build_probe_dataset(Stub(), _mentions(), []),
     TagMentionError, "0 TagSets"),
    ("dataset-image-ids", lambda c: build_probe_dataset(Stub(), _mentions(), [_tagset()], [1, 2]),
     InputError, "image ids"),
    ("dataset-trace-without-hidden", lambda c: build_probe_dataset(object(), _mentions(), [_tagset()]),
     InputError, "hidden"),
    ("dataset-hidden-raises", lambda c: build_probe_dataset(Lossy(), _mentions(), [_tagset()]),
     TagMentionError, "position 5"),
    ("dataset-position-not-captured",
     lambda c: build_probe_dataset(Stub(pd.DataFrame({"batch": [0], "position": [5]})),
                                   _mentions(), [_tagset()]),
     TagMentionError, "did not capture"),
    ("dataset-hidden-shape", lambda c: build_probe_dataset(Flat(), _mentions(), [_tagset()]),
     TagMentionError, "expected"),
    ("dataset-hidden-widths", lambda c: build_probe_dataset(Widening(), _mentions(), [_tagset()]),
     TagMentionError, "different widths"),
    ("dataset-nan-hidden", lambda c: build_probe_dataset(NaNs(), _mentions(), [_tagset()]),
     ProbeError, "NaN"),
    ("dataset-mask-size",
     lambda c: build_probe_dataset(Stub(), _mentions(), [_tagset(mask_shape=(3, 3))]),
     DataFormatError, "mask has shape"),
    ("dataset-metadata-clash",
     lambda c: build_probe_dataset(Stub(), _mentions(), [_tagset({"area": 1, "meta_area": 2})]),
     DataFormatError, "clash"),
    ("dataset-table-mismatch", lambda c: ProbeDataset(c.X, pd.DataFrame({"a": [1]}), [0, 1]),
     InputError, "must match"),
    # probe_layers: features, targets and options
    ("layers-2d-features", lambda c: probe_layers(c.X[0], {"colour": Y}, GROUPS),
     ProbeError, r"\[layer, sample, dim\]"),
    ("layers-single-class", lambda c: probe_layers(c.X, {"colour": np.full(N, "red")}, GROUPS),
     ProbeError, "single class"),
    ("layers-one-image", lambda c: probe_layers(c.X, {"colour": Y}, np.zeros(N), **FAST),
     ProbeError, "one image"),
    ("layers-fewer-images-than-folds",
     lambda c: probe_layers(c.X, {"colour": Y}, np.repeat(np.arange(3), 20), n_folds=5),
     ProbeError, "grouped folds"),
    ("layers-two-samples",
     lambda c: probe_layers(_features(2), {"colour": np.array(["a", "b"])}, [0, 1]),
     ProbeError, "grouped folds"),
    ("layers-zero-folds", lambda c: probe_layers(c.X, {"colour": Y}, GROUPS, n_folds=0),
     ProbeError, "n_folds"),
    ("layers-negative-boot", lambda c: probe_layers(c.X, {"colour": Y}, GROUPS, n_boot=-1),
     ProbeError, "n_boot"),
    ("layers-ci", lambda c: probe_layers(c.X, {"colour": Y}, GROUPS, ci=1.5), ProbeError, "ci"),
    ("layers-test-size", lambda c: probe_layers(c.X, {"colour": Y}, GROUPS, test_size=0),
     ProbeError, "test_size"),
    ("layers-nan-features",
     lambda c: probe_layers(torch.full((2, N, 5), float("nan")), {"colour": Y}, GROUPS),
     ProbeError, "NaN"),
    ("layers-no-samples", lambda c: probe_layers(_features(0), {"colour": Y[:0]}, GROUPS[:0]),
     ProbeError, "no samples"),
    ("layers-no-dims", lambda c: probe_layers(_features(d=0), {"colour": Y}, GROUPS),
     ProbeError, "dim"),
    ("layers-no-targets", lambda c: probe_layers(c.X, {}, GROUPS), ProbeError, "no targets"),
    ("layers-target-length", lambda c: probe_layers(c.X, {"colour": Y[:5]}, GROUPS),
     ProbeError, "5 values"),
    ("layers-constant-regression", lambda c: probe_layers(c.X, {"area": np.ones(N)}, GROUPS),
     ProbeError, "constant"),
    ("layers-missing-regression",
     lambda c: probe_layers(c.X, {"area": np.r_[np.nan, np.arange(N - 1.0)]}, GROUPS),
     ProbeError, "missing"),
    ("layers-unknown-kind",
     lambda c: probe_layers(c.X, {"colour": Y}, GROUPS, kinds={"colour": "ranking"}),
     ProbeError, "kind"),
    ("layers-text-regression",
     lambda c: probe_layers(c.X, {"colour": Y}, GROUPS, kinds={"colour": "regression"}),
     ProbeError, "numeric"),
    ("layers-negative-lambdas",
     lambda c: probe_layers(c.X, {"colour": Y}, GROUPS, lambdas=[-1.0]), ProbeError, "lambdas"),
    ("layers-empty-lambdas", lambda c: probe_layers(c.X, {"colour": Y}, GROUPS, lambdas=[]),
     ProbeError, "lambdas"),
    ("layers-negative-ridge-lambdas",
     lambda c: probe_layers(c.X, {"area": np.arange(N, dtype=float)}, GROUPS, ridge_lambdas=[-1.0]),
     ProbeError, "ridge_lambdas"),
    ("layers-zero-iterations", lambda c: probe_layers(c.X, {"colour": Y}, GROUPS, max_iter=0),
     ProbeError, "max_iter"),
    ("layers-negative-tol", lambda c: probe_layers(c.X, {"colour": Y}, GROUPS, tol=-1.0),
     ProbeError, "tol"),
    ("layers-zero-rank", lambda c: probe_layers(c.X, {"colour": Y}, GROUPS, rank=0, **FAST),
     ProbeError, "rank"),
    ("layers-zero-chunk", lambda c: probe_layers(c.X, {"colour": Y}, GROUPS, layer_chunk=0),
     ProbeError, "layer_chunk"),
    ("layers-negative-chunk", lambda c: probe_layers(c.X, {"colour": Y}, GROUPS, layer_chunk=-1),
     ProbeError, "layer_chunk"),
    ("layers-tag-ids-length", lambda c: probe_layers(c.X, {"colour": Y}, GROUPS, tag_ids=[1, 2]),
     ProbeError, "tag ids"),
    ("layers-groups-length", lambda c: probe_layers(c.X, {"colour": Y}, GROUPS[:10]),
     ProbeError, "groups"),
    ("layers-layer-labels", lambda c: probe_layers(c.X, {"colour": Y}, GROUPS, layers=[0]),
     ProbeError, "layer labels"),
    # run_probes
    ("run-unknown-target", lambda c: run_probes(c.dataset, ["smell"]),
     ProbeError, "not sample columns"),
    ("run-no-targets", lambda c: run_probes(c.dataset, []), ProbeError, "no targets"),
    ("run-single-class", lambda c: run_probes(c.dataset, ["category"]), ProbeError, "single class"),
    ("run-unknown-option", lambda c: run_probes(c.dataset, ["colour"], nfolds=3),
     ProbeError, "nfolds"),
    ("run-not-a-dataset", lambda c: run_probes(pd.DataFrame(), ["colour"]),
     ProbeError, "ProbeDataset"),
    ("run-too-few-images", lambda c: run_probes(_dataset(3), ["colour"], n_folds=5),
     ProbeError, "grouped folds"),
    # run_probes' controls
    ("run-unknown-control", lambda c: run_probes(c.dataset, ["colour"], controls=["contorl"]),
     ProbeError, "unknown control"),
    ("run-controls-not-a-list", lambda c: run_probes(c.dataset, ["colour"], controls="binding"),
     ProbeError, "sequence of names"),
    ("run-control-false-and-controls",
     lambda c: run_probes(c.dataset, ["colour"], control=False, controls=["binding"]),
     ProbeError, "control=False"),
    ("run-binding-one-object-image",
     lambda c: run_probes(_one_object_image(), ["colour"], controls=["binding"], **FAST),
     ProbeError, "one object"),
    ("run-binding-mode",
     lambda c: run_probes(c.dataset, ["colour"], controls=["binding"], binding="previous"),
     ProbeError, "binding"),
    ("run-control-key-not-a-column",
     lambda c: run_probes(c.dataset, ["colour"], control_key="smell"), ProbeError, "smell"),
    ("run-control-one-category", lambda c: run_probes(c.dataset, ["colour"], **FAST),
     ProbeError, "one value"),
    ("run-control-missing-category",
     lambda c: run_probes(ProbeDataset(c.dataset.features, c.dataset.samples.assign(
         category=None), c.dataset.layers), ["colour"], **FAST),
     ProbeError, "missing"),
    # probe_layers' controls
    ("layers-control-keys-length",
     lambda c: probe_layers(c.X, {"colour": Y}, GROUPS, control_keys={"control": [1, 2]}),
     ProbeError, "2 keys"),
    ("layers-control-twice",
     lambda c: probe_layers(c.X, {"colour": Y}, GROUPS, tag_ids=GROUPS,
                            control_keys={"control": GROUPS}),
     ProbeError, "twice"),
    ("layers-partners-out-of-range",
     lambda c: probe_layers(c.X, {"colour": Y}, GROUPS, partners={"binding": np.full(N, N)}),
     ProbeError, "out of range"),
    ("layers-partners-other-image",
     lambda c: probe_layers(c.X, {"colour": Y}, GROUPS,
                            partners={"binding": (np.arange(N) + 3) % N}),
     ProbeError, "same image"),
    ("layers-baseline-features-rows",
     lambda c: probe_layers(c.X, {"colour": Y}, GROUPS, baseline_features={"n": np.ones((3, 2))}),
     ProbeError, "rows"),
    ("layers-baseline-features-nan",
     lambda c: probe_layers(c.X, {"colour": Y}, GROUPS,
                            baseline_features={"n": np.full((N, 2), np.nan)}),
     ProbeError, "NaN"),
    ("layers-probe-name-taken",
     lambda c: probe_layers(c.X, {"colour": Y}, GROUPS, partners={"task": np.arange(N)}),
     ProbeError, "reserved"),
    # compare_probes
    ("compare-no-shared-samples",
     lambda c: compare_probes(c.result, _result(lambda df: df.assign(sample_id=-1))),
     ProbeError, "share no test samples"),
    ("compare-negative-boot", lambda c: compare_probes(c.result, c.result, n_boot=-1),
     ProbeError, "n_boot"),
    ("compare-ci", lambda c: compare_probes(c.result, c.result, ci=2.0), ProbeError, "ci"),
    ("compare-missing-column",
     lambda c: compare_probes(c.result, _result(lambda df: df.drop(columns="group"))),
     ProbeError, "group"),
    ("compare-one-name", lambda c: compare_probes(c.result, c.result, names=("a",)),
     ProbeError, "names"),
    ("compare-other-images",
     lambda c: compare_probes(c.result, _result(lambda df: df.assign(group="x"))),
     ProbeError, "different images"),
    # controls, splits, region targets
    ("control-lengths", lambda c: control_labels(np.array([1, 2]), np.array([0])),
     ProbeError, "one label per"),
    ("binding-one-object", lambda c: binding_partners(np.array(["a", "b", "b"]), np.array([1, 1, 2])),
     ProbeError, "one object"),
    ("binding-mode", lambda c: binding_partners(GROUPS, GROUPS, mode="prev"), ProbeError, "mode"),
    ("binding-lengths", lambda c: binding_partners(GROUPS, GROUPS[:3]), ProbeError, "objects"),
    ("listing-order-columns", lambda c: listing_order(pd.DataFrame({"position": [1]})),
     ProbeError, "image_id"),
    ("number-features-lengths", lambda c: number_features(np.arange(3), np.arange(4)),
     ProbeError, "list positions"),
    # positions of the number, "." and attribute tokens
    ("positions-mention-past-sequence",
     lambda c: listing_positions(LISTING, LISTING_IDS, [(0, 7)], _listing_mentions(span_end=[1, 9])),
     TagMentionError, "outside"),
    ("positions-mention-outside-answer",
     lambda c: listing_positions(LISTING, LISTING_IDS, [(2, 7)], _listing_mentions()),
     TagMentionError, "outside"),
    ("positions-span-past-sequence",
     lambda c: listing_positions(LISTING, LISTING_IDS, [(0, 12)], _listing_mentions()),
     InputError, "answer span"),
    ("positions-batch-without-span",
     lambda c: listing_positions(LISTING, LISTING_IDS, [(0, 7)], _listing_mentions(batch=[0, 3])),
     TagMentionError, "batch"),
    ("positions-mentions-columns",
     lambda c: listing_positions(LISTING, LISTING_IDS, [(0, 7)], _mentions()),
     TagMentionError, "span_end"),
    ("positions-ids-not-2d", lambda c: listing_positions(LISTING, torch.arange(7), [(0, 7)],
                                                         _listing_mentions()),
     InputError, "batch, token"),
    ("datasets-unknown-position",
     lambda c: build_probe_datasets(Stub(), _positioned(), [_tagset()], at=["comma"]),
     InputError, "comma"),
    ("datasets-without-positions",
     lambda c: build_probe_datasets(Stub(), _mentions(), [_tagset()]),
     TagMentionError, "listing_positions"),
    ("datasets-negative-position",
     lambda c: build_probe_datasets(Stub(), _positioned().assign(position_dot=[-1, 8]),
                                    [_tagset()]),
     TagMentionError, "position"),
    ("majority-empty", lambda c: majority_class(np.array([], dtype=int)), ProbeError, "no labels"),
    ("majority-negative", lambda c: majority_class(np.array([-1, 0])), ProbeError, "class"),
    ("folds-one", lambda c: group_folds(GROUPS, 1), ProbeError, "n_folds"),
    ("folds-too-few-images", lambda c: group_folds(np.arange(3), 5), ProbeError, "grouped folds"),
    ("holdout-everything", lambda c: holdout_mask(GROUPS, 1.0), ProbeError, "test_size"),
    ("holdout-one-image", lambda c: holdout_mask(np.zeros(5)), ProbeError, "one image"),
    ("holdout-no-samples", lambda c: holdout_mask(np.array([])), ProbeError, "no samples"),
    ("region-targets-shape", lambda c: region_targets(np.ones((3, 3), bool), (8, 4)),
     DataFormatError, "mask has shape"),
    # plot
    ("curves-missing-column", lambda c: plot_probe_curves(c.result.scores.drop(columns="value")),
     InputError, "value"),
    ("curves-no-rows", lambda c: plot_probe_curves(c.result.scores.iloc[:0]), InputError, "no rows"),
    ("curves-unknown-target", lambda c: plot_probe_curves(c.result.scores, "smell"),
     InputError, "smell"),
    # the batched solvers
    ("logistic-class-out-of-range", lambda c: _logistic(c, y=torch.full((1, N), 7)),
     ProbeError, "class"),
    ("logistic-negative-class", lambda c: _logistic(c, y=torch.full((1, N), -1)),
     ProbeError, "class"),
    ("logistic-labels-shape", lambda c: _logistic(c, y=torch.zeros(1, 5, dtype=torch.long)),
     ProbeError, "y"),
    ("logistic-weights-shape", lambda c: _logistic(c, weights=torch.ones(1, 5)),
     ProbeError, "weights"),
    ("logistic-negative-lam", lambda c: _logistic(c, lam=torch.full((2, 1), -1.0)),
     ProbeError, "lam"),
    ("logistic-lam-shape", lambda c: _logistic(c, lam=torch.full((5, 1), 1e-2)),
     ProbeError, "lam"),
    ("logistic-one-class", lambda c: _logistic(c, y=torch.zeros(1, N, dtype=torch.long),
                                               n_classes=1),
     ProbeError, "n_classes"),
    ("logistic-no-training-rows", lambda c: _logistic(c, weights=torch.zeros(1, N)),
     ProbeError, "training row"),
    ("logistic-zero-iterations", lambda c: _logistic(c, max_iter=0), ProbeError, "max_iter"),
    ("ridge-target-length", lambda c: fit_ridge(c.X, torch.randn(5, 2), torch.tensor([1.0])),
     ProbeError, "5 rows"),
    ("ridge-nan-target",
     lambda c: fit_ridge(c.X, torch.full((N, 2), float("nan")), torch.tensor([1.0])),
     ProbeError, "NaN"),
    ("ridge-negative-lambdas", lambda c: fit_ridge(c.X, torch.randn(N, 2), torch.tensor([-1.0])),
     ProbeError, "lambdas"),
    ("ridge-no-lambdas", lambda c: fit_ridge(c.X, torch.randn(N, 2), torch.tensor([])),
     ProbeError, "lambdas"),
    ("standardizer-weights-shape", lambda c: fit_standardizer(c.X, torch.ones(1, 3)),
     ProbeError, "weights"),
    ("standardizer-no-training-rows", lambda c: fit_standardizer(c.X, torch.zeros(1, N)),
     ProbeError, "training row"),
    ("preconditioner-weights-shape",
     lambda c: spectral_preconditioner(c.X, torch.ones(1, 3), c.st), ProbeError, "weights"),
    ("predict-width", lambda c: predict_logits(_logistic(c), _features(d=4)), ProbeError, "dim"),
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


def _no_bootstrap(c: SimpleNamespace) -> None:
    res = probe_layers(c.X, {"colour": Y}, GROUPS, **{**FAST, "n_boot": 0})
    assert res.scores["value"].notna().all() and res.scores["ci_low"].isna().all()
    out = compare_probes(res, res, n_boot=0)
    assert (out["value"] == 0).all() and out["ci_low"].isna().all()


def _numpy_features(c: SimpleNamespace) -> None:
    res = probe_layers(c.X.numpy(), {"colour": Y}, GROUPS, **FAST)
    assert set(res.scores["layer"]) == {0, 1}


def _empty_mask(c: SimpleNamespace) -> None:
    assert all(np.isnan(region_targets(np.zeros((4, 8), bool), (8, 4))))
    empty = _tagset()
    empty.tags[0].mask[:] = False
    rows = [(b, t) for b in range(IMAGES) for t in (1, 2)]
    mentions = pd.DataFrame(
        {
            "batch": [b for b, _ in rows],
            "position": range(len(rows)),
            "tag_id": [t for _, t in rows],
        }
    )
    ds = build_probe_dataset(Stub(), mentions, [empty] * IMAGES)
    with pytest.raises(ProbeError, match="missing"):
        run_probes(ds, ["area"], **FAST)


def _coco_area(c: SimpleNamespace) -> None:
    ds = build_probe_dataset(Stub(), _mentions(), [_tagset({"area": 123.0})])
    assert ds.samples["meta_area"].tolist() == [123.0, 123.0]
    assert ds.samples["area"].between(0, 1).all()


def _no_controls(c: SimpleNamespace) -> None:
    assert control_labels(np.array([]), np.array([])).size == 0


DOCUMENTED: list[tuple[str, Callable[[SimpleNamespace], None]]] = [
    ("zero-resamples-give-points-without-intervals", _no_bootstrap),
    ("numpy-features-are-accepted", _numpy_features),
    ("empty-mask-gives-nan-targets-that-do-not-fit", _empty_mask),
    ("clashing-metadata-is-kept-with-a-prefix", _coco_area),
    ("no-samples-no-control-labels", _no_controls),
]


@pytest.mark.parametrize("check", [pytest.param(f, id=i) for i, f in DOCUMENTED])
def test_edge_input_behaves_as_documented(
    ctx: SimpleNamespace, check: Callable[[SimpleNamespace], None]
) -> None:
    check(ctx)
