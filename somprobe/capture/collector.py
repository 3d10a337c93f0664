"""The Recorder's query bookkeeping, fed with what another framework computed.

The nnsight and TransformerLens backends run the model with eager attention, so the
framework hands over full attention maps ``[batch, head, query, key]`` and layer outputs.
:class:`MapCollector` decides which query rows each forward pass captures exactly as the
native :class:`~somprobe.capture.Recorder` does (the same two pre-hooks on the embedding
and the language model read the token ids and the KV-cache offset), keeps the selected
rows, heads and key columns of each map, and assembles the same :class:`Trace`.

Example:
    >>> collector = MapCollector(model, backend="nnsight", queries="generated")
    >>> with collector:
    ...     ...  # run the model; per layer: collector.take_attention(layer, weights)
    ...     ...  #                          collector.take_hidden(layer, layer_output)
    >>> collector.trace
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from somprobe.capture.recorder import Recorder, _kept
from somprobe.errors import CaptureError


class BackendUnavailableError(CaptureError):
    """A capture backend's package is missing, or it tried to install something at run time."""


class MapCollector(Recorder):
    """Select query rows like the Recorder; take attention maps and hidden states as given.

    Args:
        model: a ``LlavaForConditionalGeneration``.
        backend: the name written to ``trace.backend``.
        **options: the Recorder's options (queries, layers, heads, keys, attention,
            hidden_states, include_prompt).
    """

    def __init__(self, model: torch.nn.Module, *, backend: str, **options: Any) -> None:
        super().__init__(model, **options)
        self.trace.backend = backend
        self._heads_index = torch.tensor(self.heads)

    def __enter__(self) -> MapCollector:
        self._claim()  # one recording per model: refuses nesting inside a Recorder
        try:
            # read the modules now: a framework may have swapped them in already
            self._handles.append(
                self.adapter.embeddings.register_forward_pre_hook(self._on_embeddings)
            )
            self._handles.append(
                self.adapter.language_model.register_forward_pre_hook(
                    self._on_language_model, with_kwargs=True
                )
            )
        except Exception:
            self._restore()
            raise
        return self

    def _restore(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._release()

    def take_attention(self, layer: int, weights: Float[Tensor, "batch head query key"]) -> None:
        """Keep the selected rows, heads and key columns of one layer's attention map."""
        if not self.capture_attention:
            return
        heads = self._heads_index.to(weights.device)
        for group in self._groups:
            probs = _kept(group.take(weights[group.batch].index_select(0, heads), 1))
            if self.keys == "image":
                probs = probs.index_select(-1, self._keys_on(group.batch, probs.device))
            group.attention[layer] = probs

    def take_hidden(self, layer: int, output: Any) -> None:
        """Keep the selected rows of one decoder layer's output (the residual stream)."""
        if not self.capture_hidden:
            return
        hidden = output[0] if isinstance(output, tuple) else output
        for group in self._groups:
            group.hidden[layer] = _kept(group.take(hidden[group.batch], 0))

    def _finish(self) -> None:
        for group in self._all_groups:
            for what, parts, wanted in (
                ("attention", group.attention, self.capture_attention),
                ("hidden", group.hidden, self.capture_hidden),
            ):
                missing = [la for la in self.layers if la not in parts] if wanted else []
                if missing:
                    raise CaptureError(
                        f"the {self.trace.backend} backend delivered no {what} for layer(s) "
                        f"{missing} at sequence {group.batch}, position(s) {group.positions}; "
                        "the model ran a path the backend does not observe (is it a "
                        "standard LLaVA?)"
                    )
        super()._finish()
