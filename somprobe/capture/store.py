"""A sharded on-disk trace store: read it record by record, finish (merge) and verify it.

Layout of a store folder (written by :func:`~somprobe.capture.capture_dataset`)::

    store.json                              settings, record count, dataset digest
    shards/shard-000003.safetensors         the tensors of records 3·S .. 4·S-1
    shards/shard-000003.index.parquet       their index rows (written after the tensors:
                                            a shard with this file is complete)
    index.parquet                           every index row in record order (the
                                            finished store; made by finish_store)

Record ``j`` of a shard (its ``row``) has the tensors ``<j>.input_ids`` ``[token]`` (its
own, unpadded ids), ``<j>.queries`` ``[query, 3]`` (position, token id, step of each
captured token), and, as captured, ``<j>.keys`` ``[key]`` (image-token positions),
``<j>.attention`` ``[query, layer, head, key]``, ``<j>.hidden`` ``[query, layer, dim]``.
Positions count in the record's own sequence (no batch padding), so they match a
single-record ``prepare_inputs`` of the same prompt. The index has one row per record:
``record_id, order, shard, row, file, image, question, answer, n_tokens, answer_start,
answer_end, n_queries`` and, per tensor, ``<name>_shape`` and its byte range in the
file ``<name>_begin`` / ``<name>_end``. In a store captured while the model answered
(``store.json`` ``"mode": "generated"``), ``answer`` is the model's text, ``reference``
the record's own answer, and ``input_ids`` end at the model's end-of-sequence token.
Each safetensors file is opened lazily
(``safe_open``), so loading one record reads only that record's bytes.

Example:
    >>> store = TraceStore("runs/capture")  # doctest: +SKIP
    >>> store.index[["record_id", "shard", "n_queries"]].head()  # doctest: +SKIP
    >>> rec = store.load("listing_eval_000007")  # doctest: +SKIP
    >>> rec.trace.attention(0, rec.positions[0]).shape  # [layer, head, key]  # doctest: +SKIP
    >>> for rec in store:  # one record's tensors in memory at a time  # doctest: +SKIP
    ...     ...
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from jaxtyping import Float, Int
from torch import Tensor

from somprobe.capture.trace import QueryRecord, Trace
from somprobe.errors import DataFormatError, InputError
from somprobe.io import atomic_path

FORMAT = "somprobe-trace-store"
FORMAT_VERSION = 1
SETTINGS_FILE = "store.json"
INDEX_FILE = "index.parquet"
SHARD_DIR = "shards"
#: The tensors of one record, in the order they are listed.
TENSORS = ("input_ids", "queries", "keys", "attention", "hidden")
INDEX_COLUMNS = (
    "record_id",
    "order",
    "shard",
    "row",
    "file",
    "image",
    "question",
    "answer",
    "n_tokens",
    "answer_start",
    "answer_end",
    "n_queries",
)


def shard_name(shard: int) -> str:
    return f"shard-{shard:06d}"


def shard_file(root: Path, shard: int) -> Path:
    """The tensors file of shard ``shard``."""
    return root / SHARD_DIR / f"{shard_name(shard)}.safetensors"


def part_file(root: Path, shard: int) -> Path:
    """The index part of shard ``shard`` (its presence marks the shard complete)."""
    return root / SHARD_DIR / f"{shard_name(shard)}.index.parquet"


def read_header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file (names → dtype, shape, data offsets).

    Raises:
        DataFormatError: the file is missing, cut or not safetensors.
    """
    try:
        with open(path, "rb") as fh:
            (size,) = struct.unpack("<Q", fh.read(8))
            if size > 100 << 20:
                raise ValueError(f"header of {size} bytes")
            header = json.loads(fh.read(size))
    except (OSError, struct.error, ValueError, UnicodeDecodeError) as err:
        raise DataFormatError(
            f"{path} is not a readable safetensors file (cut or corrupt?): {err}"
        ) from err
    if not isinstance(header, dict):
        raise DataFormatError(f"{path} has no safetensors header object")
    header["__data_start__"] = 8 + size
    return header


