"""Run the evaluations on any LLaVA model: generate answers, score them, tidy tables.

An *eval split* is a folder of LLaVA JSON files whose records carry their ground truth
in an ``"eval"`` key (the toy world writes them, :mod:`somprobe.data.toyworld.dataset`);
image paths are relative to the folder. Files by task:

* ``listing.json`` — ``{"task": "listing", "tags": {label: phrase}, "attributes": ...}``
* ``tag_qa.json`` — ``{"task": "tag_qa", "kind": ..., "answer": ...}``
* ``pope_<setting>.json`` — ``{"task": "pope", "setting": ..., "label": "yes"|"no"}``
* ``instruct.json`` — ``{"task": "instruct", "kind": ..., "answer": ...}``

Answers come from greedy decoding, batched with left padding, prompts built by the
model's chat template (vicuna_v1 for LLaVA-1.5: ``"USER: <image>\\n… ASSISTANT:"``).

Example:
    >>> from somprobe.models import load_model
    >>> model, processor = load_model("models/toy-som")  # doctest: +SKIP
    >>> result = evaluate(model, processor, "toy/eval", tasks=("listing", "pope"))  # doctest: +SKIP
    >>> result.summary  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from PIL import Image

from somprobe.data.llava_json import IMAGE_TOKEN, iter_records
from somprobe.errors import DataFormatError, InputError
from somprobe.evals.listing import parse_listing, score_listing, summarize_listing
from somprobe.evals.pope import parse_yes_no, summarize_pope
from somprobe.evals.tag_qa import answer_correct, summarize_qa
from somprobe.models.inputs import build_prompt, pad_token_id, prepare_inputs, to_model

TASKS: tuple[str, ...] = ("listing", "tag_qa", "pope", "instruct")
TASK_FILES: dict[str, tuple[str, ...]] = {
    "listing": ("listing.json",),
    "tag_qa": ("tag_qa.json",),
    "pope": ("pope_random.json", "pope_popular.json", "pope_adversarial.json"),
    "instruct": ("instruct.json",),
}
#: Default new-token budgets per task (listing: per tag on the image, plus a margin).
MAX_NEW_TOKENS: dict[str, int] = {"tag_qa": 16, "pope": 6, "instruct": 12}
LISTING_TOKENS_PER_TAG = 10
SUMMARY_COLUMNS = ["task", "setting", "metric", "value", "n"]


@dataclass(frozen=True)
class EvalItem:
    """One evaluation question: the image, the question text and its ground truth."""

    id: str
    image: Path
    question: str
    reference: str
    truth: dict[str, Any]


@dataclass
class EvalResult:
    """Per-task item tables (one row per question) and the tidy summary."""

    items: dict[str, pd.DataFrame] = field(default_factory=dict)
    summary: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SUMMARY_COLUMNS))


def load_eval_file(path: str | Path, *, limit: int | None = None) -> list[EvalItem]:
    """The questions of one eval file (first ``limit`` records when given).

    Raises:
        DataFormatError: a record has no ``"eval"`` ground truth or no image.
    """
    path = Path(path)
    items: list[EvalItem] = []
    for rec in iter_records(path):
        if limit is not None and len(items) >= limit:
            break
        truth = rec.extra.get("eval")
        if not isinstance(truth, dict) or "task" not in truth or rec.image is None:
            raise DataFormatError(
                f"record id={rec.id!r} in {path}: an eval record needs an image and an 'eval' "
                "object with a 'task'; write eval splits with somprobe.data.toyworld"
            )
        question = rec.conversations[0].value.replace(IMAGE_TOKEN, "", 1).strip()
        reference = rec.conversations[1].value if len(rec.conversations) > 1 else ""
        items.append(EvalItem(str(rec.id), path.parent / rec.image, question, reference, truth))
    return items


def generate_answers(
    model: Any,
    processor: Any,
    images: Sequence[Image.Image | str | Path],
    questions: Sequence[str],
    *,
    max_new_tokens: int | Sequence[int] = 32,
    batch_size: int = 8,
    progress: bool = True,
    desc: str = "generate",
) -> list[str]:
    """Greedy answers, one per (image, question), batched with left padding.

    ``max_new_tokens`` may be one number or one per question (a batch uses its largest).
    """
    if len(images) != len(questions):
        raise InputError(f"{len(images)} images but {len(questions)} questions")
    if batch_size < 1:
        raise InputError(f"batch_size must be ≥ 1, got {batch_size}")
    budgets = (
        [int(max_new_tokens)] * len(questions)
        if isinstance(max_new_tokens, int)
        else [int(b) for b in max_new_tokens]
    )
    from tqdm import tqdm

    tokenizer = processor.tokenizer
    pad_id = pad_token_id(tokenizer)
    answers: list[str] = []
    starts = range(0, len(questions), batch_size)
    for start in tqdm(starts, desc=desc, unit="batch", disable=not progress):
        stop = start + batch_size
        batch_images = [_open(im) for im in images[start:stop]]
        prompts = [build_prompt(processor, q) for q in questions[start:stop]]
        inputs = to_model(
            model, prepare_inputs(processor, batch_images, prompts, padding_side="left")
        )
        with torch.no_grad():
            out = model.generate(
                **inputs,
                do_sample=False,
                max_new_tokens=max(budgets[start:stop]),
                pad_token_id=pad_id,
            )
        new = out[:, inputs["input_ids"].shape[1] :]
        answers += [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
    return answers


def _open(image: Image.Image | str | Path) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    path = Path(image)
    if not path.is_file():
        raise InputError(f"image {path} does not exist")
    with Image.open(path) as im:
        return im.convert("RGB")


def _listing_table(items: list[EvalItem], answers: list[str]) -> pd.DataFrame:
    rows = []
    for item, answer in zip(items, answers, strict=True):
        scores = score_listing(
            parse_listing(answer), item.truth["tags"], attributes=item.truth.get("attributes")
        )
        rows.append({"id": item.id, "image": str(item.image), "answer": answer, **scores})
    return pd.DataFrame(rows)


def _qa_table(task: str, items: list[EvalItem], answers: list[str]) -> pd.DataFrame:
    rows = []
    for item, answer in zip(items, answers, strict=True):
        kind = str(item.truth.get("kind", task))
        reference = str(item.truth.get("answer", item.reference))
        rows.append(
            {"id": item.id, "image": str(item.image), "kind": kind, "question": item.question,
             "reference": reference, "answer": answer,
             "correct": answer_correct(kind, answer, reference)}
        )  # fmt: skip
    return pd.DataFrame(rows)


def _pope_table(items: list[EvalItem], answers: list[str]) -> pd.DataFrame:
    rows = []
    for item, answer in zip(items, answers, strict=True):
        rows.append(
            {"id": item.id, "image": str(item.image), "setting": item.truth["setting"],
             "object": item.truth.get("object"), "label": item.truth["label"],
             "answer": answer, "parsed": parse_yes_no(answer)}
        )  # fmt: skip
    return pd.DataFrame(rows)


def score_task(
    task: str, items: list[EvalItem], answers: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score answers already generated: ``(item table, tidy summary rows)``."""
    if task == "listing":
        table = _listing_table(items, answers)
        summary = summarize_listing(table).assign(task=task, setting="all")
    elif task in ("tag_qa", "instruct"):
        table = _qa_table(task, items, answers)
        summary = summarize_qa(table).rename(columns={"kind": "setting"}).assign(task=task)
    elif task == "pope":
        table = _pope_table(items, answers)
        summary = summarize_pope(table).assign(task=task)
    else:
        raise InputError(f"unknown task {task!r}; choose from {TASKS}")
    return table, summary[SUMMARY_COLUMNS]


