"""Trace + tag mentions + TagSets -> probe dataset -> scores -> comparison -> plot.

Uses the capture module's ``Trace`` filled by hand (no model): hidden states at the
mention tokens carry the tagged object's colour in some layers for model "b" only.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
import torch

from somprobe.capture.trace import QueryRecord, Trace
from somprobe.errors import CaptureError
from somprobe.probes import (
    TraceLike,
    build_probe_dataset,
    compare_probes,
    plot_probe_curves,
    run_probes,
)
from somprobe.tagging import Tag, TagSet

COLOURS = ["red", "green", "blue"]
LAYERS = [0, 2, 4]


def _scene(rng: np.random.Generator) -> TagSet:
    tags = []
    for i in range(1, 5):
        mask = np.zeros((20, 30), bool)
        x, y = int(rng.integers(0, 25)), int(rng.integers(0, 16))
        mask[y : y + 4, x : x + 5] = True
        meta = {"colour": COLOURS[int(rng.integers(0, 3))]}
        tags.append(
            Tag(i, str(i), mask, mask, (x + 2.5, y + 2), (x, y, x + 3, y + 3), "obj", metadata=meta)
        )
    return TagSet(tags, (30, 20))


def _trace(
    tagsets: list[TagSet], strength: float, rng: np.random.Generator
) -> tuple[Trace, pd.DataFrame]:
    trace = Trace(layers=LAYERS, heads=[0], key_mode="image")
    rows = []
    for b, ts in enumerate(tagsets):
        for tag in ts:
            position = 10 + 3 * tag.id
            h = torch.randn(
                len(LAYERS), 12, generator=torch.Generator().manual_seed(int(rng.integers(1 << 30)))
            )
            h[1:, COLOURS.index(tag.metadata["colour"])] += strength  # layers 2 and 4
            h[2, 5] += 4.0 * float(np.nonzero(tag.mask)[1].mean()) / 30  # centroid x in layer 4
            trace.add(QueryRecord(b, position, 100 + tag.id, 0), None, h.to(torch.bfloat16))
            rows.append({"batch": b, "position": position, "tag_id": tag.id})
    return trace, pd.DataFrame(rows)


def test_trace_to_scores_and_comparison() -> None:
    rng = np.random.default_rng(0)
    tagsets = [_scene(rng) for _ in range(40)]
    ids = [f"coco{i}" for i in range(40)]
    trace_a, mentions = _trace(tagsets, 0.0, rng)
    trace_b, _ = _trace(tagsets, 3.0, rng)
    assert isinstance(trace_a, TraceLike)
    ds_a = build_probe_dataset(trace_a, mentions, tagsets, image_ids=ids)
    ds_b = build_probe_dataset(trace_b, mentions, tagsets, image_ids=ids)
    assert ds_a.features.dtype == torch.float32 and ds_a.features.shape == (3, 160, 12)
    kw = {"n_folds": 3, "n_boot": 200, "lambdas": [1e-3, 1e-2, 1e-1]}
    res_a = run_probes(ds_a, ["colour", "centroid_x"], **kw)
    res_b = run_probes(ds_b, ["colour", "centroid_x"], **kw)
    sb = res_b.scores.set_index(["target", "probe", "layer"])["value"]
    sa = res_a.scores.set_index(["target", "probe", "layer"])["value"]
    assert sb["colour", "task", 2] > 0.9 and sb["colour", "task", 0] < 0.6
    assert sa["colour", "task", 2] < 0.6
    assert sb["centroid_x", "task", 4] > 0.5 and sb["centroid_x", "task", 0] < 0.2
    cmp = compare_probes(res_a, res_b, names=("llava", "som")).set_index(
        ["target", "probe", "layer"]
    )
    assert cmp.loc[("colour", "task", 2), "ci_low"] > 0.2
    assert cmp.loc[("colour", "task", 0), "ci_low"] < 0 < cmp.loc[("colour", "task", 0), "ci_high"]
    both = pd.concat([res_a.scores.assign(model="llava"), res_b.scores.assign(model="som")])
    ax = plot_probe_curves(both, target="colour", probes=("task", "control"))
    assert len(ax.get_lines()) == 4


def test_uncaptured_hidden_state_is_a_capture_error() -> None:
    rng = np.random.default_rng(1)
    tagsets = [_scene(rng)]
    trace = Trace(layers=LAYERS, heads=[0], key_mode="image")
    trace.add(QueryRecord(0, 5, 1, 0), torch.zeros(3, 1, 4), None)  # attention only
    with pytest.raises(CaptureError, match="no hidden states"):
        build_probe_dataset(
            trace, pd.DataFrame({"batch": [0], "position": [5], "tag_id": [1]}), tagsets
        )
