"""The dataset-scale capture and its sharded trace store: contents, reader, resume, splits,
bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from store_testing import leftovers, store_files, toy_split
from typer.testing import CliRunner

from somprobe.capture import (
    CaptureItem,
    TraceStore,
    capture_dataset,
    digit_token_filter,
    finish_store,
    teacher_force,
    toy_eval_items,
)
from somprobe.capture.dataset import parse_shard
from somprobe.capture.items import llava_items
from somprobe.capture.store import part_file, shard_file
from somprobe.cli import get_app
from somprobe.errors import DataFormatError, InputError
from somprobe.models import load_model

SCENES = 5
OPTIONS: dict[str, Any] = {"batch_size": 2, "shard_size": 2, "queries": "digits", "progress": False}


@pytest.fixture(scope="module")
def model_and_processor(tiny_llava_path: Path) -> tuple[Any, Any]:
    return load_model(tiny_llava_path)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return toy_split(tmp_path_factory.mktemp("toy"), SCENES)


@pytest.fixture(scope="module")
def reference(
    tmp_path_factory: pytest.TempPathFactory, model_and_processor: tuple[Any, Any], dataset: Path
) -> Path:
    """An uninterrupted single-process run: 5 records, 3 shards (2 + 2 + 1)."""
    out = tmp_path_factory.mktemp("ref") / "store"
    capture_dataset(*model_and_processor, toy_eval_items(dataset), out, **OPTIONS)
    return out


def run(model_and_processor: tuple[Any, Any], dataset: Path, out: Path, **kw: Any) -> Any:
    return capture_dataset(*model_and_processor, toy_eval_items(dataset), out, **{**OPTIONS, **kw})


# -- contents ------------------------------------------------------------------------------
def test_index_lists_every_record_once_in_order(reference: Path, dataset: Path) -> None:
    store = TraceStore(reference)
    ids = [it.record_id for it in toy_eval_items(dataset)]
    assert store.record_ids == ids and len(store) == SCENES
    assert store.index["order"].tolist() == list(range(SCENES))
    assert store.index["shard"].tolist() == [0, 0, 1, 1, 2]
    assert store.index["row"].tolist() == [0, 1, 0, 1, 0]
    assert (store.index["n_queries"] > 0).all()
    assert sorted(p.name for p in (reference / "shards").iterdir()) == sorted(
        f"shard-00000{k}.{ext}" for k in range(3) for ext in ("safetensors", "index.parquet")
    )
    assert leftovers(reference) == []


def test_each_record_equals_its_own_single_record_capture(
    reference: Path, dataset: Path, model_and_processor: tuple[Any, Any]
) -> None:
    """Batch padding is taken out: positions, ids, keys and rows are the record's own."""
    model, processor = model_and_processor
    store = TraceStore(reference)
    lengths = set()
    for item, rec in zip(toy_eval_items(dataset), store, strict=True):
        alone = teacher_force(
            model, processor, [item.load_image()], [item.question], [item.answer],
            queries=digit_token_filter(processor.tokenizer),
        )  # fmt: skip
        assert torch.equal(rec.input_ids, alone.inputs["input_ids"][0])
        assert rec.answer_span == alone.answer_spans[0]
        assert rec.positions == alone.trace.queries["position"].tolist()
        assert torch.equal(rec.trace.key_positions(0), alone.trace.key_positions(0))
        for p in rec.positions:
            torch.testing.assert_close(rec.trace.attention(0, p), alone.trace.attention(0, p))
            torch.testing.assert_close(rec.trace.hidden(0, p), alone.trace.hidden(0, p))
        lengths.add(int(rec.input_ids.numel()))
    assert len(lengths) > 1, "records of different lengths: some batches were padded"


def test_index_offsets_point_at_each_tensors_bytes(reference: Path) -> None:
    store = TraceStore(reference)
    rid = store.record_ids[3]
    rec = store.load(rid)
    row = store.index.set_index("record_id").loc[rid]
    data = (reference / row["file"]).read_bytes()
    stacked = torch.stack([rec.trace.attention(0, p) for p in rec.positions])
    assert list(row["attention_shape"]) == list(stacked.shape)
    assert data[row["attention_begin"] : row["attention_end"]] == stacked.numpy().tobytes()
    assert data[row["input_ids_begin"] : row["input_ids_end"]] == rec.input_ids.numpy().tobytes()


