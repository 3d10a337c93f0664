"""Tests for somprobe.measure.stats: equal to scipy, to hand computations and to
independent plain-numpy versions of the cluster bootstrap and the sign-flip tests."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from somprobe.errors import InputError
from somprobe.measure import stats
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


# --------------------------------------------------------------------------------------
# compare_scores: mentions clustered in scenes, one family over layers × metrics

KEYS = ["batch", "mention", "tag_id"]


def _scenes(
    seed: int,
    *,
    n_scenes: int = 30,
    layers: tuple[int, ...] = (0, 1, 2),
    metrics: tuple[str, ...] = ("lift_object", "pointing"),
    scene_sd: float = 1.0,
    noise_sd: float = 0.1,
    shift: dict[tuple[int, str], float] | None = None,
    sizes: tuple[int, int] = (2, 9),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two models' per-mention scores on the same mentions. Model b's paired difference
    is a scene effect, shared by every mention of the scene (and, through a common part,
    correlated across layers and metrics), plus a little mention noise: mentions within
    a scene are strongly correlated."""
    rng = np.random.default_rng(seed)
    shift = shift or {}
    rows_a, rows_b = [], []
    for s in range(n_scenes):
        n = int(rng.integers(*sizes))
        common = rng.normal(0.0, scene_sd)
        base = rng.random(n)
        for layer in layers:
            effect = {m: 0.6 * common + 0.8 * rng.normal(0.0, scene_sd) for m in metrics}
            for i in range(n):
                key = {"image": f"img{s:03d}", "batch": s, "mention": i, "tag_id": 1 + i,
                       "layer": layer}  # fmt: skip
                a, b = dict(key), dict(key)
                for m in metrics:
                    a[m] = base[i]
                    b[m] = base[i] + effect[m] + shift.get((layer, m), 0.0)
                    b[m] += rng.normal(0.0, noise_sd)
                rows_a.append(a)
                rows_b.append(b)
    return pd.DataFrame(rows_a), pd.DataFrame(rows_b)


def _diffs(a: pd.DataFrame, b: pd.DataFrame, metric: str, layer: int) -> pd.DataFrame:
    """The paired differences of one layer, in pair-key order, with their scene."""
    pa = a[a["layer"] == layer].sort_values(KEYS)
    pb = b[b["layer"] == layer].sort_values(KEYS)
    return pd.DataFrame(
        {"d": pb[metric].to_numpy() - pa[metric].to_numpy(), "scene": pa["batch"].to_numpy()}
    )


def _numpy_cluster_bootstrap(
    d: np.ndarray, scene: np.ndarray, n_resamples: int, seed: int
) -> np.ndarray:
    """The plain version: draw whole scenes with replacement (scenes in sorted order,
    ``default_rng(seed).integers(0, K, (B, K))``), pool their mentions, take the mean."""
    ids = np.unique(scene)
    members = [d[scene == c] for c in ids]
    draws = np.random.default_rng(seed).integers(0, ids.size, size=(n_resamples, ids.size))
    return np.array([np.concatenate([members[k] for k in row]).mean() for row in draws])


def test_cluster_is_required_or_explicitly_none() -> None:
    a, b = _scenes(0, n_scenes=8)
    with pytest.raises(InputError, match="cluster"):
        stats.compare_scores(a, b, "lift_object", pair_on=KEYS)
    naive = stats.compare_scores(a, b, "lift_object", pair_on=KEYS, cluster=None, n_resamples=99)
    assert (naive["n_clusters"] == naive["n_pairs"]).all()
    clustered = stats.compare_scores(
        a, b, "lift_object", pair_on=KEYS, cluster="batch", n_resamples=99
    )
    assert (clustered["n_clusters"] == 8).all()
    assert compare_models is stats.compare_scores  # the old name, a plain alias
    from somprobe.measure import compare_scores

    assert compare_scores is stats.compare_scores


