"""The TransformerLens backend: attention patterns and residual stream from TL hook points.

The already-loaded Hugging Face model is wrapped with TransformerLens 4.3's
``TransformerBridge`` (``build_bridge_from_module``: its LLaVA adapter, no model name, no
hub, no processor download). The bridge swaps its components into the model and switches
it to eager attention in place; both are undone when the capture ends, also after an
exception. While it is built, anything that tries to install a package at run time
(TransformerLens may ``pip install torchvision`` when a processor fails to load) is
refused with a :class:`BackendUnavailableError`.

Families: LLaVA-1.5 and LLaVA-NeXT go through TransformerLens' own adapters (tested
against the native Recorder). TransformerLens 4.3 has no Qwen2-VL adapter
(:class:`~somprobe.errors.UnsupportedModelError`), and its Qwen2.5-VL adapter needs
torchvision (:class:`BackendUnavailableError` without it); use the native or nnsight
backend for them.

The rows come from the TL hook points ``blocks.{layer}.attn.hook_pattern``
(``[batch, head, query, key]``) and ``blocks.{layer}.hook_resid_post``. A forward pass
runs through the bridge (``bridge(input_ids, pixel_values=..., attention_mask=...)``);
generation runs Hugging Face's ``generate`` loop through the bridge's components (what
``TransformerBridge.hf_generate`` does, without its overriding the pad token), so every
HF generation option works and the tokens equal the native backend's. TL's own
``TransformerBridge.generate`` loop is not used: it has no logits processors or
``min_new_tokens`` and pads finished sequences with EOS.

Example:
    >>> trace, ids = capture_transformer_lens(model, inputs, {"queries": "generated"}, 8, {})
"""

from __future__ import annotations

import copy
import logging
import os
import subprocess
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from somprobe.capture.collector import BackendUnavailableError, MapCollector
from somprobe.capture.model_state import restored_afterwards
from somprobe.capture.trace import Trace
from somprobe.errors import UnsupportedModelError

#: The model classes this backend is tested with (against the native Recorder).
TL_TESTED = (
    "LlavaForConditionalGeneration (LLaVA-1.5)",
    "LlavaNextForConditionalGeneration (LLaVA-NeXT)",
)


def _import_bridge_builder() -> tuple[Callable[..., Any], Callable[[Any], str]]:
    level = logging.getLogger("transformers").level  # TL lowers it on import; keep the user's
    try:
        from transformer_lens.model_bridge.sources import build_bridge_from_module
        from transformer_lens.model_bridge.sources._hf_format import (
            determine_architecture_from_hf_config,
        )
    except ImportError as err:
        raise BackendUnavailableError(
            "backend='transformer_lens' needs TransformerLens 4.3 (pip install "
            "'transformer-lens>=4.3,<4.4', or the somprobe[backends] extra); it could not be "
            f"imported: {err}"
        ) from err
    finally:
        logging.getLogger("transformers").setLevel(level)
    return build_bridge_from_module, determine_architecture_from_hf_config


def _mentions_install(command: Any) -> bool:
    words = command.split() if isinstance(command, str) else [str(w) for w in command]
    return any(os.path.basename(w) in ("pip", "pip3", "uv") for w in words) or "install" in words


@contextmanager
def refuse_runtime_installs() -> Iterator[None]:
    """Make ``subprocess``/``os.system`` calls that would install a package raise instead."""
    originals = {
        name: getattr(subprocess, name) for name in ("run", "call", "check_call", "check_output")
    }
    original_system = os.system

    def refuse(command: Any) -> None:
        raise BackendUnavailableError(
            f"TransformerLens tried to install a package at run time ({command!r}); somprobe "
            "never lets it. Install what is missing yourself (e.g. torchvision), offline if "
            "need be, and pass a model loaded from a local folder"
        )

    def guard(name: str) -> Callable[..., Any]:
        def guarded(*args: Any, **kwargs: Any) -> Any:
            command = args[0] if args else kwargs.get("args", "")
            if _mentions_install(command):
                refuse(command)
            return originals[name](*args, **kwargs)

        return guarded

    def guarded_system(command: Any) -> int:
        if _mentions_install(command):
            refuse(command)
        return original_system(command)

    for name in originals:
        setattr(subprocess, name, guard(name))
    os.system = guarded_system
    try:
        yield
    finally:
        for name, function in originals.items():
            setattr(subprocess, name, function)
        os.system = original_system