def tensor_spans(path: Path) -> dict[str, tuple[list[int], int, int]]:
    """Each tensor of a safetensors file: ``(shape, begin, end)`` with absolute byte offsets."""
    header = read_header(path)
    start = int(header.pop("__data_start__"))
    header.pop("__metadata__", None)
    try:
        return {
            name: (
                list(info["shape"]),
                start + info["data_offsets"][0],
                start + info["data_offsets"][1],
            )
            for name, info in header.items()
        }
    except (KeyError, TypeError, IndexError) as err:
        raise DataFormatError(f"{path} has a malformed safetensors header: {err!r}") from err


def read_settings(root: Path) -> dict[str, Any]:
    """The ``store.json`` of a store folder.

    Raises:
        InputError: ``root`` is not a folder holding ``store.json``.
        DataFormatError: the file is not a trace-store settings file of this version.
    """
    path = root / SETTINGS_FILE
    if not root.is_dir():
        raise InputError(f"no trace store at {root}: not a folder; capture_dataset writes one")
    if not path.is_file():
        raise InputError(
            f"no trace store at {root}: {SETTINGS_FILE} missing; capture_dataset writes one"
        )
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise DataFormatError(f"{path} is not valid JSON (cut or corrupt?): {err}") from err
    if not isinstance(settings, dict) or settings.get("format") != FORMAT:
        raise DataFormatError(f"{path} is not a somprobe trace-store settings file")
    if settings.get("version") != FORMAT_VERSION:
        raise DataFormatError(
            f"{path} holds store format {settings.get('version')}, expected {FORMAT_VERSION}; "
            "capture the dataset again with this version of somprobe"
        )
    for key in ("n_records", "shard_size", "layers", "heads", "attention", "hidden_states"):
        if key not in settings:
            raise DataFormatError(f"{path} has no {key!r} field; the file was cut or edited")
    return settings