def test_cluster_interval_is_wider_than_naive_and_matches_plain_numpy() -> None:
    a, b = _scenes(1, layers=(0,), metrics=("lift_object",))
    B, seed = 2000, 5
    opts = {"pair_on": KEYS, "n_resamples": B, "seed": seed, "n_permutations": 99}
    clustered = stats.compare_scores(a, b, "lift_object", cluster="batch", **opts).iloc[0]
    naive = stats.compare_scores(a, b, "lift_object", cluster=None, **opts).iloc[0]
    d = _diffs(a, b, "lift_object", 0)
    assert clustered["mean_diff"] == pytest.approx(d["d"].mean())
    assert clustered["n_pairs"] == len(d) and clustered["n_clusters"] == 30
    wide = clustered["ci_high"] - clustered["ci_low"]
    narrow = naive["ci_high"] - naive["ci_low"]
    assert wide > 1.8 * narrow  # ~sqrt(design effect) with mean scene size 5, ICC ~0.99

    # the same interval, resampled scene by scene in plain numpy
    boot = _numpy_cluster_bootstrap(d["d"].to_numpy(), d["scene"].to_numpy(), B, seed)
    want = np.quantile(boot, [0.025, 0.975])
    assert [clustered["ci_low"], clustered["ci_high"]] == pytest.approx(want, rel=1e-9)
    # ... and close to the analytic cluster-robust t interval of the pooled mean
    g = d.groupby("scene")["d"].agg(["sum", "size"])
    theta, k = d["d"].mean(), len(g)
    se = np.sqrt(k / (k - 1) * ((g["sum"] - theta * g["size"]) ** 2).sum()) / len(d)
    t_width = 2 * sps.t.ppf(0.975, k - 1) * se
    assert 0.8 < wide / t_width < 1.1
    # cluster=None: every pair its own cluster, i.e. scipy's ordinary bootstrap
    iid = sps.bootstrap(
        (d["d"].to_numpy(),), np.mean, n_resamples=B, method="percentile",
        rng=np.random.default_rng(seed),
    ).confidence_interval  # fmt: skip
    assert [naive["ci_low"], naive["ci_high"]] == pytest.approx([iid.low, iid.high], rel=1e-9)


def test_bca_on_clusters_matches_plain_numpy_and_scipy() -> None:
    a, b = _scenes(2, layers=(0,), metrics=("lift_object",), n_scenes=25)
    B, seed = 1500, 11
    opts = {"pair_on": KEYS, "n_resamples": B, "seed": seed, "n_permutations": 99,
            "ci_method": "BCa"}  # fmt: skip
    got = stats.compare_scores(a, b, "lift_object", cluster="batch", **opts).iloc[0]
    d = _diffs(a, b, "lift_object", 0)
    dd, scene = d["d"].to_numpy(), d["scene"].to_numpy()
    boot = _numpy_cluster_bootstrap(dd, scene, B, seed)
    theta = dd.mean()
    z0 = sps.norm.ppf(((boot < theta).sum() + (boot <= theta).sum()) / (2 * B))
    jack = np.array([dd[scene != c].mean() for c in np.unique(scene)])  # leave a scene out
    u = jack.mean() - jack
    acc = (u**3).sum() / (6 * ((u**2).sum()) ** 1.5)
    z = sps.norm.ppf([0.025, 0.975])
    want = np.quantile(boot, sps.norm.cdf(z0 + (z0 + z) / (1 - acc * (z0 + z))))
    assert [got["ci_low"], got["ci_high"]] == pytest.approx(want, rel=1e-9)
    naive = stats.compare_scores(a, b, "lift_object", cluster=None, **opts).iloc[0]
    iid = sps.bootstrap(
        (dd,), np.mean, n_resamples=B, method="BCa", rng=np.random.default_rng(seed)
    ).confidence_interval
    assert [naive["ci_low"], naive["ci_high"]] == pytest.approx([iid.low, iid.high], rel=1e-9)