def build_bridge(model: torch.nn.Module) -> Any:
    """Wrap ``model`` (in place) in a TransformerLens bridge; offline, no installs.

    Raises:
        UnsupportedModelError: TransformerLens has no adapter for the model's architecture
            (Qwen2-VL in TransformerLens 4.3).
        BackendUnavailableError: its adapter needs a library that is not installed
            (TransformerLens 4.3's Qwen2.5-VL adapter needs torchvision), or it tried to
            install one.
    """
    build_bridge_from_module, architecture_of = _import_bridge_builder()
    config = copy.deepcopy(model.config)
    unsupported = UnsupportedModelError(
        f"backend='transformer_lens': TransformerLens has no adapter for "
        f"{type(model).__name__} (model_type={getattr(config, 'model_type', None)!r}); "
        f"somprobe's TransformerLens backend is tested with {', '.join(TL_TESTED)}. Use "
        "backend='native' or 'nnsight'"
    )
    try:
        architecture = architecture_of(config)
    except ValueError as err:  # no architecture TransformerLens knows
        raise unsupported from err
    with refuse_runtime_installs():
        try:
            return build_bridge_from_module(model, architecture, hf_config=config)
        except ValueError as err:
            if "Unsupported architecture" not in str(err):
                raise
            raise unsupported from err
        except ImportError as err:  # an adapter's required library (torchvision, ...)
            raise BackendUnavailableError(
                f"backend='transformer_lens' cannot wrap a {type(model).__name__}: "
                f"TransformerLens' adapter for {architecture} needs a library that is not "
                f"installed ({err}). Install it, or use backend='native' or 'nnsight'"
            ) from err


def capture_transformer_lens(
    model: torch.nn.Module,
    inputs: Mapping[str, Any],
    options: Mapping[str, Any],
    max_new_tokens: int,
    generate_kwargs: Mapping[str, Any],
) -> tuple[Trace, Tensor | None]:
    """Run one forward pass (``max_new_tokens == 0``) or ``generate`` through a TL bridge."""
    collector = MapCollector(model, backend="transformer_lens", **options)
    hooks: list[tuple[str, Callable[..., None]]] = []
    for layer in collector.layers:
        if collector.capture_attention:
            hooks.append((f"blocks.{layer}.attn.hook_pattern", _attention_hook(collector, layer)))
        if collector.capture_hidden:
            hooks.append((f"blocks.{layer}.hook_resid_post", _hidden_hook(collector, layer)))
    sequences = None
    with restored_afterwards(model), torch.no_grad():
        bridge = build_bridge(model)
        with collector, bridge.hooks(fwd_hooks=hooks):
            if max_new_tokens:
                out = model.generate(**inputs, max_new_tokens=max_new_tokens, **generate_kwargs)  # type: ignore[operator]
                sequences = getattr(out, "sequences", out)
            else:
                rest = {k: v for k, v in inputs.items() if k != "input_ids"}
                bridge(inputs["input_ids"], **rest)
    return collector.trace, sequences


def _attention_hook(collector: MapCollector, layer: int) -> Callable[..., None]:
    def hook(pattern: Tensor, hook: Any) -> None:
        collector.take_attention(layer, pattern)

    return hook


def _hidden_hook(collector: MapCollector, layer: int) -> Callable[..., None]:
    def hook(resid: Tensor, hook: Any) -> None:
        collector.take_hidden(layer, resid)

    return hook
