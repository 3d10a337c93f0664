"""Mix instruction files (e.g. LLaVA-1.5's 665k set with SoM listing and tag-QA data).

Each source contributes ``size`` records drawn without replacement (all of them when
``size`` is None); the result is shuffled and written atomically. Memory stays bounded
whatever the input sizes: the files are streamed twice (count, then select), selected
records go to temporary bucket files at random, and each bucket is shuffled in memory
and appended to the output (an exact uniform shuffle, as each record's bucket and its
place within the bucket are both uniform). Held in memory: one bucket (at most about
``bucket_records`` records or ``bucket_bytes`` of text) plus the set of ids (to refuse
duplicates). The buckets live in a working folder ``.mix-<pid>-*`` beside the output and
the output is written through :func:`somprobe.io.atomic_write`: a run killed part-way
leaves no half-written output, and the next run into the same folder removes what the
killed one left (both are stamped with its process id).

Example:
    >>> report = mix_files(  # doctest: +SKIP
    ...     [MixSource("llava", "llava_v1_5_mix665k.json"),
    ...      MixSource("som_listing", "listing.json", size=10_000),
    ...      MixSource("som_qa", "qa.json", size=20_000)],
    ...     "mixed.json", seed=0)
    >>> report[["source", "taken", "share"]]  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from somprobe.data.llava_json import (
    dumps_record,
    iter_json_objects,
    validate_record,
)
from somprobe.data.runner import pause_hook, pause_limit
from somprobe.data.seeding import check_seed
from somprobe.errors import DataFormatError, InputError
from somprobe.io import atomic_write, check_writable, work_dir

WORK_PREFIX = ".mix-"


@dataclass(frozen=True)
class MixSource:
    """One input of a mix.

    Attributes:
        name: the name shown in the composition report.
        path: a LLaVA ``.json`` array or ``.jsonl`` file.
        size: how many records to draw (without replacement); None takes all.
        image_prefix: prepended to each record's ``image`` (to put sources with different
            image folders under one training image root), e.g. ``"som/"``.
    """

    name: str
    path: Path | str
    size: int | None = None
    image_prefix: str = ""


def _count(path: Path) -> int:
    n = 0
    for _ in iter_json_objects(path):
        n += 1
    return n


def _selected_lines(source: MixSource, take: np.ndarray, seen: dict[str, str]) -> Iterator[str]:
    path = Path(source.path)
    for index, line, obj in iter_json_objects(path):
        if not take[index]:
            continue
        where = f"(#{index}, line {line} of {path.name})"
        rec = validate_record(obj, where=where)
        key = str(rec.id)
        if key in seen:
            raise DataFormatError(
                f"record id={rec.id!r} {where}: field 'id' is also used in source "
                f"{seen[key]!r}; ids must be unique in the mix (rename or drop one)"
            )
        seen[key] = source.name
        if source.image_prefix and rec.image is not None:
            obj["image"] = source.image_prefix + rec.image
        yield dumps_record(obj)


def mix_files(
    sources: Sequence[MixSource],
    out_path: str | Path,
    *,
    seed: int = 0,
    shuffle: bool = True,
    bucket_records: int = 50_000,
    bucket_bytes: int = 32 << 20,
    progress: bool = False,
) -> pd.DataFrame:
    """Write the mix of ``sources`` to ``out_path`` and return its composition.

    The composition has one row per source: ``source``, ``path``, ``available``,
    ``requested`` (NaN-free: equals available when ``size`` is None), ``taken`` and
    ``share`` (fraction of the output). The same inputs and seed give a byte-identical
    file.

    Raises:
        InputError: no sources, duplicate source names, a size larger than the source,
            a missing source file.
        DataFormatError: a malformed or invalid record, or an id used twice.
        WriteError: ``out_path`` cannot be written (checked before any input is read).
    """
    out_path = check_writable(out_path)
    if not sources:
        raise InputError("no sources to mix; give at least one file")
    for src in sources:
        if not isinstance(src, MixSource):
            raise InputError(f"sources must be MixSource objects, got {type(src).__name__}")
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise InputError(f"source names must be unique, got {names}")
    if bucket_records < 1 or bucket_bytes < 1:
        raise InputError(
            f"bucket_records={bucket_records} and bucket_bytes={bucket_bytes} must be ≥ 1"
        )
    check_seed(seed)
    for src in sources:
        if not isinstance(src.image_prefix, str):
            raise InputError(
                f"source {src.name!r}: image_prefix must be a string, got {src.image_prefix!r}"
            )
        size = src.size
        if size is not None and (
            isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 0
        ):
            raise InputError(
                f"source {src.name!r}: size {size!r} must be a whole number ≥ 0, or None for all"
            )
    rng = np.random.default_rng(seed)
    rows: list[dict[str, object]] = []
    takes: list[np.ndarray] = []
    est_bytes = 0.0
    for src in sources:
        available = _count(Path(src.path))
        requested = available if src.size is None else int(src.size)
        if requested < 0 or requested > available:
            raise InputError(
                f"source {src.name!r} ({src.path}) has {available} records but {requested} "
                f"were requested; ask for 0..{available}, or no size to take all"
            )
        take = np.zeros(available, dtype=bool)
        if requested == available:
            take[:] = True
        else:
            take[rng.choice(available, size=requested, replace=False)] = True
        takes.append(take)
        est_bytes += Path(src.path).stat().st_size * (requested / available if available else 0)
        rows.append(
            {"source": src.name, "path": str(src.path), "available": available,
             "requested": requested, "taken": requested}
        )  # fmt: skip
    total = int(sum(int(t.sum()) for t in takes))
    seen: dict[str, str] = {}
    bar = _bar(total, progress)
    pause = pause_limit()  # test hook: stop after this many records written
    try:
        with atomic_write(out_path) as out:
            out.write("[")
            first = True
            written = 0

            def emit(line: str) -> None:
                nonlocal first, written
                out.write(("\n" if first else ",\n") + line)
                first = False
                written += 1
                if pause is not None:
                    out.flush()
                    pause_hook(written)

            if not shuffle:
                for src, take in zip(sources, takes, strict=True):
                    for line in _selected_lines(src, take, seen):
                        emit(line)
                        bar.update(1)
            else:
                n_buckets = max(
                    1, math.ceil(total / bucket_records), math.ceil(est_bytes / bucket_bytes)
                )
                with work_dir(out_path.parent, WORK_PREFIX) as tmp:
                    with ExitStack() as stack:
                        buckets = [
                            stack.enter_context(
                                open(tmp / f"{b}.jsonl", "w", encoding="utf-8", newline="")
                            )
                            for b in range(n_buckets)
                        ]
                        for src, take in zip(sources, takes, strict=True):
                            dest = rng.integers(n_buckets, size=int(take.sum()))
                            for k, line in enumerate(_selected_lines(src, take, seen)):
                                buckets[dest[k]].write(line + "\n")
                    seen.clear()
                    for b in range(n_buckets):
                        # binary readlines splits on b"\n" only (JSON escapes newlines, but
                        # not U+2028, which str.splitlines would split on)
                        with open(tmp / f"{b}.jsonl", "rb") as fh:
                            lines = fh.readlines()
                        for i in rng.permutation(len(lines)):
                            emit(lines[i].decode("utf-8").rstrip("\n"))
                        bar.update(len(lines))
                        del lines
            out.write("]\n" if first else "\n]\n")
    finally:
        bar.close()  # before any error line, so that it starts a fresh line
    report = pd.DataFrame(rows)
    report["share"] = report["taken"] / total if total else 0.0
    return report


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(total: int, enabled: bool) -> _NoBar:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc="mix", unit="rec")  # type: ignore[return-value]


__all__ = ["WORK_PREFIX", "MixSource", "mix_files"]
