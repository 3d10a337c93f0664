"""The dataset capture while the model writes its own answers (``max_new_tokens``): each
stored record equals the record generated and captured alone; resume, index and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from store_testing import store_files, toy_split
from typer.testing import CliRunner

from somprobe.capture import CaptureItem, TraceStore, capture, capture_dataset
from somprobe.capture.items import llava_items
from somprobe.capture.store import part_file
from somprobe.cli import get_app
from somprobe.errors import DataFormatError, InputError
from somprobe.measure.stored import iter_store_inputs
from somprobe.models import build_prompt, load_model, prepare_inputs

SCENES = 5
NEW = 6
OPTIONS: dict[str, Any] = {
    "batch_size": 2, "shard_size": 2, "queries": "answer", "progress": False,
    "max_new_tokens": NEW,
}  # fmt: skip


@pytest.fixture(scope="module")
def model_and_processor(tiny_llava_path: Path) -> tuple[Any, Any]:
    return load_model(tiny_llava_path)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LLaVA records file of toy scenes whose questions differ in length (batches pad)."""
    root = toy_split(tmp_path_factory.mktemp("toy"), SCENES)
    records = json.loads((root / "eval" / "listing.json").read_text())
    for i, rec in enumerate(records):
        rec["conversations"][0]["value"] += " Be brief." * (i % 3)
    path = root / "eval" / "varied.json"
    path.write_text(json.dumps(records))
    return path


def items(dataset: Path) -> Any:
    return llava_items(dataset)


@pytest.fixture(scope="module")
def reference(
    tmp_path_factory: pytest.TempPathFactory, model_and_processor: tuple[Any, Any], dataset: Path
) -> Path:
    out = tmp_path_factory.mktemp("gen") / "store"
    capture_dataset(*model_and_processor, items(dataset), out, **OPTIONS)
    return out


def alone(model: Any, processor: Any, item: CaptureItem) -> tuple[torch.Tensor, Any, int]:
    """The record generated and captured by itself: its ids (to the first end-of-sequence
    token), its trace and its prompt length."""
    inputs = prepare_inputs(
        processor, [item.load_image()], [build_prompt(processor, item.question)]
    )
    result = capture(model, inputs, queries="generated", max_new_tokens=NEW)
    assert result.sequences is not None
    ids = result.sequences[0]
    prompt = int(inputs["input_ids"].shape[1])
    eos = model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos])
    hits = [p for p in range(prompt, len(ids)) if int(ids[p]) in eos]
    return ids[: hits[0] + 1] if hits else ids, result.trace, prompt


def test_each_record_equals_its_own_generation(
    reference: Path, dataset: Path, model_and_processor: tuple[Any, Any]
) -> None:
    model, processor = model_and_processor
    store = TraceStore(reference)
    assert store.settings["mode"] == "generated" and store.settings["max_new_tokens"] == NEW
    lengths = set()
    for item, rec in zip(items(dataset), store, strict=True):
        ids, trace, prompt = alone(model, processor, item)
        assert torch.equal(rec.input_ids, ids)
        assert rec.answer_span == (prompt, len(ids))
        assert rec.answer == processor.tokenizer.decode(ids[prompt:], skip_special_tokens=True)
        # the last token written is never fed back alone, so it has no row
        assert (
            rec.positions == trace.queries["position"].tolist() == list(range(prompt, len(ids) - 1))
        )
        assert torch.equal(rec.trace.key_positions(0), trace.key_positions(0))
        for p in rec.positions:
            torch.testing.assert_close(rec.trace.attention(0, p), trace.attention(0, p))
            torch.testing.assert_close(rec.trace.hidden(0, p), trace.hidden(0, p))
        lengths.add(prompt)
    assert len(lengths) > 1, "prompts of different lengths: some batches were padded"


def test_index_keeps_the_records_answer_as_reference(reference: Path, dataset: Path) -> None:
    index = TraceStore(reference).index
    assert index["reference"].tolist() == [it.answer for it in items(dataset)]
    assert (index["answer"] != index["reference"]).all()  # an untrained model's own words


def test_stored_records_rebuild_their_layouts(
    reference: Path, model_and_processor: tuple[Any, Any]
) -> None:
    _, processor = model_and_processor
    store = TraceStore(reference)
    seen = list(iter_store_inputs(store, processor))
    assert len(seen) == SCENES
    for inputs in seen:
        start, _ = inputs.record.answer_span
        assert inputs.layout.sequence_length == start  # the prompt's layout, not re-tokenised text
        assert inputs.layout.images[0].token_positions.tolist() == (
            inputs.record.trace.key_positions(0).tolist()
        )


