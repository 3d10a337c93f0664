"""Tests for somprobe.measure.align: hand-built maps with known scores, sklearn's AUROC, the
Trace-facing scorer on stand-ins of the Trace / ImageLayout interface."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.metrics import roc_auc_score

from somprobe.errors import CaptureError, InputError, LayoutError, SomprobeError, TagMentionError
from somprobe.measure.align import (
    PARTS,
    SCORE_COLUMNS,
    RegionMaps,
    aggregate_by_head,
    aggregate_by_layer,
    region_pixel_masks,
    score_alignment,
    score_maps,
    sink_patches,
)
from somprobe.tagging import Tag, TagSet

Z4 = np.zeros((4, 4))


def _maps(**parts: np.ndarray) -> RegionMaps:
    return RegionMaps.from_parts(**{"object": Z4, "mark": Z4, **parts})


def _onehot(*cells: tuple[int, int], shape=(4, 4)) -> np.ndarray:
    out = np.zeros(shape)
    for r, c in cells:
        out[r, c] = 1.0
    return out


# ------------------------------------------------------------------ hand-built maps


def test_uniform_map_has_lift_one_and_shares_equal_areas() -> None:
    obj = _onehot((0, 0), (0, 1), (1, 0), (1, 1))
    mark = _onehot((3, 3)) * 0.5
    other = _onehot((2, 2), (2, 3))
    maps = _maps(object=obj, mark=mark, other=other, other_mark=_onehot((3, 0)))
    s = score_maps(np.full((2, 3, 4, 4), 1 / 16), maps)
    for part in PARTS:
        np.testing.assert_allclose(s[f"lift_{part}"], 1.0)
        np.testing.assert_allclose(s[f"image_share_{part}"], s[f"area_{part}"])
    np.testing.assert_allclose(s["image_share_object"], 4 / 16)
    np.testing.assert_allclose(s["image_share_mark"], 0.5 / 16)
    np.testing.assert_allclose(s["image_share_rest"], (16 - 4 - 0.5 - 2 - 1) / 16)
    assert s["image_share_object"].shape == (2, 3)


def test_all_mass_on_the_object() -> None:
    obj = _onehot((1, 1), (1, 2), (2, 1), (2, 2))
    att = obj * 0.25 + 0.0
    att[1, 1] += 0.1  # a clear argmax inside the object
    s = score_maps(att, _maps(object=obj, other=_onehot((0, 0))), k=4)
    assert s["image_share_object"] == pytest.approx(1.0)
    assert s["image_share_other"] == pytest.approx(0.0)
    assert s["image_share_rest"] == pytest.approx(0.0)
    assert s["lift_object"] == pytest.approx(16 / 4)
    assert s["pointing"] == 1.0 and s["topk_hit"] == 1.0 and s["topk_any"] == 1.0
    assert s["auroc"] == pytest.approx(1.0)


def test_all_mass_on_the_mark_and_targets() -> None:
    obj = _onehot((2, 0), (2, 1))  # away from the low-index patches that win ties at 0
    mark = _onehot((3, 3))
    att = mark.copy()
    s = score_maps(att, _maps(object=obj, mark=mark))
    assert s["image_share_mark"] == pytest.approx(1.0) and s["image_share_object"] == 0.0
    assert s["lift_mark"] == pytest.approx(16.0)
    assert s["pointing"] == 0.0 and s["topk_any"] == 0.0
    sm = score_maps(att, _maps(object=obj, mark=mark), target="mark")
    assert sm["pointing"] == 1.0 and sm["topk_hit"] == pytest.approx(1 / 5)
    sb = score_maps(att, _maps(object=obj, mark=mark), target="object+mark")
    assert sb["pointing"] == 1.0


def test_fractional_coverage_splits_a_patch_mass() -> None:
    obj = _onehot((0, 0)) * 0.3
    other = _onehot((0, 0)) * 0.5
    att = _onehot((0, 0))
    s = score_maps(att, _maps(object=obj, other=other))
    assert s["image_share_object"] == pytest.approx(0.3)
    assert s["image_share_other"] == pytest.approx(0.5)
    assert s["image_share_rest"] == pytest.approx(0.2)
    # 0.3 coverage is under the 0.5 threshold: no patch is "in" the object, nothing to point at
    assert np.isnan(s["pointing"]) and s["n_target"] == 0
    assert score_maps(att, _maps(object=obj, other=other), hit_threshold=0.3)["pointing"] == 1.0


def test_unnormalised_attention_is_normalised_and_mass_image_reported() -> None:
    obj = _onehot((0, 0))
    att = np.full((4, 4), 0.01)
    att[0, 0] = 0.05  # total 0.2
    s = score_maps(att, _maps(object=obj))
    assert s["mass_image"] == pytest.approx(0.2)
    assert s["mass_text"] == pytest.approx(0.8)  # the rest of a softmax row
    assert s["mass_object"] == pytest.approx(0.05)
    assert s["image_share_object"] == pytest.approx(0.25)


def test_topk_definition_and_ties() -> None:
    obj = _onehot((0, 0), (0, 1), (0, 2))
    att = np.zeros((4, 4))
    att[0, 0], att[0, 1], att[3, 3], att[3, 2] = 0.4, 0.3, 0.2, 0.1
    s = score_maps(att, _maps(object=obj), k=2)
    assert s["topk_hit"] == 1.0
    s = score_maps(att, _maps(object=obj), k=4)
    assert s["topk_hit"] == pytest.approx(0.5)
    # 12 patches tie at 0: the lower patch index wins, so (0, 2) is the 5th
    s = score_maps(att, _maps(object=obj), k=5)
    assert s["topk_hit"] == pytest.approx(3 / 5)
    # flat map: argmax is patch 0
    assert score_maps(np.ones((4, 4)), _maps(object=_onehot((0, 0))))["pointing"] == 1.0
    assert score_maps(np.ones((4, 4)), _maps(object=_onehot((0, 1))))["pointing"] == 0.0


def test_topk_against_brute_force() -> None:
    rng = np.random.default_rng(0)
    att = rng.random((3, 2, 5, 6))
    obj = (rng.random((5, 6)) > 0.6).astype(float)
    for k in (1, 5, 17, 30, 40):
        s = score_maps(att, RegionMaps.from_parts(object=obj, mark=np.zeros((5, 6))), k=k)
        for idx in np.ndindex(3, 2):
            flat = att[idx].ravel()
            top = sorted(range(30), key=lambda p, f=flat: -f[p])[: min(k, 30)]
            want = np.mean([obj.ravel()[p] >= 0.5 for p in top])
            assert s["topk_hit"][idx] == pytest.approx(want)


def test_auroc_equals_sklearn_with_ties_and_exclusion() -> None:
    rng = np.random.default_rng(1)
    att = np.round(rng.random((4, 3, 6, 6)), 1)  # many ties
    cover = rng.random((6, 6))
    maps = RegionMaps.from_parts(object=cover, mark=np.zeros((6, 6)))
    exclude = rng.random((4, 1, 6, 6)) > 0.8
    for ex in (None, exclude):
        s = score_maps(att, maps, hit_threshold=0.4, exclude=ex)
        for idx in np.ndindex(4, 3):
            keep = np.ones(36, bool) if ex is None else ~np.broadcast_to(ex, att.shape)[idx].ravel()
            y = (cover.ravel() >= 0.4)[keep]
            want = roc_auc_score(y, att[idx].ravel()[keep])
            assert s["auroc"][idx] == pytest.approx(want, abs=1e-12)


def test_auroc_undefined_without_positives_or_negatives() -> None:
    s = score_maps(np.random.default_rng(2).random((4, 4)), _maps())
    assert np.isnan(s["auroc"]) and np.isnan(s["lift_object"])
    s = score_maps(np.ones((4, 4)), _maps(object=np.ones((4, 4))))
    assert np.isnan(s["auroc"]) and s["lift_object"] == pytest.approx(1.0)


def test_exclusion_renormalises() -> None:
    obj = _onehot((1, 1))
    att = np.full((4, 4), 0.02)
    att[0, 0] = 0.5  # the sink
    att[1, 1] = 0.2
    total = att.sum()
    ex = _onehot((0, 0)).astype(bool)
    s = score_maps(att, _maps(object=obj), exclude=ex)
    kept = total - 0.5
    assert s["image_share_object"] == pytest.approx(0.2 / kept)
    assert s["area_object"] == pytest.approx(1 / 15)
    assert s["lift_object"] == pytest.approx((0.2 / kept) * 15)
    assert s["sink_share"] == pytest.approx(0.5 / total)
    assert s["mass_sink"] == pytest.approx(0.5) and s["mass_image"] == pytest.approx(total)
    assert s["mass_object"] == pytest.approx(0.2)  # absolute: not renormalised
    assert s["n_excluded"] == 1
    assert s["pointing"] == 1.0  # the sink no longer wins the argmax
    # uniform over the kept patches → lift 1
    s = score_maps(np.where(ex, 0.9, 1.0), _maps(object=obj), exclude=ex)
    assert s["lift_object"] == pytest.approx(1.0)


def test_sink_patches_rule() -> None:
    rng = np.random.default_rng(3)
    att = rng.random((6, 2, 3, 4, 4)) * 0.01
    att[:, 1, :, 2, 3] = 1.0  # a sink in layer 1 for every query
    att[0, 0, :, 0, 0] = 1.0  # one query's object in layer 0: not a sink (median)
    sinks = sink_patches(att)
    assert sinks.shape == (2, 4, 4)
    assert sinks[1].sum() == 1 and sinks[1, 2, 3]
    assert not sinks[0].any()


@settings(max_examples=30, deadline=None)
@given(
    att=hnp.arrays(np.float64, (2, 3, 3), elements=st.floats(0.0, 1.0)),
    cover=hnp.arrays(np.float64, (4, 3, 3), elements=st.floats(0.0, 1.0)),
)
def test_shares_sum_to_one_and_lifts_average_to_one(att, cover) -> None:
    cover = cover / np.maximum(cover.sum(axis=0, keepdims=True), 1.0)
    maps = RegionMaps.from_parts(
        object=cover[0], mark=cover[1], other=cover[2], other_mark=cover[3]
    )
    s = score_maps(att + 1e-3, maps)
    shares = np.stack([s[f"image_share_{p}"] for p in PARTS], axis=-1)
    np.testing.assert_allclose(shares.sum(-1), 1.0)
    areas = np.stack([s[f"area_{p}"] for p in PARTS], axis=-1)
    lifts = np.nan_to_num(np.stack([s[f"lift_{p}"] for p in PARTS], axis=-1))
    np.testing.assert_allclose((areas * lifts).sum(-1), 1.0)
    hit = s["topk_hit"]
    assert (np.isnan(hit) | ((hit >= 0) & (hit <= 1))).all()
    assert (np.isnan(hit) == (s["n_target"] == 0)).all()  # NaN exactly when no target


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: score_maps(-np.ones((4, 4)), _maps()), "non-negative"),
        (lambda: score_maps(np.ones((3, 4)), _maps()), "last two dimensions"),
        (lambda: score_maps(np.full((4, 4), np.nan), _maps()), "NaN"),
        (lambda: score_maps(np.ones((4, 4)), _maps(), k=0), "k must"),
        (lambda: score_maps(np.ones((4, 4)), _maps(), hit_threshold=0), "hit_threshold"),
        (lambda: score_maps(np.ones((4, 4)), _maps(), target="box"), "target"),  # type: ignore[arg-type]
        (lambda: score_maps(np.ones((4, 4)), _maps(), exclude=np.ones((3, 3), bool)), "exclude"),
        (lambda: _maps(object=np.ones((4, 4)), mark=np.ones((4, 4))), "overlap"),
        (lambda: _maps(object=np.ones((4, 4)) * 2), r"\[0, 1\]"),
        (lambda: _maps(other=np.ones((3, 3))), "shape"),
        (lambda: sink_patches(np.ones((4, 4))), "query, layer, head"),
    ],
)
def test_bad_inputs(call, match) -> None:
    with pytest.raises(InputError, match=match):
        call()


# ------------------------------------------------------------------ Trace-facing


PATCH = 2  # pixels per patch side in the stand-in layout


class FakeLayout:
    """Stand-in of ImageLayout: an 8×8 image, 2-px patches, a 4×4 grid at positions 3..18."""

    def __init__(self, size=(8, 8), first=3, n_images=1) -> None:
        self.size, self.first, self.n_images = size, first, n_images

    def image_size(self, batch: int) -> tuple[int, int]:
        return self.size

    def grid(self, batch: int) -> tuple[int, int]:
        return self.size[1] // PATCH, self.size[0] // PATCH

    def image_token_positions(self, batch: int) -> list[int]:
        rows, cols = self.grid(batch)
        return list(range(self.first, self.first + rows * cols))

    def mask_to_patches(self, mask, batch: int = 0) -> np.ndarray:
        m = np.asarray(mask, dtype=float)
        h, w = m.shape
        return m.reshape(h // PATCH, PATCH, w // PATCH, PATCH).mean(axis=(1, 3))


class FakeTrace:
    """Stand-in of Trace: rows of attention (layer, head, key) at chosen query positions."""

    def __init__(self, rows: dict[tuple[int, int], torch.Tensor], layers, keys) -> None:
        self.rows, self.layers, self.keys = rows, layers, keys

    def attention(self, batch: int, position: int) -> torch.Tensor:
        if (batch, position) not in self.rows:
            raise CaptureError(f"query position {position} was not captured")
        return self.rows[(batch, position)]

    def key_positions(self, batch: int) -> list[int]:
        return self.keys


def _tag(tag_id: int, mask: np.ndarray, box) -> Tag:
    return Tag(id=tag_id, label=str(tag_id), mask=mask, original_mask=mask, center=(0, 0),
               mark_box=box)  # fmt: skip


def _tagset() -> TagSet:
    m1 = np.zeros((8, 8), bool)
    m1[0:4, 0:4] = True  # tag 1: top-left 2×2 patches; its mark at the 1-patch (0,0)
    m2 = np.zeros((8, 8), bool)
    m2[4:8, 2:8] = True  # tag 2: bottom; mark at patch (3, 3)
    return TagSet(tags=[_tag(1, m1, (0, 0, 2, 2)), _tag(2, m2, (6, 6, 8, 8))], image_size=(8, 8))


def _mentions(rows: list[tuple[int, int, tuple[int, ...]]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "batch": [r[0] for r in rows],
            "mention": list(range(len(rows))),
            "tag_id": [r[1] for r in rows],
            "label": [str(r[1]) for r in rows],
            "format": "listing",
            "scored_positions": [r[2] for r in rows],
        }
    )


KEYS = list(range(0, 30))  # captured key columns: positions 0..29 (image tokens at 3..18)


def _row(image_att: np.ndarray, n_layer=2, n_head=3) -> torch.Tensor:
    """A (layer, head, key) row with ``image_att`` on the image columns, 0.5 elsewhere."""
    out = np.full((n_layer, n_head, len(KEYS)), 0.5 / (len(KEYS) - 16))
    out[..., 3:19] = 0.5 * np.broadcast_to(image_att.reshape(-1), (n_layer, n_head, 16))
    return torch.tensor(out, dtype=torch.float32)


def test_region_pixel_masks_are_disjoint_and_as_documented() -> None:
    masks = region_pixel_masks(_tagset(), 1)
    assert masks["mark"][0:2, 0:2].all() and masks["mark"].sum() == 4
    assert masks["object"].sum() == 16 - 4
    assert masks["other"].sum() == 24 - 4 and masks["other_mark"].sum() == 4
    stacked = np.stack(list(masks.values())).astype(int)
    assert stacked.sum(axis=0).max() == 1
    hallucinated = region_pixel_masks(_tagset(), 7)
    assert not hallucinated["object"].any() and not hallucinated["mark"].any()
    assert hallucinated["other"].sum() == 16 + 24 - 8


def test_score_alignment_rows_and_values() -> None:
    layout, ts = FakeLayout(), _tagset()
    obj1 = np.zeros((4, 4))
    obj1[0, 1], obj1[1, 0], obj1[1, 1] = 0.5, 0.3, 0.2  # all on tag 1's object
    uniform = np.full((4, 4), 1 / 16)
    trace = FakeTrace({(0, 20): _row(obj1), (0, 22): _row(uniform), (0, 24): _row(uniform)},
                      layers=[5, 9], keys=KEYS)  # fmt: skip
    mentions = _mentions([(0, 1, (20,)), (0, 2, (22,)), (0, 7, (24,))])
    df = score_alignment(trace, layout, ts, mentions)
    assert len(df) == 3 * 2 * 3
    assert list(df.columns[:11]) == [
        "batch", "mention", "tag_id", "label", "format", "position", "n_positions",
        "hallucinated", "sink_rule", "layer", "head",
    ]  # fmt: skip
    assert list(df.columns[11:]) == list(SCORE_COLUMNS)
    assert (df["sink_rule"] == "auto").all()  # three different tags: the rule applies
    assert set(SCORE_COLUMNS) <= set(df.columns)
    assert sorted(df["layer"].unique()) == [5, 9] and sorted(df["head"].unique()) == [0, 1, 2]
    first = df[df["mention"] == 0]
    np.testing.assert_allclose(first["image_share_object"], 1.0, rtol=1e-6)
    np.testing.assert_allclose(first["mass_image"], 0.5, rtol=1e-6)
    assert (first["pointing"] == 1.0).all()
    second = df[df["mention"] == 1]
    np.testing.assert_allclose(second["lift_object"], 1.0, rtol=1e-6)
    np.testing.assert_allclose(second["lift_mark"], 1.0, rtol=1e-6)
    np.testing.assert_allclose(second["area_object"], (24 - 4) / 64)
    third = df[df["mention"] == 2]
    assert third["hallucinated"].all() and third["image_share_object"].isna().all()
    assert third["auroc"].isna().all()
    others = third["image_share_other"] + third["image_share_other_mark"]
    np.testing.assert_allclose(others, 40 / 64)


def test_score_alignment_equals_score_maps_on_the_same_arrays() -> None:
    rng = np.random.default_rng(4)
    att = rng.random((2, 3, 4, 4))
    full = np.full((2, 3, len(KEYS)), 0.01)
    full[..., 3:19] = att.reshape(2, 3, 16)
    trace = FakeTrace({(0, 21): torch.tensor(full)}, layers=[0, 1], keys=KEYS)
    df = score_alignment(trace, FakeLayout(), _tagset(), _mentions([(0, 2, (21,))]), k=3)
    masks = region_pixel_masks(_tagset(), 2)
    maps = RegionMaps.from_parts(**{k: FakeLayout().mask_to_patches(v) for k, v in masks.items()})
    want = score_maps(att, maps, k=3)
    for name in SCORE_COLUMNS:
        np.testing.assert_allclose(df[name].to_numpy(), want[name].reshape(-1), rtol=1e-6)


def test_mean_over_positions_and_key_order() -> None:
    a, b = np.zeros((4, 4)), np.zeros((4, 4))
    a[0, 1], b[3, 0] = 1.0, 1.0  # tag 1 object vs background
    # keys captured in a shuffled order: image columns are found by position
    keys = KEYS[::-1]
    rows = {}
    for pos, img in ((10, a), (11, b)):
        r = _row(img).numpy()[..., ::-1].copy()
        rows[(0, pos)] = torch.tensor(r)
    trace = FakeTrace(rows, layers=[0, 1], keys=keys)
    df = score_alignment(trace, FakeLayout(), _tagset(), _mentions([(0, 1, (10, 11))]))
    np.testing.assert_allclose(df["image_share_object"], 0.5, rtol=1e-6)
    assert (df["n_positions"] == 2).all() and (df["position"] == 10).all()


def test_sinks_auto_and_explicit() -> None:
    sink = np.full((4, 4), 0.1 / 15)
    sink[3, 0] = 0.9  # background patch that takes most attention of every query
    trace = FakeTrace({(0, p): _row(sink) for p in (20, 21, 22)}, layers=[0, 1], keys=KEYS)
    mentions = _mentions([(0, 1, (20,)), (0, 2, (21,)), (0, 3, (22,))])
    plain = score_alignment(trace, FakeLayout(), _tagset3(), mentions, sinks=None)
    auto = score_alignment(trace, FakeLayout(), _tagset3(), mentions, sinks="auto")
    explicit = score_alignment(
        trace, FakeLayout(), _tagset3(), mentions, sinks=_onehot((3, 0)).astype(bool)
    )
    assert (plain["n_excluded"] == 0).all() and (auto["n_excluded"] == 1).all()
    np.testing.assert_allclose(auto["sink_share"], 0.9, rtol=1e-5)
    np.testing.assert_allclose(auto["lift_object"], 1.0, rtol=1e-5)
    assert (explicit["sink_rule"] == "mask").all()
    pd.testing.assert_frame_equal(auto, explicit.assign(sink_rule="auto"))


def test_several_images_take_a_tagset_each() -> None:
    img = np.full((4, 4), 1 / 16)
    trace = FakeTrace({(0, 20): _row(img), (1, 20): _row(img)}, layers=[0, 1], keys=KEYS)
    mentions = _mentions([(0, 1, (20,)), (1, 2, (20,))])
    df = score_alignment(trace, FakeLayout(), {0: _tagset(), 1: _tagset()}, mentions)
    assert sorted(df["batch"].unique()) == [0, 1]
    with pytest.raises(TagMentionError, match="batch 1"):
        score_alignment(trace, FakeLayout(), [_tagset()], mentions)


def test_aggregated_views() -> None:
    rng = np.random.default_rng(5)
    rows = {(0, p): _row(rng.random((4, 4))) for p in (20, 21, 22)}
    trace = FakeTrace(rows, layers=[3, 4], keys=KEYS)
    df = score_alignment(trace, FakeLayout(), _tagset(), _mentions(
        [(0, 1, (20,)), (0, 2, (21,)), (0, 9, (22,))]))  # fmt: skip
    per = aggregate_by_layer(df, per_mention=True)
    assert len(per) == 3 * 2 and (per["n_heads"] == 3).all()
    want = df.groupby(["mention", "layer"])["lift_object"].mean().to_numpy()
    np.testing.assert_allclose(per["lift_object"].to_numpy(), want, equal_nan=True)
    assert per["hallucinated"].tolist() == [False, False, False, False, True, True]
    lay = aggregate_by_layer(df)
    assert list(lay["layer"]) == [3, 4] and (lay["n_mentions"] == 3).all()
    for layer in (3, 4):
        sub = per[per["layer"] == layer]
        assert lay.set_index("layer").at[layer, "image_share_object"] == pytest.approx(
            np.nanmean(sub["image_share_object"])
        )
    head = aggregate_by_head(df)
    assert len(head) == 2 * 3 and (head["n_mentions"] == 3).all()
    sub = df[(df["layer"] == 4) & (df["head"] == 2)]
    row = head[(head["layer"] == 4) & (head["head"] == 2)].iloc[0]
    assert row["auroc"] == pytest.approx(np.nanmean(sub["auroc"]))


def test_errors_outside_trace_and_wrong_image_size() -> None:
    img = np.full((4, 4), 1 / 16)
    trace = FakeTrace({(0, 20): _row(img)}, layers=[0, 1], keys=KEYS)
    with pytest.raises(TagMentionError, match="position 99"):
        score_alignment(trace, FakeLayout(), _tagset(), _mentions([(0, 1, (99,))]))
    with pytest.raises(TagMentionError, match="8×8 image but batch 0's image is 16×8"):
        score_alignment(trace, FakeLayout(size=(16, 8)), _tagset(), _mentions([(0, 1, (20,))]))
    short = FakeTrace({(0, 20): _row(img)[..., :10]}, layers=[0, 1], keys=KEYS[:10])
    with pytest.raises(CaptureError, match="no key columns"):
        score_alignment(short, FakeLayout(), _tagset(), _mentions([(0, 1, (20,))]))
    wrong_layers = FakeTrace({(0, 20): _row(img)}, layers=[0, 1, 2], keys=KEYS)
    with pytest.raises(CaptureError, match="expected"):
        score_alignment(wrong_layers, FakeLayout(), _tagset(), _mentions([(0, 1, (20,))]))

    class BadGrid(FakeLayout):
        def image_token_positions(self, batch: int) -> list[int]:
            return list(range(3, 18))

    with pytest.raises(LayoutError, match="15 image tokens but a 4×4"):
        score_alignment(trace, BadGrid(), _tagset(), _mentions([(0, 1, (20,))]))
    with pytest.raises(InputError, match="scored_positions"):
        score_alignment(trace, FakeLayout(), _tagset(), pd.DataFrame({"tag_id": [1]}))
    with pytest.raises(SomprobeError, match="sink mask"):
        score_alignment(trace, FakeLayout(), _tagset(), _mentions([(0, 1, (20,))]),
                        sinks=np.ones((2, 2), bool))  # fmt: skip


class ImageIndexedLayout(FakeLayout):
    """Like the package's ImageLayout: indexed by image, a CLS token before the patches."""

    def __init__(self, images_per_sequence: dict[int, list[int]]) -> None:
        super().__init__(first=4)
        self.per_seq = images_per_sequence

    def images_in(self, batch: int) -> list[int]:
        return self.per_seq[batch]

    def patch_positions(self, image: int) -> np.ndarray:
        return np.arange(4, 20)

    def image_token_positions(self, image: int) -> np.ndarray:
        return np.arange(3, 20)  # CLS at 3

    def mask_to_patches(self, mask, image: int = 0) -> np.ndarray:  # type: ignore[override]
        return super().mask_to_patches(mask)


