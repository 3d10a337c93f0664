"""Grouped splits: no image on both sides, deterministic, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from somprobe.errors import ProbeError
from somprobe.probes import group_folds, holdout_mask


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 6), min_size=5, max_size=30),
    test_size=st.floats(0.1, 0.5),
    seed=st.integers(0, 10),
)
def test_no_group_on_both_sides(sizes, test_size, seed) -> None:
    groups = np.repeat([f"img{i}" for i in range(len(sizes))], sizes)
    test = holdout_mask(groups, test_size, seed)
    assert test.any() and (~test).any()
    assert not set(groups[test]) & set(groups[~test])
    rest = groups[~test]
    n_folds = min(3, len(set(rest)))
    if n_folds >= 2:
        folds = group_folds(rest, n_folds)
        for g in set(rest):
            assert len(set(folds[rest == g])) == 1  # each image in exactly one fold
        assert set(folds) == set(range(n_folds))


def test_deterministic_and_order_free() -> None:
    groups = np.repeat(np.arange(20), 3)
    a = holdout_mask(groups, 0.25, seed=3)
    perm = np.random.default_rng(0).permutation(groups.size)
    b = holdout_mask(groups[perm], 0.25, seed=3)
    assert set(groups[a]) == set(groups[perm][b])
    assert 0.15 <= a.mean() <= 0.35


def test_errors() -> None:
    with pytest.raises(ProbeError, match="cannot make 5 grouped folds"):
        group_folds(np.array([1, 1, 2, 3, 4]), 5)
    with pytest.raises(ProbeError, match="one image"):
        holdout_mask(np.zeros(10), 0.2)
    with pytest.raises(ProbeError, match="test_size"):
        holdout_mask(np.arange(10), 1.5)
