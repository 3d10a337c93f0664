"""Evaluations for any LLaVA model: tag listing, tag-QA, POPE-style existence.

Example:
    >>> from somprobe.evals import parse_listing, score_listing
    >>> score_listing(parse_listing("1. red circle"), {"1": "red circle"})["list_accuracy"]
    1.0
"""

from somprobe.evals.listing import (
    ListedItem,
    parse_listing,
    phrase_matches,
    score_listing,
    summarize_listing,
)
from somprobe.evals.pope import parse_yes_no, pope_metrics, summarize_pope
from somprobe.evals.runner import (
    TASKS,
    EvalItem,
    EvalResult,
    evaluate,
    generate_answers,
    load_eval_file,
    score_task,
)
from somprobe.evals.tag_qa import answer_correct, summarize_qa

__all__ = [
    "TASKS",
    "EvalItem",
    "EvalResult",
    "ListedItem",
    "answer_correct",
    "evaluate",
    "generate_answers",
    "load_eval_file",
    "parse_listing",
    "parse_yes_no",
    "phrase_matches",
    "pope_metrics",
    "score_listing",
    "score_task",
    "summarize_listing",
    "summarize_pope",
    "summarize_qa",
]
