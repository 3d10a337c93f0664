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
from safetensors.torch import load_file, save_file
from torch import Tensor

from somprobe.errors import CaptureError, DataFormatError
from somprobe.io import atomic_path, atomic_write

FORMAT_VERSION = 1


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
        key = (int(batch), int(position))
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

    def nbytes(self) -> int:
        """Bytes held by the captured tensors (attention + hidden states + keys)."""
        stores: list[dict[Any, Tensor]] = [self._attention, self._hidden, self._keys]
        return sum(t.numel() * t.element_size() for store in stores for t in store.values())

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
        """Write ``path/trace.safetensors`` and ``path/trace.json`` (atomically)."""
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
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
        folder = Path(path)
        try:
            meta = json.loads((folder / "trace.json").read_text())
            tensors = load_file(str(folder / "trace.safetensors"))
        except (OSError, ValueError) as err:
            raise DataFormatError(f"cannot read a trace from {folder}: {err}") from err
        if meta.get("format_version") != FORMAT_VERSION:
            raise DataFormatError(
                f"{folder} holds trace format {meta.get('format_version')}, expected {FORMAT_VERSION}"
            )
        trace = cls(
            layers=list(meta["layers"]),
            heads=list(meta["heads"]),
            key_mode=meta["key_mode"],
            backend=meta["backend"],
            prompt_length=meta["prompt_length"],
        )
        for name, tensor in tensors.items():
            kind, *index = name.split(".")
            if kind == "keys":
                trace._keys[int(index[0])] = tensor
            elif kind == "attention":
                trace._attention[(int(index[0]), int(index[1]))] = tensor
            elif kind == "hidden":
                trace._hidden[(int(index[0]), int(index[1]))] = tensor
        trace.records = [QueryRecord(*map(int, r)) for r in meta["records"]]
        return trace
