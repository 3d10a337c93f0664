"""LLaVA instruction records: typed, validated, read and written as streams.

A record is LLaVA's JSON object ``{"id", "image", "conversations": [{"from", "value"}]}``.
Conversations alternate ``human`` / ``gpt`` turns starting with ``human``; when the record
has an ``image``, the first human turn contains the ``<image>`` placeholder exactly once
and no other turn contains it. Records without ``image`` (LLaVA-1.5's mix has text-only
ShareGPT records) must not contain ``<image>`` anywhere. Keys other than the three are
kept in :attr:`LlavaRecord.extra` and written back unchanged.

Files are either a JSON array (``.json``, LLaVA's format) or JSON Lines (``.jsonl``). Both
are read incrementally (:func:`iter_records`), so a 1 GB file never sits in memory, and
written incrementally and atomically (:func:`write_records`, through
:func:`somprobe.io.atomic_write`).

Example:
    >>> rec = LlavaRecord.from_dict({"id": "a", "image": "x.png", "conversations": [
    ...     {"from": "human", "value": "<image>\\nList the items."},
    ...     {"from": "gpt", "value": "1. cat"}]})
    >>> rec.conversations[1].value
    '1. cat'
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from somprobe.errors import DataFormatError, InputError
from somprobe.io import atomic_write

Role = Literal["human", "gpt"]
FileFormat = Literal["json", "jsonl"]
IMAGE_TOKEN = "<image>"

_CHUNK_CHARS = 1 << 20
_MAX_RECORD_CHARS = 64 << 20
_WHITESPACE = " \t\n\r"


@dataclass(frozen=True)
class Turn:
    """One conversation turn; ``role`` is written as LLaVA's ``"from"`` key."""

    role: Role
    value: str

    def to_dict(self) -> dict[str, str]:
        return {"from": self.role, "value": self.value}


@dataclass(frozen=True)
class LlavaRecord:
    """One LLaVA training sample.

    Attributes:
        id: the record id (LLaVA uses strings; ints in a file are kept as ints).
        image: image path relative to the training image folder, or None (text-only).
        conversations: alternating human/gpt turns, human first.
        extra: any other keys of the JSON object, written back as they were.
    """

    id: str | int
    image: str | None
    conversations: list[Turn]
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, keys in LLaVA's order (id, image, conversations, extra...)."""
        out: dict[str, Any] = {"id": self.id}
        if self.image is not None:
            out["image"] = self.image
        out["conversations"] = [t.to_dict() for t in self.conversations]
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, obj: Any, *, where: str = "") -> LlavaRecord:
        """Validate a parsed JSON object and build the record.

        Raises:
            DataFormatError: naming the record id (or its position) and the bad field.
        """
        return validate_record(obj, where=where)

    def validate(self) -> None:
        """Re-check the invariants (useful after building a record by hand)."""
        validate_record(self.to_dict())


def make_record(record_id: str, image: str | None, turns: Iterable[tuple[str, str]]) -> LlavaRecord:
    """Build and validate a record from ``(question, answer)`` pairs.

    The ``<image>`` placeholder is put on its own line before the first question when
    the record has an image.

    Example:
        >>> r = make_record("q1", "img.png", [("What is tagged 1?", "cat")])
        >>> r.conversations[0].value
        '<image>\\nWhat is tagged 1?'
    """
    conversations: list[Turn] = []
    pairs = list(turns)
    for pair in pairs:
        if (
            not isinstance(pair, tuple | list)
            or len(pair) != 2
            or not all(isinstance(x, str) for x in pair)
        ):
            raise InputError(
                f"record {record_id!r}: each turn must be a (question, answer) pair of "
                f"strings, got {pair!r}"
            )
    for i, (question, answer) in enumerate(pairs):
        q = f"{IMAGE_TOKEN}\n{question}" if i == 0 and image is not None else question
        conversations.append(Turn("human", q))
        conversations.append(Turn("gpt", answer))
    record = LlavaRecord(id=record_id, image=image, conversations=conversations)
    record.validate()
    return record


def _name(obj: Any, where: str) -> str:
    rid = obj.get("id") if isinstance(obj, dict) else None
    label = f"record id={rid!r}" if rid is not None else "record without id"
    return f"{label}{' ' + where if where else ''}"


