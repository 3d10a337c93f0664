"""probe_layers: planted signals are found, splits do not leak, controls and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from somprobe.errors import ProbeError
from somprobe.probes import probe_layers

N_IMG, PER_IMG, L, D = 60, 4, 4, 8


def _base(seed=0):
    rng = np.random.default_rng(seed)
    n = N_IMG * PER_IMG
    groups = np.repeat([f"img{i}" for i in range(N_IMG)], PER_IMG)
    tags = np.tile(np.arange(1, PER_IMG + 1), N_IMG)
    X = torch.as_tensor(rng.normal(size=(L, n, D)), dtype=torch.float32)
    return rng, groups, tags, X


def test_planted_layers_found_and_table_is_tidy() -> None:
    rng, groups, tags, X = _base()
    colour = rng.choice(["red", "green", "blue"], size=len(groups))
    codes = np.unique(colour, return_inverse=True)[1]
    X[1, :, :3] += 2.5 * torch.as_tensor(np.eye(3)[codes], dtype=torch.float32)
    X[3, :, :3] += 2.5 * torch.as_tensor(np.eye(3)[codes], dtype=torch.float32)
    res = probe_layers(
        X, {"colour": colour}, groups, tag_ids=tags, layers=[0, 8, 16, 24], n_folds=3, n_boot=200
    )
    s = res.scores
    assert list(s.columns[:7]) == [
        "layer",
        "target",
        "probe",
        "metric",
        "value",
        "ci_low",
        "ci_high",
    ]
    assert set(s["probe"]) == {"task", "control", "selectivity", "baseline"}
    assert len(s) == 4 * 4 and not s.duplicated(["layer", "target", "probe"]).any()
    task = s[s.probe == "task"].set_index("layer")["value"]
    assert task[8] > 0.85 and task[24] > 0.85
    assert task[0] < 0.55 and task[16] < 0.55
    sel = s[s.probe == "selectivity"].set_index("layer")
    assert (sel.loc[[8, 24], "ci_low"] > 0.2).all()
    ctrl = s[s.probe == "control"].set_index("layer")["value"]
    np.testing.assert_allclose(sel["value"], task - ctrl)
    assert ((s.ci_low <= s.value + 1e-12) & (s.value <= s.ci_high + 1e-12)).all()
    # the baseline row is the majority class of the training images, scored on the test ones
    ps = res.per_sample
    test_ids = ps[(ps.probe == "baseline") & (ps.layer == 0)]["sample_id"].astype(int).to_numpy()
    train = np.setdiff1d(np.arange(len(groups)), test_ids)
    majority = np.unique(colour[train], return_counts=True)
    expect = np.mean(colour[test_ids] == majority[0][majority[1].argmax()])
    assert s[(s.probe == "baseline")]["value"].iloc[0] == pytest.approx(expect)
    assert set(res.cv["lam"]) == set(np.logspace(-4, 1, 6))


def test_grouped_split_prevents_image_leakage() -> None:
    # every image has its own random fingerprint and one random label for all its tags:
    # a probe can only memorise images. Grouped splits give chance; leaky ones would not.
    rng, groups, _, _ = _base(1)
    fingerprint = rng.normal(size=(N_IMG, 80)) * 3  # more dims than images: memorisable
    X = torch.as_tensor(np.repeat(fingerprint, PER_IMG, 0) + 0.1 * rng.normal(size=(240, 80)))[None]
    label = np.repeat(rng.integers(0, 2, N_IMG), PER_IMG).astype(str)
    kw = {"n_folds": 3, "n_boot": 0, "lambdas": [1e-3, 1e-2]}
    grouped = probe_layers(X.float(), {"y": label}, groups, **kw).scores
    leaky = probe_layers(X.float(), {"y": label}, np.arange(240), **kw).scores
    grouped_acc = grouped.query("probe == 'task'")["value"].item()
    leaky_acc = leaky.query("probe == 'task'")["value"].item()
    assert leaky_acc > 0.95  # what leakage looks like
    assert grouped_acc < 0.8
    # and no test image ever appears among the training images
    ps = probe_layers(X.float(), {"y": label}, groups, **kw).per_sample
    test_groups = set(ps["group"])
    assert len(test_groups) < N_IMG
    assert set(ps["sample_id"]) == {i for i, g in enumerate(groups) if g in test_groups}


def test_control_task_catches_tag_identity() -> None:
    # features carry only the tag id: the control task is decodable, the task is not
    rng, groups, tags, X = _base(2)
    X[2, :, :PER_IMG] += 3.0 * torch.as_tensor(np.eye(PER_IMG)[tags - 1], dtype=torch.float32)
    target = rng.choice(["a", "b", "c", "d"], size=len(groups))
    s = probe_layers(X, {"t": target}, groups, tag_ids=tags, n_folds=3, n_boot=100).scores
    ctrl = s[s.probe == "control"].set_index("layer")["value"]
    sel = s[s.probe == "selectivity"].set_index("layer")["value"]
    assert ctrl[2] > 0.95 and sel[2] < -0.3


def test_regression_targets() -> None:
    rng, groups, tags, X = _base(3)
    cx = rng.uniform(0, 1, len(groups))
    X[1, :, 0] += torch.as_tensor(10 * cx, dtype=torch.float32)
    res = probe_layers(X, {"centroid_x": cx}, groups, tag_ids=tags, n_folds=3, n_boot=100)
    s = res.scores
    task = s[s.probe == "task"].set_index("layer")["value"]
    assert (s.metric[s.probe != "selectivity"] == "r2").all()
    assert task[1] > 0.8 and task.drop(1).max() < 0.2
    ps = res.per_sample.query("probe == 'task' and layer == 1")
    r2 = 1 - ps.score.sum() / ((ps.y - ps.y.mean()) ** 2).sum()
    assert task[1] == pytest.approx(r2)


def test_bad_input_errors() -> None:
    rng, groups, _, X = _base(4)
    y = rng.choice(["a", "b"], len(groups))
    with pytest.raises(ProbeError, match="single class"):
        probe_layers(X, {"shape": np.full(len(groups), "circle")}, groups)
    with pytest.raises(ProbeError, match="cannot make 5 grouped folds"):
        probe_layers(X[:, :12], {"y": y[:12]}, groups[:12])
    bad = X.clone()
    bad[3, 17, 2] = float("nan")
    with pytest.raises(ProbeError, match=r"NaN or infinity at layers \[3\]"):
        probe_layers(bad, {"y": y}, groups)
    with pytest.raises(ProbeError, match="missing"):
        probe_layers(X, {"area": np.where(np.arange(len(groups)) == 5, np.nan, 0.5)}, groups)
    with pytest.raises(ProbeError, match="values for"):
        probe_layers(X, {"y": y[:-1]}, groups)
    with pytest.raises(ProbeError, match="constant"):
        probe_layers(X, {"area": np.full(len(groups), 0.5)}, groups)
