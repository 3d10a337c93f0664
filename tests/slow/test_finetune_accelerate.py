"""The finetune command under ``accelerate launch`` with two CPU processes (gloo)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from finetune_testing import write_colour_set

from somprobe.models import load_model

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_two_cpu_processes(tiny_llava_path: Path, tmp_path: Path) -> None:
    data, images = write_colour_set(tmp_path)
    out = tmp_path / "ddp"
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    assert accelerate is not None, "accelerate is part of the finetune extra"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip
    cmd = [
        accelerate, "launch", "--config_file", str(ROOT / "configs/accelerate/cpu-2proc.yaml"),
        "--main_process_port", "0", "-m", "somprobe.finetune.cli", "train",
        str(tiny_llava_path), str(data), "--image-folder", str(images), "--output-dir", str(out),
        "--max-steps", "3", "--global-batch-size", "4", "--per-device-batch-size", "2",
        "--warmup", "1", "--logging-steps", "1", "--no-progress", "--trainable", "projector+lm",
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "finetune_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["global_step"] == 3
    # two processes × 2 items × 3 steps, no gradient accumulation
    state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3 and state["train_batch_size"] == 2
    model, _ = load_model(out)
    base, _ = load_model(tiny_llava_path)
    moved = max(
        float((a - b).abs().max())
        for a, b in zip(model.state_dict().values(), base.state_dict().values(), strict=True)
    )
    assert moved > 0
