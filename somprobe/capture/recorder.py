"""The native capture backend: attention rows and hidden states with SDPA kept on.

Inside ``with Recorder(model, ...)`` the text model's attention runs through a custom
attention function (registered with ``AttentionInterface`` *and*
``AttentionMaskInterface``, so the model still builds its SDPA mask). It computes the
output with the ordinary SDPA kernel and, only for the query rows asked for, recomputes
``softmax(q·kᵀ·scale + mask)`` in float32 and keeps the key columns asked for (the image
tokens by default). Memory is O(rows × heads × keys) per layer instead of O(T²).

Which query tokens are captured (``queries=``):

* explicit positions: a list (every sequence) or ``{batch: [positions]}`` — typical for
  a teacher-forced forward pass;
* ``"generated"``: every generated token;
* a predicate on token ids (e.g. :func:`digit_token_filter`): generated tokens for which
  it is true, decided step by step during ``generate`` with the KV cache.

A generated token is captured as a *query*: the row is the attention of the forward pass
that reads that token (the pass after the one that produced it). ``generate`` never
feeds its last token back, so the last generated token has no row; teacher forcing
(:func:`somprobe.capture.teacher_force`) covers whole answers.

One recording per model at a time: a Recorder records one ``generate``/forward call and
is entered once; entering a second Recorder (or calling :func:`~somprobe.capture.capture`)
on a model that a Recorder is recording raises :class:`~somprobe.errors.CaptureError`
before anything is changed, so the outer Recorder and the model are left as they were.

Example:
    >>> with Recorder(model, queries=digit_token_filter(processor.tokenizer)) as rec:
    ...     out = model.generate(**inputs, max_new_tokens=32, do_sample=False)
    >>> rec.trace.queries.head()
"""

from __future__ import annotations

import operator
import re
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from somprobe.capture.trace import QueryRecord, Trace
from somprobe.errors import CaptureError, InputError
from somprobe.models.adapters import adapter_for

ATTENTION_NAME = "somprobe_recorder"

QuerySpec = Sequence[int] | Mapping[int, Sequence[int]] | str | Callable[[int], bool]


def _recording_attention(
    module: torch.nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    **kwargs: Any,
) -> tuple[Tensor, None]:
    knocked = getattr(module, "_somprobe_knockout", None)  # somprobe.capture.intervene
    if knocked is not None:
        attention_mask = knocked.edit_mask(module, query, key, attention_mask)
    output, _ = sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    recorder = getattr(module, "_somprobe_recorder", None)
    if recorder is not None:
        recorder._record_attention(module, query, key, attention_mask, kwargs.get("scaling"))
    return output, None


AttentionInterface.register(ATTENTION_NAME, _recording_attention)
AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)


_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")
_WORD_START = ("▁", "Ġ")  # SentencePiece's and byte-level BPE's space markers


def _token_text(tokenizer: Any, token: str) -> str:
    """The text ``token`` decodes to: the tokenizer's own decoder where it has one, else
    the SentencePiece / byte-level rules (``<0x0A>`` is a newline, ``▁``/``Ġ`` a space)."""
    convert = getattr(tokenizer, "convert_tokens_to_string", None)
    if callable(convert):
        try:
            return str(convert([token]))
        except (KeyError, ValueError, TypeError, IndexError):
            pass  # a token the decoder cannot handle alone: read it by the rules below
    byte = _BYTE_TOKEN.fullmatch(token)
    if byte is not None:
        value = int(byte.group(1), 16)
        return chr(value) if value < 0x80 else ""
    if token.startswith(_WORD_START):
        return " " + token[1:]
    return token


def is_digit_text(text: str) -> bool:
    """True for one or more ASCII digits, optionally after one leading space (or ``▁``)."""
    body = text[1:] if text[:1] in (" ", "▁") else text
    return bool(body) and all("0" <= ch <= "9" for ch in body)


