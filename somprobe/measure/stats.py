"""Paired statistics: two score tables on the same observations (tag mentions).

:func:`compare_scores` (also reachable by its old name :func:`compare_models`) pairs
the rows of two score tables that share the ``by`` + ``pair_on`` keys (the same tag
mention scored by model a and by model b) and tests, for every group (by default every
layer) × metric, the **mean paired difference b − a**. It follows the measurement rules
of the design notes: resample by image (scene), not by mention; correct across the whole
family that was looked at (all groups × all metrics of one call); show every row.

**Clusters.** Mentions of one image share the image, so their differences are
correlated; the image (scene) is the unit of resampling. ``cluster`` names the column
holding each pair's image id (``"batch"`` in :func:`~somprobe.measure.align.score_alignment`'s
and ``aggregate_by_layer(..., per_mention=True)``'s tables, ``"image"`` where that column
is kept). It has no default: ``cluster=None`` must be written out, and declares the
pairs independent (every pair, i.e. every ``pair_on`` key, is its own cluster).

**Estimate.** For one row let ``S_k`` be the sum and ``n_k`` the number of defined
paired differences in cluster ``k``; ``mean_diff = Σ S_k / Σ n_k`` is the mean over
mentions.

**Interval: cluster bootstrap.** The ``K`` clusters that hold at least one matched
pair anywhere in the call are put in sorted order and drawn with replacement,
``np.random.default_rng(seed).integers(0, K, size=(n_resamples, K))``: *one* set of
draws for every row, so intervals of different layers and metrics are comparable. A
resample's mean is ``Σ c_k S_k / Σ c_k n_k`` (``c_k``: how often cluster ``k`` was
drawn), i.e. the pooled mean of all mentions of the drawn clusters; a cluster where a
row's metric is undefined is drawn but adds nothing to that row (domain estimation), and
a resample that drew none of a row's clusters is left out of that row. ``ci_method``:

* ``"percentile"`` (default): the ``(1 ± confidence) / 2`` quantiles (linear
  interpolation) of the resampled means. Chosen as the default because it is transparent
  and needs no jackknife; with few clusters every bootstrap interval is too narrow by
  about ``sqrt((K - 1) / K)`` and a t quantile, so read intervals from < 10 images with
  care;
* ``"BCa"``: bias-corrected and accelerated on clusters, as in ``scipy.stats.bootstrap``
  (bias from the share of resampled means below the estimate, ties counted half;
  acceleration from the leave-one-cluster-out jackknife over the row's clusters).

With ``cluster=None`` both equal ``scipy.stats.bootstrap`` of the row's differences (in
pair-key order) with ``rng=np.random.default_rng(seed)``. A row needs two clusters for
an interval.

**Test: cluster sign flips.** The row statistic is the self-normalised sum
``t = Σ S_k / sqrt(Σ S_k²)``. Flipping the sign of whole clusters leaves the denominator
unchanged, so within a row ``t`` orders the flips exactly as the mean difference does,
and across rows it puts every metric on one scale (about N(0, 1) under the null). Under
the null hypothesis that each cluster's summed difference is symmetric about zero and
clusters are independent, every sign pattern is equally likely:

* ``2**K <= n_permutations``: all ``2**K`` patterns are enumerated and
  ``p = #{|t_flip| >= |t|} / 2**K`` is exact (with ``K`` clusters p is never below
  ``2 / 2**K``: 5 images can never give p < 0.0625);
* else ``n_permutations`` random patterns, the same for every row, from
  ``np.random.default_rng([seed, 1]).integers(0, 2, size=(n_permutations, K))``, and
  ``p = (1 + #{|t_flip| >= |t|}) / (n_permutations + 1)``: valid
  (``P(p <= alpha) <= alpha``) with resolution ``1 / (n_permutations + 1)`` (9,999 flips:
  steps of 0.0001; 999: 0.001, and p <= 0.05 means at most 49 flips as extreme).

``alternative="greater"`` (b > a) counts ``t_flip >= t``, ``"less"`` ``t_flip <= t``.

**Family-wise error.** The family is every row of the call that has at least one pair.
``correction``:

* ``"maxT"`` (default): Westfall–Young single-step max-T. With the *same* sign flips for
  every row, ``p_adjusted = (1 + #{max_j |t_j,flip| >= |t|}) / (n_permutations + 1)``
  (exact enumeration as above). It controls the family-wise error rate in the strong
  sense (under the null of every row in any subset, given that each cluster's vector of
  summed differences over those rows is symmetric) and, unlike Holm, uses the real
  dependence between rows: adjacent layers and related metrics are nearly the same
  numbers, and max-T then pays for about one test, not for all of them. That is why it
  is the default;
* ``"holm"``: Holm's step-down over all rows' p-values (valid under any dependence,
  ignores it);
* ``"bh"``: Benjamini–Hochberg over all rows (controls the false discovery rate, not
  the family-wise error);
* ``"none"``: ``p_adjusted = p_value``.

``significant`` is ``p_adjusted <= alpha``.

Pairs where either value is NaN or infinite (an undefined metric) are dropped for that
metric only (``n_nan``); rows of one table without a partner in the other are counted
(``n_unmatched_a/b``), never tested. :func:`paired_test` is the older per-group test for
*independent* pairs (Wilcoxon, bootstrap of mentions); :func:`compare_scores` no longer
uses it.

Example:
    >>> per_a = aggregate_by_layer(score_alignment(...), per_mention=True)  # doctest: +SKIP
    >>> per_b = ...  # the other model on the same mentions  # doctest: +SKIP
    >>> compare_scores(per_a, per_b, ["lift_object", "pointing"], cluster="batch",
    ...                pair_on=["batch", "mention", "tag_id"])  # doctest: +SKIP
         metric  layer  n_pairs  n_clusters  ...  mean_diff  ci_low  ci_high  p_value  p_adjusted ...
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from jaxtyping import Float
from scipy import special as spc
from scipy import stats as sps

from somprobe.errors import InputError

Correction = Literal["holm", "bh", "none"]
#: corrections of :func:`compare_scores`: over every group × metric of one call.
FamilyCorrection = Literal["maxT", "holm", "bh", "none"]
Alternative = Literal["two-sided", "greater", "less"]


def _finite_order(
    p: Sequence[float] | np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``p`` as floats, an all-NaN output of its shape, and its finite entries' indices in
    ascending order of p (stable), for the step-wise corrections below."""
    p = np.asarray(p, dtype=np.float64)
    ok = np.flatnonzero(np.isfinite(p))
    return p, np.full_like(p, np.nan), ok[np.argsort(p[ok], kind="stable")]


