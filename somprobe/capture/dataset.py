"""Capture a whole dataset into a sharded trace store: batched, streamed, resumable, splittable.

Records are cut into blocks of ``shard_size`` (block ``k`` = records ``k·S .. (k+1)·S-1``);
each block is teacher-forced in batches of ``batch_size`` (or, with ``max_new_tokens``,
the model writes its own answer greedily and the capture is taken while it generates) and
written as shard ``k``
(:mod:`somprobe.capture.store` describes the files). Only one shard's captures are held
in memory; images are loaded batch by batch.

* **Atomic, resumable.** A shard's tensors are written to a temporary file and renamed,
  then its index part the same way; a shard with an index part is complete. A killed
  run, started again with the same settings, skips the complete shards (checking that
  they hold the same records) and redoes the rest; the result is byte for byte that of
  an uninterrupted run, since a block is always batched the same way.
* **Split over processes.** ``shard=(i, n)`` makes process ``i`` write the blocks ``k``
  with ``k % n == i``; ``n`` processes write disjoint shards into one store. Under
  ``accelerate launch`` the split is read from accelerate's state when ``shard`` is not
  given, and the main process finishes the store once all are done; otherwise the last
  step is :func:`~somprobe.capture.store.finish_store` (``somprobe capture merge``).
  A run with ``n == 1`` finishes the store itself.

Example:
    >>> from somprobe.capture import capture_dataset, llava_items, TraceStore
    >>> items = llava_items("toy/eval/listing.json")  # doctest: +SKIP
    >>> store = capture_dataset(model, processor, items, "runs/capture", batch_size=8,
    ...                         shard_size=64, queries="digits")  # doctest: +SKIP
    >>> store.index.head()  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import torch
from safetensors.torch import save_file
from torch import Tensor

from somprobe.capture.items import CaptureItem
from somprobe.capture.recorder import digit_token_filter
from somprobe.capture.store import (
    FORMAT,
    FORMAT_VERSION,
    SETTINGS_FILE,
    TraceStore,
    finish_store,
    part_file,
    read_part,
    read_settings,
    shard_file,
    stored_tensors,
    tensor_spans,
)
from somprobe.capture.teacher import teacher_force
from somprobe.capture.trace import Trace
from somprobe.errors import DataFormatError, InputError, WriteError, require_int
from somprobe.io import atomic_path, atomic_write

Queries = Literal["answer", "digits"]
QUERIES: tuple[str, ...] = ("answer", "digits")
PAUSE_ENV = "SOMPROBE_CAPTURE_PAUSE_AFTER"
"""Test hook: after this many shards written in one run, stop and wait (to be killed)."""
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def parse_shard(spec: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"i/n"`` or ``(i, n)`` → ``(i, n)`` with ``0 <= i < n``; None stays None.

    Raises:
        InputError: not of the form i/n, or i outside 0..n-1 (e.g. ``3/2``).

    Example:
        >>> parse_shard("1/4")
        (1, 4)
    """
    if spec is None:
        return None
    if isinstance(spec, str):
        try:
            i_text, n_text = spec.split("/")
            i, n = int(i_text), int(n_text)
        except ValueError:
            raise InputError(
                f"shard {spec!r}: write it as i/n, e.g. 0/4 (i counts from 0)"
            ) from None
    else:
        try:
            i, n = (int(v) for v in spec)
        except (TypeError, ValueError):
            raise InputError(f"shard must be (i, n) or 'i/n', got {spec!r}") from None
    if n < 1 or not 0 <= i < n:
        raise InputError(f"shard {i}/{n}: need n ≥ 1 and 0 ≤ i < n (i counts from 0)")
    return i, n


