"""Scores and probe samples read record by record from a trace store equal those of
single-record captures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from store_testing import toy_split

from somprobe.capture import TraceStore, capture_dataset, digit_token_filter, teacher_force
from somprobe.capture.items import CaptureItem, toy_eval_items
from somprobe.errors import InputError
from somprobe.measure import answer_mentions, score_alignment
from somprobe.measure.recipes import _with_position
from somprobe.measure.stored import iter_store_inputs, score_store, tagset_beside_image
from somprobe.models import ImageLayout, load_model
from somprobe.probes import build_probe_dataset
from somprobe.probes.stored import probe_dataset_from_store
from somprobe.tagging.io import load_tagset


@pytest.fixture(scope="module")
def setup(tiny_llava_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    model, processor = load_model(tiny_llava_path)
    dataset = toy_split(tmp_path_factory.mktemp("toy"), 3)
    out = tmp_path_factory.mktemp("store") / "s"
    capture_dataset(
        model, processor, toy_eval_items(dataset), out, batch_size=2, shard_size=2,
        queries="digits", progress=False,
    )  # fmt: skip
    return {"model": model, "processor": processor, "dataset": dataset, "store": TraceStore(out)}


def alone(setup: dict[str, Any], item: CaptureItem) -> tuple[Any, pd.DataFrame, Any, ImageLayout]:
    """The record captured by itself, its mentions, TagSet and layout."""
    model, processor = setup["model"], setup["processor"]
    image = item.load_image()
    result = teacher_force(
        model, processor, [image], [item.question], [item.answer],
        queries=digit_token_filter(processor.tokenizer),
    )  # fmt: skip
    tagset = load_tagset(item.image.parent.parent / "tagsets" / f"{item.image.stem}.json")
    (frame,) = answer_mentions(
        processor.tokenizer, result.inputs["input_ids"], result.answer_spans, [tagset]
    )
    layout = ImageLayout.from_inputs(processor, result.inputs, images=[image])
    return result, _with_position(frame), tagset, layout


def test_score_store_equals_scoring_each_record_alone(setup: dict[str, Any]) -> None:
    scores = score_store(setup["store"], setup["processor"])
    assert scores["record_id"].nunique() == 3
    for item in toy_eval_items(setup["dataset"]):
        result, mentions, tagset, layout = alone(setup, item)
        expected = score_alignment(result.trace, layout, tagset, mentions)
        got = scores[scores["record_id"] == item.record_id].drop(columns="record_id")
        assert len(got) == len(expected) > 0
        numeric = expected.select_dtypes("number").columns
        np.testing.assert_allclose(
            got[numeric].to_numpy(float), expected[numeric].to_numpy(float), rtol=1e-4, atol=1e-6
        )


def test_probe_dataset_from_store_equals_each_record_alone(setup: dict[str, Any]) -> None:
    ds = probe_dataset_from_store(setup["store"], setup["processor"])
    start = 0
    for item in toy_eval_items(setup["dataset"]):
        result, mentions, tagset, _ = alone(setup, item)
        expected = build_probe_dataset(result.trace, mentions, [tagset], [item.record_id])
        n = expected.features.shape[1]
        torch.testing.assert_close(ds.features[:, start : start + n], expected.features)
        rows = ds.samples.iloc[start : start + n]
        assert (rows["record_id"] == item.record_id).all()
        assert rows["tag_id"].tolist() == expected.samples["tag_id"].tolist()
        start += n
    assert start == ds.features.shape[1] and ds.samples["sample"].tolist() == list(range(start))
    assert "category" in ds.targets()


def test_inputs_hold_only_captured_mentions(setup: dict[str, Any]) -> None:
    for inputs in iter_store_inputs(setup["store"], setup["processor"]):
        captured = set(inputs.record.positions)
        assert len(inputs.mentions) == len(inputs.tagset)
        assert all(set(p) <= captured for p in inputs.mentions["scored_positions"])
        assert inputs.layout.sequence_length == int(inputs.record.input_ids.numel())


def test_a_record_without_tagsets_beside_it(setup: dict[str, Any]) -> None:
    record = setup["store"].load(setup["store"].record_ids[0])
    record.image = "/somewhere/else/x.png"
    with pytest.raises(InputError, match="not in an images/ folder"):
        tagset_beside_image(record)
    with pytest.raises(InputError, match="must be a TraceStore"):
        next(iter_store_inputs("runs/x", setup["processor"]))  # type: ignore[arg-type]
