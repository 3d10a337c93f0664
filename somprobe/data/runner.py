"""Resumable, shardable per-image runs: shard selection and a progress journal.

``--shard i/n`` keeps the keys at positions ``i, i+n, i+2n, …`` of the sorted key list
(``i`` counts from 0), so ``n`` machines given ``0/n … n-1/n`` split a dataset without
overlap.

A run that writes one output file keeps a journal next to it (``OUT.partial.jsonl``):
one line per finished image, appended and flushed as each image is done. A run that is
killed leaves the journal (never a half-written output); run the same command again and
the finished images are skipped. A torn last line (killed mid-write) is cut off. At the
end the output is written atomically in key order and the journal is removed. The first
journal line records the run's settings; resuming with other settings is refused once an
image is finished (a journal with no finished image is simply started afresh).

Example:
    >>> parse_shard("1/4")
    (1, 4)
    >>> shard_keys(["a", "b", "c", "d", "e"], 1, 2)
    ['b', 'd']
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from somprobe.errors import DataFormatError, InputError
from somprobe.io import atomic_write

PAUSE_ENV = "SOMPROBE_DATA_PAUSE_AFTER"
"""Test hook: after this many images in one run, stop and wait (so a test can kill it)."""


def parse_shard(spec: str | None) -> tuple[int, int]:
    """``"i/n"`` → ``(i, n)`` with ``0 <= i < n``; None → ``(0, 1)``.

    Raises:
        InputError: not of the form i/n, or i outside 0..n-1.
    """
    if spec is None:
        return 0, 1
    try:
        i_text, n_text = spec.split("/")
        i, n = int(i_text), int(n_text)
    except ValueError:
        raise InputError(f"--shard {spec!r}: write it as i/n, e.g. 0/4 (i counts from 0)") from None
    if n < 1 or not 0 <= i < n:
        raise InputError(f"--shard {spec!r}: need n ≥ 1 and 0 ≤ i < n (i counts from 0)")
    return i, n


def shard_keys(keys: Sequence[str], index: int, count: int) -> list[str]:
    """The keys of shard ``index`` of ``count`` (every ``count``-th, from ``index``)."""
    return list(keys[index::count])


def pause_limit() -> int | None:
    """The value of ``SOMPROBE_DATA_PAUSE_AFTER`` (None when unset; tests only)."""
    limit = os.environ.get(PAUSE_ENV)
    return None if limit is None else int(limit)


def pause_hook(done_in_this_run: int) -> None:
    """Stop here forever once ``SOMPROBE_DATA_PAUSE_AFTER`` items (images, or records
    of a mix) are done in this run (tests only: a test kills the paused process)."""
    limit = pause_limit()
    if limit is not None and done_in_this_run >= limit:
        print(f"paused after {done_in_this_run} items", file=sys.stderr, flush=True)
        while True:
            time.sleep(60)


class Journal:
    """Append-only record of finished keys, each with its output line (or None).

    Example:
        >>> j = Journal("out.json.partial.jsonl", {"seed": 0})  # doctest: +SKIP
        >>> j.add("img1", '{"id": "a", ...}')  # doctest: +SKIP
        >>> j.finish("out.json", ["img1"])  # doctest: +SKIP
    """

    def __init__(self, path: str | Path, settings: dict[str, Any]) -> None:
        self.path = Path(path)
        self.settings = settings
        self.offsets: dict[str, int] = {}
        if self.path.exists():
            self._recover()
        if not self.path.exists() or self.path.stat().st_size == 0:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "w", encoding="utf-8") as fh:
                fh.write(json.dumps({"settings": settings}, sort_keys=True) + "\n")
        self._fh = open(self.path, "ab")  # noqa: SIM115

    def _recover(self) -> None:
        good_end = 0
        lineno = 0
        with open(self.path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            while True:
                pos = fh.tell()
                raw = fh.readline()
                if not raw.endswith(b"\n"):
                    break  # end of file, or a torn last line: cut below
                lineno += 1
                try:
                    obj = json.loads(raw)
                except ValueError:
                    if pos + len(raw) >= size:
                        break  # the last line is damaged: drop it
                    raise DataFormatError(
                        f"{self.path}: line {lineno} is damaged; delete the journal to start over"
                    ) from None
                if not _journal_line(obj, first=lineno == 1):
                    raise DataFormatError(
                        f"{self.path}: line {lineno} is not a journal entry of somprobe data; "
                        "delete the file to start over"
                    )
                if lineno == 1:
                    if obj.get("settings") != json.loads(json.dumps(self.settings)):
                        if b"\n" not in fh.read():
                            good_end = 0  # nothing finished yet: start afresh
                            break
                        raise InputError(
                            f"{self.path} is from a run with settings {obj.get('settings')}, "
                            f"not {self.settings}; rerun with the same options, or delete it "
                            "to start over"
                        )
                else:
                    self.offsets[obj["key"]] = pos
                good_end = pos + len(raw)
        if good_end < size:
            with open(self.path, "r+b") as fh:
                fh.truncate(good_end)

    def __contains__(self, key: str) -> bool:
        return key in self.offsets

    def __len__(self) -> int:
        return len(self.offsets)

    def add(self, key: str, line: str | None, note: str | None = None) -> None:
        """Record ``key`` as finished with output ``line`` (a one-line JSON record)."""
        entry: dict[str, Any] = {"key": key, "line": line}
        if note:
            entry["note"] = note
        self._fh.flush()
        self.offsets[key] = self._fh.tell()
        self._fh.write((json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8"))
        self._fh.flush()

    def notes(self) -> dict[str, int]:
        """How many finished keys carry each note (e.g. ``"no tags"``)."""
        counts: dict[str, int] = {}
        for entry in self._entries(list(self.offsets)):
            if entry.get("note"):
                counts[entry["note"]] = counts.get(entry["note"], 0) + 1
        return counts

    def _entries(self, keys: Sequence[str]) -> Any:
        self._fh.flush()
        with open(self.path, "rb") as fh:
            for key in keys:
                fh.seek(self.offsets[key])
                yield json.loads(fh.readline())

    def finish(self, out_path: str | Path, keys: Sequence[str]) -> int:
        """Write the output (JSON array, records in ``keys`` order) and delete the journal.

        Returns the number of records written.
        """
        missing = [k for k in keys if k not in self.offsets]
        if missing:
            raise InputError(f"cannot finish: {len(missing)} keys not done, e.g. {missing[0]!r}")
        n = 0
        with atomic_write(out_path) as out:
            out.write("[")
            for entry in self._entries(keys):
                if entry["line"] is None:
                    continue
                out.write(("\n" if n == 0 else ",\n") + entry["line"])
                n += 1
            out.write("\n]\n" if n else "]\n")
        self.close()
        self.path.unlink()
        return n

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()


def _journal_line(obj: Any, *, first: bool) -> bool:
    """Whether ``obj`` has the form of a journal's first line (settings) or of an entry."""
    if not isinstance(obj, dict):
        return False
    if first:
        return "settings" in obj
    return isinstance(obj.get("key"), str) and isinstance(obj.get("line"), str | None)


def journal_path(out_path: str | Path) -> Path:
    """Where the journal of a run writing ``out_path`` lives."""
    out = Path(out_path)
    return out.with_name(out.name + ".partial.jsonl")


__all__ = [
    "PAUSE_ENV",
    "Journal",
    "journal_path",
    "parse_shard",
    "pause_hook",
    "pause_limit",
    "shard_keys",
]
