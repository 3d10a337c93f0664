"""One entry point for every capture backend: the same inputs give the same :class:`Trace`.

``capture(model, inputs, backend=...)`` runs one teacher-forced forward pass
(``max_new_tokens=0``) or ``generate`` and records attention rows and hidden states at
the query tokens asked for:

* ``"native"`` — the :class:`~somprobe.capture.Recorder`: SDPA kept on, only the
  selected rows recomputed (the fast, small one);
* ``"nnsight"`` — an nnsight 0.8 trace over the model with eager attention;
* ``"transformer_lens"`` — TransformerLens 4.3's ``TransformerBridge`` hook points.

All three share the row selection (positions are indices into the padded sequence), so
their traces hold the same rows; the model is left as it was afterwards. Generation is
greedy unless ``do_sample=True`` is passed.

Example:
    >>> result = capture(model, inputs, backend="nnsight", queries="generated",
    ...                  max_new_tokens=8)
    >>> result.trace.attention(0, int(inputs["input_ids"].shape[1])).shape
    torch.Size([layer, head, key])
    >>> result.sequences                     # generate's ids
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from somprobe.capture.recorder import QuerySpec, Recorder, _as_index, ensure_not_recording
from somprobe.capture.trace import Trace
from somprobe.errors import CaptureError, InputError
from somprobe.models.adapters import adapter_for, check_inputs
from somprobe.models.inputs import to_model

Backend = Literal["native", "nnsight", "transformer_lens"]
BACKENDS: tuple[str, ...] = ("native", "nnsight", "transformer_lens")


@dataclass
class CaptureResult:
    """What a capture returns: the trace and, when generating, ``generate``'s ids."""

    trace: Trace
    sequences: Tensor | None = None


def capture(
    model: torch.nn.Module,
    inputs: Mapping[str, Any],
    *,
    backend: Backend = "native",
    queries: QuerySpec = "generated",
    layers: Iterable[int] | None = None,
    heads: Iterable[int] | None = None,
    keys: str = "image",
    attention: bool = True,
    hidden_states: bool = True,
    include_prompt: bool = False,
    max_new_tokens: int = 0,
    **generate_kwargs: Any,
) -> CaptureResult:
    """Capture attention rows and hidden states with the chosen backend.

    Args:
        model: a supported model (LLaVA-1.5, LLaVA-NeXT, Qwen2-VL / Qwen2.5-VL).
        inputs: the processor's output (``input_ids``, ``attention_mask``, ``pixel_values``).
        backend: "native", "nnsight" or "transformer_lens".
        queries: positions (list, or ``{batch: [positions]}``), ``"generated"``, or a
            predicate on token ids such as :func:`~somprobe.capture.digit_token_filter`.
        layers, heads, keys, attention, hidden_states, include_prompt: as for
            :class:`~somprobe.capture.Recorder`.
        max_new_tokens: 0 runs one forward pass over ``inputs``; more runs ``generate``.
        **generate_kwargs: passed to ``model.generate`` (``do_sample`` defaults to False).

    Raises:
        InputError: an unknown backend, inputs that are not the processor's output (no
            ``input_ids``, ids that are not integer token ids of this model, image inputs
            made by another model family's processor), a bad
            ``max_new_tokens``, or generation options without generation.
        CaptureError: a query spec that can select nothing in a forward pass, bad layers,
            heads or positions, a backend that is not installed, or a Recorder that is
            already recording this model (captures cannot be nested).
    """
    if backend not in BACKENDS:
        raise InputError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if not isinstance(inputs, Mapping):
        raise InputError(
            f"inputs must be a mapping (the processor's output: input_ids, attention_mask, "
            f"pixel_values), got {type(inputs).__name__}"
        )
    if "input_ids" not in inputs:
        raise InputError(
            "inputs need input_ids (the processor's output: input_ids, attention_mask, "
            "pixel_values)"
        )
    check_inputs(model, inputs)
    _check_token_ids(model, inputs["input_ids"])
    new_tokens = _as_index(max_new_tokens)
    if new_tokens is None or new_tokens < 0:
        raise InputError(
            f"max_new_tokens must be an integer: 0 (one forward pass) or more, got "
            f"{max_new_tokens!r}"
        )
    if not new_tokens:
        if generate_kwargs:
            raise InputError(
                f"generation options {sorted(generate_kwargs)} were given with max_new_tokens=0 "
                "(one forward pass); set max_new_tokens to generate"
            )
        if isinstance(queries, str) or (callable(queries) and not include_prompt):
            raise CaptureError(
                "a forward pass generates nothing, so queries='generated' or a token "
                "predicate without include_prompt=True would capture nothing; give "
                "positions, set include_prompt=True, or set max_new_tokens"
            )
    options: dict[str, Any] = {
        "queries": queries,
        "layers": layers,
        "heads": heads,
        "keys": keys,
        "attention": attention,
        "hidden_states": hidden_states,
        "include_prompt": include_prompt,
    }
    Recorder(model, **options)  # validates the options before any backend is imported
    ensure_not_recording(model)
    model_inputs = to_model(model, inputs)
    generate_kwargs.setdefault("do_sample", False)
    run = _runner(backend)
    trace, sequences = run(model, model_inputs, options, new_tokens, generate_kwargs)
    return CaptureResult(trace=trace, sequences=sequences)


def _check_token_ids(model: torch.nn.Module, ids: Any) -> None:
    """``input_ids`` must be a (batch, sequence) tensor of this model's token ids."""
    try:
        tensor = torch.as_tensor(ids)
    except (TypeError, ValueError, RuntimeError) as err:
        raise InputError(
            f"input_ids must be a tensor of token ids, got {type(ids).__name__}"
        ) from err
    if tensor.dtype.is_floating_point or tensor.dtype.is_complex or tensor.dtype == torch.bool:
        raise InputError(f"input_ids must hold integer token ids, got dtype {tensor.dtype}")
    if tensor.ndim != 2 or tensor.numel() == 0:
        raise InputError(
            f"input_ids must have shape (batch, sequence) and hold tokens, got "
            f"{tuple(tensor.shape)}; use the processor's output (prepare_inputs)"
        )
    vocab = int(adapter_for(model).embeddings.num_embeddings)  # type: ignore[arg-type]
    low, high = int(tensor.min()), int(tensor.max())
    if low < 0 or high >= vocab:
        bad = low if low < 0 else high
        raise InputError(
            f"input_ids hold token id {bad}, outside the vocabulary of this model (0..{vocab - 1}); "
            "were they made by this model's processor?"
        )


Runner = Callable[
    [torch.nn.Module, Mapping[str, Any], Mapping[str, Any], int, Mapping[str, Any]],
    tuple[Trace, Tensor | None],
]


def _runner(backend: str) -> Runner:
    if backend == "nnsight":
        from somprobe.capture.nnsight_backend import capture_nnsight

        return capture_nnsight
    if backend == "transformer_lens":
        from somprobe.capture.tl_backend import capture_transformer_lens

        return capture_transformer_lens
    return _capture_native


def _capture_native(
    model: torch.nn.Module,
    inputs: Mapping[str, Any],
    options: Mapping[str, Any],
    max_new_tokens: int,
    generate_kwargs: Mapping[str, Any],
) -> tuple[Trace, Tensor | None]:
    recorder = Recorder(model, **options)
    sequences = None
    with torch.no_grad(), recorder:
        if max_new_tokens:
            out = model.generate(**inputs, max_new_tokens=max_new_tokens, **generate_kwargs)  # type: ignore[operator]
            sequences = getattr(out, "sequences", out)
        else:
            model(**inputs, use_cache=False)
    return recorder.trace, sequences
