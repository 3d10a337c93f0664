"""compare_probes: paired differences between two models' probe results."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from somprobe.errors import ProbeError
from somprobe.probes import ProbeResult, compare_probes


def _result(
    scores: dict[str, np.ndarray], groups: np.ndarray, metric="accuracy", y=None
) -> ProbeResult:
    frames = []
    for probe, s in scores.items():
        frames.append(
            pd.DataFrame(
                {
                    "layer": 0,
                    "target": "t",
                    "probe": probe,
                    "metric": metric,
                    "sample_id": np.arange(len(s)),
                    "group": groups,
                    "y": 0.0 if y is None else y,
                    "score": s,
                }
            )
        )
    return ProbeResult(pd.DataFrame(), pd.concat(frames, ignore_index=True), pd.DataFrame())


def test_paired_difference_and_selectivity() -> None:
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(50), 4)
    a_task, b_task = (rng.random(200) < 0.5).astype(float), (rng.random(200) < 0.8).astype(float)
    ctrl = (rng.random(200) < 0.3).astype(float)
    a = _result({"task": a_task, "control": ctrl}, groups)
    b = _result({"task": b_task, "control": ctrl}, groups)
    out = compare_probes(a, b, names=("llava", "som"), n_boot=500).set_index("probe")
    assert out.loc["task", "value"] == pytest.approx(b_task.mean() - a_task.mean())
    assert out.loc["task", "ci_low"] > 0
    assert out.loc["control", "value"] == 0 and out.loc["control", "ci_high"] == 0
    assert out.loc["selectivity", "value"] == pytest.approx(out.loc["task", "value"])
    assert (out["model_a"] == "llava").all() and (out["n_pairs"] == 200).all()
    same = compare_probes(a, a, n_boot=100)
    assert (same["value"] == 0).all()


def test_r2_and_only_shared_samples() -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(size=80)
    groups = np.repeat(np.arange(20), 4)
    a = _result({"task": np.square(0.8 * rng.normal(size=80))}, groups, "r2", y)
    b = _result({"task": np.square(0.2 * rng.normal(size=80))}, groups, "r2", y)
    b.per_sample = b.per_sample.iloc[:60]
    out = compare_probes(a, b, n_boot=200).iloc[0]
    ya, sa, sb = y[:60], a.per_sample.score[:60], b.per_sample.score
    r2 = lambda s: 1 - s.sum() / ((ya - ya.mean()) ** 2).sum()  # noqa: E731
    assert out["metric"] == "r2" and out["n_pairs"] == 60
    assert out["value"] == pytest.approx(r2(sb) - r2(sa))


def test_no_overlap_raises() -> None:
    a = _result({"task": np.ones(4)}, np.arange(4))
    b = _result({"task": np.ones(4)}, np.arange(4))
    b.per_sample["sample_id"] += 100
    with pytest.raises(ProbeError, match="share no test samples"):
        compare_probes(a, b)
