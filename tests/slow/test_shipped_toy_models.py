"""The shipped toy models load offline and still score what their model cards say."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from somprobe_testing import load_experiment

from somprobe.evals import evaluate
from somprobe.models import load_model

MODELS = Path(__file__).resolve().parents[2] / "models"


@pytest.fixture(scope="module")
def eval_split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The scenes ``check_sample.json`` was scored on, written by the training job's own code."""
    return load_experiment("train_toy_models").write_check_split(tmp_path_factory.mktemp("c"))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["toy-som", "toy-baseline"])
def test_shipped_model_rechecks_its_listing_accuracy(name: str, eval_split: Path) -> None:
    folder = MODELS / name
    check = json.loads((folder / "check_sample.json").read_text())
    model, processor = load_model(folder, dtype="float32")
    result = evaluate(
        model, processor, eval_split, tasks=("listing",), limit=check["n"], progress=False
    )
    summary = result.summary.set_index("metric")["value"]
    for metric, expected in check["listing"].items():
        got = float(summary[metric])
        if expected is None:  # undefined when the model lists nothing
            assert math.isnan(got), (name, metric, got)
        else:
            assert got == pytest.approx(expected, abs=0.02), (name, metric, got, expected)


def test_shipped_models_fit_the_size_budget() -> None:
    for name in ("toy-som", "toy-baseline"):
        weights = MODELS / name / "model.safetensors"
        assert weights.stat().st_size <= 10 * 1024 * 1024, weights
        card = (MODELS / name / "README.md").read_text()
        assert "Held-out scores" in card and "Training time" in card