def _budgets(task: str, items: list[EvalItem], override: int | None) -> list[int]:
    if override is not None:
        return [override] * len(items)
    if task == "listing":
        return [LISTING_TOKENS_PER_TAG * len(i.truth["tags"]) + 4 for i in items]
    return [MAX_NEW_TOKENS[task]] * len(items)


def evaluate(
    model: Any,
    processor: Any,
    split_dir: str | Path,
    *,
    tasks: Sequence[str] = TASKS,
    limit: int | None = None,
    batch_size: int = 8,
    max_new_tokens: int | None = None,
    progress: bool = True,
) -> EvalResult:
    """Generate and score every requested task of an eval split.

    Args:
        model, processor: any LLaVA model and its processor (e.g. from ``load_model``).
        split_dir: the eval split folder.
        tasks: any of "listing", "tag_qa", "pope", "instruct".
        limit: at most this many records per file (None: all).
        batch_size: generation batch size.
        max_new_tokens: one budget for every question (None: per-task defaults).

    Raises:
        InputError: unknown task, or a task's file is missing from the folder.
    """
    root = Path(split_dir)
    unknown = [t for t in tasks if t not in TASKS]
    if unknown or not tasks:
        raise InputError(f"unknown task(s) {unknown or tasks}; choose from {TASKS}")
    result = EvalResult()
    summaries = []
    for task in tasks:
        items: list[EvalItem] = []
        for name in TASK_FILES[task]:
            path = root / name
            if not path.is_file():
                raise InputError(f"{path} is missing: {root} is not an eval split with '{task}'")
            items += load_eval_file(path, limit=limit)
        answers = generate_answers(
            model, processor, [i.image for i in items], [i.question for i in items],
            max_new_tokens=_budgets(task, items, max_new_tokens), batch_size=batch_size,
            progress=progress, desc=task,
        )  # fmt: skip
        table, summary = score_task(task, items, answers)
        result.items[task] = table
        summaries.append(summary)
    result.summary = pd.concat(summaries, ignore_index=True)
    return result


__all__ = [
    "MAX_NEW_TOKENS",
    "TASKS",
    "TASK_FILES",
    "EvalItem",
    "EvalResult",
    "evaluate",
    "generate_answers",
    "load_eval_file",
    "score_task",
]
