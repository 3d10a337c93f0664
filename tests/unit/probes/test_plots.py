"""plot_probe_curves draws one line and band per probe (and model)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from somprobe.errors import InputError
from somprobe.probes import plot_probe_curves


def _scores(target="colour", model=None) -> pd.DataFrame:
    rows = []
    for probe, base in [("task", 0.8), ("control", 0.3), ("selectivity", 0.5), ("baseline", 0.2)]:
        for layer in (0, 4, 8):
            rows.append(
                {
                    "layer": layer,
                    "target": target,
                    "probe": probe,
                    "metric": "accuracy",
                    "value": base + layer / 100,
                    "ci_low": base - 0.05,
                    "ci_high": base + 0.05,
                }
            )
    df = pd.DataFrame(rows)
    if model:
        df["model"] = model
    return df


def test_lines_follow_values() -> None:
    ax = plot_probe_curves(_scores())
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert set(lines) == {"task", "control", "selectivity", "baseline"}
    np.testing.assert_allclose(lines["task"].get_ydata(), [0.8, 0.84, 0.88])
    assert len(ax.collections) == 4  # one interval band per line
    assert ax.get_ylabel() == "accuracy"


def test_two_models_and_errors() -> None:
    both = pd.concat([_scores(model="llava"), _scores(model="som")])
    ax = plot_probe_curves(both, probes=("task", "control"))
    assert sorted(ln.get_label() for ln in ax.get_lines()) == [
        "llava control",
        "llava task",
        "som control",
        "som task",
    ]
    with pytest.raises(InputError, match="pass target"):
        plot_probe_curves(pd.concat([_scores("a"), _scores("b")]))
    with pytest.raises(InputError, match="no rows"):
        plot_probe_curves(_scores(), target="shape")