def test_iteration_and_load_agree(reference: Path) -> None:
    store = TraceStore(reference)
    for rec in store:
        again = store.load(rec.record_id)
        assert rec.positions == again.positions and torch.equal(rec.input_ids, again.input_ids)
        for p in rec.positions:
            assert torch.equal(rec.trace.hidden(0, p), again.trace.hidden(0, p))


def test_what_is_captured_follows_the_options(
    tmp_path: Path, model_and_processor: tuple[Any, Any], dataset: Path
) -> None:
    store = run(
        model_and_processor, dataset, tmp_path / "s", queries="answer", attention=False,
        layers=[1], heads=[0], dtype="float16",
    )  # fmt: skip
    assert "attention_shape" not in store.index and "keys_shape" not in store.index
    rec = store.load(store.record_ids[0])
    start, end = rec.answer_span
    assert rec.positions == list(range(start, end))
    assert rec.trace.hidden(0, start).dtype == torch.float16
    assert rec.trace.hidden(0, start).shape[0] == 1 and store.layers == [1]


# -- resume and splits -------------------------------------------------------------------
def test_a_run_again_changes_nothing(
    tmp_path: Path, reference: Path, model_and_processor: tuple[Any, Any], dataset: Path
) -> None:
    out = tmp_path / "store"
    shutil.copytree(reference, out)
    stamps = {p: p.stat().st_mtime_ns for p in (out / "shards").iterdir()}
    run(model_and_processor, dataset, out)
    assert {p: p.stat().st_mtime_ns for p in (out / "shards").iterdir()} == stamps
    assert store_files(out) == store_files(reference)