def test_every_row_uses_the_same_scene_draws() -> None:
    a, b = _scenes(3, layers=(0, 1), metrics=("lift_object",))
    for df in (a, b):
        df["double"] = 2 * df["lift_object"]
    out = stats.compare_scores(
        a, b, ["lift_object", "double"], pair_on=KEYS, cluster="batch", n_resamples=500
    ).set_index(["metric", "layer"])
    for layer in (0, 1):  # the statistic is linear in the differences: same draws, 2x interval
        for col in ("ci_low", "ci_high", "mean_diff"):
            want = 2 * out.at[("lift_object", layer), col]
            assert out.at[("double", layer), col] == pytest.approx(want, rel=1e-9)
        assert out.at[("double", layer), "p_value"] == out.at[("lift_object", layer), "p_value"]


def test_sign_flip_p_value_is_exact_at_the_scene_level() -> None:
    # 6 scenes of 8 mentions: 2**6 = 64 sign patterns, enumerated (n_permutations >= 64)
    a, b = _scenes(4, n_scenes=6, sizes=(8, 9), layers=(0,), metrics=("lift_object",),
                   shift={(0, "lift_object"): 0.7})  # fmt: skip
    got = stats.compare_scores(
        a, b, "lift_object", pair_on=KEYS, cluster="batch", n_permutations=999, n_resamples=99
    ).iloc[0]
    d = _diffs(a, b, "lift_object", 0)
    s = d.groupby("scene")["d"].sum().to_numpy()
    flips = np.array(list(itertools.product([1.0, -1.0], repeat=s.size)))
    want = np.mean(np.abs(flips @ s) >= abs(s.sum()) - 1e-12)
    assert got["p_value"] == pytest.approx(want)
    assert got["statistic"] == pytest.approx(s.sum() / np.sqrt((s**2).sum()))
    assert got["p_value"] >= 2 / 64  # 6 scenes can never give p < 1/32
    # the mention-level Wilcoxon test treats the 48 correlated mentions as independent
    assert sps.wilcoxon(d["d"]).pvalue < 1e-6
    greater = stats.compare_scores(
        a, b, "lift_object", pair_on=KEYS, cluster="batch", alternative="greater",
        n_permutations=999, n_resamples=99,
    ).iloc[0]  # fmt: skip
    assert greater["p_value"] == pytest.approx(np.mean(flips @ s >= s.sum() - 1e-12))


def test_monte_carlo_p_values_have_resolution_one_over_b_plus_one() -> None:
    a, b = _scenes(5, n_scenes=40, layers=(0, 1), metrics=("lift_object", "pointing"))
    out = stats.compare_scores(
        a, b, ["lift_object", "pointing"], pair_on=KEYS, cluster="batch", n_permutations=999,
        n_resamples=99,
    )  # fmt: skip
    k = out["p_value"] * 1000
    np.testing.assert_allclose(k, np.round(k), atol=1e-9)
    assert (out["p_value"] >= 1 / 1000).all() and (out["p_adjusted"] >= out["p_value"]).all()
    assert out.attrs["n_permutations"] == 999 and out.attrs["exact"] is False
    assert out.attrs["correction"] == "maxT" and out.attrs["family_size"] == 4


def test_max_t_equals_its_definition_over_the_whole_family() -> None:
    # 8 scenes: all 256 sign patterns, so the family p-value is exact and rng-free
    metrics = ("lift_object", "pointing", "share_object")
    a, b = _scenes(6, n_scenes=8, layers=(0, 1, 2), metrics=metrics,
                   shift={(1, "pointing"): 0.8})  # fmt: skip
    out = stats.compare_scores(
        a, b, list(metrics), pair_on=KEYS, cluster="batch", n_permutations=9999, n_resamples=99
    )
    assert out.attrs["exact"] is True and len(out) == 9
    flips = np.array(list(itertools.product([1.0, -1.0], repeat=8)))
    t_obs, t_null = [], []
    for m in metrics:
        for layer in (0, 1, 2):
            s = _diffs(a, b, m, layer).groupby("scene")["d"].sum().to_numpy()
            norm = np.sqrt((s**2).sum())
            t_obs.append(s.sum() / norm)
            t_null.append(flips @ s / norm)
    t_abs = np.abs(np.array(t_obs))
    max_null = np.abs(np.array(t_null)).max(axis=0)
    want = [np.mean(max_null >= t - 1e-12) for t in t_abs]
    np.testing.assert_allclose(out["p_adjusted"], want)
    np.testing.assert_allclose(out["statistic"], t_obs)


