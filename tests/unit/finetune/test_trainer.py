"""finetune(): loss goes down, vision tower frozen, resume = uninterrupted, LoRA round trip."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import TrainerCallback

from somprobe.data import make_record, read_records, write_records
from somprobe.data.llava_json import LlavaRecord, Turn
from somprobe.finetune import LlavaSFTDataset, LoraOptions, SFTCollator, finetune, merge_lora
from somprobe.finetune.trainer import SUMMARY_FILE, unused_vision_modules
from somprobe.models import load_model

FAST = {
    "global_batch_size": 4,
    "per_device_batch_size": 4,
    "warmup": 2,
    "logging_steps": 1,
    "save_steps": 1000,
    "progress": False,
}


def batch_loss(model: Any, processor: Any, data: Path, images: Path) -> float:
    ds = LlavaSFTDataset(data, images, processor)
    batch = SFTCollator(processor.tokenizer.pad_token_id)([ds[i] for i in range(8)])
    model.eval()
    with torch.no_grad():
        return float(model(**batch).loss)


def test_twenty_steps_lower_the_loss(tiny_llava_path: Path, colour_set, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data, images = colour_set
    before_model, processor = load_model(tiny_llava_path)
    before = batch_loss(before_model, processor, data, images)
    result = finetune(
        tiny_llava_path, data, images, tmp_path / "run", preset="toy", max_steps=20,
        trainable="projector+lm", **FAST,
    )  # fmt: skip
    after_model, _ = load_model(tmp_path / "run")
    after = batch_loss(after_model, processor, data, images)
    assert result.global_step == 20 and result.records == 24
    assert after < 0.6 * before, (before, after)
    assert result.last_loss is not None and result.first_loss is not None
    assert result.last_loss < result.first_loss
    # vision tower frozen (SoM-LLaVA), projector and language model trained
    old, new = before_model.state_dict(), after_model.state_dict()
    changed = {k for k in old if not torch.equal(old[k], new[k])}
    assert not any(k.startswith("model.vision_tower.") for k in changed)
    assert any(k.startswith("model.multi_modal_projector.") for k in changed)
    assert any(k.startswith("model.language_model.") for k in changed)
    summary = json.loads((tmp_path / "run" / SUMMARY_FILE).read_text())
    assert summary["global_step"] == 20 and summary["skipped"]["total"] == 0
    assert summary["trainable_parameters"] < summary["total_parameters"]


class Crash(Exception):
    pass


class CrashAfterSave(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_save(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        if state.global_step == self.step:
            raise Crash(f"killed after saving step {self.step}")


def test_stop_and_resume_equals_uninterrupted(
    tiny_llava_path: Path, colour_set, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    data, images = colour_set
    common: dict[str, Any] = {**FAST, "max_steps": 8, "save_steps": 4, "preset": "toy"}
    finetune(tiny_llava_path, data, images, tmp_path / "straight", **common)
    with pytest.raises(Crash):
        finetune(
            tiny_llava_path, data, images, tmp_path / "broken", callbacks=[CrashAfterSave(4)],
            **common,
        )  # fmt: skip
    assert (tmp_path / "broken" / "checkpoint-4").is_dir()
    resumed = finetune(tiny_llava_path, data, images, tmp_path / "broken", **common)
    assert resumed.resumed_from is not None and resumed.resumed_from.endswith("checkpoint-4")
    assert resumed.global_step == 8
    a, _ = load_model(tmp_path / "straight")
    b, _ = load_model(tmp_path / "broken")
    base, _ = load_model(tiny_llava_path)
    moved = 0.0
    for (name, pa), pb, p0 in zip(
        a.state_dict().items(), b.state_dict().values(), base.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6, msg=name)
        moved = max(moved, float((pa - p0).abs().max()))
    assert moved > 1e-3  # the runs did train


def test_lora_save_load_merge_round_trip(tiny_llava_path: Path, colour_set, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from peft import PeftModel

    data, images = colour_set
    lora = LoraOptions(r=4, alpha=8, dropout=0.0, init_lora_weights=False)
    result = finetune(
        tiny_llava_path, data, images, tmp_path / "lora", preset="toy", lora=lora, max_steps=3,
        **FAST,
    )  # fmt: skip
    assert result.lora and result.trainable_parameters < result.total_parameters / 2
    base, processor = load_model(tiny_llava_path)
    ds = LlavaSFTDataset(data, images, processor)
    batch = SFTCollator(processor.tokenizer.pad_token_id)([ds[i] for i in range(4)])
    with torch.no_grad():
        plain = base(**batch).logits
        adapted = PeftModel.from_pretrained(base, tmp_path / "lora" / "adapter").eval()
        with_adapter = adapted(**batch).logits
        merged_model, _ = load_model(tmp_path / "lora")
        merged = merged_model(**batch).logits
        again, _ = load_model(
            merge_lora(tiny_llava_path, tmp_path / "lora" / "adapter", tmp_path / "m2")
        )
        merged_again = again(**batch).logits
    assert (with_adapter - plain).abs().max() > 1e-2  # the adapter changes the model
    torch.testing.assert_close(merged, with_adapter, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(merged_again, with_adapter, rtol=1e-4, atol=1e-4)
    # the merged checkpoint is a plain LLaVA model (no adapter weights left)
    assert not any("lora" in k for k in merged_model.state_dict())


def test_bad_records_reported_at_the_end(tiny_llava_path: Path, colour_set, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data, images = colour_set
    records = [
        *read_records(data)[:8],
        make_record("gone", "nope.png", [("Q?", "A")]),
        LlavaRecord("mute", "0.png", [Turn("human", "<image>\nQ?")]),
    ]
    path = tmp_path / "bad.json"
    write_records(records, path)
    result = finetune(
        tiny_llava_path, path, images, tmp_path / "run", preset="toy", max_steps=1,
        save_dtype="float16", **FAST,
    )  # fmt: skip
    assert result.records == 8
    assert result.skipped["counts"] == {"missing_image": 1, "no_assistant_turn": 1}
    saved = json.loads((tmp_path / "run" / SUMMARY_FILE).read_text())
    assert saved["skipped"]["examples"] == {
        "missing_image": ["gone"],
        "no_assistant_turn": ["mute"],
    }
    model, _ = load_model(tmp_path / "run")
    assert next(model.parameters()).dtype == torch.float16


def test_unused_vision_modules_get_no_gradient(tiny_llava) -> None:  # type: ignore[no-untyped-def]
    model, _ = tiny_llava
    unused = unused_vision_modules(model)
    names = {n for n, m in model.named_modules() if any(m is u for u in unused)}
    assert names == {"model.vision_tower.post_layernorm"}


def test_periodic_eval_writes_a_tidy_curve(
    tiny_llava_path: Path, colour_set, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    import pandas as pd

    from somprobe.finetune import PeriodicEval

    data, images = colour_set
    seen: list[bool] = []

    def fn(model: Any) -> dict[str, float]:
        seen.append(model.training)
        return {"weight_sum": float(next(model.parameters()).sum()), "one": 1.0}

    curve = tmp_path / "curve.csv"
    cb = PeriodicEval(fn, every=2, csv_path=curve, labels={"model": "m"})
    finetune(
        tiny_llava_path, data, images, tmp_path / "run", preset="toy", max_steps=4,
        callbacks=[cb], **FAST,
    )  # fmt: skip
    table = pd.read_csv(curve)
    assert list(table.columns) == ["model", "step", "metric", "value", "seconds"]
    assert sorted(set(table["step"])) == [0, 2, 4] and len(table) == 6
    assert seen == [False, False, False]  # evaluated in eval mode
    sums = table[table["metric"] == "weight_sum"]["value"].tolist()
    assert sums[0] != sums[-1]


def test_periodic_eval_keeps_rows_of_other_runs_in_a_shared_csv(tmp_path: Path) -> None:
    """Two runs (e.g. baseline and SoM trained side by side) write one curve CSV."""
    import pandas as pd
    from transformers import TrainerState

    from somprobe.finetune import PeriodicEval

    curve = tmp_path / "curve.csv"
    model = torch.nn.Linear(2, 2)
    state = TrainerState()
    a = PeriodicEval(lambda m: {"acc": 0.1}, every=1, csv_path=curve, labels={"model": "a"})
    b = PeriodicEval(lambda m: {"acc": 0.2}, every=1, csv_path=curve, labels={"model": "b"})
    a._evaluate(model, 0, state)
    b._evaluate(model, 0, state)  # b was created before a's first write
    a._evaluate(model, 5, state)  # a's write must keep b's rows
    table = pd.read_csv(curve)
    assert sorted(map(tuple, table[["model", "step"]].values.tolist())) == [
        ("a", 0),
        ("a", 5),
        ("b", 0),
    ]


def test_runs_save_checkpoints_periodically_by_default(
    tiny_llava_path: Path, colour_set, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """A run killed near its end must find a recent checkpoint: by default one is saved
    every 10 % of the steps, and only the last few are kept."""
    from somprobe.finetune import PRESETS, get_preset, training_arguments

    for name in PRESETS:
        preset = get_preset(name)
        assert 0 < preset.save_steps <= 0.1, name  # a fraction of the run's steps
        assert preset.save_total_limit is not None and 1 <= preset.save_total_limit <= 2
        args = training_arguments(preset, tmp_path / name, world_size=1, deepspeed=None)
        assert args.save_strategy == "steps" and args.save_steps == preset.save_steps
    data, images = colour_set
    fast = {k: v for k, v in FAST.items() if k != "save_steps"}
    finetune(tiny_llava_path, data, images, tmp_path / "run", preset="toy", max_steps=20, **fast)
    kept = sorted(p.name for p in (tmp_path / "run").glob("checkpoint-*"))
    assert kept == ["checkpoint-18", "checkpoint-20"]  # every 2 steps, the last two kept


def test_a_checkpoint_cut_short_by_a_kill_is_not_resumed_from(
    tiny_llava_path: Path, colour_set, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """Killed while writing checkpoint-6 (its trainer_state.json, written last, missing):
    the rerun resumes from checkpoint-4, removes the torn folder, ends as a straight run."""
    data, images = colour_set
    common: dict[str, Any] = {**FAST, "max_steps": 8, "save_steps": 2, "preset": "toy"}
    finetune(tiny_llava_path, data, images, tmp_path / "straight", **common)
    with pytest.raises(Crash):
        finetune(
            tiny_llava_path, data, images, tmp_path / "broken", callbacks=[CrashAfterSave(6)],
            **common,
        )  # fmt: skip
    torn = tmp_path / "broken" / "checkpoint-6"
    (torn / "trainer_state.json").unlink()
    (torn / "optimizer.pt").write_bytes(b"\x00" * 10)  # half written
    resumed = finetune(tiny_llava_path, data, images, tmp_path / "broken", **common)
    assert resumed.resumed_from is not None and resumed.resumed_from.endswith("checkpoint-4")
    assert resumed.global_step == 8
    assert sorted(p.name for p in (tmp_path / "broken").glob("checkpoint-*")) == [
        "checkpoint-6",  # rewritten by the resumed run, complete now
        "checkpoint-8",
    ]
    assert (torn / "trainer_state.json").is_file()
    a, _ = load_model(tmp_path / "straight")
    b, _ = load_model(tmp_path / "broken")
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6, msg=name)


def test_sequential_order_feeds_records_in_file_order(
    tiny_llava_path: Path, colour_set, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """order='sequential': the batches are the file's records in order (random: not)."""
    from somprobe.finetune.trainer import ResumableTrainer

    data, images = colour_set
    seen: dict[str, list[list[int]]] = {}

    orig = ResumableTrainer.compute_loss

    def spy(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # type: ignore[no-untyped-def]
        seen.setdefault(self.args.train_sampling_strategy, []).append(
            [int(x) for x in inputs["input_ids"][:, -8:].sum(dim=1)]
        )
        return orig(self, model, inputs, return_outputs, num_items_in_batch)

    ResumableTrainer.compute_loss = spy  # type: ignore[method-assign]
    try:
        for order in ("sequential", "random"):
            finetune(
                tiny_llava_path, data, images, tmp_path / order, preset="toy", max_steps=3,
                order=order, **FAST,
            )  # fmt: skip
    finally:
        ResumableTrainer.compute_loss = orig  # type: ignore[method-assign]
    _, processor = load_model(tiny_llava_path)
    ds = LlavaSFTDataset(data, images, processor)
    collate = SFTCollator(processor.tokenizer.pad_token_id)
    expected = [
        [
            int(x)
            for x in collate([ds[i] for i in range(4 * b, 4 * b + 4)])["input_ids"][:, -8:].sum(
                dim=1
            )
        ]
        for b in range(3)
    ]
    assert seen["sequential"] == expected
    assert seen["random"] != expected


def test_turn_loss_trains_and_differs_from_token_loss(
    tiny_llava_path: Path, colour_set, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    _, images = colour_set
    data = tmp_path / "two_turns.json"
    colours = ["blue", "green", "red"]
    write_records(
        [
            make_record(
                f"r{i}", f"{i}.png",
                [("What colour is the square?", colours[i % 3]),
                 ("Describe the image.", f"A {colours[i % 3]} square on a plain grey background.")],
            )
            for i in range(24)
        ],
        data,
    )  # fmt: skip
    runs = {}
    for loss in ("token", "turn"):
        runs[loss] = finetune(
            tiny_llava_path, data, images, tmp_path / loss, preset="toy", max_steps=6,
            loss=loss, order="sequential", **FAST,
        )  # fmt: skip
    assert runs["turn"].last_loss is not None and runs["turn"].first_loss is not None
    assert runs["turn"].last_loss < runs["turn"].first_loss
    assert runs["turn"].hyperparameters["loss"] == "turn"
    a, _ = load_model(tmp_path / "token")
    b, _ = load_model(tmp_path / "turn")
    assert any(not torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))


def test_periodic_eval_stop_when_ends_training_early(
    tiny_llava_path: Path, colour_set, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from somprobe.finetune import PeriodicEval

    data, images = colour_set
    calls: list[int] = []

    def fn(model: Any) -> dict[str, float]:
        calls.append(1)
        return {"n": float(len(calls))}

    cb = PeriodicEval(fn, every=2, at_start=False, stop_when=lambda m: m["n"] >= 2)
    result = finetune(
        tiny_llava_path, data, images, tmp_path / "run", preset="toy", max_steps=20,
        callbacks=[cb], **FAST,
    )  # fmt: skip
    assert cb.stopped_at == 4 and result.global_step == 4
    never = PeriodicEval(fn, every=2, at_start=False, stop_when=lambda m: False)
    result = finetune(
        tiny_llava_path, data, images, tmp_path / "run2", preset="toy", max_steps=4,
        callbacks=[never], **FAST,
    )  # fmt: skip
    assert never.stopped_at is None and result.global_step == 4


def test_repeat_runs_and_a_generating_evaluation_leave_training_bit_identical(
    tiny_llava_path: Path, colour_set, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """The same run twice gives the same weights bit for bit, and a periodic evaluation
    that generates (as the stage-1 gate does) does not change what is trained."""
    from somprobe.finetune import PeriodicEval

    data, images = colour_set
    base_model, processor = load_model(tiny_llava_path)
    batch = SFTCollator(processor.tokenizer.pad_token_id)(
        [LlavaSFTDataset(data, images, processor)[0]]
    )

    def generate(m: Any) -> dict[str, float]:
        keep = {k: v for k, v in batch.items() if k != "labels"}
        out = m.generate(**keep, max_new_tokens=3, do_sample=False)
        return {"tokens": float(out.shape[-1])}

    runs = {
        "plain": [],
        "again": [],
        "evaluated": [PeriodicEval(generate, every=2, at_start=True)],
    }
    for name, callbacks in runs.items():
        finetune(
            tiny_llava_path, data, images, tmp_path / name, preset="toy", max_steps=6,
            callbacks=callbacks, **FAST,
        )  # fmt: skip
    weights = {name: load_model(tmp_path / name)[0].state_dict() for name in runs}
    base = base_model.state_dict()
    assert any(not torch.equal(base[k], weights["plain"][k]) for k in base)  # it trained
    for name in ("again", "evaluated"):
        unequal = [k for k in base if not torch.equal(weights["plain"][k], weights[name][k])]
        assert not unequal, (name, unequal[:3])
