"""Trace + tag mentions + TagSets -> probe dataset -> scores -> comparison -> plot.

Uses the capture module's ``Trace`` filled by hand (no model): hidden states at the
mention tokens carry the tagged object's colour in some layers for model "b" only. Then
the tiny LLaVA, teacher-forced through toy-world listings: the number, "." and first
attribute-word tokens of every line, and one probe dataset at each.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
import torch

from somprobe.capture.trace import QueryRecord, Trace
from somprobe.data.toyworld import WorldConfig, make_scene, tag_scene
from somprobe.errors import CaptureError, TagMentionError
from somprobe.measure import teacher_forced_listing
from somprobe.probes import (
    CONTROLS,
    POSITIONS,
    TraceLike,
    build_probe_dataset,
    build_probe_datasets,
    compare_probes,
    listing_positions,
    plot_probe_curves,
    run_probes,
)
from somprobe.tagging import Tag, TagSet

COLOURS = ["red", "green", "blue"]
CATEGORIES = ["cup", "car", "dog", "kite", "bus"]
LAYERS = [0, 2, 4]


def _scene(rng: np.random.Generator) -> TagSet:
    tags = []
    for i in range(1, 5):
        mask = np.zeros((20, 30), bool)
        x, y = int(rng.integers(0, 25)), int(rng.integers(0, 16))
        mask[y : y + 4, x : x + 5] = True
        meta = {"colour": COLOURS[int(rng.integers(0, 3))]}
        category = CATEGORIES[int(rng.integers(0, len(CATEGORIES)))]
        box = (x, y, x + 3, y + 3)
        tags.append(Tag(i, str(i), mask, mask, (x + 2.5, y + 2), box, category, metadata=meta))
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
    assert set(res_b.scores["probe"]) == {"task", "control", "selectivity", "baseline"}

    # every control, and the comparison of two models through them
    full_a = run_probes(ds_a, ["colour", "centroid_x"], controls=CONTROLS, **kw)
    full_b = run_probes(ds_b, ["colour", "centroid_x"], controls=CONTROLS, **kw)
    fb = full_b.scores.set_index(["target", "probe", "layer"])
    assert fb.loc[("colour", "task_minus_binding", 2), "ci_low"] > 0.3  # bound to its object
    assert fb.loc[("colour", "task_minus_number_baseline", 2), "ci_low"] > 0.3
    assert (
        fb.loc[("colour", "control", 2), "value"]
        < fb.loc[("colour", "control", 2), "chance"] + 0.15
    )
    cmp = compare_probes(full_a, full_b)
    assert {"selectivity", "task_minus_binding", "task_minus_control_number"} <= set(cmp["probe"])
    assert not cmp["probe"].isin(["baseline", "number_baseline"]).any()
    c = cmp.set_index(["target", "probe", "layer"])
    sel = c.loc[("colour", "selectivity", 2)]
    task, ctrl = c.loc[("colour", "task", 2)], c.loc[("colour", "control", 2)]
    assert sel["value"] == pytest.approx(task["value"] - ctrl["value"])


def test_uncaptured_hidden_state_is_a_capture_error() -> None:
    rng = np.random.default_rng(1)
    tagsets = [_scene(rng)]
    trace = Trace(layers=LAYERS, heads=[0], key_mode="image")
    trace.add(QueryRecord(0, 5, 1, 0), torch.zeros(3, 1, 4), None)  # attention only
    with pytest.raises(CaptureError, match="no hidden states"):
        build_probe_dataset(
            trace, pd.DataFrame({"batch": [0], "position": [5], "tag_id": [1]}), tagsets
        )


def test_number_dot_and_attribute_tokens_of_a_tiny_llava_listing(tiny_llava) -> None:  # type: ignore[no-untyped-def]
    model, processor = tiny_llava
    tagged = [tag_scene(make_scene(WorldConfig(), (0, 1, i))) for i in range(3)]
    tf, mentions = teacher_forced_listing(
        model, processor, tagged, queries="answer", attention=False
    )
    at = listing_positions(processor.tokenizer, tf.inputs["input_ids"], tf.answer_spans, mentions)
    assert len(at) == sum(len(t.tagset) for t in tagged)
    ids = tf.inputs["input_ids"]
    for row in at.itertuples():
        tag = tagged[row.batch].tagset[row.tag_id]
        piece = {
            name: processor.tokenizer.decode(
                [int(ids[row.batch, getattr(row, f"position_{name}")])]
            )
            for name in POSITIONS
        }
        assert piece["number"].strip() == str(row.tag_id)[-1]  # the last digit
        assert piece["dot"] == "."
        assert piece["attribute"].strip() == tag.category.split()[0]  # "green" of "green star"
        assert row.position_number == row.position < row.position_dot < row.position_attribute
    datasets = build_probe_datasets(tf.trace, at, [t.tagset for t in tagged])
    assert list(datasets) == list(POSITIONS)
    number, dot = datasets["number"], datasets["dot"]
    assert number.features.shape == dot.features.shape
    assert number.samples["colour"].tolist() == dot.samples["colour"].tolist()
    assert not torch.equal(number.features, dot.features)
    # the default capture holds only the tag digits: the "." is not there, and the error says so
    tf_digits, _ = teacher_forced_listing(model, processor, tagged[:1], attention=False)
    with pytest.raises(TagMentionError, match="queries='answer'"):
        build_probe_datasets(tf_digits.trace, at[at["batch"] == 0], [tagged[0].tagset], at=["dot"])
