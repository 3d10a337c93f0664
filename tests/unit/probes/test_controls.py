"""Hewitt & Liang control labels and the majority baseline."""

from __future__ import annotations

import numpy as np

from somprobe.probes import control_labels, majority_class


def test_control_is_a_function_of_tag_id_drawn_from_task_labels() -> None:
    rng = np.random.default_rng(0)
    tags = rng.integers(1, 30, 500)
    labels = rng.choice(["cat", "dog", "car"], 500, p=[0.6, 0.3, 0.1])
    ctrl = control_labels(tags, labels, seed=4)
    for t in np.unique(tags):
        assert len(set(ctrl[tags == t])) == 1
    assert set(ctrl) <= set(labels)
    # same tag -> same label in every image, same seed -> same control
    np.testing.assert_array_equal(ctrl, control_labels(tags, labels, seed=4))
    assert not np.array_equal(ctrl, control_labels(tags, labels, seed=5))


def test_control_label_distribution_follows_task() -> None:
    tags = np.arange(4000)  # many tag ids: the drawn labels follow the task frequencies
    labels = np.repeat([0, 1, 2], [2800, 800, 400])
    ctrl = control_labels(tags, labels, seed=0)
    np.testing.assert_allclose(np.bincount(ctrl) / 4000, [0.7, 0.2, 0.1], atol=0.03)
    reg = control_labels(tags, np.linspace(0, 1, 4000), seed=0)
    assert reg.dtype.kind == "f" and 0.4 < reg.mean() < 0.6


def test_majority_class() -> None:
    assert majority_class(np.array([2, 1, 2, 0, 1, 2])) == 2
    assert majority_class(np.array([1, 0])) == 0
