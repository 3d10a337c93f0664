"""``somprobe capture run`` as real processes: SIGKILLed at a random point after its first
shard and resumed, and split over two processes by ``accelerate launch``; both end with
the store an uninterrupted single-process run writes, byte for byte."""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from store_testing import (
    ROOT,
    capture_args,
    cli_env,
    leftovers,
    run_capture_cli,
    store_files,
    toy_split,
)

from somprobe.capture import TraceStore
from somprobe.capture.dataset import PAUSE_ENV
from somprobe.capture.store import part_file

pytestmark = pytest.mark.slow
SCENES = 9  # 5 shards of 2, 2, 2, 2, 1 records


@pytest.fixture(scope="module")
def jobs(tmp_path_factory: pytest.TempPathFactory, tiny_llava_path: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("capture-jobs")
    dataset = toy_split(root / "toy", SCENES)
    reference = root / "reference"
    done = run_capture_cli(capture_args(tiny_llava_path, reference, dataset))
    assert done.returncode == 0, done.stderr[-3000:]
    return {"root": root, "dataset": dataset, "reference": reference, "model": tiny_llava_path}


def test_killed_run_resumes_to_the_uninterrupted_store(jobs: dict[str, Path]) -> None:
    out = jobs["root"] / "killed"
    args = capture_args(jobs["model"], out, jobs["dataset"])
    delay = random.uniform(0.0, 1.0)
    stderr = jobs["root"] / "killed.err"
    with open(stderr, "w") as err:
        # the hook stops the run after 3 of 5 shards, so the kill always comes before the end
        proc = subprocess.Popen(
            [sys.executable, "-m", "somprobe.capture.cli", *args],
            env=cli_env(**{PAUSE_ENV: "3"}), stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT,
        )  # fmt: skip
    start = time.monotonic()
    while not part_file(out, 0).is_file():
        assert proc.poll() is None, stderr.read_text()[-3000:]
        assert time.monotonic() - start < 120, "the run never finished a shard"
        time.sleep(0.01)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    finished = sorted(p.name for p in (out / "shards").glob("*.index.parquet"))
    assert 1 <= len(finished) <= 3, (delay, finished)
    assert not (out / "index.parquet").exists()
    resumed = run_capture_cli(args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert store_files(out) == store_files(jobs["reference"]), f"killed after {delay:.2f} s"
    assert leftovers(out) == []
    index = TraceStore(out).index
    assert index["record_id"].is_unique and len(index) == SCENES


def test_accelerate_two_processes_equal_one(jobs: dict[str, Path]) -> None:
    out = jobs["root"] / "accelerate"
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    assert accelerate is not None, "accelerate is part of the finetune extra"
    cmd = [
        accelerate, "launch", "--config_file", str(ROOT / "configs/accelerate/cpu-2proc.yaml"),
        "--num_processes", "2", "--main_process_port", "0", "-m", "somprobe.capture.cli",
        *capture_args(jobs["model"], out, jobs["dataset"]),
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=cli_env(), capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("9 records in 5 shards") == 2, proc.stdout
    assert store_files(out) == store_files(jobs["reference"])
    assert leftovers(out) == []