def holm(p: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values (NaNs stay NaN and are not counted).

    Example:
        >>> holm([0.01, 0.04, 0.03]).round(3).tolist()
        [0.03, 0.06, 0.06]
    """
    p, out, order = _finite_order(p)
    m = order.size
    if m:
        scaled = (m - np.arange(m)) * p[order]
        out[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return out


def benjamini_hochberg(p: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (NaNs stay NaN and are not counted).

    Example:
        >>> benjamini_hochberg([0.01, 0.04, 0.03]).round(3).tolist()
        [0.03, 0.04, 0.04]
    """
    p, out, order = _finite_order(p)
    m = order.size
    if m:
        scaled = p[order] * m / np.arange(1, m + 1)
        out[order] = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    return out


def adjust_pvalues(p: Sequence[float] | np.ndarray, method: Correction = "holm") -> np.ndarray:
    """Correct a family of p-values: "holm", "bh" or "none" (NaN stays NaN).

    Raises:
        InputError: an unknown method, or a p-value outside [0, 1].
    """
    values = np.asarray(p, dtype=np.float64)
    finite = values[~np.isnan(values)]
    if finite.size and (finite.min() < 0 or finite.max() > 1):
        bad = finite[(finite < 0) | (finite > 1)][0]
        raise InputError(f"p-values must lie in [0, 1] (or be NaN), got {bad!r}")
    if method == "holm":
        return holm(p)
    if method == "bh":
        return benjamini_hochberg(p)
    if method == "none":
        return np.asarray(p, dtype=np.float64).copy()
    if method == "maxT":
        raise InputError(
            "correction 'maxT' needs the permutation distribution of every member of the "
            "family, not only its p-values: use compare_scores(..., correction='maxT')"
        )
    raise InputError(f"correction must be 'holm', 'bh' or 'none', got {method!r}")


def rank_biserial(d: Float[np.ndarray, " pair"]) -> float:
    """Matched-pairs rank-biserial correlation of the differences ``d``.

    Example:
        >>> rank_biserial(np.array([1.0, 2.0, -0.5]))
        0.6666666666666666
    """
    d = np.asarray(d, dtype=np.float64)
    nz = d[d != 0]
    if d.size == 0:
        return float("nan")
    if nz.size == 0:
        return 0.0
    ranks = sps.rankdata(np.abs(nz))
    return float((ranks[nz > 0].sum() - ranks[nz < 0].sum()) / ranks.sum())


def cohens_dz(d: Float[np.ndarray, " pair"]) -> float:
    """Cohen's d_z: mean difference over the standard deviation of the differences.

    Example:
        >>> round(cohens_dz(np.array([1.0, 2.0, 3.0])), 3)
        2.0
    """
    d = np.asarray(d, dtype=np.float64)
    if d.size < 2:
        return float("nan")
    sd = d.std(ddof=1)
    if sd == 0:
        return 0.0 if d.mean() == 0 else float("nan")
    return float(d.mean() / sd)


_CI_METHODS = ("BCa", "percentile", "basic")
_ALTERNATIVES = ("two-sided", "greater", "less")


def _check_test_options(
    alternative: str, n_resamples: int, confidence: float, ci_method: str
) -> None:
    """Options of :func:`paired_test` (checked even where no bootstrap ends up running)."""
    if alternative not in _ALTERNATIVES:
        raise InputError(f"alternative must be one of {_ALTERNATIVES}, got {alternative!r}")
    if ci_method not in _CI_METHODS:
        raise InputError(f"ci_method must be one of {_CI_METHODS}, got {ci_method!r}")
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int | np.integer):
        raise InputError(f"n_resamples must be a positive integer, got {n_resamples!r}")
    if n_resamples < 1:
        raise InputError(f"n_resamples must be at least 1, got {n_resamples}")
    if not 0 < confidence < 1:
        raise InputError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")


