"""Paired statistics: two models scored on the same tag mentions.

For each group (by default each layer) the pairs are the rows of the two tables that
share the ``pair_on`` keys (by default the same token position in the same image saying
the same tag); the difference is **model b minus model a**. Per group:

* Wilcoxon signed-rank test (``scipy.stats.wilcoxon``, zero differences dropped, the
  "wilcox" convention); if every difference is zero, p = 1;
* a seeded bootstrap confidence interval of the mean difference
  (``scipy.stats.bootstrap``, BCa by default; the same seed for every group and the
  pairs sorted by their keys, so an interval depends neither on the other groups nor on
  the order of the rows); an interval needs two pairs, and constant differences give
  the point interval;
* effect sizes: the matched-pairs rank-biserial correlation
  ``r = (T+ - T-) / (T+ + T-)`` over the ranks of the non-zero ``|d|`` (+1: every pair
  favours b), and Cohen's ``d_z = mean(d) / sd(d)`` (``ddof=1``); both 0 when every
  difference is zero, ``d_z`` NaN when the differences are constant and non-zero;
* p-values corrected over the groups of each metric by Holm (default) or
  Benjamini–Hochberg; groups without a p-value are left out of the family.

Pairs where either value is NaN, and rows of one table without a partner in the other,
are not tested; their counts are reported (``n_nan``, ``n_unmatched_a/b``).

Example:
    >>> per_a = aggregate_by_layer(score_alignment(...), per_mention=True)  # doctest: +SKIP
    >>> per_b = ...  # the other model on the same mentions  # doctest: +SKIP
    >>> compare_models(per_a, per_b, "lift_object")  # doctest: +SKIP
       layer  n_pairs  mean_a  mean_b  mean_diff  ci_low  ci_high  p_value  p_adjusted ...
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from jaxtyping import Float
from scipy import stats as sps

from somprobe.errors import InputError

Correction = Literal["holm", "bh", "none"]
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
    """Wilcoxon test, bootstrap CI of the mean of ``b - a`` and effect sizes.

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


def _check_columns(df: pd.DataFrame, cols: Sequence[str], name: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise InputError(f"{name} lacks column(s) {missing}; it has {list(df.columns)}")


def compare_models(
    df_a: pd.DataFrame,
    df_b: pd.DataFrame,
    metric: str | Sequence[str],
    *,
    by: Sequence[str] = ("layer",),
    pair_on: Sequence[str] = ("batch", "position", "tag_id"),
    correction: Correction = "holm",
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
    n_resamples: int = 9999,
    confidence: float = 0.95,
    ci_method: Literal["BCa", "percentile", "basic"] = "BCa",
    seed: int = 0,
) -> pd.DataFrame:
    """Paired comparison of model b against model a, one row per metric × group.

    Args:
        df_a, df_b: score tables of the two models (e.g.
            ``aggregate_by_layer(df, per_mention=True)``); within a group each
            ``pair_on`` key must occur at most once per table.
        metric: the score column(s) to compare.
        by: the grouping columns (default per layer).
        pair_on: the columns that identify the same observation in both tables.
        correction: "holm", "bh" or "none", over the groups of each metric.
        alpha: level for the ``significant`` column (on the adjusted p-value).
        alternative, n_resamples, confidence, ci_method, seed: see :func:`paired_test`.

    Raises:
        InputError: a table is empty or lacks a column, a metric is not numeric, pair
            keys repeat within a group, or an option is out of range.

    Returns:
        Columns ``metric, *by, n_pairs, n_nan, n_unmatched_a, n_unmatched_b, mean_a,
        mean_b, mean_diff, median_diff, ci_low, ci_high, statistic, p_value, p_adjusted,
        significant, rank_biserial, cohens_dz``.

    Example:
        >>> compare_models(per_a, per_b, ["lift_object", "pointing"])  # doctest: +SKIP
    """
    metrics = [metric] if isinstance(metric, str) else list(metric)
    by, pair_on = list(by), list(pair_on)
    if not metrics:
        raise InputError("give at least one metric to compare")
    if set(by) & set(pair_on):
        raise InputError(f"by={by} and pair_on={pair_on} must not share columns")
    if not 0 < confidence < 1 or not 0 < alpha < 1:
        raise InputError("confidence and alpha must lie strictly between 0 and 1")
    _check_test_options(alternative, n_resamples, confidence, ci_method)
    adjust_pvalues([], correction)  # validates the name
    keys = by + pair_on
    for df, name in ((df_a, "df_a"), (df_b, "df_b")):
        if not isinstance(df, pd.DataFrame):
            raise InputError(f"{name} must be a DataFrame of scores, got {type(df).__name__}")
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

    merged = pd.merge(
        df_a[keys + metrics],
        df_b[keys + metrics],
        on=keys,
        how="outer",
        suffixes=("__a", "__b"),
        indicator=True,
    ).sort_values(keys, kind="stable", ignore_index=True)
    rows: list[dict[str, Any]] = []
    groups = merged.groupby(by, sort=True, dropna=False) if by else [((), merged)]
    for met in metrics:
        family: list[dict[str, Any]] = []
        for gkey, g in groups:
            gkey = gkey if isinstance(gkey, tuple) else (gkey,)
            both = g[g["_merge"] == "both"]
            va, vb = both[f"{met}__a"].to_numpy(float), both[f"{met}__b"].to_numpy(float)
            ok = np.isfinite(va) & np.isfinite(vb)
            res = paired_test(
                va[ok],
                vb[ok],
                alternative=alternative,
                n_resamples=n_resamples,
                confidence=confidence,
                ci_method=ci_method,
                seed=seed,
            )
            row: dict[str, Any] = {"metric": met, **dict(zip(by, gkey, strict=True))}
            row.update(
                n_pairs=int(ok.sum()),
                n_nan=int((~ok).sum()),
                n_unmatched_a=int((g["_merge"] == "left_only").sum()),
                n_unmatched_b=int((g["_merge"] == "right_only").sum()),
            )
            row.update({k: v for k, v in res.items() if k != "n_pairs"})
            family.append(row)
        adjusted = adjust_pvalues([r["p_value"] for r in family], correction)
        for r, p_adj in zip(family, adjusted, strict=True):
            r["p_adjusted"] = float(p_adj)
            r["significant"] = bool(np.isfinite(p_adj) and p_adj < alpha)
        rows.extend(family)
    columns = [
        "metric", *by, "n_pairs", "n_nan", "n_unmatched_a", "n_unmatched_b", "mean_a",
        "mean_b", "mean_diff", "median_diff", "ci_low", "ci_high", "statistic", "p_value",
        "p_adjusted", "significant", "rank_biserial", "cohens_dz",
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


__all__ = [
    "adjust_pvalues",
    "benjamini_hochberg",
    "cohens_dz",
    "compare_models",
    "holm",
    "paired_test",
    "rank_biserial",
]