def digit_token_filter(tokenizer: Any) -> Callable[[int], bool]:
    """A predicate that is true for token ids whose text is a number (tag digits).

    A token passes when it *decodes* to ASCII digits, possibly after one leading space
    or ``▁``: ``"7"``, ``"▁7"``, ``"12"`` (and a byte token ``<0x37>``) pass; byte tokens
    such as ``<0x0A>`` (LLaMA's newline), ``"a1"``, ``"1."``, ``"²"`` do not. The ids are
    on the predicate as ``.token_ids``.

    Args:
        tokenizer: a Hugging Face tokenizer (or a processor: its ``.tokenizer`` is used);
            anything with ``get_vocab()`` works.

    Raises:
        InputError: ``tokenizer`` has no vocabulary.
    """
    if not hasattr(tokenizer, "get_vocab") and hasattr(tokenizer, "tokenizer"):
        tokenizer = tokenizer.tokenizer
    vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else None
    if not isinstance(vocab, Mapping):
        raise InputError(
            f"digit_token_filter needs a tokenizer (something with get_vocab()), got "
            f"{type(tokenizer).__name__}; pass processor.tokenizer"
        )
    digit_ids = frozenset(
        int(i)
        for t, i in vocab.items()
        if any(ch.isdigit() for ch in t) and is_digit_text(_token_text(tokenizer, t))
    )

    def is_digit(token_id: int) -> bool:
        return token_id in digit_ids

    is_digit.token_ids = digit_ids  # type: ignore[attr-defined]
    return is_digit


