"""Tests for somprobe.measure.stats: equal to scipy and to hand computations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from somprobe.errors import InputError
from somprobe.measure.stats import (
    adjust_pvalues,
    benjamini_hochberg,
    cohens_dz,
    compare_models,
    holm,
    paired_test,
    rank_biserial,
)


def test_holm_by_hand() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 → monotone 0.06
    np.testing.assert_allclose(holm(p), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm([0.5, 0.9]), [1.0, 1.0])


def test_bh_by_hand_and_against_scipy() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted: 0.005*4/1=0.02, 0.01*4/2=0.02, 0.03*4/3=0.04, 0.04*4/4=0.04
    np.testing.assert_allclose(benjamini_hochberg(p), [0.02, 0.04, 0.04, 0.02])
    rng = np.random.default_rng(0)
    for _ in range(20):
        q = rng.random(rng.integers(1, 30)) ** 3
        np.testing.assert_allclose(
            benjamini_hochberg(q), sps.false_discovery_control(q, method="bh")
        )


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=12))
def test_holm_matches_its_definition(p) -> None:
    p = np.array(p)
    m = len(p)
    order = np.argsort(p, kind="stable")
    want = np.empty(m)
    running = 0.0
    for i, idx in enumerate(order):  # step-down, by definition
        running = max(running, min(1.0, (m - i) * p[idx]))
        want[idx] = running
    np.testing.assert_allclose(holm(p), want)
    assert (holm(p) >= benjamini_hochberg(p) - 1e-12).all()


def test_nan_pvalues_are_left_out_of_the_family() -> None:
    p = [0.01, np.nan, 0.04]
    np.testing.assert_allclose(holm(p), [0.02, np.nan, 0.04])
    np.testing.assert_allclose(benjamini_hochberg(p), [0.02, np.nan, 0.04])
    np.testing.assert_allclose(adjust_pvalues(p, "none"), p)
    with pytest.raises(InputError, match="correction"):
        adjust_pvalues(p, "bonferroni")  # type: ignore[arg-type]


def test_effect_sizes_against_scipy() -> None:
    rng = np.random.default_rng(1)
    for _ in range(10):
        d = rng.normal(0.3, 1.0, size=int(rng.integers(5, 40)))
        n = d.size
        t_plus = sps.wilcoxon(d, alternative="greater").statistic  # sum of positive ranks
        assert rank_biserial(d) == pytest.approx(2 * t_plus / (n * (n + 1) / 2) - 1)
        t = sps.ttest_rel(d, np.zeros(n)).statistic
        assert cohens_dz(d) == pytest.approx(t / np.sqrt(n))
    assert rank_biserial(np.array([0.0, 1.0, 2.0])) == 1.0  # zeros dropped
    assert rank_biserial(np.array([-1.0, 1.0])) == 0.0
    assert rank_biserial(np.zeros(3)) == 0.0 and cohens_dz(np.zeros(3)) == 0.0
    assert np.isnan(cohens_dz(np.ones(4))) and np.isnan(cohens_dz(np.ones(1)))
    assert np.isnan(rank_biserial(np.array([])))


def test_paired_test_equals_scipy() -> None:
    rng = np.random.default_rng(2)
    a = rng.random(25)
    b = a + rng.normal(0.1, 0.2, 25)
    r = paired_test(a, b, seed=7, n_resamples=2000)
    w = sps.wilcoxon(b - a)
    assert r["statistic"] == w.statistic and r["p_value"] == w.pvalue
    boot = sps.bootstrap(
        (b - a,), np.mean, n_resamples=2000, rng=np.random.default_rng(7), method="BCa"
    )
    assert r["ci_low"] == boot.confidence_interval.low
    assert r["ci_high"] == boot.confidence_interval.high
    assert r["ci_low"] < r["mean_diff"] < r["ci_high"]
    assert r["mean_diff"] == pytest.approx(np.mean(b - a))
    # seeded: same seed, same interval; another seed, another interval
    assert paired_test(a, b, seed=7, n_resamples=2000)["ci_low"] == r["ci_low"]
    assert paired_test(a, b, seed=8, n_resamples=2000)["ci_low"] != r["ci_low"]
    one = paired_test(a, b, alternative="greater", ci_method="percentile", n_resamples=500)
    assert one["p_value"] == sps.wilcoxon(b - a, alternative="greater").pvalue


def test_paired_test_degenerate_cases() -> None:
    same = paired_test(np.ones(5), np.ones(5))
    assert same["p_value"] == 1.0 and same["ci_low"] == same["ci_high"] == 0.0
    shift = paired_test(np.zeros(4), np.full(4, 2.0))
    assert shift["ci_low"] == shift["ci_high"] == 2.0 and shift["rank_biserial"] == 1.0
    single = paired_test(np.zeros(1), np.ones(1))
    assert np.isnan(single["ci_low"]) and single["n_pairs"] == 1
    empty = paired_test(np.zeros(0), np.zeros(0))
    assert np.isnan(empty["p_value"]) and empty["n_pairs"] == 0
    with pytest.raises(InputError):
        paired_test(np.zeros(3), np.zeros(4))


def _scores(seed: int, shift_by_layer: dict[int, float], n: int = 30) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for layer in (0, 1, 2):
        base = np.random.default_rng(100 + layer).random(n)  # the same mentions per layer
        for i in range(n):
            value = base[i] + shift_by_layer.get(layer, 0.0) + rng.normal(0, 0.05)
            rows.append({"batch": i % 3, "position": 10 + i, "tag_id": 1 + i % 4, "layer": layer,
                         "lift_object": value, "pointing": float(value > 0.5)})  # fmt: skip
    return pd.DataFrame(rows)


def test_compare_models_per_layer() -> None:
    a = _scores(0, {})
    b = _scores(1, {1: 0.3})
    out = compare_models(a, b, ["lift_object", "pointing"], n_resamples=999, seed=3)
    assert list(out["metric"]) == ["lift_object"] * 3 + ["pointing"] * 3
    assert list(out["layer"]) == [0, 1, 2, 0, 1, 2]
    assert (out["n_pairs"] == 30).all() and (out["n_unmatched_a"] == 0).all()
    lift = out[out["metric"] == "lift_object"].set_index("layer")
    assert lift.at[1, "significant"] and lift.at[1, "mean_diff"] == pytest.approx(0.3, abs=0.05)
    assert lift.at[1, "rank_biserial"] == 1.0 and lift.at[1, "cohens_dz"] > 3
    assert not lift.at[0, "significant"]
    # every group equals paired_test on the same pairs, and the family is Holm-corrected
    keys = ["batch", "position", "tag_id"]  # pairs are resampled in key order
    for layer in (0, 1, 2):
        va = a[a["layer"] == layer].sort_values(keys)["lift_object"].to_numpy()
        vb = b[b["layer"] == layer].sort_values(keys)["lift_object"].to_numpy()
        want = paired_test(va, vb, n_resamples=999, seed=3)
        for key in ("p_value", "ci_low", "ci_high", "rank_biserial", "cohens_dz", "mean_a"):
            assert lift.at[layer, key] == pytest.approx(want[key])
    np.testing.assert_allclose(lift["p_adjusted"], holm(lift["p_value"]))
    bh = compare_models(a, b, "lift_object", correction="bh", n_resamples=999)
    np.testing.assert_allclose(bh["p_adjusted"], sps.false_discovery_control(bh["p_value"]))


def test_compare_models_ignores_row_order() -> None:
    a, b = _scores(0, {}), _scores(1, {1: 0.1})
    want = compare_models(a, b, "lift_object", n_resamples=199)
    shuffled = compare_models(
        a.sample(frac=1, random_state=0), b.sample(frac=1, random_state=1), "lift_object",
        n_resamples=199,
    )  # fmt: skip
    pd.testing.assert_frame_equal(shuffled, want)


def test_compare_models_counts_unmatched_and_nan_pairs() -> None:
    a = _scores(0, {})
    b = _scores(1, {}).iloc[2:].copy()  # two of layer 0's mentions missing in b
    extra = b.iloc[[0]].assign(position=999)
    b = pd.concat([b, extra])
    b.loc[b.index[5], "lift_object"] = np.nan
    out = compare_models(a, b, "lift_object", n_resamples=99, ci_method="percentile")
    row0 = out.set_index("layer").loc[0]
    assert row0["n_unmatched_a"] == 2 and row0["n_unmatched_b"] == 1
    assert row0["n_nan"] == 1 and row0["n_pairs"] == 30 - 2 - 1


def test_compare_models_bad_input() -> None:
    a = _scores(0, {})
    with pytest.raises(InputError, match="lacks column"):
        compare_models(a, a, "auroc")
    heads = pd.concat([a.assign(head=0), a.assign(head=1)])
    with pytest.raises(InputError, match="average over heads"):
        compare_models(heads, heads, "lift_object")
    ok = compare_models(heads, heads, "lift_object", by=("layer", "head"), n_resamples=99)
    assert len(ok) == 6 and (ok["p_value"] == 1.0).all()
    with pytest.raises(InputError, match="must not share"):
        compare_models(a, a, "lift_object", pair_on=("layer", "position"))
    with pytest.raises(InputError, match="correction"):
        compare_models(a, a, "lift_object", correction="sidak")  # type: ignore[arg-type]
