"""The ``somprobe finetune`` command group."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from somprobe.finetune.cli import app
from somprobe.models import load_model

runner = CliRunner()


def test_train_prints_summary_with_skips(tiny_llava_path: Path, colour_set, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data, images = colour_set
    text = data.read_text().replace('"image": "3.png"', '"image": "gone.png"')
    data.write_text(text)
    out = tmp_path / "out"
    args = [
        "train", str(tiny_llava_path), str(data), "--image-folder", str(images),
        "--output-dir", str(out), "--max-steps", "2", "--global-batch-size", "4",
        "--per-device-batch-size", "4", "--warmup", "1", "--no-progress",
        "--trainable", "projector+lm", "--save-dtype", "float16",
    ]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{\n") :])  # after the log lines
    assert summary["global_step"] == 2 and summary["records"] == 23
    assert summary["skipped"]["counts"] == {"missing_image": 1}
    model, _ = load_model(out)
    assert next(model.parameters()).dtype.itemsize == 2


def test_errors_are_reported_not_raised(tiny_llava_path: Path, colour_set, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data, _images = colour_set
    args = [
        "train", str(tiny_llava_path), str(data), "--image-folder", str(tmp_path / "nowhere"),
        "--output-dir", str(tmp_path / "out"), "--no-progress",
    ]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "somprobe: error: image folder" in result.output and "does not exist" in result.output
    assert "Traceback" not in result.output
    bad = runner.invoke(app, [*args[:-1], "--preset", "huge"])
    assert bad.exit_code == 2 and "unknown finetune preset" in bad.output


def test_presets_command() -> None:
    result = runner.invoke(app, ["presets"])
    assert result.exit_code == 0
    shown = json.loads(result.output)
    assert (
        shown["som-llava-1.5"]["learning_rate"] == 2e-5 and shown["toy"]["global_batch_size"] == 32
    )