def _as_index(value: Any) -> int | None:
    """``value`` as an int when it is one (Python, numpy or 0-d torch integer), else None."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def _normalise(indices: Iterable[int] | None, size: int, what: str) -> list[int]:
    if indices is None:
        return list(range(size))
    if isinstance(indices, (str, bytes)) or not isinstance(indices, Iterable):
        raise CaptureError(
            f"{what}s must be a list of {what} indices (or None for all), got "
            f"{type(indices).__name__}"
        )
    given = list(indices)
    if not given:
        raise CaptureError(f"no {what}s to capture: give at least one {what} (or None for all)")
    out = []
    for i in given:
        index = _as_index(i)
        if index is None:
            raise CaptureError(f"{what}s must be integers, got {i!r} in {given!r}")
        j = index + size if index < 0 else index
        if not 0 <= j < size:
            raise CaptureError(
                f"{what} {i} does not exist: the model has {size} ({what}s 0..{size - 1})"
            )
        out.append(j)
    if len(set(out)) != len(out):
        raise CaptureError(f"{what}s {given} repeat an index")
    return sorted(out)


def _positions(values: Any, where: str) -> set[int]:
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable):
        raise CaptureError(
            f"{where} positions must be a list of token positions, got {type(values).__name__}"
        )
    out = set()
    for value in values:
        index = _as_index(value)
        if index is None or index < 0:
            raise CaptureError(
                f"{where} positions must be integers ≥ 0 (indices into the padded input_ids), "
                f"got {value!r}"
            )
        out.add(index)
    return out


def _query_positions(queries: Any) -> dict[int | None, set[int]]:
    """Explicit query positions by batch item (None: every item); CaptureError if malformed."""
    if isinstance(queries, Mapping):
        out: dict[int | None, set[int]] = {}
        for batch, values in queries.items():
            b = _as_index(batch)
            if b is None or b < 0:
                raise CaptureError(
                    f"query batch indices must be integers ≥ 0 (rows of input_ids), got {batch!r}"
                )
            out[b] = _positions(values, f"query (sequence {b})")
        return out
    if isinstance(queries, (bytes, bytearray)) or not isinstance(queries, Iterable):
        raise CaptureError(
            "queries must be 'generated', a list of positions, {batch: [positions]} or a "
            f"predicate on token ids; got {type(queries).__name__}"
        )
    return {None: _positions(queries, "query")}


# -- one recording per model at a time ----------------------------------------------------------

_RECORDING: weakref.WeakKeyDictionary[torch.nn.Module, weakref.ref[Any]] = (
    weakref.WeakKeyDictionary()
)
_RECORDING_LOCK = threading.Lock()

_NESTED = (
    "a Recorder (or capture) is already recording this model; captures cannot be nested. "
    "Finish the outer `with Recorder(...)` block first, or capture everything in one "
    "Recorder (its queries and layers can cover both)"
)


def _recording_on(module: torch.nn.Module) -> Any:
    ref = _RECORDING.get(module)
    return ref() if ref is not None else None


def ensure_not_recording(model: torch.nn.Module) -> None:
    """Raise :class:`CaptureError` when a Recorder or capture is active on ``model``."""
    with _RECORDING_LOCK:
        if _recording_on(adapter_for(model).language_model) is not None:
            raise CaptureError(_NESTED)


def check_reached(positions: Mapping[int | None, set[int]], seen: Mapping[int, int]) -> None:
    """Every explicitly named query position was in a sequence the run had.

    ``positions`` maps a sequence (None: every one) to positions; ``seen`` each sequence
    to the length the run reached.

    Raises:
        CaptureError: a sequence the batch does not have, or positions past its end.
    """
    absent = [b for b in sorted(b for b in positions if b is not None) if b not in seen]
    if absent and seen:
        raise CaptureError(
            f"query sequence {absent[0]} does not exist: the batch has "
            f"{len(seen)} sequence(s) (0..{len(seen) - 1})"
        )
    missing = []
    for b_key, wanted in positions.items():
        for b in [b_key] if b_key is not None else list(seen):
            length = seen.get(b, 0)
            missing += [(b, p) for p in sorted(wanted) if p >= length or p < 0]
    if missing:
        raise CaptureError(
            f"query position(s) {missing[:10]} (batch, position) lie past the "
            f"sequence (length {max(seen.values(), default=0)}); "
            "positions are indices into the padded input_ids"
        )


def hook_passes(
    adapter: Any, handles: list[Any], on_ids: Callable[..., None], on_pass: Callable[..., None]
) -> Any:
    """Route the text model's attention through :data:`ATTENTION_NAME` and hook each
    forward pass: ``on_ids(module, args)`` sees the input ids, ``on_pass(module, args,
    kwargs)`` the language model's call (offset, length). Returns the implementation it
    replaced, for :func:`unhook`; the hook handles go to ``handles``."""
    config = adapter.text_config
    saved = config._attn_implementation
    config._attn_implementation = ATTENTION_NAME
    handles.append(adapter.embeddings.register_forward_pre_hook(on_ids))
    handles.append(adapter.language_model.register_forward_pre_hook(on_pass, with_kwargs=True))
    return saved


def unhook(adapter: Any, handles: list[Any], attribute: str, owner: Any, saved_impl: Any) -> None:
    """Undo what a recording or an intervention installed: its hooks, its mark on the
    attention modules (``attribute`` set to ``owner``) and the attention implementation."""
    for handle in handles:
        handle.remove()
    handles.clear()
    for layer in range(adapter.num_layers):
        module = adapter.attention(layer)
        if getattr(module, attribute, None) is owner:
            delattr(module, attribute)
    if saved_impl is not None:
        adapter.text_config._attn_implementation = saved_impl


def _stack_on_host(tensors: list[Tensor]) -> Tensor:
    """Stack on the device, then one copy to the host (layers split over devices: per tensor)."""
    if len({t.device for t in tensors}) == 1:
        return torch.stack(tensors).cpu()
    return torch.stack([t.cpu() for t in tensors])


@dataclass(frozen=True)
class _RowGroup:
    """The captured query rows of one batch item in one forward pass, and what they hold.

    Each layer's rows are kept together (one tensor per layer) until the run ends, so
    recording a layer costs a handful of tensor operations whatever the number of rows.
    """

    batch: int
    rows: Tensor | None  # query indices within the pass; None when they are every row
    positions: list[int]  # absolute positions
    first_position: int
    attention: dict[int, Tensor] = field(default_factory=dict)  # layer: [head, row, key]
    hidden: dict[int, Tensor] = field(default_factory=dict)  # layer: [row, hidden]

    def take(self, tensor: Tensor, dim: int) -> Tensor:
        """This group's query rows of ``tensor`` (one batch item), along ``dim``."""
        if self.rows is None:
            return tensor
        return tensor.index_select(dim, self.rows.to(tensor.device))


def _kept(tensor: Tensor) -> Tensor:
    """``tensor`` as the trace keeps it: float32, out of any autograd graph.

    The dtype and the grad flag are tested rather than calling ``.float()`` / ``.detach()``
    unconditionally: every tensor call counts when a GPU is kept waiting on the host.
    """
    if tensor.requires_grad:
        tensor = tensor.detach()
    return tensor if tensor.dtype == torch.float32 else tensor.float()