class AllKeysTrace(FakeTrace):
    key_mode = "all"

    def key_positions(self, batch: int) -> list[int]:
        raise CaptureError("key_mode='all' has one column per position")


def test_image_indexed_layout_and_all_keys_trace() -> None:
    img = np.zeros((4, 4))
    img[0, 1] = 1.0
    full = np.zeros((2, 3, 25))
    full[..., 4:20] = img.reshape(-1)
    trace = AllKeysTrace({(1, 24): torch.tensor(full)}, layers=[0, 1], keys=[])
    layout = ImageIndexedLayout({0: [], 1: [0]})
    df = score_alignment(trace, layout, _tagset(), _mentions([(1, 1, (24,))]))
    np.testing.assert_allclose(df["image_share_object"], 1.0)
    assert (df["batch"] == 1).all()
    with pytest.raises(LayoutError, match="holds 2 images"):
        score_alignment(trace, ImageIndexedLayout({1: [0, 1]}), _tagset(),
                        _mentions([(1, 1, (24,))]))  # fmt: skip
    with pytest.raises(CaptureError, match="key_mode"):
        plain = FakeTrace({}, layers=[0], keys=[])
        plain.key_positions = AllKeysTrace.key_positions.__get__(plain)  # type: ignore[method-assign]
        score_alignment(plain, FakeLayout(), _tagset(), _mentions([(0, 1, (24,))]))