def test_an_unfinished_shard_is_redone(
    tmp_path: Path, reference: Path, model_and_processor: tuple[Any, Any], dataset: Path
) -> None:
    out = tmp_path / "store"
    shutil.copytree(reference, out)
    part_file(out, 1).unlink()
    (out / "index.parquet").unlink()
    capture_dataset(*model_and_processor, items(dataset), out, **OPTIONS)
    assert store_files(out) == store_files(reference)


def test_teacher_forcing_refuses_records_without_answer(
    tmp_path: Path, model_and_processor: tuple[Any, Any], dataset: Path
) -> None:
    (first, *_) = list(items(dataset))
    bare = CaptureItem("q1", first.image, first.question, "")
    with pytest.raises(DataFormatError, match=r"record 'q1' has no answer.*max_new_tokens"):
        capture_dataset(
            *model_and_processor, [bare], tmp_path / "tf", **{**OPTIONS, "max_new_tokens": 0}
        )
    store = capture_dataset(*model_and_processor, [bare], tmp_path / "gen", **OPTIONS)
    assert store is not None and store.index["reference"].tolist() == [""]
    for bad in (-1, 2.5, True):
        with pytest.raises(InputError, match="max_new_tokens"):
            capture_dataset(
                *model_and_processor, [bare], tmp_path / "x", **{**OPTIONS, "max_new_tokens": bad}
            )


def test_llava_records_without_answer_when_the_model_answers(tmp_path: Path) -> None:
    rec = {
        "id": "a",
        "image": "x.png",
        "conversations": [{"from": "human", "value": "<image>\nHi"}],
    }
    (tmp_path / "r.json").write_text(json.dumps([rec]))
    with pytest.raises(DataFormatError, match="no gpt turn"):
        list(llava_items(tmp_path / "r.json"))
    (item,) = list(llava_items(tmp_path / "r.json", require_answer=False))
    assert item == CaptureItem("a", tmp_path / "x.png", "Hi", "")


def test_cli_generate(
    tmp_path: Path, tiny_llava_path: Path, reference: Path, dataset: Path
) -> None:
    out = tmp_path / "cli"
    result = CliRunner().invoke(get_app(), [
        "capture", "run", str(tiny_llava_path), str(out), "--records", str(dataset),
        "--batch-size", "2", "--shard-size", "2", "--generate", str(NEW), "--no-progress",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert store_files(out) == store_files(reference)
    result = CliRunner().invoke(get_app(), [
        "capture", "run", str(tiny_llava_path), str(tmp_path / "bad"), "--records", str(dataset),
        "--generate", "-1",
    ])  # fmt: skip
    assert result.exit_code == 2 and "--generate" in result.output


def test_a_record_that_ends_early_keeps_only_its_own_tokens(
    tmp_path: Path,
    reference: Path,
    dataset: Path,
    model_and_processor: tuple[Any, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Make record 0's third generated token the end-of-sequence token: it stops there while
    its batch mate goes on; what the batch wrote after it, and the row of its last token
    (fed back only because the batch went on), are not stored."""
    model, processor = model_and_processor
    first = TraceStore(reference).load(TraceStore(reference).record_ids[0])
    start, _ = first.answer_span
    stop = int(first.input_ids[start + 2])
    monkeypatch.setattr(model.generation_config, "eos_token_id", stop)
    store = capture_dataset(model, processor, items(dataset), tmp_path / "s", **OPTIONS)
    assert store is not None
    ended = 0
    for item, rec in zip(items(dataset), store, strict=True):
        ids, trace, prompt = alone(model, processor, item)
        assert torch.equal(rec.input_ids, ids) and rec.answer_span == (prompt, len(ids))
        assert rec.positions == trace.queries["position"].tolist()
        for p in rec.positions:
            torch.testing.assert_close(rec.trace.attention(0, p), trace.attention(0, p))
        ended += int(rec.input_ids[-1]) == stop
    assert int(store.index["n_tokens"].iloc[0]) == start + 3 and ended >= 1
    mate = store.index.iloc[1]
    assert mate["answer_end"] - mate["answer_start"] > 3, "its batch mate went on"