def validate_record(obj: Any, *, where: str = "") -> LlavaRecord:
    """Check one parsed JSON object against LLaVA's record format.

    ``where`` (e.g. ``"(#12 in data.json)"``) is appended to the record's name in errors.

    Raises:
        DataFormatError: the message names the record (id, else position) and the field.
    """
    name = _name(obj, where)
    if not isinstance(obj, dict):
        raise DataFormatError(
            f"{name}: expected a JSON object with id/image/conversations, got {type(obj).__name__}"
        )
    if "id" not in obj:
        raise DataFormatError(f"{name}: field 'id' is missing; give every record an id")
    rid = obj["id"]
    if isinstance(rid, bool) or not isinstance(rid, str | int) or rid == "":
        raise DataFormatError(f"{name}: field 'id' must be a non-empty string, got {rid!r}")
    image = obj.get("image")
    if image is not None and (not isinstance(image, str) or not image):
        raise DataFormatError(
            f"{name}: field 'image' must be a non-empty path string, got {image!r}"
        )
    convs = obj.get("conversations")
    if not isinstance(convs, list) or not convs:
        raise DataFormatError(
            f"{name}: field 'conversations' must be a non-empty list of turns, got "
            f"{type(convs).__name__}"
        )
    turns: list[Turn] = []
    for k, turn in enumerate(convs):
        fname = f"conversations[{k}]"
        if not isinstance(turn, dict):
            raise DataFormatError(f"{name}: field '{fname}' must be an object with from/value")
        role = turn.get("from")
        want = "human" if k % 2 == 0 else "gpt"
        if role != want:
            raise DataFormatError(
                f"{name}: field '{fname}.from' is {role!r} but turns must alternate "
                f"human/gpt starting with human, so it should be {want!r}"
            )
        value = turn.get("value")
        if not isinstance(value, str):
            raise DataFormatError(f"{name}: field '{fname}.value' must be a string")
        if IMAGE_TOKEN in value and (image is None or k != 0):
            why = "the record has no 'image'" if image is None else "only turn 0 may hold it"
            raise DataFormatError(f"{name}: field '{fname}.value' contains {IMAGE_TOKEN} but {why}")
        turns.append(Turn(role, value))
    if image is not None and turns[0].value.count(IMAGE_TOKEN) != 1:
        raise DataFormatError(
            f"{name}: field 'conversations[0].value' must contain {IMAGE_TOKEN} exactly once "
            f"because the record has an image (found {turns[0].value.count(IMAGE_TOKEN)})"
        )
    extra = {k: v for k, v in obj.items() if k not in ("id", "image", "conversations")}
    return LlavaRecord(id=rid, image=image, conversations=turns, extra=extra)


# --------------------------------------------------------------------------- reading


def detect_format(path: str | Path) -> FileFormat:
    """``"json"`` if the file's first non-blank character is ``[``, ``"jsonl"`` if ``{``."""
    with open(path, encoding="utf-8") as fh:
        while True:
            ch = fh.read(1)
            if ch == "":
                return "json"
            if ch not in _WHITESPACE:
                break
    if ch == "[":
        return "json"
    if ch == "{":
        return "jsonl"
    raise DataFormatError(
        f"{path}: starts with {ch!r}; expected a JSON array '[' (LLaVA .json) or JSON Lines '{{'"
    )


