"""Cluster bootstrap: point estimates equal the direct ones; intervals cover."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import r2_score

from somprobe.probes.bootstrap import Resampler


def test_point_estimates_match_direct_computation() -> None:
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 30, 300)
    correct = rng.random((2, 300)) < [[0.7], [0.4]]
    y = rng.normal(size=300)
    pred = y + rng.normal(scale=0.5, size=300)
    boot = Resampler(groups, n_boot=300, seed=1)
    acc = boot.accuracy(correct.astype(float))
    np.testing.assert_allclose(acc[0], correct.mean(1))
    r2 = boot.r2(((y - pred) ** 2)[None], y[None])
    assert r2[0, 0] == np.float64(r2_score(y, pred)) or np.isclose(r2[0, 0], r2_score(y, pred))
    point, lo, hi = boot.interval(acc)
    assert (lo < point).all() and (point < hi).all() and (hi - lo < 0.25).all()


def test_resamples_whole_groups() -> None:
    groups = np.repeat(np.arange(10), 10)
    # each image is all right or all wrong: the interval must be as wide as for 10 samples
    correct = np.repeat(np.arange(10) % 2, 10)[None].astype(float)
    _, lo, hi = Resampler(groups, n_boot=500, seed=0).interval(
        Resampler(groups, n_boot=500, seed=0).accuracy(correct)
    )
    assert hi[0] - lo[0] > 0.4  # an iid bootstrap over 100 samples would give about 0.2
