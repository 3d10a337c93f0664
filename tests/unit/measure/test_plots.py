"""Tests for somprobe.measure.plots.plot_layer_curves: absolute and conditional panels side
by side, chance lines, the counts behind each panel, and the 0.1 call still working."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from somprobe.errors import InputError
from somprobe.measure.plots import plot_layer_curves


def _per_mention(seed: int = 0, n_mentions: int = 6, layers: int = 3) -> pd.DataFrame:
    """A per-mention table like aggregate_by_layer(scores, per_mention=True)'s."""
    rng = np.random.default_rng(seed)
    rows = []
    for mention in range(n_mentions):
        for layer in range(layers):
            defined = mention != 0  # mention 0 has no mark-free target: NaN, no chance
            share = rng.random()
            rows.append(
                {
                    "batch": 0,
                    "mention": mention,
                    "layer": layer,
                    "mass_object_markfree": share / 2,
                    "image_share_object_markfree": share,
                    "lift_object_markfree": 2 * share,
                    "image_share_object": share,
                    "lift_object": 2 * share,
                    "topk_hit": rng.random() if defined else np.nan,
                    "chance_topk": (mention + layer) / 20 if defined else np.nan,
                    "auroc": rng.random() if defined else np.nan,
                    "chance_auroc": 0.5 if defined else np.nan,
                }
            )
    return pd.DataFrame(rows)


def _chance(ax) -> list:
    return [line for line in ax.get_lines() if line.get_label().startswith("chance")]


def _panels(fig) -> list:
    return [ax for ax in fig.axes if ax.get_ylabel()]


def test_the_old_call_still_draws_one_panel_per_metric() -> None:
    per = _per_mention()
    fig = plot_layer_curves({"a": per}, ["image_share_object", "lift_object"], title="t", seed=1)
    assert len(_panels(fig)) == 2
    fig = plot_layer_curves({"a": per})  # default metrics: the mark-free object
    assert len(_panels(fig)) == 3
    plt.close("all")


def test_absolute_mass_is_drawn_beside_each_conditional_share() -> None:
    per = _per_mention()
    fig = plot_layer_curves({"a": per}, ["image_share_object_markfree", "topk_hit"], absolute=True)
    labels = [ax.get_ylabel() for ax in _panels(fig)]
    assert len(labels) == 3
    assert "mass" in labels[0] and "absolute" in labels[0]
    assert "share" in labels[1] and "of image" in labels[1]
    plt.close("all")


def test_chance_lines_come_from_the_chance_columns() -> None:
    per = _per_mention()
    fig = plot_layer_curves({"a": per}, ["topk_hit", "auroc", "image_share_object"])
    topk, auroc, share = _panels(fig)
    (line,) = _chance(topk)
    want = per.dropna(subset=["topk_hit"]).groupby("layer")["chance_topk"].mean()
    np.testing.assert_allclose(line.get_xdata(), want.index)
    np.testing.assert_allclose(line.get_ydata(), want.to_numpy())
    (line,) = _chance(auroc)
    np.testing.assert_allclose(line.get_ydata(), 0.5)
    assert not _chance(share)
    # the panel says how many mentions had a value (mention 0 has none)
    assert "n = 5" in topk.get_title() and "n = 6" in share.get_title()
    plt.close("all")


def test_chance_lines_explicit_or_off() -> None:
    per = _per_mention()
    fig = plot_layer_curves({"a": per}, ["topk_hit"], chance_lines={"topk_hit": "chance_topk"})
    assert len(_chance(_panels(fig)[0])) == 1
    fig = plot_layer_curves({"a": per}, ["topk_hit"], chance_lines={})
    assert not _chance(_panels(fig)[0])
    # two models: one chance line each
    fig = plot_layer_curves({"a": per, "b": _per_mention(1)}, ["topk_hit"])
    assert len(_chance(_panels(fig)[0])) == 2
    plt.close("all")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"chance_lines": {"topk_hit": "chance_pointing"}}, "chance_pointing"),
        ({"chance_lines": {"auroc": "chance_auroc"}}, "not plotted"),
        ({"chance_lines": ["chance_topk"]}, "mapping"),
        ({"metrics": ["image_share_object"], "absolute": True}, "mass_object"),
    ],
)
def test_bad_chance_and_absolute_options(kwargs, match) -> None:
    kwargs = {"metrics": ["topk_hit"], **kwargs}
    with pytest.raises(InputError, match=match):
        plot_layer_curves({"a": _per_mention()}, **kwargs)
    plt.close("all")
