"""The nnsight backend: eager attention maps and layer outputs read through an nnsight trace.

The Hugging Face model is wrapped with ``nnsight.NNsight`` (no loading, no hub) and
switched to eager attention for the run only, so each text layer's ``self_attn`` returns
its attention probabilities. The trace body reads, per forward pass and per captured
layer, ``self_attn.output[1]`` (``[batch, head, query, key]``) and the layer's output
(the residual stream); during generation it walks the passes with a bounded
``tracer.iter[:max_new_tokens]`` loop. Which rows are kept is decided exactly as in the
native Recorder (:class:`~somprobe.capture.collector.MapCollector`). Afterwards the model
is put back as it was (nnsight's per-module controllers removed, attention restored),
also after an exception.

Example:
    >>> trace, ids = capture_nnsight(model, inputs, {"queries": "generated"}, 8, {})
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from somprobe.capture.collector import BackendUnavailableError, MapCollector
from somprobe.capture.model_state import restored_afterwards
from somprobe.capture.trace import Trace
from somprobe.errors import CaptureError
from somprobe.models.adapters import resolve_path

# nnsight warns when a bounded step loop asks for more passes than generate ran (EOS)
_SHORT_RUN_WARNING = r".*was never reached: the loop asked for a step the run did not make"


def _import_nnsight() -> Any:
    try:
        import nnsight
    except ImportError as err:
        raise BackendUnavailableError(
            "backend='nnsight' needs nnsight 0.8 (pip install 'nnsight>=0.8,<0.9', or the "
            f"somprobe[backends] extra); it could not be imported: {err}"
        ) from err
    return nnsight


def _read_pass(layers_envoy: Any, layers: list[int], collector: MapCollector) -> None:
    """Inside the trace body: hand one forward pass's maps and outputs to the collector."""
    for layer in layers:  # in execution order: attention, then the layer's output
        if collector.capture_attention:
            weights = layers_envoy[layer].self_attn.output[1]
            if weights is None:
                raise CaptureError(
                    f"layer {layer}'s attention returned no probabilities; the nnsight "
                    "backend needs eager attention"
                )
            collector.take_attention(layer, weights)
        if collector.capture_hidden:
            collector.take_hidden(layer, layers_envoy[layer].output)


def capture_nnsight(
    model: torch.nn.Module,
    inputs: Mapping[str, Any],
    options: Mapping[str, Any],
    max_new_tokens: int,
    generate_kwargs: Mapping[str, Any],
) -> tuple[Trace, Tensor | None]:
    """Run one forward pass (``max_new_tokens == 0``) or ``generate`` under nnsight."""
    nnsight = _import_nnsight()
    collector = MapCollector(model, backend="nnsight", **options)
    layers = collector.layers
    outputs: list[Any] = []

    def generate(**kwargs: Any) -> Any:
        out = model.generate(**kwargs)  # type: ignore[operator]
        outputs.append(out)
        return out

    with restored_afterwards(model), torch.no_grad():
        if collector.capture_attention:
            model.set_attn_implementation("eager")  # type: ignore[operator]
        envoy = nnsight.NNsight(model)
        layers_envoy = resolve_path(envoy, collector.adapter.decoder_layers_path)
        with collector:
            if max_new_tokens:
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message=_SHORT_RUN_WARNING)
                    with envoy.trace(
                        fn=generate, **inputs, max_new_tokens=max_new_tokens, **generate_kwargs
                    ) as tracer:
                        for _ in tracer.iter[:max_new_tokens]:
                            _read_pass(layers_envoy, layers, collector)
            else:
                with envoy.trace(**inputs, use_cache=False):
                    _read_pass(layers_envoy, layers, collector)
    sequences = None
    if outputs:
        sequences = getattr(outputs[0], "sequences", outputs[0])
    return collector.trace, sequences