def _accelerate_state() -> Any | None:
    """accelerate's process state when this process was started by a multi-process launch."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    try:
        from accelerate import PartialState
    except ImportError:
        return None
    state = PartialState()
    return state if state.num_processes > 1 else None


def _positive(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    return value


def _materialise(items: Iterable[CaptureItem]) -> Iterable[CaptureItem]:
    """``items`` itself when it can be iterated twice (a list, an ItemSource), else a list."""
    if iter(items) is items:  # a one-shot iterator
        return list(items)
    return items


def _as_count(value: Any) -> int:
    """``max_new_tokens``: an integer ≥ 0."""
    count = require_int(value, "max_new_tokens")
    if count < 0:
        raise InputError(f"max_new_tokens must be ≥ 0 (0: teacher forcing), got {count}")
    return count


def _survey(items: Iterable[CaptureItem], need_answers: bool = True) -> tuple[int, str]:
    """Count and digest the records; refuse duplicates, things that are not items and,
    when ``need_answers``, records without an answer to teacher-force."""
    seen: set[str] = set()
    digest = hashlib.sha256()
    n = 0
    for n, item in enumerate(items, start=1):
        if not isinstance(item, CaptureItem):
            raise InputError(f"item {n - 1} is a {type(item).__name__}, not a CaptureItem")
        if item.record_id in seen:
            raise DataFormatError(
                f"record id {item.record_id!r} appears more than once; a store needs unique ids"
            )
        seen.add(item.record_id)
        if need_answers and not item.answer:
            raise DataFormatError(
                f"record {item.record_id!r} has no answer; teacher forcing needs one to feed "
                "(or let the model answer: max_new_tokens / --generate N)"
            )
        for part in (item.record_id, str(item.image), item.question, item.answer):
            digest.update(part.encode("utf-8") + b"\0")
    if not n:
        raise InputError("no records to capture")
    return n, digest.hexdigest()


def _blocks(items: Iterable[CaptureItem], size: int) -> Iterator[tuple[int, list[CaptureItem]]]:
    block: list[CaptureItem] = []
    k = 0
    for item in items:
        block.append(item)
        if len(block) == size:
            yield k, block
            block, k = [], k + 1
    if block:
        yield k, block


def _settings(
    model: Any,
    *,
    n_records: int,
    digest: str,
    batch_size: int,
    shard_size: int,
    queries: str,
    layers: list[int],
    heads: list[int],
    attention: bool,
    hidden_states: bool,
    dtype: str | None,
    max_new_tokens: int,
) -> dict[str, Any]:
    config = getattr(model, "config", None)
    mode: dict[str, Any] = {"mode": "teacher_forced"}
    if max_new_tokens:
        mode = {"mode": "generated", "max_new_tokens": max_new_tokens}
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "model": str(getattr(config, "_name_or_path", "") or type(model).__name__),
        "model_type": str(getattr(config, "model_type", "")),
        **mode,
        "queries": queries,
        "keys": "image",
        "backend": "native",
        "layers": layers,
        "heads": heads,
        "attention": attention,
        "hidden_states": hidden_states,
        "dtype": dtype,
        "batch_size": batch_size,
        "shard_size": shard_size,
        "n_records": n_records,
        "records_digest": digest,
    }


def _open_store(root: Path, settings: dict[str, Any], resume: bool, shard: tuple[int, int]) -> None:
    """Write ``store.json``, or check it against an existing one (resume) / start over."""
    path = root / SETTINGS_FILE
    if path.is_file():
        old = read_settings(root)
        if resume and old != settings:
            changed = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
            raise InputError(
                f"the trace store at {root} was made with other settings or records "
                f"(differ: {changed}); capture into a new folder, or pass resume=False "
                "(--no-resume) to start over"
            )
        if not resume:
            i, n = shard
            for p in (root / "shards").glob("shard-*"):
                k = int(p.name.split(".")[0].split("-")[1])
                if k % n == i:
                    p.unlink()
            (root / "index.parquet").unlink(missing_ok=True)
    if not path.is_file() or read_settings(root) != settings:
        with atomic_write(path) as fh:
            fh.write(json.dumps(settings, indent=2) + "\n")


def _record_tensors(
    trace: Trace,
    b: int,
    ids: Tensor,
    mask: Tensor,
    span: tuple[int, int],
    cast: torch.dtype | None,
    names: Sequence[str],
    rows_end: int | None = None,
) -> tuple[dict[str, Tensor], dict[str, int]]:
    """Record ``b`` of a batch capture, shifted out of the batch padding.

    ``ids`` and ``mask`` are the record's padded row (prompt and answer), ``span`` its
    answer's ``(start, end)`` in that row; tokens from ``end`` on are not the record's,
    and captured rows are kept before ``rows_end`` (default ``end``).
    """
    mask = mask.bool()
    pad = int((~mask).sum())
    if bool(mask[:pad].any()) or not bool(mask[pad:].all()):
        raise DataFormatError("the processor did not left-pad the batch; cannot place records")
    start, end = span
    limit = end if rows_end is None else rows_end
    mine = [r for r in trace.records if r.batch == b and r.position < limit]
    out: dict[str, Tensor] = {
        "input_ids": ids[pad:end].to(torch.long).clone(),
        "queries": torch.tensor(
            [[r.position - pad, r.token_id, r.step] for r in mine], dtype=torch.long
        ).reshape(-1, 3),
    }

    def stacked(rows: list[Tensor], empty: tuple[int, ...]) -> Tensor:
        t = torch.stack(rows) if rows else torch.zeros(empty)
        t = t.detach().to("cpu")
        return (t.to(cast) if cast is not None else t).contiguous()

    n_l, n_h = len(trace.layers), len(trace.heads)
    if "attention" in names:
        keys = trace.key_positions(b) - pad
        out["keys"] = keys.to(torch.long).clone()
        out["attention"] = stacked(
            [trace.attention(b, r.position) for r in mine], (0, n_l, n_h, keys.numel())
        )
    if "hidden" in names:
        out["hidden"] = stacked([trace.hidden(b, r.position) for r in mine], (0, n_l, 0))
    meta = {"n_tokens": end - pad, "answer_start": start - pad, "answer_end": end - pad}
    return out, meta


def _teacher_forced_batch(
    model: Any, processor: Any, batch: list[CaptureItem], options: dict[str, Any],
    cast: torch.dtype | None, names: Sequence[str],
) -> list[tuple[dict[str, Tensor], dict[str, int], str]]:  # fmt: skip
    """Teacher-force one batch; per record its tensors, index fields and answer text."""
    result = teacher_force(
        model, processor, [it.load_image() for it in batch], [it.question for it in batch],
        [it.answer for it in batch], **options,
    )  # fmt: skip
    ids, mask = result.inputs["input_ids"], result.inputs["attention_mask"]
    return [
        (*_record_tensors(result.trace, b, ids[b], mask[b], result.answer_spans[b], cast, names),
         it.answer)
        for b, it in enumerate(batch)
    ]  # fmt: skip


def _generated_batch(
    model: Any, processor: Any, batch: list[CaptureItem], options: dict[str, Any],
    cast: torch.dtype | None, names: Sequence[str], max_new_tokens: int,
) -> list[tuple[dict[str, Tensor], dict[str, int], str]]:  # fmt: skip
    """Let the model answer one batch greedily, capturing while it writes.

    A record's answer ends at its first end-of-sequence token (kept); what the batch
    generated after it is not the record's and is dropped with its captures. The last
    token written (the end-of-sequence token or the ``max_new_tokens``-th) is never fed
    back, so it has no captured row.
    """
    from somprobe.capture.api import capture
    from somprobe.models.inputs import answer_ends, build_prompt, eos_token_ids, prepare_inputs

    tokenizer = processor.tokenizer
    prompts = [build_prompt(processor, it.question) for it in batch]
    inputs = prepare_inputs(processor, [it.load_image() for it in batch], prompts)
    queries = options["queries"]
    result = capture(
        model, inputs, queries="generated" if queries == "answer" else queries,
        layers=options["layers"], heads=options["heads"], attention=options["attention"],
        hidden_states=options["hidden_states"], max_new_tokens=max_new_tokens,
    )  # fmt: skip
    assert result.sequences is not None
    sequences = result.sequences.detach().to("cpu")
    prompt_len = int(inputs["input_ids"].shape[1])
    ends = answer_ends(sequences, prompt_len, eos_token_ids(model, tokenizer), keep_eos=True)
    out = []
    for b, end in enumerate(ends):
        row = sequences[b]
        mask = torch.cat(
            [inputs["attention_mask"][b].to("cpu"), torch.ones(end - prompt_len, dtype=torch.long)]
        )
        # the last token has a row only when other records kept the batch going: drop it
        tensors, meta = _record_tensors(
            result.trace, b, row[:end], mask, (prompt_len, end), cast, names, rows_end=end - 1
        )
        text = tokenizer.decode(row[prompt_len:end].tolist(), skip_special_tokens=True)
        out.append((tensors, meta, text))
    return out


def _write_shard(
    root: Path,
    shard: int,
    block: list[CaptureItem],
    first_order: int,
    captured: list[tuple[dict[str, Tensor], dict[str, int], str]],
    names: Sequence[str],
    generated: bool,
) -> pd.DataFrame:
    """Write one shard's tensors, then its index part (both atomically); return the part.

    ``answer`` is the text captured over: the record's answer when teacher-forced, the
    model's own when ``generated`` (the record's answer is then kept as ``reference``).
    """
    tensors = {
        f"{row}.{name}": t for row, (ts, _, _) in enumerate(captured) for name, t in ts.items()
    }
    target = shard_file(root, shard)
    with atomic_path(target) as tmp:
        # one metadata key: safetensors writes a map of several in no fixed order
        save_file(tensors, str(tmp), metadata={"format": f"{FORMAT}/shard-{shard}"})
    spans = tensor_spans(target)
    rows = []
    for row, (item, (_, meta, text)) in enumerate(zip(block, captured, strict=True)):
        entry: dict[str, Any] = {
            "record_id": item.record_id,
            "order": first_order + row,
            "shard": shard,
            "row": row,
            "file": str(target.relative_to(root)),
            "image": str(item.image),
            "question": item.question,
            "answer": text,
            **({"reference": item.answer} if generated else {}),
            **meta,
            "n_queries": int(captured[row][0]["queries"].shape[0]),
        }
        for name in names:
            shape, begin, end = spans[f"{row}.{name}"]
            entry[f"{name}_shape"] = shape
            entry[f"{name}_begin"] = begin
            entry[f"{name}_end"] = end
        rows.append(entry)
    part = pd.DataFrame(rows)
    with atomic_path(part_file(root, shard)) as tmp:
        part.to_parquet(tmp, index=False)
    return part


def _check_done(root: Path, shard: int, block: list[CaptureItem], first: int) -> bool:
    """Whether shard ``shard`` is complete; if so, that it holds this block's records."""
    part_path = part_file(root, shard)
    if not part_path.is_file() or not shard_file(root, shard).is_file():
        return False
    part = read_part(part_path)
    if (
        list(part["record_id"]) != [it.record_id for it in block]
        or int(part["order"].iloc[0]) != first
    ):
        raise DataFormatError(
            f"shard {shard} of {root} holds other records than this run's block {shard}; "
            "the records changed since it was written: capture into a new folder"
        )
    return True


