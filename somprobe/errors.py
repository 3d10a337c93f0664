"""One exception family for somprobe.

Every error a user can trigger with bad input is a :class:`SomprobeError`, and its
message says what was wrong and what to do about it.

Example:
    >>> from somprobe.errors import SomprobeError, InputError
    >>> try:
    ...     raise InputError("mask has shape (3, 4) but the image is 5×6; resize the mask")
    ... except SomprobeError as err:
    ...     print(type(err).__name__)
    InputError
"""

from __future__ import annotations

import operator
from typing import Any


class SomprobeError(Exception):
    """Base class of every error somprobe raises on purpose."""


class InputError(SomprobeError, ValueError):
    """An argument, array, image or file has the wrong shape, type or content."""


class ModelLoadError(SomprobeError, OSError):
    """A model or processor could not be loaded (missing offline, wrong family, ...)."""


class UnsupportedModelError(SomprobeError, TypeError):
    """The model is not of a family somprobe has an adapter for (e.g. not LLaVA)."""


class LayoutError(SomprobeError, ValueError):
    """Image tokens in the prompt and the images given do not match."""


class DataFormatError(SomprobeError, ValueError):
    """A data record (LLaVA JSON, TagSet JSON, ...) is malformed; the message names it."""


class CaptureError(SomprobeError, RuntimeError):
    """A capture request cannot be satisfied (position past the sequence, bad layer, ...)."""


class TagMentionError(SomprobeError, ValueError):
    """Tag mentions and a trace or tag set do not fit together."""


class ProbeError(SomprobeError, ValueError):
    """A probe dataset cannot be fitted (one class, too few samples, NaNs, ...)."""


class WriteError(SomprobeError, OSError):
    """An output file or folder cannot be written (no permission, not a folder, disk full)."""


def require_int(value: Any, what: str) -> int:
    """``value`` as an int (bools refused), or an :class:`InputError` naming ``what``."""
    if not isinstance(value, bool):
        try:
            return operator.index(value)
        except TypeError:
            pass
    raise InputError(f"{what} must be an integer, got {value!r}")


__all__ = [
    "CaptureError",
    "DataFormatError",
    "InputError",
    "LayoutError",
    "ModelLoadError",
    "ProbeError",
    "SomprobeError",
    "TagMentionError",
    "UnsupportedModelError",
    "WriteError",
    "require_int",
]
