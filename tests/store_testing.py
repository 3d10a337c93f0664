"""Helpers for the trace-store tests: a small toy eval split and store comparisons."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from somprobe.data.toyworld.dataset import write_eval_split
from somprobe.data.toyworld.scenes import WorldConfig

ROOT = Path(__file__).resolve().parents[1]


def toy_split(root: Path, scenes: int, seed: int = 9) -> Path:
    """A toy-world dataset folder with an eval split of ``scenes`` scenes; returns it."""
    write_eval_split(root / "eval", WorldConfig(), scenes, seed=seed, progress=False)
    return root


def store_files(folder: Path) -> dict[str, bytes]:
    """Every file of a store, by relative path, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def leftovers(folder: Path) -> list[Path]:
    """Hidden temporary files a killed writer may leave (``.name.<pid>-*.tmp``)."""
    return sorted(folder.rglob(".*"))


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a capture subprocess: offline, one thread (stable sums)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.update({"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", **extra})
    return env


def capture_args(model: Path, out: Path, dataset: Path) -> list[str]:
    """``capture run`` arguments shared by the subprocess tests (small batches and shards)."""
    return [
        "run", str(model), str(out), "--toy", str(dataset), "--queries", "digits",
        "--batch-size", "2", "--shard-size", "2", "--no-progress",
    ]  # fmt: skip


def run_capture_cli(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m somprobe.capture.cli ARGS`` in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "somprobe.capture.cli", *args],
        env=cli_env(**env), capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