def test_no_mentions_gives_empty_table_with_columns() -> None:
    trace = FakeTrace({}, layers=[0], keys=KEYS)
    df = score_alignment(trace, FakeLayout(), _tagset(), _mentions([]))
    assert df.empty and "image_share_object" in df.columns and "layer" in df.columns


# ------------------------------------------------------------------ absolute mass, mark-free
# object, undefined metrics, chance levels, default sinks (issue "Measurement that holds up")


def _tagset3(mark1=(0, 0, 2, 2)) -> TagSet:
    """Three tags on the 8×8 image: 1 top-left, 2 bottom, 3 top-right (each mark one patch)."""
    m1 = np.zeros((8, 8), bool)
    m1[0:4, 0:4] = True
    m2 = np.zeros((8, 8), bool)
    m2[4:8, 2:8] = True
    m3 = np.zeros((8, 8), bool)
    m3[0:4, 4:8] = True
    return TagSet(
        tags=[_tag(1, m1, mark1), _tag(2, m2, (6, 6, 8, 8)), _tag(3, m3, (6, 0, 8, 2))],
        image_size=(8, 8),
    )


def _maps_of(ts: TagSet, tag_id: int):
    from somprobe.measure.align import region_maps

    return region_maps(ts, tag_id, FakeLayout().mask_to_patches)