def iter_json_objects(path: str | Path) -> Iterator[tuple[int, int, Any]]:
    """Yield ``(index, line, object)`` for each element of a JSON array or JSON Lines file.

    Memory holds one 1 MiB chunk plus the record being parsed (records up to 64 MiB).

    Raises:
        DataFormatError: malformed JSON, naming the element index, the line and the id of
            the previous record.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file; check the path")
    try:
        if detect_format(path) == "jsonl":
            yield from _iter_jsonl(path)
        else:
            yield from _iter_array(path)
    except UnicodeDecodeError as err:
        raise DataFormatError(
            f"{path}: is not UTF-8 text (byte {err.start} of a chunk: {err.reason}); LLaVA "
            "files are UTF-8 JSON"
        ) from None


def _iter_jsonl(path: Path) -> Iterator[tuple[int, int, Any]]:
    index = 0
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataFormatError(
                    f"{path}: record #{index} (line {lineno}) is not valid JSON: {err.msg}; "
                    "fix or remove that line"
                ) from None
            yield index, lineno, obj
            index += 1


class _ArrayReader:
    """Incremental reader of one top-level JSON array, element by element."""

    def __init__(self, fh: IO[str], path: Path) -> None:
        self.fh = fh
        self.path = path
        self.buf = ""
        self.pos = 0
        self.line = 1  # line number at self.counted
        self.counted = 0  # position in buf up to which newlines are counted
        self.eof = False
        self.decoder = json.JSONDecoder()

    def _fill(self) -> bool:
        if self.eof:
            return False
        chunk = self.fh.read(_CHUNK_CHARS)
        if not chunk:
            self.eof = True
            return False
        if self.pos > 0:
            self._line_at_pos()  # count the lines of the part dropped
            self.buf = self.buf[self.pos :]
            self.counted = self.pos = 0
        self.buf += chunk
        return True

    def _skip_ws(self) -> str:
        """Advance past whitespace; return the next character ('' at end of file)."""
        while True:
            n = len(self.buf)
            while self.pos < n and self.buf[self.pos] in _WHITESPACE:
                self.pos += 1
            if self.pos < n:
                return self.buf[self.pos]
            if not self._fill():
                return ""

    def _line_at_pos(self) -> int:
        """Line number at ``self.pos``; counts only the text not counted before."""
        if self.pos > self.counted:
            self.line += self.buf.count("\n", self.counted, self.pos)
            self.counted = self.pos
        return self.line

    def _fail(self, what: str) -> DataFormatError:
        return DataFormatError(f"{self.path}: {what} (line {self._line_at_pos()})")

    def __iter__(self) -> Iterator[tuple[int, int, Any]]:
        if self._skip_ws() != "[":
            raise self._fail("expected a JSON array starting with '['")
        self.pos += 1
        index = 0
        last_id: Any = None
        after = ""
        if self._skip_ws() == "]":
            self.pos += 1
            self._expect_end()
            return
        while True:
            ch = self._skip_ws()
            if ch == "":
                raise self._fail(f"file ends inside the array after record #{index - 1}{after}")
            line = self._line_at_pos()
            while True:
                try:
                    obj, end = self.decoder.raw_decode(self.buf, self.pos)
                except json.JSONDecodeError as err:
                    if len(self.buf) - self.pos > _MAX_RECORD_CHARS or not self._fill():
                        raise DataFormatError(
                            f"{self.path}: record #{index} (line {line}{after}) is not valid "
                            f"JSON: {err.msg}; fix that record"
                        ) from None
                    continue
                # a number or literal cut at the chunk end parses early: when the value
                # ends exactly at the buffer's end, read on and parse again
                if end >= len(self.buf) and self._fill():
                    continue
                break
            self.pos = end
            yield index, line, obj
            last_id = obj.get("id") if isinstance(obj, dict) else None
            after = f", after record id={last_id!r}" if last_id is not None else ""
            index += 1
            ch = self._skip_ws()
            if ch == ",":
                self.pos += 1
                continue
            if ch == "]":
                self.pos += 1
                self._expect_end()
                return
            raise self._fail(
                f"expected ',' or ']' after record #{index - 1}{after}, "
                f"found {ch or 'end of file'!r}"
            )

    def _expect_end(self) -> None:
        ch = self._skip_ws()
        if ch != "":
            raise self._fail(f"unexpected {ch!r} after the closing ']'")


def _iter_array(path: Path) -> Iterator[tuple[int, int, Any]]:
    with open(path, encoding="utf-8") as fh:
        yield from _ArrayReader(fh, path)


def iter_records(path: str | Path, *, validate: bool = True) -> Iterator[LlavaRecord]:
    """Stream the records of a LLaVA ``.json`` array or ``.jsonl`` file.

    Example:
        >>> for rec in iter_records("llava_v1_5_mix665k.json"):  # doctest: +SKIP
        ...     print(rec.id)

    Raises:
        DataFormatError: malformed JSON or an invalid record (id and field named).
    """
    for index, line, obj in iter_json_objects(path):
        where = f"(#{index}, line {line} of {Path(path).name})"
        if validate or not _readable(obj):
            yield validate_record(obj, where=where)
        else:
            extra = {k: v for k, v in obj.items() if k not in ("id", "image", "conversations")}
            yield LlavaRecord(
                id=obj.get("id"),
                image=obj.get("image"),
                conversations=[Turn(t["from"], t["value"]) for t in obj["conversations"]],
                extra=extra,
            )


def _readable(obj: Any) -> bool:
    """Whether ``obj`` can be read as a record without validation (else validate it, so
    that the error names the record and the field)."""
    if not isinstance(obj, dict) or not isinstance(obj.get("conversations"), list):
        return False
    return all(
        isinstance(t, dict) and isinstance(t.get("from"), str) and isinstance(t.get("value"), str)
        for t in obj["conversations"]
    )


def read_records(path: str | Path) -> list[LlavaRecord]:
    """All records of a file in a list (small files; use :func:`iter_records` for big ones)."""
    return list(iter_records(path))


# --------------------------------------------------------------------------- writing


def dumps_record(record: LlavaRecord | dict[str, Any]) -> str:
    """One record as a single line of JSON (UTF-8 kept, deterministic key order)."""
    obj = record.to_dict() if isinstance(record, LlavaRecord) else record
    return json.dumps(obj, ensure_ascii=False)


def _format_for(path: Path, fmt: FileFormat | None) -> FileFormat:
    if fmt is not None:
        return fmt
    return "jsonl" if path.suffix == ".jsonl" else "json"


def write_records(
    records: Iterable[LlavaRecord | dict[str, Any]],
    path: str | Path,
    *,
    fmt: FileFormat | None = None,
    validate: bool = True,
) -> int:
    """Stream records to ``path`` atomically; return how many were written.

    ``.jsonl`` paths get JSON Lines, anything else a JSON array with one record per line
    (what LLaVA's loader reads). Dicts are validated unless ``validate=False``.

    Example:
        >>> write_records([make_record("a", "x.png", [("Q?", "A")])], "out.json")  # doctest: +SKIP
        1
    """
    path = Path(path)
    kind = _format_for(path, fmt)
    n = 0
    with atomic_write(path) as fh:
        if kind == "json":
            fh.write("[")
        for rec in records:
            if validate and not isinstance(rec, LlavaRecord):
                rec = validate_record(rec, where=f"(#{n} written to {path.name})")
            line = dumps_record(rec)
            if kind == "json":
                fh.write(("\n" if n == 0 else ",\n") + line)
            else:
                fh.write(line + "\n")
            n += 1
        if kind == "json":
            fh.write("\n]\n" if n else "]\n")
    return n


def write_json_lines_to_array(lines: Iterable[str], path: str | Path) -> int:
    """Write already-serialised one-line records as a JSON array, atomically."""
    n = 0
    with atomic_write(path) as fh:
        fh.write("[")
        for line in lines:
            fh.write(("\n" if n == 0 else ",\n") + line)
            n += 1
        fh.write("\n]\n" if n else "]\n")
    return n


# --------------------------------------------------------------------------- file checks


@dataclass(frozen=True)
class FileSummary:
    """What :func:`validate_file` found: counts of records, images and turns."""

    records: int
    with_image: int
    turns: int


def validate_file(
    path: str | Path, *, image_root: str | Path | None = None, check_duplicates: bool = True
) -> FileSummary:
    """Validate every record of a file, streaming.

    Checks the format of each record, that ids are unique (memory: one entry per id),
    and, when ``image_root`` is given, that each ``image`` exists under it.

    Raises:
        DataFormatError: the first problem found, naming the record id and field.
        InputError: the file does not exist, or ``image_root`` is not a folder.
    """
    root = Path(image_root) if image_root is not None else None
    if root is not None and not root.is_dir():
        raise InputError(f"image root {root} is not a folder; give the training image folder")
    seen: dict[str, int] = {}
    n = with_image = turns = 0
    for index, line, obj in iter_json_objects(path):
        where = f"(#{index}, line {line} of {Path(path).name})"
        rec = validate_record(obj, where=where)
        if check_duplicates:
            key = str(rec.id)
            if key in seen:
                raise DataFormatError(
                    f"record id={rec.id!r} {where}: field 'id' duplicates record #{seen[key]}; "
                    "ids must be unique"
                )
            seen[key] = index
        if rec.image is not None:
            with_image += 1
            if root is not None and not (root / rec.image).is_file():
                raise DataFormatError(
                    f"record id={rec.id!r} {where}: field 'image' names {rec.image!r} but "
                    f"{root / rec.image} does not exist; fix the path or the image root"
                )
        turns += len(rec.conversations)
        n += 1
    return FileSummary(records=n, with_image=with_image, turns=turns)


__all__ = [
    "IMAGE_TOKEN",
    "FileSummary",
    "LlavaRecord",
    "Turn",
    "detect_format",
    "dumps_record",
    "iter_json_objects",
    "iter_records",
    "make_record",
    "read_records",
    "validate_file",
    "validate_record",
    "write_json_lines_to_array",
    "write_records",
]