def test_holm_bh_and_none_correct_over_layers_times_metrics() -> None:
    a, b = _scenes(7, n_scenes=20, layers=(0, 1, 2), shift={(2, "pointing"): 0.5})
    opts = {"pair_on": KEYS, "cluster": "batch", "n_permutations": 999, "n_resamples": 99}
    family = ["lift_object", "pointing"]
    h = stats.compare_scores(a, b, family, correction="holm", **opts)
    np.testing.assert_allclose(h["p_adjusted"], holm(h["p_value"]))  # one family of 6
    bh = stats.compare_scores(a, b, family, correction="bh", **opts)
    np.testing.assert_allclose(bh["p_adjusted"], sps.false_discovery_control(bh["p_value"]))
    none = stats.compare_scores(a, b, family, correction="none", **opts)
    np.testing.assert_allclose(none["p_adjusted"], none["p_value"])
    mt = stats.compare_scores(a, b, family, **opts)
    np.testing.assert_allclose(mt["p_value"], h["p_value"])
    assert h.attrs["family_size"] == 6
    assert (mt["significant"] == (mt["p_adjusted"] <= 0.05)).all()


def test_max_t_gains_over_holm_when_the_family_is_correlated() -> None:
    # three copies of one metric: maxT sees one test, Holm pays for three
    a, b = _scenes(8, n_scenes=30, layers=(0,), metrics=("lift_object",),
                   shift={(0, "lift_object"): 0.45})  # fmt: skip
    for df in (a, b):
        df["copy1"], df["copy2"] = df["lift_object"], df["lift_object"]
    opts = {"pair_on": KEYS, "cluster": "batch", "n_permutations": 1999, "n_resamples": 99}
    cols = ["lift_object", "copy1", "copy2"]
    mt = stats.compare_scores(a, b, cols, **opts)
    h = stats.compare_scores(a, b, cols, correction="holm", **opts)
    np.testing.assert_allclose(mt["p_adjusted"], mt["p_value"])
    np.testing.assert_allclose(h["p_adjusted"], np.minimum(1, 3 * h["p_value"]))


def test_a_true_effect_is_found_and_every_row_is_kept() -> None:
    metrics = ("lift_object", "pointing", "share_object")
    a, b = _scenes(9, n_scenes=40, layers=(0, 1, 2, 3), metrics=metrics,
                   shift={(2, "share_object"): 0.8})  # fmt: skip
    out = stats.compare_scores(
        a, b, list(metrics), pair_on=KEYS, cluster="batch", n_permutations=999, n_resamples=999
    )
    assert len(out) == 12  # every layer × metric, never only the best
    assert list(out["metric"]) == [m for m in metrics for _ in range(4)]
    assert list(out["layer"]) == [0, 1, 2, 3] * 3
    hit = out[out["significant"]]
    assert [(r.metric, r.layer) for r in hit.itertuples()] == [("share_object", 2)]
    row = hit.iloc[0]
    assert row["direction"] == "b>a" and row["p_adjusted"] <= 0.002
    assert row["ci_low"] < 0.8 < row["ci_high"] and row["ci_low"] > 0
    assert set(out["direction"]) <= {"b>a", "a>b", "none"}
    assert (out["direction"] == np.where(out["mean_diff"] > 0, "b>a", "a>b")).all()
    expected = [
        "metric", "layer", "n_pairs", "n_clusters", "n_nan", "n_unmatched_a", "n_unmatched_b",
        "mean_a", "mean_b", "mean_diff", "ci_low", "ci_high", "statistic", "p_value",
        "p_adjusted", "significant", "direction",
    ]  # fmt: skip
    assert list(out.columns) == expected


