"""Trainer callbacks: periodic held-out evaluation written to a tidy CSV.

Example:
    >>> def score(model):                       # any function of the model
    ...     return {"listing_accuracy": 0.5}
    >>> cb = PeriodicEval(score, every=200, csv_path="curve.csv", labels={"model": "som"})
    >>> finetune(..., callbacks=[cb])           # doctest: +SKIP
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from somprobe.errors import DataFormatError, InputError
from somprobe.io import atomic_write

EvalFn = Callable[[Any], Mapping[str, float]]


def _read_curve(path: Path) -> pd.DataFrame:
    """A curve CSV written before (by this or another run).

    Raises:
        DataFormatError: the file is not a readable CSV.
    """
    try:
        return pd.read_csv(path)
    except (ValueError, UnicodeDecodeError) as err:  # pandas' ParserError is a ValueError
        raise DataFormatError(
            f"{path} is not a readable curve CSV ({err}); move it away or pass another csv_path"
        ) from None


class PeriodicEval(TrainerCallback):
    """Every ``every`` optimizer steps (and at the end) run ``fn(model)`` and log it.

    With ``stop_when``, training stops after the first periodic evaluation whose
    metrics satisfy it (e.g. a gate: ``lambda m: m["shape"] >= 0.95``); the step is kept
    in :attr:`stopped_at`.

    ``fn`` gets the model in eval mode under ``torch.no_grad`` and returns metric → value.
    Rows ``(step, metric, value, seconds, **labels)`` accumulate in :attr:`rows` and,
    when ``csv_path`` is given, are written atomically to that CSV after each
    evaluation. Rows with other ``labels`` in the file (e.g. another model trained at the
    same time into the same CSV) are read back and kept at every write; on resume, this
    callback's own rows already in the CSV are kept. Only the main process evaluates.
    """

    def __init__(
        self,
        fn: EvalFn,
        every: int,
        *,
        csv_path: str | os.PathLike[str] | None = None,
        labels: Mapping[str, Any] | None = None,
        at_start: bool = True,
        stop_when: Callable[[Mapping[str, float]], bool] | None = None,
    ) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise InputError(f"PeriodicEval every={every!r}: give a number of steps ≥ 1")
        self.fn = fn
        self.every = every
        self.csv_path = Path(csv_path) if csv_path is not None else None
        self.labels = dict(labels or {})
        self.at_start = at_start
        self.stop_when = stop_when
        #: The step at which ``stop_when`` first held (None: never).
        self.stopped_at: int | None = None
        self.rows: list[dict[str, Any]] = []
        self._t0 = time.perf_counter()
        self._done: set[int] = set()
        if self.csv_path is not None and self.csv_path.is_file():
            old = _read_curve(self.csv_path)
            mine = self._mine(old)
            self.rows = old[mine].to_dict("records")
            self._done = set(old.loc[mine, "step"].astype(int)) if "step" in old else set()

    def _mine(self, frame: pd.DataFrame) -> pd.Series:
        """Which rows of ``frame`` carry this callback's labels."""
        mine = pd.Series(True, index=frame.index)
        for key, value in self.labels.items():
            mine &= frame[key].astype(str) == str(value) if key in frame else False
        return mine

    def _evaluate(self, model: Any, step: int, state: TrainerState) -> dict[str, float] | None:
        if step in self._done or not state.is_world_process_zero:
            return None
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                metrics = dict(self.fn(model))
        finally:
            model.train(was_training)
        seconds = time.perf_counter() - self._t0
        for metric, value in metrics.items():
            self.rows.append(
                {
                    **self.labels,
                    "step": step,
                    "metric": metric,
                    "value": float(value),
                    "seconds": seconds,
                }
            )
        self._done.add(step)
        state.log_history.append({"step": step, **{f"eval_{k}": v for k, v in metrics.items()}})
        if self.csv_path is not None:
            table = pd.DataFrame(self.rows)
            if self.csv_path.is_file():
                on_disk = _read_curve(self.csv_path)
                table = pd.concat([on_disk[~self._mine(on_disk)], table], ignore_index=True)
            with atomic_write(self.csv_path) as fh:
                table.to_csv(fh, index=False)
        return metrics

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        self._t0 = time.perf_counter()
        if self.at_start and state.global_step == 0:
            self._evaluate(kw["model"], 0, state)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        if state.global_step % self.every == 0:
            metrics = self._evaluate(kw["model"], state.global_step, state)
            if metrics is not None and self.stop_when is not None and self.stop_when(metrics):
                self.stopped_at = state.global_step
                control.should_training_stop = True

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        self._evaluate(kw["model"], state.global_step, state)


__all__ = ["EvalFn", "PeriodicEval"]
