"""The shipped toy models load offline and still score what their model cards say."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from somprobe.data.toyworld import world
from somprobe.data.toyworld.dataset import write_eval_split
from somprobe.evals import evaluate
from somprobe.models import load_model

MODELS = Path(__file__).resolve().parents[2] / "models"
SHIPPED = [
    n for n in ("toy-baseline", "toy-som", "toy-control") if (MODELS / n / "config.json").is_file()
]


def card_world(name: str) -> str:
    """The world a shipped model was trained in: its card says (cards before v2: v1)."""
    card = json.loads((MODELS / name / "training.json").read_text())
    return str(card.get("world", "v1"))


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_rechecks_its_listing_accuracy(name: str, tmp_path: Path) -> None:
    folder = MODELS / name
    check = json.loads((folder / "check_sample.json").read_text())
    split = tmp_path / "check"  # the scenes check_sample.json was scored on
    write_eval_split(split, world(card_world(name)), check["n"], seed=0, progress=False)
    model, processor = load_model(folder, dtype="float32")
    result = evaluate(model, processor, split, tasks=("listing",), limit=check["n"], progress=False)
    summary = result.summary.set_index("metric")["value"]
    for metric, expected in check["listing"].items():
        got = float(summary[metric])
        if expected is None:  # undefined when the model lists nothing
            assert math.isnan(got), (name, metric, got)
        else:
            assert got == pytest.approx(expected, abs=0.02), (name, metric, got, expected)


def test_shipped_models_fit_the_size_budget_and_share_their_data() -> None:
    assert {"toy-baseline", "toy-som"} <= set(SHIPPED)
    digests, worlds = set(), set()
    for name in SHIPPED:
        weights = MODELS / name / "model.safetensors"
        assert weights.stat().st_size <= 10 * 1024 * 1024, weights
        assert "Held-out scores" in (MODELS / name / "README.md").read_text()
        worlds.add(card_world(name))
        card = json.loads((MODELS / name / "training.json").read_text())
        if "instruction_digest" in card:  # matched arms: the same instruction records
            digests.add(card["instruction_digest"])
    assert len(worlds) == 1 and len(digests) <= 1
