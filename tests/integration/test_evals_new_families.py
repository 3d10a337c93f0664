"""The evaluations on tiny LLaVA-NeXT and Qwen2.5-VL (random weights: plumbing only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from somprobe_testing import check_batched_generation

from somprobe.data.toyworld import WorldConfig
from somprobe.data.toyworld.dataset import write_eval_split
from somprobe.errors import InputError
from somprobe.evals import evaluate, generate_answers, load_eval_file
from somprobe.models import build_tiny_llava_next, build_tiny_qwen2_5_vl, load_model

pytestmark = pytest.mark.integration
torch.set_num_threads(1)

BUILDERS = {"llava_next": build_tiny_llava_next, "qwen2_vl": build_tiny_qwen2_5_vl}


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("toy-eval")
    write_eval_split(root, WorldConfig(), 2, seed=9, progress=False)
    return root


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def family_model(request: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return load_model(BUILDERS[request.param](tmp_path_factory.mktemp(request.param)))


def test_every_task_runs_and_is_scored(family_model: Any, split: Path) -> None:
    model, processor = family_model
    result = evaluate(
        model, processor, split, limit=2, batch_size=4, max_new_tokens=3, progress=False
    )
    assert set(result.items) == {"listing", "tag_qa", "pope", "instruct"}
    assert list(result.summary.columns) == ["task", "setting", "metric", "value", "n"]
    assert all(len(t) for t in result.items.values())


def test_batched_left_padded_generation_equals_one_by_one(family_model: Any, split: Path) -> None:
    check_batched_generation(*family_model, split, n=2, new=4)


def test_a_processor_of_another_family_is_refused(
    family_model: Any, tiny_llava: Any, split: Path
) -> None:
    model, _ = family_model
    _, processor_15 = tiny_llava
    items = load_eval_file(split / "tag_qa.json", limit=1)
    with pytest.raises(InputError, match="does not fit the model"):
        generate_answers(model, processor_15, [items[0].image], [items[0].question])
