"""The evaluations on a real-shaped model path: a tiny random LLaVA on a toy eval split."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from somprobe_testing import check_batched_generation
from typer.testing import CliRunner

from somprobe.data.toyworld import WorldConfig
from somprobe.data.toyworld.dataset import write_eval_split
from somprobe.errors import InputError
from somprobe.evals import evaluate, load_eval_file, pope_metrics, score_task
from somprobe.evals.listing import parse_listing, score_listing
from somprobe.evals.runner import TASK_FILES

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("toy-eval")
    write_eval_split(root, WorldConfig(), 3, seed=9, progress=False)
    return root


def test_oracle_answers_score_perfectly(split: Path) -> None:
    for task, files in TASK_FILES.items():
        items = [i for f in files for i in load_eval_file(split / f)]
        table, summary = score_task(task, items, [i.reference for i in items])
        main = {"listing": "list_accuracy", "pope": "accuracy"}.get(task, "accuracy")
        assert (summary.loc[summary["metric"] == main, "value"] == 1.0).all(), task
        assert len(table) == len(items)


def test_random_tiny_llava_gets_low_correctly_computed_scores(tiny_llava, split: Path) -> None:  # type: ignore[no-untyped-def]
    model, processor = tiny_llava
    result = evaluate(
        model, processor, split, limit=2, batch_size=6, max_new_tokens=4, progress=False
    )
    assert set(result.items) == {"listing", "tag_qa", "pope", "instruct"}
    assert list(result.summary.columns) == ["task", "setting", "metric", "value", "n"]
    s = result.summary.set_index(["task", "setting", "metric"])["value"]
    # recompute every headline number from the per-item answers, independently
    listing = result.items["listing"]
    truths = [i.truth["tags"] for i in load_eval_file(split / "listing.json", limit=2)]
    rescored = [
        score_listing(parse_listing(a), t) for a, t in zip(listing["answer"], truths, strict=True)
    ]
    listed = sum(r["listed"] for r in rescored)
    correct = sum(r["correct"] for r in rescored)
    assert s[("listing", "all", "recall")] == pytest.approx(correct / sum(len(t) for t in truths))
    if listed:
        assert s[("listing", "all", "list_accuracy")] == pytest.approx(correct / listed)
    else:
        assert math.isnan(s[("listing", "all", "list_accuracy")])
    pope = result.items["pope"]
    for setting, group in pope.groupby("setting"):
        m = pope_metrics(list(group["label"]), list(group["answer"]))
        for metric in ("accuracy", "precision", "recall", "f1", "yes_ratio"):
            assert s[("pope", setting, metric)] == pytest.approx(m[metric])
    assert s[("tag_qa", "all", "accuracy")] == pytest.approx(
        result.items["tag_qa"]["correct"].mean()
    )
    # a random model is far from the task
    assert s[("listing", "all", "recall")] < 0.5
    assert s[("tag_qa", "all", "accuracy")] < 0.5


def test_batched_left_padded_generation_equals_one_by_one(tiny_llava, split: Path) -> None:  # type: ignore[no-untyped-def]
    check_batched_generation(*tiny_llava, split, n=3, new=5)


def test_bad_split_and_task(tiny_llava, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, processor = tiny_llava
    with pytest.raises(InputError, match="missing"):
        evaluate(model, processor, tmp_path, tasks=("pope",), progress=False)
    with pytest.raises(InputError, match="unknown task"):
        evaluate(model, processor, tmp_path, tasks=("vqa",), progress=False)


def test_cli_writes_tables(tiny_llava_path: Path, split: Path, tmp_path: Path) -> None:
    from somprobe.evals.cli import app

    out = tmp_path / "results"
    res = CliRunner().invoke(
        app,
        ["run", str(tiny_llava_path), str(split), "--tasks", "pope", "--limit", "2",
         "--max-new-tokens", "3", "--out", str(out), "--no-progress"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["setting"]) == {"random", "popular", "adversarial"}
    assert len(pd.read_csv(out / "pope.csv")) == 6
    bad = CliRunner().invoke(app, ["run", str(tiny_llava_path), str(tmp_path), "--tasks", "pope"])
    assert bad.exit_code == 2 and "missing" in bad.output