def test_an_unfinished_shard_is_redone(
    tmp_path: Path, reference: Path, model_and_processor: tuple[Any, Any], dataset: Path
) -> None:
    """Killed between a shard's tensors and its index part, or mid-write (a torn file and
    a stale temporary): the rerun redoes that shard and ends as the uninterrupted run."""
    out = tmp_path / "store"
    shutil.copytree(reference, out)
    part_file(out, 1).unlink()
    (out / "index.parquet").unlink()
    data = shard_file(out, 2).read_bytes()
    shard_file(out, 2).write_bytes(data[: len(data) // 2])
    part_file(out, 2).unlink()
    (out / "shards" / ".shard-000002.safetensors.999999-x.tmp").write_bytes(b"torn")
    with pytest.raises(InputError, match="not finished"):
        TraceStore(out)
    run(model_and_processor, dataset, out)
    assert store_files(out) == store_files(reference)
    assert leftovers(out) == []


def test_split_runs_merge_into_the_single_run(
    tmp_path: Path, reference: Path, model_and_processor: tuple[Any, Any], dataset: Path
) -> None:
    out = tmp_path / "store"
    assert run(model_and_processor, dataset, out, shard=(1, 2)) is None
    assert sorted(p.name for p in (out / "shards").glob("*.safetensors")) == [
        "shard-000001.safetensors"
    ]
    with pytest.raises(DataFormatError, match=r"shard\(s\) \[0, 2\]"):
        finish_store(out)
    assert run(model_and_processor, dataset, out, shard="0/2") is None
    index = finish_store(out)
    assert index["record_id"].tolist() == TraceStore(reference).record_ids
    assert store_files(out) == store_files(reference)


def test_resume_with_other_settings_is_refused(
    tmp_path: Path, reference: Path, model_and_processor: tuple[Any, Any], dataset: Path
) -> None:
    out = tmp_path / "store"
    shutil.copytree(reference, out)
    with pytest.raises(InputError, match=r"other settings.*shard_size"):
        run(model_and_processor, dataset, out, shard_size=3)
    store = run(model_and_processor, dataset, out, shard_size=3, resume=False)
    assert store.index["shard"].tolist() == [0, 0, 0, 1, 1]
    assert not shard_file(out, 2).exists()


def test_changed_records_in_a_finished_shard_are_refused(
    tmp_path: Path, reference: Path, model_and_processor: tuple[Any, Any], dataset: Path
) -> None:
    out = tmp_path / "store"
    shutil.copytree(reference, out)
    items = list(toy_eval_items(dataset))
    items[0], items[1] = items[1], items[0]
    settings = json.loads((out / "store.json").read_text())
    with pytest.raises(InputError, match="records_digest"):
        capture_dataset(*model_and_processor, items, out, **OPTIONS)
    assert json.loads((out / "store.json").read_text()) == settings


# -- bad input ---------------------------------------------------------------------------
@pytest.mark.parametrize("spec", ["3/2", "2/2", "-1/2", "1/0", "a/b", "1", "1/2/3", (5, 2)])
def test_bad_shard_specs(spec: Any) -> None:
    with pytest.raises(InputError, match="shard"):
        parse_shard(spec)


def test_good_shard_specs() -> None:
    assert parse_shard("3/4") == (3, 4) and parse_shard((0, 1)) == (0, 1)
    assert parse_shard(None) is None


def test_cli_refuses_a_bad_shard_before_loading(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        get_app(),
        ["capture", "run", str(tmp_path / "no-model"), str(tmp_path / "s"),
         "--toy", str(tmp_path), "--shard", "3/2"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "shard 3/2" in result.output and "0 ≤ i < n" in result.output


def test_duplicate_record_ids_are_refused(
    tmp_path: Path, model_and_processor: tuple[Any, Any], dataset: Path
) -> None:
    items = list(toy_eval_items(dataset))
    with pytest.raises(DataFormatError, match=r"listing_eval_000001.*more than once"):
        capture_dataset(*model_and_processor, [*items, items[1]], tmp_path / "s", **OPTIONS)
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    ("option", "match"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"shard_size": 1.5}, "shard_size"),
        ({"queries": "generated"}, "queries"),
        ({"dtype": "int8"}, "dtype"),
    ],
)
def test_bad_options(
    tmp_path: Path, model_and_processor: tuple[Any, Any], dataset: Path, option: Any, match: str
) -> None:
    with pytest.raises(InputError, match=match):
        run(model_and_processor, dataset, tmp_path / "s", **option)


def test_no_records_and_bad_items(tmp_path: Path, model_and_processor: tuple[Any, Any]) -> None:
    with pytest.raises(InputError, match="no records"):
        capture_dataset(*model_and_processor, [], tmp_path / "s", **OPTIONS)
    with pytest.raises(InputError, match="not a CaptureItem"):
        capture_dataset(*model_and_processor, ["x.png"], tmp_path / "s", **OPTIONS)  # type: ignore[list-item]


def test_missing_image_names_the_record(
    tmp_path: Path, model_and_processor: tuple[Any, Any]
) -> None:
    item = CaptureItem("r1", tmp_path / "gone.png", "List the items.", "1. cat")
    with pytest.raises(InputError, match=r"record 'r1'.*gone\.png"):
        capture_dataset(*model_and_processor, [item], tmp_path / "s", **OPTIONS)


def test_llava_records_without_image_or_answer(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    one = {
        "id": "a",
        "image": "x.png",
        "conversations": [{"from": "human", "value": "<image>\nHi"}],
    }
    path.write_text(json.dumps([one]))
    with pytest.raises(DataFormatError, match="no gpt turn"):
        list(llava_items(path))
    text = {
        "id": "b",
        "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Yo"}],
    }
    path.write_text(json.dumps([text]))
    with pytest.raises(DataFormatError, match="no image"):
        list(llava_items(path))
    with pytest.raises(InputError, match="no records file"):
        llava_items(tmp_path / "none.json")


def test_llava_items_take_the_first_turn(tmp_path: Path) -> None:
    rec = {"id": 7, "image": "im/x.png", "conversations": [
        {"from": "human", "value": "<image>\nWhat is tagged 1?"}, {"from": "gpt", "value": "A cat."},
        {"from": "human", "value": "And 2?"}, {"from": "gpt", "value": "A dog."}]}  # fmt: skip
    (tmp_path / "r.jsonl").write_text(json.dumps(rec) + "\n")
    (item,) = list(llava_items(tmp_path / "r.jsonl", image_root=tmp_path / "root"))
    assert item == CaptureItem("7", tmp_path / "root" / "im/x.png", "What is tagged 1?", "A cat.")


