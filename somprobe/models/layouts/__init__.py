"""One image-token layout per model family, and the registry that picks it.

Each family module (``llava``, ``llava_next``, ``qwen2_vl``) holds the arithmetic of its
processor and model: how many tokens an image becomes, in which order, and where each
token's patch lies in the original picture. :func:`family_for` picks the family of a
processor (by class, through its MRO) and :func:`family_for_model_type` that of a model
config's ``model_type``; :class:`somprobe.models.layout.ImageLayout` is the one entry point
users call.

Example:
    >>> from somprobe.models.layouts import family_for_model_type
    >>> family_for_model_type("llava_next").name
    'llava_next'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from somprobe.errors import UnsupportedModelError
from somprobe.models.layouts import llava, llava_next, qwen2_vl
from somprobe.models.layouts.base import ImageEntry, Inputs, Sizes, TokenIds

Builder = Callable[[Any, Inputs, TokenIds, Sizes], list[ImageEntry]]


@dataclass(frozen=True)
class LayoutFamily:
    """A family's name, the processor classes and model types it serves, its builder."""

    name: str
    processor_classes: tuple[str, ...]
    model_types: tuple[str, ...]
    build: Builder


FAMILIES: dict[str, LayoutFamily] = {}


def register_family(family: LayoutFamily) -> LayoutFamily:
    """Add ``family`` to the registry (a later family of the same name replaces it)."""
    FAMILIES[family.name] = family
    return family


for _module in (llava, llava_next, qwen2_vl):
    register_family(
        LayoutFamily(
            name=_module.NAME,
            processor_classes=_module.PROCESSOR_CLASSES,
            model_types=_module.MODEL_TYPES,
            build=_module.build_entries,
        )
    )


def supported() -> str:
    """The supported processor classes, for messages."""
    return ", ".join(c for f in FAMILIES.values() for c in f.processor_classes)


def family_for(processor: Any) -> LayoutFamily:
    """The layout family of ``processor`` (matched by class name along its MRO).

    Raises:
        UnsupportedModelError: no family serves this processor.
    """
    for klass in type(processor).__mro__:
        for family in FAMILIES.values():
            if klass.__name__ in family.processor_classes:
                return family
    raise UnsupportedModelError(
        f"no image-token layout for a {type(processor).__name__}; somprobe supports the "
        f"processors {supported()} (pass the processor that load_model returned)"
    )


def family_for_model_type(model_type: str | None) -> LayoutFamily:
    """The layout family of a config's ``model_type`` ("llava", "llava_next", ...).

    Raises:
        UnsupportedModelError: no family serves this model type.
    """
    for family in FAMILIES.values():
        if model_type in family.model_types:
            return family
    known = ", ".join(t for f in FAMILIES.values() for t in f.model_types)
    raise UnsupportedModelError(
        f"no image-token layout for model_type={model_type!r}; known: {known}"
    )


__all__ = [
    "FAMILIES",
    "LayoutFamily",
    "family_for",
    "family_for_model_type",
    "register_family",
    "supported",
]
