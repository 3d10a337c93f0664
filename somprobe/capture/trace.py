"""What a capture recorded: attention rows and hidden states at chosen query tokens.

A :class:`Trace` is keyed by (batch item, absolute position): each captured query token
has its token id, the forward pass ("step") that processed it, its attention over the
captured key columns for every captured layer and head, and the residual stream after
every captured layer. All backends (native Recorder, nnsight, TransformerLens) return
this same object.

Positions are indices into the full, padded sequence (prompt + generated tokens), so
they line up with ``ImageLayout`` positions and with ``generate``'s output ids.

Example:
    >>> trace.queries                      # one row per captured token
    >>> trace.attention(0, 87).shape       # [layer, head, key]
    >>> trace.hidden(0, 87).shape          # [layer, dim]
    >>> trace.save("run/trace"); Trace.load("run/trace")
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from jaxtyping import Float, Int
from safetensors.torch import save_file
from torch import Tensor

from somprobe.errors import CaptureError, DataFormatError, InputError, require_int
from somprobe.io import atomic_path, atomic_write, check_writable, read_safetensors

FORMAT_VERSION = 1
_FIELDS = ("layers", "heads", "key_mode", "backend", "prompt_length", "records")


@dataclass(frozen=True)
class QueryRecord:
    """One captured query token."""

    batch: int
    position: int
    token_id: int
    step: int


@dataclass
class Trace:
    """Attention rows and hidden states captured at selected query tokens.

    Attributes:
        layers: the captured decoder-layer indices (non-negative), in order.
        heads: the captured head indices, in order.
        key_mode: "image" (key columns are the image tokens) or "all" (every key).
        backend: "native", "nnsight" or "transformer_lens".
        records: one :class:`QueryRecord` per captured token, in capture order.
        prompt_lengths: the padded prompt length (tokens before the first generated one).
    """

    layers: list[int]
    heads: list[int]
    key_mode: str
    backend: str = "native"
    records: list[QueryRecord] = field(default_factory=list)
    prompt_length: int | None = None
    _keys: dict[int, Tensor] = field(default_factory=dict, repr=False)
    _attention: dict[tuple[int, int], Tensor] = field(default_factory=dict, repr=False)
    _hidden: dict[tuple[int, int], Tensor] = field(default_factory=dict, repr=False)

    # -- access ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.records)

    @property
    def queries(self) -> pd.DataFrame:
        """One row per captured query token: batch, position, token_id, step."""
        return pd.DataFrame(
            [(r.batch, r.position, r.token_id, r.step) for r in self.records],
            columns=["batch", "position", "token_id", "step"],
        ).astype("int64")

    def key_positions(self, batch: int) -> Int[Tensor, " key"]:
        """Absolute positions of the captured key columns of sequence ``batch``.

        Under ``key_mode="all"`` the columns are 0..position of each query, so this
        raises: use the length of :meth:`attention`'s last axis instead.
        """
        if self.key_mode == "all":
            raise CaptureError("key_mode='all' has one column per position 0..query position")
        batch = require_int(batch, "batch")
        if batch not in self._keys:
            raise CaptureError(f"no sequence {batch} in this trace (batches: {sorted(self._keys)})")
        return self._keys[batch]

    def has(self, batch: int, position: int) -> bool:
        return (batch, position) in self._attention or (batch, position) in self._hidden

    def attention(self, batch: int, position: int) -> Float[Tensor, "layer head key"]:
        """Attention of the query at ``position`` of sequence ``batch`` over the keys."""
        return self._get(self._attention, "attention", batch, position)

    def hidden(self, batch: int, position: int) -> Float[Tensor, "layer dim"]:
        """Residual stream after each captured layer at that query token."""
        return self._get(self._hidden, "hidden states", batch, position)

    def _get(
        self, store: dict[tuple[int, int], Tensor], what: str, batch: int, position: int
    ) -> Tensor:
        key = (require_int(batch, "batch"), require_int(position, "position"))
        if key not in store:
            captured = sorted(p for b, p in store if b == batch)
            hint = f"captured positions of sequence {batch}: {captured[:20]}" + (
                " ..." if len(captured) > 20 else ""
            )
            raise CaptureError(
                f"no {what} captured at sequence {batch}, position {position}; {hint}"
            )
        return store[key]

    def attention_frame(self) -> pd.DataFrame:
        """Tidy view: one row per (query, layer, head, key) with the attention weight."""
        frames = []
        for record in self.records:
            key = (record.batch, record.position)
            if key not in self._attention:
                continue
            weights = self._attention[key].float()
            n_key = weights.shape[-1]
            if self.key_mode == "image":
                key_pos = self._keys[record.batch].tolist()
            else:
                key_pos = list(range(n_key))
            index = pd.MultiIndex.from_product(
                [self.layers, self.heads, key_pos], names=["layer", "head", "key_position"]
            )
            frame = pd.DataFrame({"weight": weights.reshape(-1).numpy()}, index=index)
            frame = frame.reset_index()
            frame.insert(0, "step", record.step)
            frame.insert(0, "token_id", record.token_id)
            frame.insert(0, "position", record.position)
            frame.insert(0, "batch", record.batch)
            frames.append(frame)
        columns = ["batch", "position", "token_id", "step", "layer", "head", "key_position"]
        if not frames:
            return pd.DataFrame(columns=[*columns, "weight"])
        return pd.concat(frames, ignore_index=True)

    def nbytes(self, what: str = "all") -> int:
        """Bytes held by the captured tensors.

        Args:
            what: ``"all"`` (attention rows + hidden states + key positions),
                ``"attention"`` or ``"hidden"``.

        Raises:
            InputError: another ``what``.
        """
        stores: dict[str, list[dict[Any, Tensor]]] = {
            "all": [self._attention, self._hidden, self._keys],
            "attention": [self._attention],
            "hidden": [self._hidden],
        }
        if what not in stores:
            raise InputError(f"what must be one of {sorted(stores)}, got {what!r}")
        return sum(t.numel() * t.element_size() for s in stores[what] for t in s.values())

    # -- building -------------------------------------------------------------------------
    def add(
        self,
        record: QueryRecord,
        attention: Tensor | None,
        hidden: Tensor | None,
    ) -> None:
        key = (record.batch, record.position)
        if self.has(*key):
            raise CaptureError(f"sequence {record.batch} position {record.position} captured twice")
        self.records.append(record)
        if attention is not None:
            self._attention[key] = attention
        if hidden is not None:
            self._hidden[key] = hidden

    def set_keys(self, batch: int, positions: Tensor) -> None:
        self._keys[batch] = positions.detach().to("cpu", torch.long)

    # -- persistence ----------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``path/trace.safetensors`` and ``path/trace.json`` (atomically).

        Raises:
            WriteError: the folder cannot be created or written.
        """
        folder = Path(path)
        check_writable(folder / "trace.json")
        tensors: dict[str, Tensor] = {}
        for (b, p), t in self._attention.items():
            tensors[f"attention.{b}.{p}"] = t.contiguous().cpu()
        for (b, p), t in self._hidden.items():
            tensors[f"hidden.{b}.{p}"] = t.contiguous().cpu()
        for b, t in self._keys.items():
            tensors[f"keys.{b}"] = t.contiguous()
        meta = {
            "format_version": FORMAT_VERSION,
            "layers": self.layers,
            "heads": self.heads,
            "key_mode": self.key_mode,
            "backend": self.backend,
            "prompt_length": self.prompt_length,
            "records": [[r.batch, r.position, r.token_id, r.step] for r in self.records],
        }
        with atomic_path(folder / "trace.safetensors") as tmp:
            save_file(tensors, str(tmp))
        with atomic_write(folder / "trace.json") as fh:
            fh.write(json.dumps(meta))
        return folder

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Trace:
        """Read a trace written by :meth:`save`, checking that its two files fit together.

        Raises:
            InputError: ``path`` is not a folder holding ``trace.json`` and
                ``trace.safetensors``.
            DataFormatError: a file is truncated or corrupt, a field is missing or
                malformed, or records and tensors do not match; the message names it.
        """
        folder = Path(path)
        meta_path, tensor_path = folder / "trace.json", folder / "trace.safetensors"
        missing = [p.name for p in (meta_path, tensor_path) if not p.is_file()]
        if missing:
            raise InputError(
                f"no trace at {folder}: {' and '.join(missing)} missing; a trace folder holds "
                "trace.json and trace.safetensors, as Trace.save writes them"
            )
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DataFormatError(
                f"{meta_path} is not valid JSON (truncated or corrupt?): {err}"
            ) from err
        except OSError as err:
            raise DataFormatError(f"cannot read {meta_path}: {err}") from err
        return cls._from_files(meta, read_safetensors(tensor_path), meta_path)

    @classmethod
    def _from_files(cls, meta: Any, tensors: dict[str, Tensor], where: Path) -> Trace:
        if not isinstance(meta, dict):
            raise DataFormatError(f"{where} must hold a JSON object, got {type(meta).__name__}")
        version = meta.get("format_version")
        if version != FORMAT_VERSION:
            raise DataFormatError(
                f"{where} holds trace format {version}, expected {FORMAT_VERSION}; "
                "save it again with this version of somprobe"
            )
        for key in _FIELDS:
            if key not in meta:
                raise DataFormatError(f"{where} has no {key!r} field; the file was cut or edited")
        for name in ("layers", "heads", "records"):
            if not isinstance(meta[name], list):
                raise DataFormatError(
                    f"{where}: {name} must be a list, got {type(meta[name]).__name__}"
                )
        for i, r in enumerate(meta["records"]):
            if not isinstance(r, list) or len(r) != 4:
                raise DataFormatError(
                    f"{where}: record {i} is {r!r}; expected [batch, position, token_id, step]"
                )
        try:
            layers = [require_int(v, "layer") for v in meta["layers"]]
            heads = [require_int(v, "head") for v in meta["heads"]]
            records = [
                QueryRecord(*(require_int(v, "a record field") for v in r)) for r in meta["records"]
            ]
            prompt_length = meta["prompt_length"]
            if prompt_length is not None:
                prompt_length = require_int(prompt_length, "prompt_length")
        except InputError as err:
            raise DataFormatError(f"{where}: {err}") from err
        if meta["key_mode"] not in ("image", "all"):
            raise DataFormatError(
                f"{where}: key_mode must be 'image' or 'all', got {meta['key_mode']!r}"
            )
        trace = cls(
            layers=layers,
            heads=heads,
            key_mode=meta["key_mode"],
            backend=str(meta["backend"]),
            prompt_length=prompt_length,
            records=records,
        )
        trace._take_tensors(tensors, where.with_name("trace.safetensors"))
        return trace

    def _take_tensors(self, tensors: dict[str, Tensor], where: Path) -> None:
        """File the tensors under their keys and check they match the records."""
        shapes = {"attention": 3, "hidden": 2, "keys": 1}
        for name, tensor in tensors.items():
            kind, *index = name.split(".")
            try:
                numbers = [int(v) for v in index]
            except ValueError:
                numbers = []
            if kind not in shapes or len(numbers) != (1 if kind == "keys" else 2):
                raise DataFormatError(f"{where} holds an unknown tensor {name!r}")
            if tensor.ndim != shapes[kind]:
                raise DataFormatError(
                    f"{where}: tensor {name!r} has shape {tuple(tensor.shape)}, expected "
                    f"{shapes[kind]} dimensions"
                )
            if kind == "keys":
                self._keys[numbers[0]] = tensor
                continue
            wanted = (
                (len(self.layers), len(self.heads)) if kind == "attention" else (len(self.layers),)
            )
            if tuple(tensor.shape[: len(wanted)]) != wanted:
                raise DataFormatError(
                    f"{where}: tensor {name!r} has shape {tuple(tensor.shape)} but the trace has "
                    f"{len(self.layers)} layer(s) and {len(self.heads)} head(s)"
                )
            store = self._attention if kind == "attention" else self._hidden
            store[(numbers[0], numbers[1])] = tensor
        keys = [(r.batch, r.position) for r in self.records]
        if len(set(keys)) != len(keys):
            raise DataFormatError(f"{where.with_name('trace.json')} lists a query twice")
        stores = [s for s in (self._attention, self._hidden) if s] or [{}]
        absent = [k for k in keys if any(k not in s for s in stores)]
        if absent:
            raise DataFormatError(
                f"{where}: record(s) at (batch, position) {absent[:5]} have no rows in "
                "trace.safetensors; the files were cut or do not belong together"
            )
        recorded = set(keys)
        for what, store in (("attention", self._attention), ("hidden", self._hidden)):
            extra = sorted(set(store) - recorded)
            if extra:
                raise DataFormatError(
                    f"{where}: {what} rows at (batch, position) {extra[:5]} have no record in "
                    "trace.json; the two files do not belong together"
                )
        if self.key_mode == "image":
            for b, p in self._attention:
                columns = self._keys.get(b)
                if columns is None or columns.numel() != self._attention[(b, p)].shape[-1]:
                    raise DataFormatError(
                        f"{where}: the attention row at (batch {b}, position {p}) does not match "
                        f"the image-key columns of sequence {b}"
                    )
