"""Every resumable command, killed with SIGKILL part-way and run again, ends exactly as an
uninterrupted run: ``somprobe data tag``, ``listing``, ``qa``, ``mix`` and
``somprobe finetune train``; nothing duplicated, nothing left behind.

The killed runs are real processes (``python -m somprobe.<area>.cli``) stopped by test
hooks (``SOMPROBE_DATA_PAUSE_AFTER``, ``SOMPROBE_FINETUNE_PAUSE_AFTER_SAVE``) and
killed while paused; all five start together, since each spends ~10 s importing torch.
The uninterrupted references and the reruns run in this process."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from finetune_testing import write_colour_set
from integration.test_data_pipeline import (
    N_IMAGES,
    cli,
    kill,
    leftovers,
    make_base,
    make_coco,
    spawn,
    wait_until_paused,
)

from somprobe.data.llava_json import iter_records
from somprobe.finetune import finetune
from somprobe.finetune.trainer import PAUSE_ENV, checkpoint_complete
from somprobe.io import read_safetensors

pytestmark = pytest.mark.slow

TRAIN: dict[str, Any] = {
    "preset": "toy",
    "max_steps": 10,  # the default save_steps (10 % of the run) saves at every step
    "global_batch_size": 4,
    "per_device_batch_size": 4,
    "warmup": 2,
    "logging_steps": 1,
    "progress": False,
}
TRAIN_ARGS = [
    "--max-steps", "10", "--global-batch-size", "4", "--per-device-batch-size", "4",
    "--warmup", "2", "--logging-steps", "1", "--no-progress",
]  # fmt: skip
KILLED_AFTER_CHECKPOINT = 8


def data_commands(root: Path, inputs: dict[str, Path]) -> dict[str, tuple[list[str], int]]:
    """command → (arguments writing into ``root``, items done before the pause)."""
    return {
        "tag": (["tag", str(inputs["images"]), str(root / "som"), "--coco", str(inputs["ann"])], 2),
        "listing": (["listing", str(inputs["tagged"]), str(root / "listing.json"), "--seed", "3"], 3),
        "qa": (["qa", str(inputs["tagged"]), str(root / "qa.json"), "--seed", "3"], 3),
        "mix": (
            ["mix", str(root / "mixed.json"), "--source", f"base={inputs['base']}",
             "--source", f"listing={inputs['listing']}:4", "--seed", "3"],
            10,
        ),
    }  # fmt: skip


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, tiny_llava_path: Path) -> dict[str, Any]:
    """Start the five runs to kill, make the references meanwhile, kill the five."""
    root = tmp_path_factory.mktemp("kill")
    inputs: dict[str, Path] = {}
    inputs["images"], inputs["ann"] = make_coco(root)
    inputs["base"] = make_base(root / "base.json")
    inputs["tagged"] = root / "tagged"
    cli("tag", inputs["images"], inputs["tagged"], "--coco", inputs["ann"])
    inputs["listing"] = root / "listing-in.json"
    cli("listing", inputs["tagged"], inputs["listing"])
    train_data, train_images = write_colour_set(root / "colour")

    started = time.monotonic()
    procs = {}
    for name, (args, pause) in data_commands(root / "killed" / "x", inputs).items():
        folder = root / "killed" / name
        folder.mkdir(parents=True)
        args = [a.replace(str(root / "killed" / "x"), str(folder)) for a in args]
        procs[name] = (spawn(args, root / f"{name}.err", pause), root / f"{name}.err", folder)
    train_args = [
        "train", str(tiny_llava_path), str(train_data), "--image-folder", str(train_images),
        "--output-dir", str(root / "killed" / "train"), *TRAIN_ARGS,
    ]  # fmt: skip
    env = {PAUSE_ENV: str(KILLED_AFTER_CHECKPOINT), "OMP_NUM_THREADS": "1"}
    procs["train"] = (
        spawn(train_args, root / "train.err", None, "somprobe.finetune.cli", env),
        root / "train.err",
        root / "killed" / "train",
    )

    # the uninterrupted references, here, while the others start
    for name, (args, _) in data_commands(root / "ref" / "x", inputs).items():
        (root / "ref" / name).mkdir(parents=True)
        cli(*[a.replace(str(root / "ref" / "x"), str(root / "ref" / name)) for a in args])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the killed run (OMP_NUM_THREADS=1): same float sums
    try:
        reference = finetune(tiny_llava_path, train_data, train_images, root / "ref" / "train",
                             **TRAIN)  # fmt: skip
    finally:
        torch.set_num_threads(threads)

    before: dict[str, list[str]] = {}
    for name, (proc, err, folder) in procs.items():
        wait_until_paused(proc, err, timeout=240)
        kill(proc)
        before[name] = sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
    return {
        "root": root, "inputs": inputs, "before": before, "reference": reference,
        "train": (train_data, train_images), "kill_seconds": time.monotonic() - started,
    }  # fmt: skip


def rerun_data(runs: dict[str, Any], name: str) -> tuple[Path, Path]:
    root = runs["root"]
    args, _ = data_commands(root / "killed" / "x", runs["inputs"])[name]
    cli(*[a.replace(str(root / "killed" / "x"), str(root / "killed" / name)) for a in args])
    return root / "ref" / name, root / "killed" / name


def assert_same_files(ref: Path, run: Path) -> None:
    a, b = files(ref), files(run)
    assert sorted(a) == sorted(b)
    for rel in a:
        assert a[rel] == b[rel], rel


def test_tag(runs: dict[str, Any]) -> None:
    before = runs["before"]["tag"]
    assert sum(p.startswith("som/tagsets/") for p in before) == 2  # killed after 2 images
    ref, run = rerun_data(runs, "tag")
    assert_same_files(ref, run)
    assert len(list((run / "som" / "tagsets").glob("*.json"))) == N_IMAGES
    assert leftovers(run) == []


@pytest.mark.parametrize("name", ["listing", "qa"])
def test_listing_and_qa(runs: dict[str, Any], name: str) -> None:
    before = runs["before"][name]
    assert before == [f"{name}.json.partial.jsonl"]  # only the journal: no output yet
    journal = runs["root"] / "killed" / name / f"{name}.json.partial.jsonl"
    assert len(journal.read_text().splitlines()) == 1 + 3  # settings + 3 images
    ref, run = rerun_data(runs, name)
    assert_same_files(ref, run)
    ids = [r.id for r in iter_records(run / f"{name}.json")]
    assert len(ids) == len(set(ids)) == N_IMAGES  # nothing duplicated, nothing lost
    assert leftovers(run) == []  # the finished run removed its journal


def test_mix(runs: dict[str, Any]) -> None:
    before = runs["before"]["mix"]
    # killed while writing: its bucket folder and its temporary output were left behind
    assert any(p.startswith(".mix-") and p.count("/") == 0 for p in before), before
    assert any(p.startswith(".mixed.json.") and p.endswith(".tmp") for p in before), before
    assert "mixed.json" not in before
    ref, run = rerun_data(runs, "mix")
    assert_same_files(ref, run)
    ids = [r.id for r in iter_records(run / "mixed.json")]
    assert len(ids) == len(set(ids)) == 40 + 4
    assert leftovers(run) == []  # the rerun removed the killed run's leftovers


def test_training(runs: dict[str, Any], tiny_llava_path: Path) -> None:
    """Killed right after checkpoint-8 of 10, the rerun resumes there and ends with the
    very weights, steps and losses of the uninterrupted run."""
    out = runs["root"] / "killed" / "train"
    assert [p for p in runs["before"]["train"] if "/" not in p] == ["checkpoint-7", "checkpoint-8"]
    data, images = runs["train"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        resumed = finetune(tiny_llava_path, data, images, out, **TRAIN)
    finally:
        torch.set_num_threads(threads)
    reference = runs["reference"]
    assert resumed.resumed_from is not None
    assert resumed.resumed_from.endswith(f"checkpoint-{KILLED_AFTER_CHECKPOINT}")
    assert resumed.global_step == reference.global_step == 10
    ref_dir = runs["root"] / "ref" / "train"
    # bit-identical weights: same data order, RNG, optimizer and scheduler state, and
    # the same float operations in the same order (one thread in both processes)
    a, b = (
        read_safetensors(ref_dir / "model.safetensors"),
        read_safetensors(out / "model.safetensors"),
    )
    assert sorted(a) == sorted(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # the loss curve continues where the killed run stopped, step for step
    ref_state = json.loads((ref_dir / "checkpoint-10" / "trainer_state.json").read_text())
    run_state = json.loads((out / "checkpoint-10" / "trainer_state.json").read_text())
    losses = [(h["step"], h["loss"]) for h in ref_state["log_history"] if "loss" in h]
    assert len(losses) == 10
    assert [(h["step"], h["loss"]) for h in run_state["log_history"] if "loss" in h] == losses
    # no leftovers: two complete checkpoints kept (save_total_limit), no temporary files
    kept = sorted(p.name for p in out.glob("checkpoint-*"))
    assert kept == ["checkpoint-10", "checkpoint-9"]
    assert all(checkpoint_complete(out / k) for k in kept)
    assert leftovers(out) == []
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in ref_dir.iterdir())