def _pause(done: int) -> None:
    limit = os.environ.get(PAUSE_ENV)
    if limit is not None and done >= int(limit):
        print(f"paused after {done} shards", file=sys.stderr, flush=True)
        while True:
            time.sleep(60)


def capture_dataset(
    model: Any,
    processor: Any,
    items: Iterable[CaptureItem],
    out_dir: str | os.PathLike[str],
    *,
    batch_size: int = 8,
    shard_size: int = 64,
    queries: Queries = "answer",
    layers: Iterable[int] | None = None,
    heads: Iterable[int] | None = None,
    attention: bool = True,
    hidden_states: bool = True,
    dtype: str | None = None,
    shard: tuple[int, int] | str | None = None,
    resume: bool = True,
    progress: bool = True,
    max_new_tokens: int = 0,
) -> TraceStore | None:
    """Teacher-force every record (or let the model answer) and store the captures, sharded.

    Args:
        model, processor: a supported model and its processor.
        items: the records (:func:`~somprobe.capture.llava_items`,
            :func:`~somprobe.capture.toy_eval_items`, or any list of
            :class:`~somprobe.capture.CaptureItem`); iterated twice (a one-shot iterator
            is first put in a list).
        out_dir: the store folder (created).
        batch_size: records per forward pass.
        shard_size: records per shard file (a multiple of nothing; the last shard may be
            shorter). Part of the store's settings: a resumed run must use the same.
        queries: ``"answer"`` captures every answer token; ``"digits"`` only the answer's
            number tokens (:func:`~somprobe.capture.digit_token_filter`: tag mentions).
        layers, heads, attention, hidden_states: as for :func:`~somprobe.capture.teacher_force`
            (key columns are the image tokens).
        dtype: store float tensors as "float32", "float16" or "bfloat16" (None: as captured).
        shard: ``(i, n)`` or ``"i/n"``: write only blocks ``k`` with ``k % n == i``. None:
            accelerate's process index and count under a multi-process ``accelerate
            launch``, else ``(0, 1)``.
        resume: skip the shards a previous run with the same settings finished (False:
            remove this process's shards of a previous run and start over).
        progress: show a progress bar.
        max_new_tokens: 0 teacher-forces each record's answer. More: the model answers
            each question greedily (up to this many tokens, to its end-of-sequence token)
            and the capture is taken while it writes (``queries="answer"``: every
            generated token that is fed back; ``"digits"``: the generated number tokens).
            The index's ``answer`` is then the model's text and ``reference`` the
            record's; records need no answer.

    Returns:
        The finished :class:`~somprobe.capture.store.TraceStore`; None for a process of
        an explicit ``shard=(i, n)`` split with ``n > 1`` (run ``finish_store`` when all
        are done).

    Raises:
        InputError: a bad batch or shard size, shard spec, ``queries`` or ``dtype``; no
            records; an unreadable image; a store made with other settings (resume).
        DataFormatError: duplicate record ids; a record without image, or without answer
            when teacher-forced; complete shards that hold other records than this run's.
        WriteError: the folder cannot be written.
    """
    from tqdm.auto import tqdm

    batch_size = _positive(batch_size, "batch_size")
    shard_size = _positive(shard_size, "shard_size")
    if queries not in QUERIES:
        raise InputError(f"queries must be one of {QUERIES}, got {queries!r}")
    if dtype is not None and dtype not in _DTYPES:
        raise InputError(f"dtype must be one of {sorted(_DTYPES)} or None, got {dtype!r}")
    spec = parse_shard(shard)
    state = None
    if spec is None:
        state = _accelerate_state()
        spec = (state.process_index, state.num_processes) if state is not None else (0, 1)
    index, count = spec
    root = Path(out_dir)
    if root.exists() and not root.is_dir():
        raise WriteError(f"cannot write a trace store at {root}: it is a file")
    new_tokens = _as_count(max_new_tokens)
    items = _materialise(items)
    n_records, digest = _survey(items, need_answers=not new_tokens)
    predicate = digit_token_filter(processor.tokenizer) if queries == "digits" else "answer"
    from somprobe.capture.recorder import Recorder

    probe = Recorder(model, queries=[0], layers=layers, heads=heads)  # validates them
    settings = _settings(
        model, n_records=n_records, digest=digest, batch_size=batch_size,
        shard_size=shard_size, queries=queries, layers=list(probe.layers),
        heads=list(probe.heads), attention=bool(attention),
        hidden_states=bool(hidden_states), dtype=dtype, max_new_tokens=new_tokens,
    )  # fmt: skip
    root.mkdir(parents=True, exist_ok=True)
    _open_store(root, settings, resume, spec)
    names = stored_tensors(settings)
    options: dict[str, Any] = {
        "queries": predicate, "layers": settings["layers"], "heads": settings["heads"],
        "attention": bool(attention), "hidden_states": bool(hidden_states),
    }  # fmt: skip
    cast = _DTYPES[dtype] if dtype is not None else None
    total = -(-n_records // shard_size)
    mine = len(range(index, total, count))
    bar = tqdm(total=mine, desc=f"capture shards {index}/{count}", disable=not progress)
    written = 0
    for k, block in _blocks(items, shard_size):
        if k % count != index:
            continue
        first = k * shard_size
        if resume and _check_done(root, k, block, first):
            bar.update(1)
            continue
        captured: list[tuple[dict[str, Tensor], dict[str, int], str]] = []
        for start in range(0, len(block), batch_size):
            batch = block[start : start + batch_size]
            if new_tokens:
                captured += _generated_batch(
                    model, processor, batch, options, cast, names, new_tokens
                )
            else:
                captured += _teacher_forced_batch(model, processor, batch, options, cast, names)
        _write_shard(root, k, block, first, captured, names, generated=bool(new_tokens))
        del captured
        written += 1
        bar.update(1)
        _pause(written)
    bar.close()
    if count == 1:
        finish_store(root)
        return TraceStore(root)
    if state is None:
        return None
    state.wait_for_everyone()
    if state.is_main_process:
        finish_store(root)
    state.wait_for_everyone()
    return TraceStore(root)


__all__ = ["PAUSE_ENV", "QUERIES", "capture_dataset", "parse_shard"]