def paired_test(
    a: Float[np.ndarray, " pair"],
    b: Float[np.ndarray, " pair"],
    *,
    alternative: Alternative = "two-sided",
    n_resamples: int = 9999,
    confidence: float = 0.95,
    ci_method: Literal["BCa", "percentile", "basic"] = "BCa",
    seed: int = 0,
) -> dict[str, float]:
    """Wilcoxon test, bootstrap CI of the mean of ``b - a`` and effect sizes, for
    *independent* pairs (mentions of one image are not: use :func:`compare_scores`).

    No pairs give NaN statistics (``n_pairs`` 0); one pair has no interval.

    Raises:
        InputError: ``a`` and ``b`` are not two 1-D arrays of one length, hold NaN or
            infinity (drop those pairs; :func:`compare_models` does), or an option is
            out of range.

    Example:
        >>> r = paired_test(np.array([0.1, 0.2, 0.3]), np.array([0.3, 0.5, 0.4]))
        >>> round(r["mean_diff"], 3), r["rank_biserial"]
        (0.2, 1.0)
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise InputError(
            f"paired samples must be two 1-D arrays of one length, got {a.shape} and {b.shape}"
        )
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise InputError("paired samples hold NaN or infinite values; drop those pairs first")
    _check_test_options(alternative, n_resamples, confidence, ci_method)
    d = b - a
    n = d.size
    out: dict[str, float] = {
        "n_pairs": n,
        "mean_a": float(a.mean()) if n else float("nan"),
        "mean_b": float(b.mean()) if n else float("nan"),
        "mean_diff": float(d.mean()) if n else float("nan"),
        "median_diff": float(np.median(d)) if n else float("nan"),
        "ci_low": float("nan"),
        "ci_high": float("nan"),
        "statistic": float("nan"),
        "p_value": float("nan"),
        "rank_biserial": rank_biserial(d),
        "cohens_dz": cohens_dz(d),
    }
    if n == 0:
        return out
    if np.all(d == 0):
        out.update(statistic=0.0, p_value=1.0)
    else:
        res = sps.wilcoxon(d, alternative=alternative)
        out.update(statistic=float(res.statistic), p_value=float(res.pvalue))
    if n >= 2:
        if np.ptp(d) == 0:
            out.update(ci_low=float(d[0]), ci_high=float(d[0]))
        else:
            boot = sps.bootstrap(
                (d,),
                np.mean,
                n_resamples=n_resamples,
                confidence_level=confidence,
                method=ci_method,
                rng=np.random.default_rng(seed),
            )
            ci = boot.confidence_interval
            out.update(ci_low=float(ci.low), ci_high=float(ci.high))
    return out


# --------------------------------------------------------------------------------------
# compare_scores: clustered pairs, one family over groups × metrics


class _Required(enum.Enum):
    """Marks ``cluster`` as not given (it has no default on purpose)."""

    CLUSTER = "required"

    def __repr__(self) -> str:
        return "<required>"


_FAMILY_CORRECTIONS = ("maxT", "holm", "bh", "none")
_CLUSTER_CI_METHODS = ("percentile", "BCa")
#: cells (draws × clusters, or resamples × rows) held in memory at once.
_CHUNK_CELLS = 1 << 22
#: relative tolerance when comparing a flipped statistic with the observed one.
_TIE_TOL = 1e-9


def _check_columns(df: pd.DataFrame, cols: Sequence[str], name: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise InputError(f"{name} lacks column(s) {missing}; it has {list(df.columns)}")


def _check_count(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    if value < 1:
        raise InputError(f"{name} must be at least 1, got {value}")


def _check_cluster(cluster: Any, by: list[str], pair_on: list[str]) -> str | None:
    """The cluster column (None: independent pairs), after checking how it was given."""
    if cluster is _Required.CLUSTER:
        raise InputError(
            "say what the resampling unit is: cluster='batch' (or the column naming each "
            "pair's image / scene), since mentions of one image are correlated; or "
            "cluster=None to declare every pair independent"
        )
    if cluster is None:
        return None
    if not isinstance(cluster, str):
        raise InputError(
            f"cluster must be the name of one column (e.g. 'batch') or None, got {cluster!r}"
        )
    if cluster in by:
        raise InputError(
            f"cluster={cluster!r} is also a `by` column: every group would hold a single "
            "cluster; group by something else (e.g. layer) and resample the images"
        )
    return cluster


def _check_table(
    df: Any, name: str, keys: list[str], metrics: list[str], cluster: str | None,
    pair_on: list[str],
) -> None:  # fmt: skip
    if not isinstance(df, pd.DataFrame):
        raise InputError(f"{name} must be a DataFrame of scores, got {type(df).__name__}")
    if cluster is not None and cluster not in df.columns:
        raise InputError(
            f"the cluster column {cluster!r} is not in {name} (it has {list(df.columns)}); "
            "pass the column naming each pair's image / scene, or cluster=None for "
            "independent pairs"
        )
    _check_columns(df, keys + metrics, name)
    if df.empty:
        raise InputError(f"{name} has no rows: there is nothing to compare")
    text = [m for m in metrics if not pd.api.types.is_numeric_dtype(df[m])]
    if text:
        raise InputError(f"{name}: metric column(s) {text} are not numeric; compare scores")
    dup = df.duplicated(keys)
    if dup.any():
        first = df.loc[dup, keys].iloc[0].to_dict()
        raise InputError(
            f"{name} has several rows for one pair key {first}; pair keys must be "
            "unique within a group: average over heads first "
            "(aggregate_by_layer(df, per_mention=True)) or add 'head' to by"
        )
    if cluster is None:
        return
    if df[cluster].isna().any():
        n = int(df[cluster].isna().sum())
        raise InputError(
            f"{name} has {n} row(s) with a missing cluster id in column {cluster!r}; every "
            "pair needs its image / scene"
        )
    if cluster not in pair_on:
        spread = df.groupby(pair_on, sort=True, dropna=False)[cluster].nunique()
        if (spread > 1).any():
            key = spread.index[spread.to_numpy() > 1][0]
            raise InputError(
                f"in {name} the pair {dict(zip(pair_on, np.atleast_1d(key), strict=True))} "
                f"lies in several clusters ({cluster!r} differs between its groups); a pair "
                "(a mention) belongs to one image"
            )


def _cluster_codes(
    both: pd.DataFrame, cluster: str | None, keys: list[str], pair_on: list[str]
) -> np.ndarray:
    """Cluster index (0..K-1, clusters in sorted order) of each matched pair."""
    if cluster is None:
        return both.groupby(pair_on, sort=True, dropna=False).ngroup().to_numpy()
    if cluster in keys:
        values = both[cluster]
    else:
        ca, cb = both[f"{cluster}__a"], both[f"{cluster}__b"]
        differs = (ca != cb).to_numpy()
        if differs.any():
            i = int(np.flatnonzero(differs)[0])
            key = both.iloc[i][keys].to_dict()
            raise InputError(
                f"the pair {key} lies in different clusters in the two tables: "
                f"{cluster}={ca.iloc[i]!r} in df_a, {cb.iloc[i]!r} in df_b; the same "
                "mention must come from the same image in both"
            )
        values = ca
    try:
        codes, _ = pd.factorize(values, sort=True)
    except TypeError:  # ids of mixed types: order of first appearance (key order)
        codes, _ = pd.factorize(values, sort=False)
    return np.asarray(codes)


def _resampled_means(S: np.ndarray, N: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, rows) pooled means over whole clusters drawn with replacement."""
    n_rows, K = S.shape
    rng = np.random.default_rng(seed)
    out = np.empty((n_resamples, n_rows))
    chunk = max(1, min(n_resamples, _CHUNK_CELLS // max(K, n_rows)))
    for start in range(0, n_resamples, chunk):
        c = min(chunk, n_resamples - start)
        draws = rng.integers(0, K, size=(c, K))
        flat = (draws + K * np.arange(c)[:, None]).ravel()
        counts = np.bincount(flat, minlength=c * K).reshape(c, K).astype(np.float64)
        num, den = counts @ S.T, counts @ N.T
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start : start + c] = np.where(den > 0, num / den, np.nan)
    return out


def _bca_levels(
    boot: np.ndarray, theta: float, s: np.ndarray, n: np.ndarray, tails: np.ndarray
) -> np.ndarray:
    """BCa quantile levels of one row (``s, n``: its per-cluster sums and counts)."""
    below = ((boot < theta).sum() + (boot <= theta).sum()) / (2 * boot.size)
    z0 = spc.ndtri(below)
    present = n > 0
    jack = (s.sum() - s[present]) / (n.sum() - n[present])  # leave one cluster out
    u = jack.mean() - jack
    spread = (u**2).sum()
    acc = (u**3).sum() / (6 * spread**1.5) if spread > 0 else 0.0
    z = spc.ndtri(tails)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(spc.ndtr(z0 + (z0 + z) / (1 - acc * (z0 + z))))


def _cluster_intervals(
    S: np.ndarray, N: np.ndarray, n_resamples: int, seed: int, confidence: float,
    method: str,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Cluster-bootstrap interval of every row's pooled mean (NaN below two clusters)."""
    n_rows = S.shape[0]
    low, high = np.full(n_rows, np.nan), np.full(n_rows, np.nan)
    ok = np.flatnonzero((N > 0).sum(axis=1) >= 2)
    if ok.size == 0:
        return low, high
    tails = np.array([(1 - confidence) / 2, (1 + confidence) / 2])
    block = max(1, _CHUNK_CELLS // n_resamples)  # rows per pass; each pass redraws the
    for start in range(0, ok.size, block):  # same clusters from the same seed
        rows = ok[start : start + block]
        boot = _resampled_means(S[rows], N[rows], n_resamples, seed)
        for j, r in enumerate(rows):
            b = boot[:, j][np.isfinite(boot[:, j])]
            theta = S[r].sum() / N[r].sum()
            levels = tails if method == "percentile" else _bca_levels(b, theta, S[r], N[r], tails)
            if np.all(np.isfinite(levels)):
                low[r], high[r] = np.quantile(b, levels)
    return low, high


def _sign_patterns(K: int, n_permutations: int, seed: int) -> tuple[bool, int, Any]:
    """Whether the flips are enumerated, how many there are, and their chunks (±1)."""
    exact = K < 63 and n_permutations >= (1 << K)
    total = (1 << K) if exact else n_permutations
    chunk = max(1, min(total, _CHUNK_CELLS // max(K, 1)))

    def chunks() -> Any:
        rng = np.random.default_rng([seed, 1])
        for start in range(0, total, chunk):
            c = min(chunk, total - start)
            if exact:
                bits = (np.arange(start, start + c)[:, None] >> np.arange(K)) & 1
            else:
                bits = rng.integers(0, 2, size=(c, K))
            yield 1.0 - 2.0 * bits

    return exact, total, chunks()


def _sign_flip_tests(
    S: np.ndarray, valid: np.ndarray, alternative: str, n_permutations: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Per row: t, the sign-flip p-value and the single-step max-T family p-value."""
    n_rows, K = S.shape
    norm = np.sqrt((S**2).sum(axis=1))
    scaled = np.divide(S, norm[:, None], out=np.zeros_like(S), where=norm[:, None] > 0)
    t = np.where(valid, scaled.sum(axis=1), np.nan)
    p, p_max = np.full(n_rows, np.nan), np.full(n_rows, np.nan)
    exact, total, chunks = _sign_patterns(K, n_permutations, seed)
    info = {"exact": exact, "n_permutations": total,
            "p_resolution": 1 / total if exact else 1 / (total + 1)}  # fmt: skip
    rows = np.flatnonzero(valid)
    if rows.size == 0:
        return t, p, p_max, info

    def side(x: np.ndarray) -> np.ndarray:
        if alternative == "greater":
            return x
        return -x if alternative == "less" else np.abs(x)

    observed = side(t[rows])
    threshold = observed - _TIE_TOL * (1 + np.abs(observed))
    count, count_max = np.zeros(rows.size), np.zeros(rows.size)
    for flips in chunks:
        null = side(flips @ scaled[rows].T)  # (flips, rows)
        count += (null >= threshold).sum(axis=0)
        count_max += (null.max(axis=1)[:, None] >= threshold).sum(axis=0)
    if exact:
        p[rows], p_max[rows] = count / total, count_max / total
    else:
        p[rows], p_max[rows] = (1 + count) / (total + 1), (1 + count_max) / (total + 1)
    return t, p, p_max, info


def compare_scores(
    df_a: pd.DataFrame,
    df_b: pd.DataFrame,
    metric: str | Sequence[str],
    *,
    cluster: str | Literal[_Required.CLUSTER] | None = _Required.CLUSTER,
    by: Sequence[str] = ("layer",),
    pair_on: Sequence[str] = ("batch", "position", "tag_id"),
    correction: FamilyCorrection = "maxT",
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
    n_resamples: int = 9999,
    n_permutations: int = 9999,
    confidence: float = 0.95,
    ci_method: Literal["percentile", "BCa"] = "percentile",
    seed: int = 0,
) -> pd.DataFrame:
    """Paired comparison of score table b against a: every group × metric, one family.

    The methods (cluster bootstrap, cluster sign flips, max-T) are described in the
    module docstring (:mod:`somprobe.measure.stats`).

    Args:
        df_a, df_b: score tables of the two models (e.g.
            ``aggregate_by_layer(df, per_mention=True)``); within a group each
            ``pair_on`` key must occur at most once per table.
        metric: the score column(s) to compare; all of them, over all groups, form one
            family.
        cluster: **required**: the column naming each pair's image / scene, the
            resampling unit (``"batch"`` for listing_alignment's per-mention tables), or
            ``None`` written out to declare the pairs independent (each ``pair_on`` key
            its own cluster). A pair must lie in the same cluster in both tables and in
            every group; the column must not be a ``by`` column.
        by: the grouping columns (default per layer); ``[]`` for one group.
        pair_on: the columns that identify the same observation in both tables.
        correction: over the whole family: "maxT" (default), "holm", "bh" or "none".
        alpha: level of the ``significant`` column (``p_adjusted <= alpha``).
        alternative: "two-sided", "greater" (b > a) or "less" (b < a).
        n_resamples: cluster-bootstrap resamples of the interval.
        n_permutations: random cluster sign flips; all ``2**K`` patterns are enumerated
            instead when that is no more (``K`` clusters). p resolution
            ``1 / (n_permutations + 1)``.
        confidence: of the interval.
        ci_method: "percentile" (default) or "BCa", both on clusters.
        seed: of the bootstrap draws and the sign flips; the same draws and flips serve
            every row.

    Raises:
        InputError: ``cluster`` not given, not a column of both tables, missing for a
            row, or different for one pair (between the tables or between groups); a
            table is empty, not a DataFrame or lacks a column; a metric is not numeric;
            pair keys repeat within a group; an option is out of range.

    Returns:
        One row per metric × group (metrics in the order given, groups sorted; every
        row, also those without pairs), columns:

        * ``metric``, the ``by`` columns;
        * ``n_pairs``: pairs used (both values defined); ``n_clusters``: clusters among
          them; ``n_nan``: matched pairs dropped because a value is NaN / infinite;
          ``n_unmatched_a`` / ``n_unmatched_b``: rows of one table without a partner;
        * ``mean_a``, ``mean_b``: means of the two models over the pairs used;
          ``mean_diff``: mean of ``b - a`` over them;
        * ``ci_low``, ``ci_high``: cluster-bootstrap interval of ``mean_diff`` (NaN
          below two clusters);
        * ``statistic``: ``t = Σ_k S_k / sqrt(Σ_k S_k²)`` over the clusters' summed
          differences ``S_k``;
        * ``p_value``: unadjusted cluster sign-flip p-value (NaN without pairs);
        * ``p_adjusted``: adjusted over the family by ``correction``;
        * ``significant``: ``p_adjusted <= alpha``;
        * ``direction``: "b>a" (``mean_diff > 0``), "a>b" (``< 0``) or "none" (zero,
          or no pairs); whether it is significant is ``significant``'s call.

        ``attrs`` records ``cluster``, ``correction``, ``family_size`` (rows with pairs),
        ``n_clusters_total``, ``n_permutations`` (the number of sign patterns used),
        ``exact``, ``p_resolution``, ``n_resamples``, ``ci_method``, ``confidence``,
        ``alternative`` and ``seed``.

    Example:
        >>> compare_scores(per_a, per_b, ["lift_object", "pointing"], cluster="batch",
        ...                pair_on=["batch", "mention", "tag_id"])  # doctest: +SKIP
    """
    metrics = [metric] if isinstance(metric, str) else list(metric)
    by, pair_on = list(by), list(pair_on)
    if not metrics:
        raise InputError("give at least one metric to compare")
    if set(by) & set(pair_on):
        raise InputError(f"by={by} and pair_on={pair_on} must not share columns")
    clus = _check_cluster(cluster, by, pair_on)
    if correction not in _FAMILY_CORRECTIONS:
        raise InputError(f"correction must be one of {_FAMILY_CORRECTIONS}, got {correction!r}")
    if alternative not in _ALTERNATIVES:
        raise InputError(f"alternative must be one of {_ALTERNATIVES}, got {alternative!r}")
    if ci_method not in _CLUSTER_CI_METHODS:
        raise InputError(f"ci_method must be one of {_CLUSTER_CI_METHODS}, got {ci_method!r}")
    _check_count(n_resamples, "n_resamples")
    _check_count(n_permutations, "n_permutations")
    if not 0 < confidence < 1:
        raise InputError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")
    if not 0 < alpha < 1:
        raise InputError(f"alpha must lie strictly between 0 and 1, got {alpha!r}")
    keys = by + pair_on
    for df, name in ((df_a, "df_a"), (df_b, "df_b")):
        _check_table(df, name, keys, metrics, clus, pair_on)

    carry = [clus] if clus is not None and clus not in keys else []
    cols = keys + metrics + carry
    merged = pd.merge(
        df_a[cols], df_b[cols], on=keys, how="outer", suffixes=("__a", "__b"), indicator=True
    ).sort_values(keys, kind="stable", ignore_index=True)
    if by:
        gcode = merged.groupby(by, sort=True, dropna=False).ngroup().to_numpy()
    else:
        gcode = np.zeros(len(merged), dtype=np.int64)
    n_groups = int(gcode.max()) + 1
    first = pd.Series(np.arange(len(merged))).groupby(gcode).first().to_numpy()
    group_keys = merged.loc[first, by].to_dict("records")
    side = merged["_merge"].to_numpy()
    unmatched_a = np.bincount(gcode[side == "left_only"], minlength=n_groups)
    unmatched_b = np.bincount(gcode[side == "right_only"], minlength=n_groups)
    both = merged[side == "both"]
    g_both = gcode[side == "both"]
    ccode = _cluster_codes(both, clus, keys, pair_on)
    K = int(ccode.max()) + 1 if ccode.size else 0

    n_rows = len(metrics) * n_groups
    S, N = np.zeros((n_rows, K)), np.zeros((n_rows, K))
    sum_a, sum_b, n_nan = np.zeros(n_rows), np.zeros(n_rows), np.zeros(n_rows, dtype=np.int64)
    for i, met in enumerate(metrics):
        va = both[f"{met}__a"].to_numpy(dtype=np.float64, na_value=np.nan)
        vb = both[f"{met}__b"].to_numpy(dtype=np.float64, na_value=np.nan)
        ok = np.isfinite(va) & np.isfinite(vb)
        r = i * n_groups + g_both
        cell = r[ok] * K + ccode[ok]
        S += np.bincount(cell, weights=vb[ok] - va[ok], minlength=n_rows * K).reshape(n_rows, K)
        N += np.bincount(cell, minlength=n_rows * K).reshape(n_rows, K)
        sum_a += np.bincount(r[ok], weights=va[ok], minlength=n_rows)
        sum_b += np.bincount(r[ok], weights=vb[ok], minlength=n_rows)
        n_nan += np.bincount(r[~ok], minlength=n_rows)
    n_pairs = N.sum(axis=1).astype(np.int64)
    valid = n_pairs > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_a, mean_b = sum_a / n_pairs, sum_b / n_pairs
        mean_diff = S.sum(axis=1) / n_pairs
    low, high = _cluster_intervals(S, N, n_resamples, seed, confidence, ci_method)
    t, p, p_max, info = _sign_flip_tests(S, valid, alternative, n_permutations, seed)
    p_adj = p_max if correction == "maxT" else adjust_pvalues(p, correction)

    direction = np.select([mean_diff > 0, mean_diff < 0], ["b>a", "a>b"], default="none")
    rows: list[dict[str, Any]] = []
    for i, met in enumerate(metrics):
        for g in range(n_groups):
            r = i * n_groups + g
            rows.append(
                {"metric": met, **group_keys[g], "n_pairs": int(n_pairs[r]),
                 "n_clusters": int((N[r] > 0).sum()), "n_nan": int(n_nan[r]),
                 "n_unmatched_a": int(unmatched_a[g]), "n_unmatched_b": int(unmatched_b[g]),
                 "mean_a": mean_a[r], "mean_b": mean_b[r], "mean_diff": mean_diff[r],
                 "ci_low": low[r], "ci_high": high[r], "statistic": t[r], "p_value": p[r],
                 "p_adjusted": p_adj[r],
                 "significant": bool(np.isfinite(p_adj[r]) and p_adj[r] <= alpha),
                 "direction": str(direction[r])}
            )  # fmt: skip
    columns = [
        "metric", *by, "n_pairs", "n_clusters", "n_nan", "n_unmatched_a", "n_unmatched_b",
        "mean_a", "mean_b", "mean_diff", "ci_low", "ci_high", "statistic", "p_value",
        "p_adjusted", "significant", "direction",
    ]  # fmt: skip
    out = pd.DataFrame(rows, columns=columns)
    out.attrs.update(
        cluster=clus, correction=correction, family_size=int(valid.sum()),
        n_clusters_total=K, n_resamples=n_resamples, ci_method=ci_method,
        confidence=confidence, alternative=alternative, seed=seed, **info,
    )  # fmt: skip
    return out


#: The old name: the same function (it compares two score tables, of any two models).
compare_models = compare_scores


__all__ = [
    "FamilyCorrection",
    "adjust_pvalues",
    "benjamini_hochberg",
    "cohens_dz",
    "compare_models",
    "compare_scores",
    "holm",
    "paired_test",
    "rank_biserial",
]
