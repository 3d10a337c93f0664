"""Put a model back exactly as it was after a framework has rewired it for a capture.

nnsight installs a controller ``forward`` on every module it wraps (and leaves it there);
TransformerLens' bridge replaces the model's submodules with its own components and
switches attention to eager, in place. :func:`restored_afterwards` records, for every
module of the model, its attribute dictionary (children, parameters, buffers, hook
tables, instance-level ``forward``) and, for every config, the attention
implementation, and writes them back on exit, also after an exception.

Example:
    >>> with restored_afterwards(model):
    ...     model.set_attn_implementation("eager")
    ...     ...                                    # wrap, hook, run
    >>> model.config.text_config._attn_implementation   # as before
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from torch import nn

_ATTN_FIELD = "_attn_implementation_internal"
_MISSING = object()


@dataclass
class _ModuleState:
    module: nn.Module
    attributes: dict[str, Any]
    tables: dict[str, dict[Any, Any]]  # contents of the dict-valued attributes

    @classmethod
    def take(cls, module: nn.Module) -> _ModuleState:
        attributes = dict(module.__dict__)
        tables = {k: dict(v) for k, v in attributes.items() if isinstance(v, dict)}
        return cls(module, attributes, tables)

    def put_back(self) -> None:
        current = self.module.__dict__
        for name in [k for k in current if k not in self.attributes]:
            del current[name]
        for name, value in self.attributes.items():
            if name in self.tables:
                value.clear()
                value.update(self.tables[name])
            current[name] = value


def _configs(model: nn.Module) -> list[Any]:
    """Every config object reachable from the model: nested sub-configs and modules'."""
    found: dict[int, Any] = {}
    pending = [getattr(model, "config", None)]
    pending += [getattr(m, "config", None) for m in model.modules()]
    while pending:
        config = pending.pop()
        if config is None or id(config) in found or not hasattr(config, "__dict__"):
            continue
        found[id(config)] = config
        pending += [getattr(config, key, None) for key in getattr(config, "sub_configs", {})]
    return list(found.values())


@contextmanager
def restored_afterwards(model: nn.Module) -> Iterator[None]:
    """Restore ``model``'s module tree, hooks, forwards, attention implementation on exit."""
    modules = [_ModuleState.take(m) for m in model.modules()]
    configs = [(c, c.__dict__.get(_ATTN_FIELD, _MISSING)) for c in _configs(model)]
    try:
        yield
    finally:
        for state in modules:
            state.put_back()
        for config, value in configs:
            if value is _MISSING:
                config.__dict__.pop(_ATTN_FIELD, None)
            else:
                config.__dict__[_ATTN_FIELD] = value


def attention_implementations(model: nn.Module) -> dict[str, Any]:
    """The attention implementation of the model's config and each nested sub-config."""
    config = getattr(model, "config", None)
    out: dict[str, Any] = {"": getattr(config, "_attn_implementation", None)}
    for key in getattr(config, "sub_configs", {}):
        sub = getattr(config, key, None)
        if sub is not None:
            out[key] = getattr(sub, "_attn_implementation", None)
    return out