def n_shards(settings: dict[str, Any]) -> int:
    """How many shards a finished store of these settings has."""
    n, size = int(settings["n_records"]), int(settings["shard_size"])
    return -(-n // size)


def stored_tensors(settings: dict[str, Any]) -> tuple[str, ...]:
    """The tensor names each record of a store with these settings has."""
    skip = set() if settings["attention"] else {"keys", "attention"}
    if not settings["hidden_states"]:
        skip.add("hidden")
    return tuple(t for t in TENSORS if t not in skip)


def read_part(path: Path) -> pd.DataFrame:
    """One shard's index rows.

    Raises:
        DataFormatError: the file is not a readable index part.
    """
    try:
        frame = pd.read_parquet(path)
    except Exception as err:  # pyarrow raises several unrelated types for a bad file
        raise DataFormatError(
            f"{path} is not a readable index file (cut or corrupt?): {err}"
        ) from err
    missing = [c for c in INDEX_COLUMNS if c not in frame.columns]
    if missing:
        raise DataFormatError(f"{path} lacks index column(s) {missing}; the file was edited")
    return frame


def finish_store(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Check that every shard of a store is complete and consistent, and write its index.

    The merge step of a run split over processes (``shard=(i, n)``): each process wrote its
    own shards; this joins their index parts into ``index.parquet`` (atomically), after
    checking that every expected shard is there, that each record appears once, and that
    each shard's tensors are the ones its index names (shapes and byte ranges).

    Returns:
        The index (one row per record, in record order).

    Raises:
        InputError: no store at ``path``.
        DataFormatError: a shard is missing or incomplete, a record is duplicated or
            missing, or a shard's file and index rows disagree.

    Example:
        >>> finish_store("runs/capture")  # after `somprobe capture run --shard i/n` × n  # doctest: +SKIP
    """
    root = Path(path)
    settings = read_settings(root)
    expected = n_shards(settings)
    missing = [k for k in range(expected) if not part_file(root, k).is_file()]
    if missing:
        raise DataFormatError(
            f"{root}: shard(s) {missing[:10]}{' ...' if len(missing) > 10 else ''} of "
            f"{expected} are not finished; run the capture (every --shard i/n) to the end first"
        )
    extra = sorted(
        p.name
        for p in (root / SHARD_DIR).glob("shard-*.index.parquet")
        if p.name not in {part_file(root, k).name for k in range(expected)}
    )
    if extra:
        raise DataFormatError(
            f"{root}: {extra[:5]} do not belong to a store of {settings['n_records']} records"
        )
    names = stored_tensors(settings)
    frames = []
    for k in range(expected):
        part = read_part(part_file(root, k))
        verify_shard(root, k, part, names)
        frames.append(part)
    index = pd.concat(frames, ignore_index=True)
    if list(index["order"]) != list(range(int(settings["n_records"]))):
        raise DataFormatError(
            f"{root}: the shards hold records {len(index)} in an order other than "
            f"0..{int(settings['n_records']) - 1}; the shards are from different runs"
        )
    duplicated = index["record_id"][index["record_id"].duplicated()].tolist()
    if duplicated:
        raise DataFormatError(f"{root}: record id(s) {duplicated[:5]} appear more than once")
    with atomic_path(root / INDEX_FILE) as tmp:
        index.to_parquet(tmp, index=False)
    return index


def verify_shard(root: Path, shard: int, part: pd.DataFrame, names: tuple[str, ...]) -> None:
    """Check that shard ``shard``'s tensors file holds exactly what its index rows name.

    Raises:
        DataFormatError: naming the shard and the first mismatch.
    """
    path = shard_file(root, shard)
    if not path.is_file():
        raise DataFormatError(f"{root}: shard {shard} has index rows but no {path.name}")
    spans = tensor_spans(path)
    wanted = {f"{row}.{name}" for row in part["row"] for name in names}
    if set(spans) != wanted:
        odd = sorted(set(spans) ^ wanted)[:5]
        raise DataFormatError(f"{path}: tensors {odd} do not match its index rows")
    if (part["shard"] != shard).any():
        raise DataFormatError(f"{path}: its index rows name another shard")
    for rec in part.itertuples(index=False):
        for name in names:
            shape, begin, end = spans[f"{rec.row}.{name}"]
            got = (
                list(getattr(rec, f"{name}_shape")),
                getattr(rec, f"{name}_begin"),
                getattr(rec, f"{name}_end"),
            )
            if got != (shape, begin, end):
                raise DataFormatError(
                    f"{path}: tensor {rec.row}.{name} of record {rec.record_id!r} is "
                    f"{(shape, begin, end)} in the file but {got} in the index"
                )


@dataclass
class StoredRecord:
    """One record of a store: its ids, captured tokens and tensors.

    Attributes:
        record_id, image, question, answer: as captured.
        input_ids: the record's own token ids (no padding).
        answer_span: ``(start, end)`` positions of the answer in ``input_ids``.
        trace: a :class:`~somprobe.capture.Trace` of this record alone (batch 0), at
            positions of ``input_ids``.
    """

    record_id: str
    image: str
    question: str
    answer: str
    input_ids: Int[Tensor, " token"]
    answer_span: tuple[int, int]
    trace: Trace

    @property
    def positions(self) -> list[int]:
        """The captured positions, in capture order."""
        return [r.position for r in self.trace.records]


class TraceStore:
    """Read a finished trace store lazily: the index at once, tensors record by record.

    Args:
        path: the store folder (``capture_dataset``'s ``out_dir``).

    Raises:
        InputError: no store at ``path``, or a store whose run has not finished (no
            ``index.parquet``: run the capture again to resume it, or ``finish_store``).
        DataFormatError: ``store.json`` or ``index.parquet`` is malformed.

    Example:
        >>> store = TraceStore("runs/capture")  # doctest: +SKIP
        >>> len(store), store.layers  # doctest: +SKIP
        >>> store.load(store.record_ids[0]).trace.hidden(0, 87).shape  # [layer, dim]  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.root = Path(path)
        self.settings = read_settings(self.root)
        index_path = self.root / INDEX_FILE
        if not index_path.is_file():
            raise InputError(
                f"the trace store at {self.root} is not finished ({INDEX_FILE} missing): run "
                "the same capture again to resume it, or finish_store / `somprobe capture "
                "merge` once every --shard i/n has run"
            )
        self.index = read_part(index_path)
        self._names = stored_tensors(self.settings)
        missing = [
            c for n in self._names for c in (f"{n}_shape", f"{n}_begin", f"{n}_end")
            if c not in self.index.columns
        ]  # fmt: skip
        if missing:
            raise DataFormatError(f"{index_path} lacks column(s) {missing[:5]}")
        self._row_of = {rid: i for i, rid in enumerate(self.index["record_id"])}
        if len(self._row_of) != len(self.index):
            raise DataFormatError(f"{index_path} lists a record id twice")

    @property
    def layers(self) -> list[int]:
        return [int(v) for v in self.settings["layers"]]

    @property
    def heads(self) -> list[int]:
        return [int(v) for v in self.settings["heads"]]

    @property
    def record_ids(self) -> list[str]:
        return [str(v) for v in self.index["record_id"]]

    def __len__(self) -> int:
        return len(self.index)

    def __repr__(self) -> str:
        return f"TraceStore({str(self.root)!r}, records={len(self)})"

    def load(self, record_id: str) -> StoredRecord:
        """One record's tensors (only its bytes are read).

        Raises:
            InputError: no record with this id.
        """
        if record_id not in self._row_of:
            raise InputError(f"no record {record_id!r} in the trace store at {self.root}")
        row = self.index.iloc[self._row_of[record_id]]
        with self._open(int(row["shard"])) as handle:
            return self._record(row, handle)

    def __iter__(self) -> Iterator[StoredRecord]:
        """Every record in order; one shard file open at a time, one record in memory."""
        for shard, rows in self.index.groupby("shard", sort=True):
            with self._open(int(shard)) as handle:  # type: ignore[call-overload]
                for _, row in rows.iterrows():
                    yield self._record(row, handle)

    def _open(self, shard: int) -> Any:
        from safetensors import SafetensorError, safe_open

        path = shard_file(self.root, shard)
        try:
            return safe_open(str(path), framework="pt")
        except (SafetensorError, OSError) as err:
            raise DataFormatError(
                f"{path} is not a readable safetensors file (cut or corrupt?): {err}"
            ) from err

    def _record(self, row: pd.Series, handle: Any) -> StoredRecord:
        from safetensors import SafetensorError

        tensors: dict[str, Tensor] = {}
        for name in self._names:
            try:
                tensors[name] = handle.get_tensor(f"{int(row['row'])}.{name}")
            except SafetensorError as err:
                raise DataFormatError(
                    f"shard {int(row['shard'])} of {self.root} has no tensor "
                    f"{int(row['row'])}.{name} for record {row['record_id']!r}: {err}"
                ) from err
        trace = record_trace(self.settings, tensors, str(row["record_id"]))
        return StoredRecord(
            record_id=str(row["record_id"]),
            image=str(row["image"]),
            question=str(row["question"]),
            answer=str(row["answer"]),
            input_ids=tensors["input_ids"],
            answer_span=(int(row["answer_start"]), int(row["answer_end"])),
            trace=trace,
        )


def record_trace(settings: dict[str, Any], tensors: dict[str, Tensor], record_id: str) -> Trace:
    """The one-sequence :class:`Trace` (batch 0) of a record's stored tensors.

    Raises:
        DataFormatError: the tensors do not fit the store's layers and heads.
    """
    queries: Int[Tensor, "query 3"] = tensors["queries"]
    trace = Trace(
        layers=[int(v) for v in settings["layers"]],
        heads=[int(v) for v in settings["heads"]],
        key_mode="image",
        backend=str(settings.get("backend", "native")),
        records=[QueryRecord(0, int(p), int(t), int(s)) for p, t, s in queries.tolist()],
    )
    named: dict[str, Tensor] = {}
    positions = [int(p) for p in queries[:, 0].tolist()]
    attention: Float[Tensor, "query layer head key"] | None = tensors.get("attention")
    hidden: Float[Tensor, "query layer dim"] | None = tensors.get("hidden")
    for what, stacked in (("attention", attention), ("hidden", hidden)):
        if stacked is None:
            continue
        if stacked.shape[0] != len(positions):
            raise DataFormatError(
                f"record {record_id!r}: {what} has {stacked.shape[0]} rows for "
                f"{len(positions)} captured tokens"
            )
        for i, p in enumerate(positions):
            named[f"{what}.0.{p}"] = stacked[i]
    if "keys" in tensors:
        named["keys.0"] = tensors["keys"]
    trace._take_tensors(named, Path(f"record {record_id!r}"))
    return trace


def open_store(path: str | os.PathLike[str]) -> TraceStore:
    """:class:`TraceStore` of ``path`` (the reader)."""
    return TraceStore(path)


__all__ = [
    "FORMAT_VERSION",
    "StoredRecord",
    "TraceStore",
    "finish_store",
    "open_store",
    "read_settings",
    "record_trace",
    "verify_shard",
]