def test_attention_on_the_mark_is_not_markfree_object() -> None:
    # tag 1's mark (1, 1, 3, 3) straddles its four object patches: each holds 3/4 object
    # and 1/4 mark, so the coverage split gives the object 3/4 of mark-only attention
    ts = _tagset3(mark1=(1, 1, 3, 3))
    maps = _maps_of(ts, 1)
    att = _onehot((0, 0), (0, 1), (1, 0), (1, 1)) / 4 * 0.6  # 0.6 of the row on the image
    s = score_maps(att, maps)
    assert s["image_share_object"] == pytest.approx(0.75)  # the old share_object: > 0
    assert s["mass_object"] == pytest.approx(0.6 * 0.75)
    assert s["mass_mark"] == pytest.approx(0.6 * 0.25)
    assert s["mass_object_markfree"] == 0.0 and s["image_share_object_markfree"] == 0.0
    assert s["area_object_markfree"] == 0.0 and np.isnan(s["lift_object_markfree"])
    # no object patch is free of mark pixels: the default target has nothing to hit
    assert s["n_target"] == 0
    for name in ("topk_hit", "topk_any", "pointing", "auroc", "chance_topk", "chance_auroc"):
        assert np.isnan(s[name]), name
    # the plain object target still has its 4 patches (3/4 ≥ 0.5 each)
    so = score_maps(att, maps, target="object")
    assert so["n_target"] == 4 and so["pointing"] == 1.0 and so["topk_any"] == 1.0
    # a tolerance of 1/4 mark pixels per patch lets those patches count as mark-free
    st_ = score_maps(att, maps, mark_free_max=0.25)
    assert st_["image_share_object_markfree"] == pytest.approx(0.75)
    assert st_["n_target"] == 4


