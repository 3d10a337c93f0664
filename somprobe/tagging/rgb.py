"""Turn any supported image into an 8-bit RGB array, with documented conversions.

Accepted inputs and what happens to them:

* PIL images: ``RGB`` as is; ``L``, ``1``, ``P``, ``CMYK``, ``YCbCr`` … converted by
  Pillow; images with alpha (``RGBA``, ``LA``, ``PA``, ``P`` with transparency) are
  composited over white; 16/32-bit integer modes (``I;16``, ``I``) are read as 16-bit
  values and scaled by 255/65535; ``F`` (float) must hold values in [0, 1].
* numpy arrays: ``(H, W)`` grayscale, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)``
  (alpha composited over white); dtypes ``uint8`` as is, ``uint16`` scaled by
  255/65535, ``bool`` to 0/255, floats must lie in [0, 1], other integer dtypes must lie
  in [0, 255].

Anything else raises :class:`~somprobe.errors.InputError`.

Example:
    >>> import numpy as np
    >>> as_rgb_array(np.zeros((2, 3), dtype=np.uint16)).shape
    (2, 3, 3)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from jaxtyping import UInt8
from PIL import Image

from somprobe.errors import InputError

_WIDE_INT_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}


def _over_white(rgba: np.ndarray) -> np.ndarray:
    rgb = rgba[..., :3].astype(np.float32)
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    return np.rint(rgb * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)


def _from_pil(image: Image.Image) -> np.ndarray:
    mode = image.mode
    if mode == "RGB":
        return np.asarray(image)
    if mode in _WIDE_INT_MODES:
        return _from_array(np.asarray(image).astype(np.uint16, copy=False), "16-bit image")
    if mode == "F":
        return _from_array(np.asarray(image), "float image")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info):
        return _over_white(np.asarray(image.convert("RGBA")))
    return np.asarray(image.convert("RGB"))


def _to_uint8(arr: np.ndarray, what: str) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if arr.dtype == np.uint16:
        return np.rint(arr.astype(np.float32) * (255.0 / 65535.0)).astype(np.uint8)
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or arr.min() < 0.0 or arr.max() > 1.0:
            raise InputError(
                f"{what} has float values outside [0, 1]; scale it to [0, 1] or pass uint8"
            )
        return np.rint(arr * 255.0).astype(np.uint8)
    if arr.dtype.kind in "iu":
        if arr.min() < 0 or arr.max() > 255:
            raise InputError(
                f"{what} has dtype {arr.dtype} with values outside [0, 255]; "
                "convert it to uint8 (or uint16 for 16-bit data)"
            )
        return arr.astype(np.uint8)
    raise InputError(f"{what} has unsupported dtype {arr.dtype}; pass uint8 RGB")


def _from_array(arr: np.ndarray, what: str) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = np.repeat(_to_uint8(arr, what)[..., None], 3, axis=2)
        return arr
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        arr = _to_uint8(arr, what)
        return _over_white(arr) if arr.shape[2] == 4 else arr
    raise InputError(
        f"{what} has shape {arr.shape}; expected (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)"
    )


def as_rgb_array(image: Any) -> UInt8[np.ndarray, "height width 3"]:
    """``image`` (PIL image or numpy array) as a C-contiguous ``uint8`` RGB array.

    Raises:
        InputError: unsupported type, shape, dtype or value range, or an empty image.
    """
    if isinstance(image, Image.Image):
        if image.width < 1 or image.height < 1:
            raise InputError(f"image has size {image.size}; it must be at least 1×1")
        arr = _from_pil(image)
    elif isinstance(image, np.ndarray):
        if image.size == 0:
            raise InputError(f"image array has shape {image.shape}, which holds no pixels")
        arr = _from_array(image, "image array")
    else:
        raise InputError(
            f"image must be a PIL.Image.Image or a numpy array, got {type(image).__name__}"
        )
    return np.ascontiguousarray(arr, dtype=np.uint8)