def test_missing_and_malformed_stores(tmp_path: Path, reference: Path) -> None:
    with pytest.raises(InputError, match="no trace store"):
        TraceStore(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"store\.json missing"):
        TraceStore(tmp_path / "empty")
    bad = tmp_path / "bad"
    shutil.copytree(reference, bad)
    (bad / "store.json").write_text("{not json")
    with pytest.raises(DataFormatError, match="not valid JSON"):
        TraceStore(bad)
    (bad / "store.json").write_text(json.dumps({"format": "somprobe-trace-store", "version": 99}))
    with pytest.raises(DataFormatError, match="store format 99"):
        TraceStore(bad)
    shutil.copy(reference / "store.json", bad / "store.json")
    (bad / "index.parquet").write_bytes(b"PAR1 cut")
    with pytest.raises(DataFormatError, match="not a readable index"):
        TraceStore(bad)


def test_damaged_shards_are_reported(tmp_path: Path, reference: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(reference, bad)
    store = TraceStore(bad)
    with pytest.raises(InputError, match="no record 'nope'"):
        store.load("nope")
    shard_file(bad, 1).write_bytes(b"\x10")
    with pytest.raises(DataFormatError, match="shard-000001"):
        store.load(store.record_ids[2])
    with pytest.raises(DataFormatError, match="shard-000001"):
        finish_store(bad)
    shutil.copy(shard_file(reference, 0), shard_file(bad, 1))
    with pytest.raises(DataFormatError, match="in the file but"):
        finish_store(bad)


def test_merge_refuses_duplicated_records(tmp_path: Path, reference: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(reference, bad)
    part = pd.read_parquet(part_file(bad, 1))
    part.loc[0, "record_id"] = "listing_eval_000000"
    part.to_parquet(part_file(bad, 1), index=False)
    with pytest.raises(DataFormatError, match="more than once"):
        finish_store(bad)


# -- the command -------------------------------------------------------------------------
def test_cli_run_and_merge(
    tmp_path: Path, tiny_llava_path: Path, dataset: Path, reference: Path
) -> None:
    out = tmp_path / "store"
    args = ["capture", "run", str(tiny_llava_path), str(out), "--toy", str(dataset),
            "--queries", "digits", "--batch-size", "2", "--shard-size", "2", "--no-progress"]  # fmt: skip
    for i in range(2):
        result = CliRunner().invoke(get_app(), [*args, "--shard", f"{i}/2"])
        assert result.exit_code == 0, result.output
        assert "somprobe capture merge" in result.output
    result = CliRunner().invoke(get_app(), ["capture", "merge", str(out)])
    assert result.exit_code == 0, result.output
    assert "5 records in 3 shards, verified" in result.output
    assert store_files(out) == store_files(reference)
    result = CliRunner().invoke(get_app(), ["capture", "run", str(tiny_llava_path), str(out)])
    assert result.exit_code == 2 and "exactly one of --records" in result.output


# -- memory --------------------------------------------------------------------------------
def test_only_one_shard_of_captures_is_alive_at_a_time(
    tmp_path: Path, model_and_processor: tuple[Any, Any], dataset: Path, monkeypatch: Any
) -> None:
    """When a shard is written, the tensors of every earlier shard have been freed."""
    import gc
    import weakref

    import somprobe.capture.dataset as runner

    written: list[list[weakref.ref[torch.Tensor]]] = []
    save = runner.save_file

    def watching(tensors: dict[str, torch.Tensor], *args: Any, **kwargs: Any) -> None:
        gc.collect()
        alive = [sum(r() is not None for r in refs) for refs in written]
        assert alive == [0] * len(written), f"earlier shards still hold tensors: {alive}"
        written.append([weakref.ref(t) for t in tensors.values()])
        save(tensors, *args, **kwargs)

    monkeypatch.setattr(runner, "save_file", watching)
    run(model_and_processor, dataset, tmp_path / "s", shard_size=2)
    assert len(written) == 3 and all(written)