def test_other_tags_marks_inside_the_object_are_not_markfree() -> None:
    ts = _tagset3()
    m1 = np.zeros((8, 8), bool)
    m1[0:4, 0:4] = True
    # tag 3's mark drawn inside tag 1's region, on patch (1, 1)
    ts = TagSet(tags=[ts.tags[0], ts.tags[1], _tag(3, ts.tags[2].mask, (2, 2, 4, 4))],
                image_size=(8, 8))  # fmt: skip
    maps = _maps_of(ts, 1)
    assert maps.object[1, 1] == 1.0  # the partition counts it as object, as before
    s = score_maps(_onehot((1, 1)), maps)
    assert s["image_share_object"] == pytest.approx(1.0)
    assert s["image_share_object_markfree"] == 0.0


def test_masses_are_absolute_and_shares_conditional_on_the_image() -> None:
    rng = np.random.default_rng(10)
    img = rng.random((4, 4))
    img /= img.sum()  # _row puts half the row on the image, half on text
    trace = FakeTrace({(0, p): _row(img) for p in (20, 21)}, layers=[0, 1], keys=KEYS)
    df = score_alignment(trace, FakeLayout(), _tagset(), _mentions([(0, 1, (20,)), (0, 2, (21,))]))
    for part in (*PARTS, "object_markfree"):
        np.testing.assert_allclose(df[f"mass_{part}"], df[f"image_share_{part}"] / 2, rtol=1e-5)
    np.testing.assert_allclose(df["mass_image"], 0.5, rtol=1e-5)
    np.testing.assert_allclose(df["mass_text"], 0.5, rtol=1e-5)
    np.testing.assert_allclose(df["mass_image_extra"], 0.0, atol=1e-7)
    parts = df[[f"mass_{p}" for p in PARTS]].sum(axis=1) + df["mass_sink"]
    np.testing.assert_allclose(parts, df["mass_image"], rtol=1e-5)