class Recorder:
    """Record attention rows and hidden states of a HF LLaVA model. See module docstring.

    Args:
        model: a supported model (LLaVA-1.5, LLaVA-NeXT, Qwen2-VL / Qwen2.5-VL).
        queries: which query tokens (positions, ``"generated"``, or a token-id predicate).
        layers: decoder layers to capture (default all; negative indices count from the end).
        heads: attention heads to keep (default all).
        keys: ``"image"`` (the image-token columns, found in the prompt) or ``"all"``.
        attention: capture attention rows.
        hidden_states: capture the residual stream after each captured layer.
        include_prompt: with a predicate, also test prompt tokens (default: generated only).

    Raises:
        CaptureError: on creation, bad layers, heads, keys or query positions; on entry,
            a Recorder used a second time or one nested in another recording of the model;
            on exit, query positions the run never reached.
        UnsupportedModelError: ``model`` is not a LLaVA model.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        queries: QuerySpec = "generated",
        layers: Iterable[int] | None = None,
        heads: Iterable[int] | None = None,
        keys: str = "image",
        attention: bool = True,
        hidden_states: bool = True,
        include_prompt: bool = False,
    ) -> None:
        self.adapter = adapter_for(model)
        self.model = model
        self.layers = _normalise(layers, self.adapter.num_layers, "layer")
        self.heads = _normalise(heads, self.adapter.num_heads, "head")
        if keys not in ("image", "all"):
            raise CaptureError(f"keys must be 'image' or 'all', got {keys!r}")
        if not (attention or hidden_states):
            raise CaptureError("nothing to capture: attention and hidden_states are both off")
        self.keys = keys
        self.capture_attention = attention
        self.capture_hidden = hidden_states
        self.include_prompt = include_prompt
        self._positions: dict[int | None, set[int]] | None = None
        self._predicate: Callable[[int], bool] | None = None
        self._generated = False
        if isinstance(queries, str):
            if queries != "generated":
                raise CaptureError(
                    f"queries must be 'generated', positions or a predicate; got {queries!r}"
                )
            self._generated = True
        elif callable(queries):
            self._predicate = queries
        else:
            self._positions = _query_positions(queries)
        self.trace = Trace(layers=self.layers, heads=self.heads, key_mode=keys, backend="native")
        self._handles: list[Any] = []
        self._saved_impl: Any = None
        self._entered = False
        self._claimed: torch.nn.Module | None = None
        self._reset_pass_state()
        self._seen_positions: dict[int, int] = {}

    # -- context management ------------------------------------------------------------------
    def __enter__(self) -> Recorder:
        self._claim()
        # eager / flash models run the output through SDPA while recording
        self._saved_impl = hook_passes(
            self.adapter, self._handles, self._on_embeddings, self._on_language_model
        )
        try:
            for layer in self.layers:
                self.adapter.attention(layer)._somprobe_recorder = self  # type: ignore[assignment]
                if self.capture_hidden:
                    hook = self._make_hidden_hook(layer)
                    self._handles.append(self.adapter.layers[layer].register_forward_hook(hook))
        except Exception:
            self._restore()
            raise
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._restore()
        if exc_type is None:
            self._finish()

    def _claim(self) -> None:
        """Mark the model as recorded by this object; refuse reuse and nesting.

        Nothing on the model is touched before the claim succeeds, so a refused Recorder
        leaves an outer one (and the model) exactly as they were.
        """
        if self._entered:
            raise CaptureError(
                "this Recorder was already used; a Recorder records one run: make a new one "
                "for each run (a Recorder can be entered once)"
            )
        with _RECORDING_LOCK:
            language_model = self.adapter.language_model
            if _recording_on(language_model) is not None:
                raise CaptureError(_NESTED)
            _RECORDING[language_model] = weakref.ref(self)
        self._claimed = language_model
        self._entered = True

    def _release(self) -> None:
        with _RECORDING_LOCK:
            if self._claimed is not None and _recording_on(self._claimed) is self:
                del _RECORDING[self._claimed]
            self._claimed = None

    def _restore(self) -> None:
        unhook(self.adapter, self._handles, "_somprobe_recorder", self, self._saved_impl)
        self._release()

    # -- per forward pass ----------------------------------------------------------------------
    def _reset_pass_state(self) -> None:
        self._pass_ids: Tensor | None = None
        self._step = -1
        self._key_index: dict[int, Tensor] = {}
        self._key_index_on: dict[tuple[int, torch.device], Tensor] = {}
        # per pass: the rows grouped by batch item, planned once before the layers run
        self._groups: list[_RowGroup] = []
        self._all_groups: list[_RowGroup] = []  # every pass's groups, for the trace
        self._head_indices: dict[tuple[Any, int], tuple[Tensor | None, Tensor | None]] = {}

    def _on_embeddings(self, module: torch.nn.Module, args: tuple[Any, ...]) -> None:
        self._pass_ids = args[0] if args and isinstance(args[0], Tensor) else None

    def _on_language_model(
        self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        embeds = kwargs.get("inputs_embeds")
        if embeds is None:
            raise CaptureError(
                "the Recorder needs the language model to be called with inputs_embeds"
            )
        batch, q_len = embeds.shape[:2]
        cache = kwargs.get("past_key_values")
        offset = int(cache.get_seq_length()) if cache is not None else 0
        ids = self._pass_ids
        self._pass_ids = None
        if ids is not None and tuple(ids.shape) != (batch, q_len):
            ids = None
        if offset == 0:
            if self._step >= 0:
                raise CaptureError(
                    "a second prompt was run inside one Recorder; use one `with Recorder(...)` "
                    "per generate() or forward() call"
                )
            self.trace.prompt_length = q_len
            self._find_keys(ids, batch)
        self._step += 1
        id_lists = ids.tolist() if ids is not None else None  # one device read per pass
        rows = self._select(id_lists, batch, q_len, offset)
        for b, i, pos in rows:
            token = id_lists[b][i] if id_lists is not None else -1
            self.trace.records.append(QueryRecord(b, pos, token, self._step))
        self._groups = self._plan_groups(rows, q_len, embeds.device)
        self._all_groups += self._groups
        for b in range(batch):
            self._seen_positions[b] = offset + q_len

    def _find_keys(self, ids: Tensor | None, batch: int) -> None:
        if self.keys != "image" or not self.capture_attention:
            return
        if ids is None:
            raise CaptureError(
                "keys='image' needs input_ids in the prompt pass to find the image tokens; "
                "pass input_ids (not inputs_embeds) or use keys='all'"
            )
        image_id = self.adapter.image_token_id
        for b in range(batch):
            positions = torch.nonzero(ids[b] == image_id).flatten()
            if positions.numel() == 0:
                raise CaptureError(
                    f"sequence {b} has no image tokens to use as keys; give it an image or "
                    "use keys='all'"
                )
            self._key_index[b] = positions
            self.trace.set_keys(b, positions)

    def _select(
        self, ids: list[list[int]] | None, batch: int, q_len: int, offset: int
    ) -> list[tuple[int, int, int]]:
        prompt_length = self.trace.prompt_length or 0
        rows: list[tuple[int, int, int]] = []
        if self._positions is not None:
            for b in range(batch):
                wanted = self._positions.get(b, self._positions.get(None, set()))
                rows.extend(
                    (b, p - offset, p) for p in sorted(wanted) if offset <= p < offset + q_len
                )
            return rows
        if ids is None:
            raise CaptureError(
                "selecting generated tokens needs input_ids in every forward pass; "
                "call generate()/forward() with input_ids"
            )
        pad_id = getattr(self.adapter.text_config, "pad_token_id", None)
        first = 0  # prompt tokens are skipped unless a predicate may include them
        if not (self.include_prompt and self._predicate):
            first = max(0, min(q_len, prompt_length - offset))
        for b in range(batch):
            row_ids = ids[b]
            for i in range(first, q_len):
                pos = offset + i
                token = row_ids[i]
                if self._generated:
                    if token != pad_id:
                        rows.append((b, i, pos))
                elif self._predicate is not None and self._predicate(token):
                    rows.append((b, i, pos))
        return rows

    # -- hooks called inside the model -------------------------------------------------------
    def _record_attention(
        self,
        module: torch.nn.Module,
        query: Tensor,
        key: Tensor,
        mask: Tensor | None,
        scaling: float | None,
    ) -> None:
        if not self.capture_attention or not self._groups:
            return
        layer = int(module.layer_idx)  # type: ignore[arg-type]
        n_heads, kv_len = query.shape[1], key.shape[2]
        n_rep = n_heads // key.shape[1]
        heads, kv_heads = self._heads_for(query.device, n_heads, n_rep)
        scale = scaling if scaling is not None else query.shape[-1] ** -0.5
        for group in self._groups:
            b = group.batch
            q = group.take(query[b] if heads is None else query[b].index_select(0, heads), 1)
            k = key[b] if kv_heads is None else key[b].index_select(0, kv_heads)
            q, k = _kept(q), _kept(k)  # the KV cache is never copied for a float32 model
            scores = torch.matmul(q * scale, k.transpose(-1, -2))  # [H, n, kv], small side scaled
            if mask is not None or group.first_position < kv_len - 1:
                scores = self._apply_mask(scores, mask, group, kv_len, heads)
            probs = torch.softmax(scores, dim=-1)
            if self.keys == "image":
                probs = probs.index_select(-1, self._keys_on(b, probs.device))
            group.attention[layer] = _kept(probs)

    def _keys_on(self, batch: int, device: torch.device) -> Tensor:
        """The image-key columns of ``batch`` as an index tensor on ``device`` (made once)."""
        index = self._key_index_on.get((batch, device))
        if index is None:
            index = self._key_index[batch].to(device)
            self._key_index_on[(batch, device)] = index
        return index

    def _heads_for(
        self, device: torch.device, n_heads: int, n_rep: int
    ) -> tuple[Tensor | None, Tensor | None]:
        """Query-head and KV-head indices; None where the selection keeps every head as is."""
        cached = self._head_indices.get((device, n_rep))
        if cached is None:
            every = self.heads == list(range(n_heads))
            heads = torch.tensor(self.heads, device=device)
            kv_heads = torch.div(heads, n_rep, rounding_mode="floor")
            cached = (None if every else heads, None if every and n_rep == 1 else kv_heads)
            self._head_indices[(device, n_rep)] = cached
        return cached

    def _plan_groups(
        self, rows: list[tuple[int, int, int]], q_len: int, device: torch.device
    ) -> list[_RowGroup]:
        """This pass's rows by batch item, worked out once for all layers.

        Index tensors are made here, before the layers run, so that no host-to-device copy
        (which waits for the GPU) falls between the layers' kernels; a group that keeps
        every query row of the pass (one decoding step) needs none.
        """
        by_batch: dict[int, list[tuple[int, int]]] = {}
        for b, index, pos in rows:  # (batch, query index, position)
            by_batch.setdefault(b, []).append((index, pos))
        groups = []
        for b, items in by_batch.items():
            indices = [i for i, _ in items]
            positions = [p for _, p in items]
            every_row = indices == list(range(q_len))
            selected = None if every_row else torch.tensor(indices, device=device)
            groups.append(_RowGroup(b, selected, positions, min(positions)))
        return groups

    @staticmethod
    def _apply_mask(
        scores: Tensor, mask: Tensor | None, group: _RowGroup, kv_len: int, heads: Tensor | None
    ) -> Tensor:
        if mask is None:  # plain causal attention, no padding: hide the future keys
            pos = torch.tensor(group.positions, device=scores.device)
            allowed = torch.arange(kv_len, device=scores.device)[None, :] <= pos[:, None]
            return scores.masked_fill(~allowed[None], float("-inf"))
        b = group.batch
        per_item = mask[b if mask.shape[0] > 1 else 0]  # [1 or head, query, key]
        if per_item.shape[0] > 1 and heads is not None:  # a per-head mask (a knockout)
            per_item = per_item.index_select(0, heads.to(per_item.device))
        rows = group.take(per_item, 1)[..., :kv_len]
        if rows.dtype == torch.bool:
            return scores.masked_fill(~rows, float("-inf"))
        return scores + rows.float()

    def _make_hidden_hook(self, layer: int) -> Callable[..., None]:
        def hook(module: torch.nn.Module, args: Any, output: Any) -> None:
            hidden = output[0] if isinstance(output, tuple) else output
            for group in self._groups:
                group.hidden[layer] = _kept(group.take(hidden[group.batch], 0))  # [row, hidden]

        return hook

    # -- assembling the trace ------------------------------------------------------------------
    def _finish(self) -> None:
        if self._positions is not None:
            check_reached(self._positions, self._seen_positions)
        # one device-to-host copy per group and kind; rows are split on the host, and each
        # group's per-layer tensors are let go as soon as they are copied
        groups, self._all_groups = self._all_groups, []
        for group in groups:
            keys = [(group.batch, p) for p in group.positions]
            if self.capture_attention:
                stacked = _stack_on_host([group.attention.pop(la) for la in self.layers])
                for key, rows in zip(keys, stacked.unbind(2), strict=True):
                    self.trace._attention[key] = rows.contiguous()  # [layer, head, key]
            if self.capture_hidden:
                stacked = _stack_on_host([group.hidden.pop(la) for la in self.layers])
                for key, rows in zip(keys, stacked.unbind(1), strict=True):
                    self.trace._hidden[key] = rows.contiguous()  # [layer, hidden]