def test_nan_pairs_are_dropped_per_metric_and_counted() -> None:
    a, b = _scenes(10, n_scenes=10, layers=(0, 1))
    first = int((a["batch"] == 0).sum() / 2)  # scene 0's mentions per layer
    a.loc[(a["layer"] == 0) & (a["batch"] == 0), "pointing"] = np.nan  # a whole scene NA
    b.loc[b.index[-1], "pointing"] = np.nan  # one pair of layer 1
    out = stats.compare_scores(
        a, b, ["lift_object", "pointing"], pair_on=KEYS, cluster="batch", n_resamples=99
    ).set_index(["metric", "layer"])
    total = int((a["layer"] == 0).sum())
    assert out.at[("lift_object", 0), "n_pairs"] == total
    assert out.at[("pointing", 0), "n_pairs"] == total - first
    assert out.at[("pointing", 0), "n_nan"] == first
    assert out.at[("pointing", 0), "n_clusters"] == 9
    assert out.at[("pointing", 1), "n_pairs"] == total - 1
    assert out.at[("lift_object", 1), "n_clusters"] == 10
    d = _diffs(a, b, "pointing", 0).dropna()
    assert out.at[("pointing", 0), "mean_diff"] == pytest.approx(d["d"].mean())


def test_unmatched_rows_are_counted_and_row_order_does_not_matter() -> None:
    a, b = _scenes(11, n_scenes=12, layers=(0, 1))
    opts = {"pair_on": KEYS, "cluster": "batch", "n_resamples": 199, "n_permutations": 199}
    want = stats.compare_scores(a, b, "lift_object", **opts)
    shuffled = stats.compare_scores(
        a.sample(frac=1, random_state=0), b.sample(frac=1, random_state=1), "lift_object", **opts
    )
    pd.testing.assert_frame_equal(shuffled, want)
    short = b.iloc[2:]  # two of layer 0's mentions missing in b
    out = stats.compare_scores(a, short, "lift_object", **opts).set_index("layer")
    assert out.at[0, "n_unmatched_a"] == 2 and out.at[0, "n_pairs"] == int(
        (a["layer"] == 0).sum() - 2
    )


def test_cluster_column_outside_the_pair_keys_is_checked() -> None:
    a, b = _scenes(12, n_scenes=6, layers=(0,))
    opts = {"pair_on": ["batch", "mention"], "n_resamples": 99}
    ok = stats.compare_scores(a, b, "lift_object", cluster="image", **opts)
    assert (ok["n_clusters"] == 6).all()
    moved = b.copy()
    moved.loc[moved.index[0], "image"] = "img999"
    with pytest.raises(InputError, match="cluster"):
        stats.compare_scores(a, moved, "lift_object", cluster="image", **opts)


def test_degenerate_families() -> None:
    a, _ = _scenes(13, n_scenes=5, layers=(0, 1))
    same = stats.compare_scores(a, a, "lift_object", pair_on=KEYS, cluster="batch")
    assert (same["p_value"] == 1.0).all() and (same["p_adjusted"] == 1.0).all()
    assert (same["ci_low"] == 0.0).all() and (same["ci_high"] == 0.0).all()
    assert (same["direction"] == "none").all() and not same["significant"].any()
    one = a[a["batch"] == 0]
    single = stats.compare_scores(one, one.assign(lift_object=one["lift_object"] + 1),
                                  "lift_object", pair_on=KEYS, cluster="batch")  # fmt: skip
    assert (single["n_clusters"] == 1).all() and single["ci_low"].isna().all()
    assert (single["p_value"] == 1.0).all()  # one scene: its sign can be flipped
    allnan = a.assign(pointing=np.nan)
    out = stats.compare_scores(
        allnan, allnan, ["lift_object", "pointing"], pair_on=KEYS, cluster="batch",
        n_resamples=99,
    ).set_index(["metric", "layer"])  # fmt: skip
    assert out.at[("pointing", 0), "n_pairs"] == 0 and np.isnan(out.at[("pointing", 0), "p_value"])
    assert np.isnan(out.at[("pointing", 0), "p_adjusted"])
    assert out.attrs["family_size"] == 2