def test_all_keys_trace_gives_the_same_masses_and_the_exact_text_mass() -> None:
    rng = np.random.default_rng(11)
    full = rng.random((2, 3, 25))
    full /= full.sum(-1, keepdims=True)  # a softmax row over keys 0..24
    layout = ImageIndexedLayout({0: [0]})  # CLS at 3, patches at 4..19
    mentions = _mentions([(0, 1, (24,))])
    every = AllKeysTrace({(0, 24): torch.tensor(full)}, layers=[0, 1], keys=[])
    image_only = FakeTrace({(0, 24): torch.tensor(full[..., 3:20])}, layers=[0, 1],
                           keys=list(range(3, 20)))  # fmt: skip
    a = score_alignment(every, layout, _tagset(), mentions)
    b = score_alignment(image_only, layout, _tagset(), mentions)
    for name in SCORE_COLUMNS:  # the image-only text mass is 1 - Σ image: rounding apart
        np.testing.assert_allclose(a[name], b[name], rtol=1e-9, atol=1e-12, err_msg=name)
    text = full[..., :3].sum(-1) + full[..., 20:].sum(-1)
    np.testing.assert_allclose(a["mass_text"], text.reshape(-1), rtol=1e-12)
    np.testing.assert_allclose(a["mass_image_extra"], full[..., 3].reshape(-1), rtol=1e-12)
    np.testing.assert_allclose(a["mass_image"], full[..., 4:20].sum(-1).reshape(-1), rtol=1e-12)


