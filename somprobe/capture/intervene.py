"""Causal interventions on the Recorder's mechanism: attention knockout and activation patching.

Both work through what the :class:`~somprobe.capture.Recorder` already installs: the
registered attention function (SDPA kept on) and forward hooks on the decoder layers.
They compose with a Recorder (capture while intervening: the recorded rows are the
edited attention) and put the model back exactly as it was on exit, also after an
exception.

* :func:`knockout` removes attention edges query → key: for the chosen query tokens
  (positions, ``{batch: positions}``, or a predicate on token ids such as
  :func:`~somprobe.capture.digit_token_filter`, decided pass by pass during ``generate``),
  the chosen keys (positions, ``{batch: positions}``, or ``"image"``) get probability 0 at
  the chosen layers and heads; the softmax renormalises over the keys left. The mask
  goes to the SDPA kernel; the rest of the sequence is untouched. A token's attention to
  itself is never removed, so no row is left empty.
* :func:`patch_activations` replaces the residual stream (a decoder layer's output) at
  chosen positions and layers with values from another run (a :class:`Trace` recorded
  with hidden states), for activation patching.

Example:
    >>> edges = Edges(queries=digit_token_filter(processor.tokenizer), keys={0: [5, 6, 7]},
    ...               layers=[1, 2])
    >>> with knockout(model, edges):
    ...     out = model(**inputs)
    >>> with Recorder(model, queries=[40], attention=False) as clean:
    ...     model(**clean_inputs)
    >>> with patch_activations(model, clean.trace, {0: [40]}, layers=[1]):
    ...     patched = model(**corrupted_inputs)
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from somprobe.capture.recorder import (
    QuerySpec,
    _as_index,
    _normalise,
    _positions,
    _query_positions,
    check_reached,
    hook_passes,
    unhook,
)
from somprobe.capture.trace import Trace
from somprobe.errors import CaptureError
from somprobe.models.adapters import adapter_for

KeySpec = Sequence[int] | Mapping[int, Sequence[int]] | str


@dataclass(frozen=True)
class Edges:
    """Attention edges to remove: ``queries`` → ``keys`` at ``layers`` × ``heads``.

    Attributes:
        queries: positions (every sequence), ``{batch: positions}``, ``"generated"`` or a
            predicate on token ids (prompt and generated tokens alike).
        keys: positions (every sequence), ``{batch: positions}`` or ``"image"`` (every
            image token of the sequence).
        layers: decoder layers (None: all; negative counts from the end).
        heads: attention heads (None: all).
    """

    queries: QuerySpec
    keys: KeySpec
    layers: Iterable[int] | None = None
    heads: Iterable[int] | None = None


@dataclass
class _Plan:
    """One edge set, resolved against a model."""

    layers: list[int]
    heads: list[int]
    all_heads: bool
    positions: dict[int | None, set[int]] | None
    predicate: Callable[[int], bool] | None
    generated: bool
    keys: dict[int | None, set[int]] | None  # None: the image tokens


def _key_positions(keys: Any) -> dict[int | None, set[int]] | None:
    if isinstance(keys, str):
        if keys != "image":
            raise CaptureError(
                f"keys must be 'image', positions or {{batch: positions}}, got {keys!r}"
            )
        return None
    if isinstance(keys, Mapping):
        out: dict[int | None, set[int]] = {}
        for batch, values in keys.items():
            b = _as_index(batch)
            if b is None or b < 0:
                raise CaptureError(f"key batch indices must be integers ≥ 0, got {batch!r}")
            out[b] = _positions(values, f"key (sequence {b})")
            if not out[b]:
                raise CaptureError(f"the key set of sequence {b} is empty: nothing to knock out")
        if not out:
            raise CaptureError("the key set is empty: nothing to knock out")
        return out
    found = _positions(keys, "key")
    if not found:
        raise CaptureError("the key set is empty: nothing to knock out")
    return {None: found}


def _plan(edges: Edges, num_layers: int, num_heads: int) -> _Plan:
    if not isinstance(edges, Edges):
        raise CaptureError(f"knockout needs Edges (or a list of them), got {type(edges).__name__}")
    layers = _normalise(edges.layers, num_layers, "layer")
    heads = _normalise(edges.heads, num_heads, "head")
    positions, predicate, generated = None, None, False
    if isinstance(edges.queries, str):
        if edges.queries != "generated":
            raise CaptureError(
                f"queries must be 'generated', positions or a predicate; got {edges.queries!r}"
            )
        generated = True
    elif callable(edges.queries):
        predicate = edges.queries
    else:
        positions = _query_positions(edges.queries)
        if not any(positions.values()):
            raise CaptureError("the query set is empty: give at least one query position")
    return _Plan(layers, heads, heads == list(range(num_heads)), positions, predicate, generated,
                 _key_positions(edges.keys))  # fmt: skip


_ACTIVE: weakref.WeakKeyDictionary[torch.nn.Module, weakref.ref[Any]] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


class Knockout:
    """The context manager behind :func:`knockout` (see the module docstring).

    Attributes:
        knocked: ``(batch, query position)`` pairs whose edges were cut, in run order.
    """

    def __init__(self, model: torch.nn.Module, edges: Edges | Sequence[Edges]) -> None:
        self.adapter = adapter_for(model)
        given = (
            [edges]
            if isinstance(edges, Edges)
            else list(edges)
            if isinstance(edges, Sequence) and not isinstance(edges, str)
            else None
        )
        if given is None:
            raise CaptureError(
                f"knockout needs Edges (or a list of them), got {type(edges).__name__}"
            )
        # an empty list is allowed: a knockout that removes nothing (the model runs as is)
        self.plans = [_plan(e, self.adapter.num_layers, self.adapter.num_heads) for e in given]
        self.knocked: list[tuple[int, int]] = []
        self._handles: list[Any] = []
        self._saved_impl: Any = None
        self._entered = False
        self._ids: Tensor | None = None
        self._image: dict[int, list[int]] = {}
        self._seen: dict[int, int] = {}
        self._cuts: dict[int, Tensor] = {}  # layer: [batch, heads or 1, q, k] bool, this pass

    def __enter__(self) -> Knockout:
        if self._entered:
            raise CaptureError("this knockout was already used; make a new one for each block")
        language_model = self.adapter.language_model
        with _LOCK:
            active = _ACTIVE.get(language_model)
            if active is not None and active() is not None:
                raise CaptureError(
                    "a knockout is already active on this model; give every edge set to one "
                    "knockout(model, [edges, ...]) instead of nesting them"
                )
            _ACTIVE[language_model] = weakref.ref(self)
        self._entered = True
        self._saved_impl = hook_passes(
            self.adapter, self._handles, self._on_embeddings, self._on_language_model
        )
        try:
            for layer in {la for p in self.plans for la in p.layers}:
                self.adapter.attention(layer)._somprobe_knockout = self  # type: ignore[assignment]
        except Exception:
            self._restore()
            raise
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._restore()
        if exc_type is None:
            self._check_reached()

    def _restore(self) -> None:
        unhook(self.adapter, self._handles, "_somprobe_knockout", self, self._saved_impl)
        with _LOCK:
            ref = _ACTIVE.get(self.adapter.language_model)
            if ref is not None and ref() is self:
                del _ACTIVE[self.adapter.language_model]

    def _check_reached(self) -> None:
        for plan in self.plans:
            if plan.positions is not None:
                check_reached(plan.positions, self._seen)

    # -- per pass ----------------------------------------------------------------------------
    def _on_embeddings(self, module: torch.nn.Module, args: tuple[Any, ...]) -> None:
        self._ids = args[0] if args and isinstance(args[0], Tensor) else None

    def _on_language_model(
        self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        embeds = kwargs.get("inputs_embeds")
        if embeds is None:
            raise CaptureError("knockout needs the language model to be called with inputs_embeds")
        batch, q_len = embeds.shape[:2]
        cache = kwargs.get("past_key_values")
        offset = int(cache.get_seq_length()) if cache is not None else 0
        ids, self._ids = self._ids, None
        if ids is not None and tuple(ids.shape) != (batch, q_len):
            ids = None
        id_lists = ids.tolist() if ids is not None else None
        if offset == 0:
            self._find_image(id_lists, batch)
        k_len = offset + q_len
        for b in range(batch):
            self._seen[b] = k_len
        self._cuts = {}
        for plan in self.plans:
            cut = self._plan_cut(plan, id_lists, batch, q_len, offset, embeds.device)
            if cut is None:
                continue
            full = cut if plan.all_heads else self._per_head(cut, plan.heads)
            for layer in plan.layers:
                prev = self._cuts.get(layer)
                self._cuts[layer] = full if prev is None else (prev | full)

    def _per_head(self, cut: Tensor, heads: list[int]) -> Tensor:
        out = torch.zeros(
            cut.shape[0],
            self.adapter.num_heads,
            *cut.shape[2:],
            dtype=torch.bool,
            device=cut.device,
        )
        out[:, heads] = cut
        return out

    def _find_image(self, ids: list[list[int]] | None, batch: int) -> None:
        if not any(p.keys is None for p in self.plans):
            return
        if ids is None:
            raise CaptureError(
                "keys='image' needs input_ids in the prompt pass to find the image tokens"
            )
        image_id = self.adapter.image_token_id
        for b in range(batch):
            found = [i for i, t in enumerate(ids[b]) if t == image_id]
            if not found:
                raise CaptureError(
                    f"sequence {b} has no image tokens: knockout keys='image' needs an image "
                    "in the prompt (give one, or name the key positions)"
                )
            self._image[b] = found

    def _plan_cut(
        self, plan: _Plan, ids: list[list[int]] | None, batch: int, q_len: int, offset: int,
        device: torch.device,
    ) -> Tensor | None:  # fmt: skip
        k_len = offset + q_len
        cut = torch.zeros(batch, 1, q_len, k_len, dtype=torch.bool)
        any_cut = False
        for b in range(batch):
            rows = self._query_rows(plan, ids, b, q_len, offset)
            if not rows:
                continue
            keys = sorted(
                self._image[b]
                if plan.keys is None
                else plan.keys.get(b, plan.keys.get(None, set()))
            )
            if not keys:
                continue
            if keys[-1] >= k_len and offset == 0:
                raise CaptureError(
                    f"knockout key position {keys[-1]} of sequence {b} lies past the sequence "
                    f"(length {k_len}); positions are indices into the padded input_ids"
                )
            keys = [k for k in keys if k < k_len]
            for i in rows:
                cols = [k for k in keys if k != offset + i]  # never a token's edge to itself
                if cols:
                    cut[b, 0, i, cols] = True
                    any_cut = True
                    self.knocked.append((b, offset + i))
        return cut.to(device) if any_cut else None

    @staticmethod
    def _query_rows(
        plan: _Plan, ids: list[list[int]] | None, b: int, q_len: int, offset: int
    ) -> list[int]:
        if plan.positions is not None:
            wanted = plan.positions.get(b, plan.positions.get(None, set()))
            return [p - offset for p in sorted(wanted) if offset <= p < offset + q_len]
        if ids is None:
            raise CaptureError("knockout by token needs input_ids in every forward pass")
        if plan.generated:
            return list(range(q_len)) if offset > 0 else []
        assert plan.predicate is not None
        return [i for i in range(q_len) if plan.predicate(ids[b][i])]

    # -- inside the attention function -------------------------------------------------------
    def edit_mask(
        self, module: torch.nn.Module, query: Tensor, key: Tensor, mask: Tensor | None
    ) -> Tensor | None:
        """The SDPA mask of this layer and pass with the knocked-out edges removed."""
        cut = self._cuts.get(int(module.layer_idx))  # type: ignore[arg-type]
        if cut is None:
            return mask
        batch, _, q_len, _ = query.shape
        k_len = key.shape[2]
        cut = cut[..., :k_len]
        if mask is None:
            offset = k_len - q_len
            rows = torch.arange(q_len, device=query.device)[:, None] + offset
            allowed = torch.arange(k_len, device=query.device)[None, :] <= rows
            mask = allowed[None, None].expand(batch, 1, q_len, k_len)
        mask = mask[..., :k_len]
        if mask.dtype == torch.bool:
            return mask & ~cut
        return mask.masked_fill(cut, torch.finfo(mask.dtype).min)


@contextmanager
def knockout(model: torch.nn.Module, edges: Edges | Sequence[Edges]) -> Iterator[Knockout]:
    """Remove the attention edges ``edges`` while the block runs (see the module docstring).

    Raises:
        CaptureError: layers or heads out of range, an empty key or query set, key
            positions past the sequence, query positions the run never reached, keys
            ``"image"`` in a sequence without image tokens, a knockout nested in another.
        UnsupportedModelError: not a LLaVA model.
    """
    with Knockout(model, edges) as ko:
        yield ko


class _Patch:
    def __init__(self, model: torch.nn.Module, source: Trace, positions: Any, layers: Iterable[int] | None,
                 source_batch: Mapping[int, int] | None) -> None:  # fmt: skip
        self.adapter = adapter_for(model)
        if not isinstance(source, Trace):
            raise CaptureError(
                f"patch_activations needs a Trace with hidden states, got {type(source).__name__}"
            )
        self.layers = _normalise(layers, self.adapter.num_layers, "layer")
        missing = [la for la in self.layers if la not in source.layers]
        if missing:
            raise CaptureError(
                f"the source trace has no layer(s) {missing}; it recorded {source.layers}"
            )
        wanted = _query_positions(positions)
        if not any(wanted.values()):
            raise CaptureError("no positions to patch")
        self.values: dict[tuple[int, int], Tensor] = {}  # (batch, position): [layer, dim]
        index = [source.layers.index(la) for la in self.layers]
        batches = sorted({b for b, _ in source._hidden}) if None in wanted else []
        for b_key, pos_set in wanted.items():
            for b in [b_key] if b_key is not None else batches:
                src_b = (source_batch or {}).get(b, b)
                for p in sorted(pos_set):
                    hidden = source.hidden(src_b, p)  # CaptureError naming what was captured
                    self.values[(b, p)] = hidden[index]
        self.handles: list[Any] = []
        self.offset = 0
        self.patched: list[tuple[int, int, int]] = []  # (layer, batch, position)

    def _on_language_model(
        self, module: torch.nn.Module, args: Any, kwargs: dict[str, Any]
    ) -> None:
        cache = kwargs.get("past_key_values")
        self.offset = int(cache.get_seq_length()) if cache is not None else 0

    def _hook(self, slot: int, layer: int) -> Callable[..., Any]:
        def hook(module: torch.nn.Module, args: Any, output: Any) -> Any:
            hidden = output[0] if isinstance(output, tuple) else output
            q_len = hidden.shape[1]
            hits = [
                (b, p)
                for (b, p) in self.values
                if self.offset <= p < self.offset + q_len and b < hidden.shape[0]
            ]
            if not hits:
                return None
            hidden = hidden.clone()
            for b, p in hits:
                hidden[b, p - self.offset] = self.values[(b, p)][slot].to(
                    hidden.device, hidden.dtype
                )
                self.patched.append((layer, b, p))
            return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

        return hook


@contextmanager
def patch_activations(
    model: torch.nn.Module,
    source: Trace,
    positions: Sequence[int] | Mapping[int, Sequence[int]],
    layers: Iterable[int] | None = None,
    *,
    source_batch: Mapping[int, int] | None = None,
) -> Iterator[list[tuple[int, int, int]]]:
    """Replace the residual stream at ``positions`` and ``layers`` with ``source``'s values.

    ``source`` is a :class:`Trace` recorded with ``hidden_states=True`` at (at least) those
    positions and layers; the value replaces the output of decoder layer ``layer`` (what
    the Recorder records as that layer's hidden state). ``source_batch`` maps a sequence of
    this run to the source's sequence (default: the same index). Yields the list of
    ``(layer, batch, position)`` patched so far.

    Raises:
        CaptureError: a layer out of range or missing from the source, a position the
            source has no hidden state for, no positions, a source that is not a Trace.
    """
    patch = _Patch(model, source, positions, layers, source_batch)
    adapter = patch.adapter
    try:
        patch.handles.append(
            adapter.language_model.register_forward_pre_hook(
                patch._on_language_model, with_kwargs=True
            )
        )
        for slot, layer in enumerate(patch.layers):
            patch.handles.append(
                adapter.layers[layer].register_forward_hook(patch._hook(slot, layer))
            )
        yield patch.patched
    finally:
        for handle in patch.handles:
            handle.remove()


__all__ = ["Edges", "Knockout", "knockout", "patch_activations"]
