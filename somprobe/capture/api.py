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

from somprobe.capture.recorder import QuerySpec, Recorder
from somprobe.capture.trace import Trace
from somprobe.errors import CaptureError, InputError
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
        model: a ``LlavaForConditionalGeneration``.
        inputs: the processor's output (``input_ids``, ``attention_mask``, ``pixel_values``).
        backend: "native", "nnsight" or "transformer_lens".
        queries: positions (list, or ``{batch: [positions]}``), ``"generated"``, or a
            predicate on token ids such as :func:`~somprobe.capture.digit_token_filter`.
        layers, heads, keys, attention, hidden_states, include_prompt: as for
            :class:`~somprobe.capture.Recorder`.
        max_new_tokens: 0 runs one forward pass over ``inputs``; more runs ``generate``.
        **generate_kwargs: passed to ``model.generate`` (``do_sample`` defaults to False).

    Raises:
        InputError: an unknown backend, no ``input_ids``, or generation options without
            generation.
        CaptureError: a query spec that can select nothing in a forward pass, bad layers,
            heads or positions, a backend that is not installed.
    """
    if backend not in BACKENDS:
        raise InputError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if "input_ids" not in inputs:
        raise InputError(
            "inputs need input_ids (the processor's output: input_ids, attention_mask, "
            "pixel_values)"
        )
    if int(max_new_tokens) < 0:
        raise InputError(
            f"max_new_tokens must be 0 (one forward pass) or more, got {max_new_tokens}"
        )
    if not max_new_tokens:
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
    model_inputs = to_model(model, inputs)
    generate_kwargs.setdefault("do_sample", False)
    run = _runner(backend)
    trace, sequences = run(model, model_inputs, options, int(max_new_tokens), generate_kwargs)
    return CaptureResult(trace=trace, sequences=sequences)


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