def test_score_maps_text_mass_default_and_not_a_probability_row() -> None:
    s = score_maps(np.full((4, 4), 0.025), _maps(object=_onehot((0, 0))))
    assert s["mass_image"] == pytest.approx(0.4) and s["mass_text"] == pytest.approx(0.6)
    assert np.isnan(score_maps(np.ones((4, 4)), _maps())["mass_text"])  # sums to 16
    given = score_maps(np.full((4, 4), 0.025), _maps(), text_mass=0.5, image_extra_mass=0.1)
    assert given["mass_text"] == 0.5 and given["mass_image_extra"] == pytest.approx(0.1)


def test_no_qualifying_patch_gives_nan_metrics_left_out_of_the_aggregate_n() -> None:
    ts = _tagset3(mark1=(1, 1, 3, 3))  # tag 1 has no mark-free object patch; tag 2 does
    rng = np.random.default_rng(12)
    rows = {(0, p): _row(rng.random((4, 4)) / 16) for p in (20, 21)}
    trace = FakeTrace(rows, layers=[0, 1], keys=KEYS)
    df = score_alignment(trace, FakeLayout(), ts, _mentions([(0, 1, (20,)), (0, 2, (21,))]))
    first, second = df[df["tag_id"] == 1], df[df["tag_id"] == 2]
    for name in ("topk_hit", "topk_any", "pointing", "auroc", "chance_topk", "chance_pointing"):
        assert first[name].isna().all(), name
        assert second[name].notna().all(), name
    assert (first["n_target"] == 0).all() and (second["n_target"] > 0).all()
    lay = aggregate_by_layer(df).set_index("layer")
    assert (lay["n_mentions"] == 2).all()
    assert (lay["n_topk_hit"] == 1).all() and (lay["n_auroc"] == 1).all()
    assert (lay["n_image_share_object"] == 2).all()
    want = second.groupby("layer")["topk_hit"].mean()
    np.testing.assert_allclose(lay["topk_hit"], want)  # not halved by a 0 for tag 1
    head = aggregate_by_head(df)
    assert (head["n_pointing"] == 1).all() and (head["n_mentions"] == 2).all()


def test_chance_levels_equal_the_mean_over_every_ranking() -> None:
    from itertools import permutations

    cover = np.array([[0.9, 0.2, 0.6], [0.0, 1.0, 0.4]])
    maps = RegionMaps.from_parts(object=cover, mark=np.zeros((2, 3)))
    perms = np.array(list(permutations(range(1, 7))), dtype=float).reshape(-1, 2, 3)
    for k, exclude in ((1, None), (2, None), (2, _onehot((1, 2), shape=(2, 3)).astype(bool)),
                       (4, _onehot((0, 1), shape=(2, 3)).astype(bool))):  # fmt: skip
        s = score_maps(perms, maps, k=k, exclude=exclude, target="object")
        for metric, chance in (("topk_hit", "chance_topk"), ("topk_any", "chance_topk_any"),
                               ("pointing", "chance_pointing"), ("auroc", "chance_auroc")):  # fmt: skip
            assert np.ptp(s[chance]) == 0  # one chance level for every ranking
            assert s[chance][0] == pytest.approx(s[metric].mean()), (metric, k)
    s = score_maps(perms[0], maps, k=2, target="object")
    assert s["n_target"] == 3 and s["n_kept"] == 6
    assert s["chance_topk"] == pytest.approx(3 / 6) and s["chance_auroc"] == 0.5


