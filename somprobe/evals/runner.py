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
from somprobe.models.adapters import check_processor
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


def _check_count(value: object, name: str, *, optional: bool = False) -> None:
    """An integer option of at least 1 (``None`` allowed when ``optional``)."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(
            f"{name} must be an integer ≥ 1{' or None' if optional else ''}, got {value!r}"
        )


def _check_truth(truth: dict[str, Any], rec_id: Any, path: Path) -> None:
    """The ground truth a task's scorer reads is there and of the right type."""
    where = f"record id={rec_id!r} in {path}"
    task = truth["task"]
    if task not in TASKS:
        raise DataFormatError(f"{where}: unknown eval task {task!r}; tasks are {TASKS}")
    if task == "listing":
        tags = truth.get("tags")
        if (
            not isinstance(tags, dict)
            or not tags
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items())
        ):
            raise DataFormatError(
                f"{where}: a listing record needs 'tags', a non-empty object of tag label → "
                f'phrase (e.g. {{"1": "red circle"}}), got {tags!r}'
            )
        attributes = truth.get("attributes")
        if attributes is not None and not (
            isinstance(attributes, dict) and all(isinstance(a, dict) for a in attributes.values())
        ):
            raise DataFormatError(
                f"{where}: 'attributes' must map tag labels to objects of attribute words"
            )
    elif task == "pope":
        if not isinstance(truth.get("setting"), str):
            raise DataFormatError(f"{where}: a pope record needs a 'setting' (e.g. 'random')")
        if truth.get("label") not in ("yes", "no"):
            raise DataFormatError(
                f"{where}: a pope record's 'label' must be 'yes' or 'no', got {truth.get('label')!r}"
            )


def load_eval_file(path: str | Path, *, limit: int | None = None) -> list[EvalItem]:
    """The questions of one eval file (first ``limit`` records when given; an empty file
    has none).

    Raises:
        InputError: the file is missing, or ``limit`` is below 1.
        DataFormatError: malformed JSON, a record without an image or an ``"eval"``
            ground truth with a known ``task``, or without what its task is scored on
            (listing: ``tags``; pope: ``setting`` and a yes/no ``label``).
    """
    _check_count(limit, "limit", optional=True)
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
        _check_truth(truth, rec.id, path)
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
    No questions give no answers (the model is not called).

    Raises:
        InputError: not one question per image, a budget or ``batch_size`` below 1, a
            budget list of another length, an image file that does not exist, or a
            processor of another model family than ``model``.
    """
    if len(images) != len(questions):
        raise InputError(f"{len(images)} images but {len(questions)} questions")
    _check_count(batch_size, "batch_size")
    if isinstance(max_new_tokens, int):
        budgets = [max_new_tokens] * len(questions)
    else:
        budgets = list(max_new_tokens)
        if len(budgets) != len(questions):
            raise InputError(
                f"{len(budgets)} max_new_tokens budgets for {len(questions)} questions; give "
                "one number or one per question"
            )
    for budget in budgets:
        _check_count(budget, "max_new_tokens")
    for image in images:
        if not isinstance(image, Image.Image) and not Path(image).is_file():
            raise InputError(f"image {image} does not exist")
    if not questions:
        return []
    check_processor(model, processor)
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
    """Score answers already generated: ``(item table, tidy summary rows)``.

    Raises:
        InputError: an unknown task, no items, not one answer (a string) per item, or
            items that are not :class:`EvalItem`.
        DataFormatError: an item of another task (its ground truth says which).
    """
    if task not in TASKS:
        raise InputError(f"unknown task {task!r}; choose from {TASKS}")
    if not items:
        raise InputError(f"no items to score for task {task!r}")
    if len(answers) != len(items):
        raise InputError(f"{len(answers)} answers for {len(items)} items; give one per item")
    for item, answer in zip(items, answers, strict=True):
        if not isinstance(item, EvalItem):
            raise InputError(f"items must be EvalItem (load_eval_file), got {type(item).__name__}")
        if item.truth.get("task") != task:
            raise DataFormatError(
                f"record id={item.id!r} is a {item.truth.get('task')!r} eval record; score it "
                f"as task {item.truth.get('task')!r}, not {task!r}"
            )
        if not isinstance(answer, str):
            raise InputError(f"answers must be strings, got {type(answer).__name__}")
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
        InputError: unknown task, a task's file missing from the folder or without
            records, or ``limit`` / ``batch_size`` / ``max_new_tokens`` below 1.
        DataFormatError: a malformed eval file (see :func:`load_eval_file`), or records
            of another task in a task's file.
    """
    root = Path(split_dir)
    if isinstance(tasks, str):
        raise InputError(
            f"tasks must be a list of task names such as ('listing', 'pope'), got the "
            f"string {tasks!r}"
        )
    unknown = [t for t in tasks if t not in TASKS]
    if unknown or not tasks:
        raise InputError(f"unknown task(s) {unknown or list(tasks)}; choose from {TASKS}")
    _check_count(limit, "limit", optional=True)
    _check_count(batch_size, "batch_size")
    _check_count(max_new_tokens, "max_new_tokens", optional=True)
    result = EvalResult()
    summaries = []
    for task in tasks:
        items: list[EvalItem] = []
        for name in TASK_FILES[task]:
            path = root / name
            if not path.is_file():
                raise InputError(f"{path} is missing: {root} is not an eval split with '{task}'")
            found = load_eval_file(path, limit=limit)
            if not found:
                raise InputError(f"{path} has no records: there is nothing to evaluate")
            wrong = [i for i in found if i.truth["task"] != task]
            if wrong:
                raise DataFormatError(
                    f"record id={wrong[0].id!r} in {path} is a {wrong[0].truth['task']!r} eval "
                    f"record, not {task!r}; the split's files are mixed up"
                )
            items += found
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