def test_sinks_are_excluded_by_default_on_an_image_with_three_tags() -> None:
    sink = np.full((4, 4), 0.1 / 15)
    sink[3, 0] = 0.9  # a background patch that takes most attention of every query
    trace = FakeTrace({(0, p): _row(sink) for p in (20, 21, 22)}, layers=[0, 1], keys=KEYS)
    mentions = _mentions([(0, 1, (20,)), (0, 2, (21,)), (0, 3, (22,))])
    auto = score_alignment(trace, FakeLayout(), _tagset3(), mentions)
    assert (auto["sink_rule"] == "auto").all() and (auto["n_excluded"] == 1).all()
    np.testing.assert_allclose(auto["mass_sink"], 0.5 * 0.9, rtol=1e-5)
    np.testing.assert_allclose(auto["sink_share"], 0.9, rtol=1e-5)
    np.testing.assert_allclose(auto["mass_rest"] + auto["mass_other"] + auto["mass_other_mark"]
                               + auto["mass_object"] + auto["mass_mark"], 0.5 * 0.1, rtol=1e-5)  # fmt: skip
    np.testing.assert_allclose(auto["lift_object"], 1.0, rtol=1e-5)
    off = score_alignment(trace, FakeLayout(), _tagset3(), mentions, sinks=None)
    assert (off["sink_rule"] == "none").all() and (off["n_excluded"] == 0).all()
    assert (off["mass_sink"] == 0).all()
    assert off["lift_rest"].iloc[0] > 1.5  # the sink inflates the background


@pytest.mark.parametrize("tags", [(1, 2, 1), (1, 1, 2, 3), (1,)])
def test_auto_sinks_are_skipped_when_the_median_rule_cannot_hold(tags) -> None:
    sink = np.full((4, 4), 0.1 / 15)
    sink[3, 0] = 0.9
    positions = list(range(20, 20 + len(tags)))
    trace = FakeTrace({(0, p): _row(sink) for p in positions}, layers=[0, 1], keys=KEYS)
    mentions = _mentions([(0, t, (p,)) for t, p in zip(tags, positions, strict=True)])
    df = score_alignment(trace, FakeLayout(), _tagset3(), mentions)
    assert (df["sink_rule"] == "skipped").all()
    assert (df["n_excluded"] == 0).all() and (df["mass_sink"] == 0).all()


def test_mass_weighted_lift_in_the_aggregates() -> None:
    rng = np.random.default_rng(13)
    rows = {(0, p): _row(rng.random((4, 4)) ** 4) for p in (20, 21, 22)}
    trace = FakeTrace(rows, layers=[3, 4], keys=KEYS)
    df = score_alignment(trace, FakeLayout(), _tagset3(), _mentions(
        [(0, 1, (20,)), (0, 2, (21,)), (0, 3, (22,))]), sinks=None)  # fmt: skip
    lay = aggregate_by_layer(df).set_index("layer")
    for part in ("object", "object_markfree", "mark"):
        for layer, sub in df.groupby("layer"):
            kept = sub["mass_image"] - sub["mass_sink"]
            want = sub[f"mass_{part}"].sum() / (kept * sub[f"area_{part}"]).sum()
            assert lay.at[layer, f"lift_{part}_weighted"] == pytest.approx(want)
        assert (lay[f"n_lift_{part}_weighted"] == 3).all()
    head = aggregate_by_head(df)
    sub = df[(df["layer"] == 4) & (df["head"] == 1)]
    want = sub["mass_object"].sum() / ((sub["mass_image"] - sub["mass_sink"])
                                       * sub["area_object"]).sum()  # fmt: skip
    got = head[(head["layer"] == 4) & (head["head"] == 1)]["lift_object_weighted"].iloc[0]
    assert got == pytest.approx(want)


def test_score_columns_are_grouped_in_a_meaningful_order() -> None:
    groups = ["mass_", "sink_share", "n_excluded", "image_share_", "area_", "lift_",
              "topk_hit", "topk_any", "pointing", "auroc", "chance_", "n_kept", "n_target"]  # fmt: skip

    def group(col: str) -> int:
        return next(i for i, g in enumerate(groups) if col.startswith(g))

    order = [group(c) for c in SCORE_COLUMNS]
    assert order == sorted(order)
    for stem in ("object", "object_markfree", "mark", "other", "other_mark", "rest"):
        for prefix in ("mass_", "image_share_", "area_", "lift_"):
            assert f"{prefix}{stem}" in SCORE_COLUMNS
    assert {"mass_image", "mass_text", "mass_image_extra", "mass_sink"} <= set(SCORE_COLUMNS)
    assert not any(c.startswith("share_") or c == "image_mass" for c in SCORE_COLUMNS)
