"""Drawing Set-of-Mark tags: label text, font size, colours, label boxes, fills, outlines.

The geometry rules (documented here once, used by :func:`somprobe.marks.tag_regions`):

* **Font size**: ``max(min_font_size, round(18 * min(width, height) / 640))`` pixels, the
  SoM-LLaVA ~18 px at a shorter side of 640, scaled linearly with the shorter side, with a
  floor (default 10 px) so digits stay legible on small images (112-224 px).
* **Label box**: the tight ink box of the label (vertically united with the ink box of
  "0", so all digit boxes have one height), padded by ``max(1, round(0.2 * font_size))``
  on each side, centred on the mark center, then shifted to lie inside the image (and
  clipped where the image is smaller than the box).
* **Colours**: region colours come from ``numpy.random.default_rng(seed)``: hue uniform,
  saturation in [0.65, 1], value in [0.75, 1]; same seed, same colours.

Example:
    >>> label_text(27, "letter"), font_size_for(640, 480), font_size_for(112, 112)
    ('aa', 14, 10)
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from functools import lru_cache
from typing import Literal

import numpy as np
from jaxtyping import Bool, UInt8
from PIL import Image, ImageDraw, ImageFont

from somprobe.errors import InputError

RGB = tuple[int, int, int]
Box = tuple[int, int, int, int]
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont

REFERENCE_SHORT_SIDE = 640
REFERENCE_FONT_SIZE = 18
DARK_BACKGROUND_LUMINANCE = 80.0
LIGHT_BOX_LUMINANCE = 140.0


def label_text(tag_id: int, mode: Literal["number", "letter"]) -> str:
    """The text drawn for tag ``tag_id``: "12", or bijective base-26 letters (27 → "aa")."""
    if tag_id < 1:
        raise InputError(f"tag ids start at 1, got {tag_id}")
    if mode == "number":
        return str(tag_id)
    if mode == "letter":
        out = []
        n = tag_id
        while n > 0:
            n, rem = divmod(n - 1, 26)
            out.append(chr(ord("a") + rem))
        return "".join(reversed(out))
    raise InputError(f"label_mode must be 'number' or 'letter', got {mode!r}")


def font_size_for(
    width: int, height: int, *, base: int = REFERENCE_FONT_SIZE, minimum: int = 10
) -> int:
    """Font size in pixels for an image of ``width`` × ``height`` (see module docstring)."""
    return max(int(minimum), round(base * min(width, height) / REFERENCE_SHORT_SIDE))


@lru_cache(maxsize=64)
def load_font(size: int) -> Font:
    """Pillow's built-in scalable font at ``size`` px (bitmap fallback without FreeType)."""
    if size < 1:
        raise InputError(f"font size must be ≥ 1 px, got {size}")
    try:
        return ImageFont.load_default(size=size)
    except (ImportError, OSError, TypeError):  # Pillow built without FreeType
        return ImageFont.load_default()


def region_colors(n: int, seed: int) -> list[RGB]:
    """``n`` saturated, seeded colours (see module docstring)."""
    rng = np.random.default_rng(seed)
    hue = rng.random(n)
    sat = 0.65 + 0.35 * rng.random(n)
    val = 0.75 + 0.25 * rng.random(n)
    out = []
    for h, s, v in zip(hue, sat, val, strict=True):
        r, g, b = colorsys.hsv_to_rgb(float(h), float(s), float(v))
        out.append((round(r * 255), round(g * 255), round(b * 255)))
    return out


def luminance(rgb: np.ndarray | Sequence[float]) -> float:
    """Mean Rec. 601 luma (0-255) of an RGB colour or an ``(..., 3)`` array of them."""
    arr = np.asarray(rgb, dtype=np.float32).reshape(-1, 3)
    return float((arr @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).mean())


def label_layout(
    label: str, font: Font, center: tuple[float, float], image_size: tuple[int, int]
) -> tuple[Box, tuple[int, int]]:
    """The label box ``(x0, y0, x1, y1)`` and the text origin for drawing ``label``."""
    width, height = image_size
    size = getattr(font, "size", 10)
    left, top, right, bottom = _ink_box(font, label)
    _, ref_top, _, ref_bottom = _ink_box(font, "0")
    top, bottom = min(top, ref_top), max(bottom, ref_bottom)
    pad = max(1, round(0.2 * float(size)))
    box_w = right - left + 2 * pad
    box_h = bottom - top + 2 * pad
    x0 = round(center[0] - box_w / 2)
    y0 = round(center[1] - box_h / 2)
    x0 = 0 if box_w >= width else min(max(0, x0), width - box_w)
    y0 = 0 if box_h >= height else min(max(0, y0), height - box_h)
    box = (x0, y0, min(x0 + box_w, width), min(y0 + box_h, height))
    return box, (x0 + pad - left, y0 + pad - top)


@lru_cache(maxsize=4096)
def _ink_box(font: Font, text: str) -> tuple[int, int, int, int]:
    left, top, right, bottom = font.getbbox(text)
    return int(left), int(top), int(right), int(bottom)


def blend_box(
    canvas: UInt8[np.ndarray, "height width 3"], box: Box, color: RGB, alpha: float
) -> None:
    """Blend a filled rectangle into ``canvas`` in place."""
    x0, y0, x1, y1 = box
    patch = canvas[y0:y1, x0:x1].astype(np.float32)
    patch *= 1.0 - alpha
    patch += alpha * np.asarray(color, dtype=np.float32)
    canvas[y0:y1, x0:x1] = np.rint(patch).astype(np.uint8)


def blend_mask(
    canvas: UInt8[np.ndarray, "height width 3"],
    mask: Bool[np.ndarray, "h w"],
    offset: tuple[int, int],
    color: RGB,
    alpha: float,
) -> None:
    """Blend ``color`` into the pixels of ``mask`` (placed at ``offset=(x, y)``), in place.

    Each channel value ``v`` becomes ``rint(v * (1 - alpha) + alpha * c)`` computed in
    float32; as that depends on ``v`` alone, it is read from a 256-entry table.
    """
    x, y = offset
    table = _blend_table(color, alpha)  # (3, 256), channel-major
    if not canvas.flags.c_contiguous:
        view = canvas[y : y + mask.shape[0], x : x + mask.shape[1]]
        view[mask] = table[np.arange(3), view[mask]]
        return
    rows, cols = np.divmod(np.flatnonzero(mask), mask.shape[1])
    index = ((rows + y) * canvas.shape[1] + (cols + x)) * 3 + np.arange(3)[:, None]
    flat = canvas.reshape(-1)
    values = flat.take(index).astype(np.intp)
    values += np.array([[0], [256], [512]])
    flat[index] = table.ravel().take(values)


def _blend_table(color: RGB, alpha: float) -> np.ndarray:
    levels = np.repeat(np.arange(256, dtype=np.float32)[:, None], 3, axis=1)
    levels *= 1.0 - alpha
    levels += alpha * np.asarray(color, dtype=np.float32)
    return np.ascontiguousarray(np.rint(levels).astype(np.uint8).T)


def outline_of(mask: Bool[np.ndarray, "h w"], width: int) -> Bool[np.ndarray, "h w"]:
    """The inner border of ``mask``, ``width`` px thick (the array edge counts as border).

    The pixels of ``mask`` that ``width`` erosions by the 4-neighbour cross remove
    (what ``scipy.ndimage.binary_erosion(mask, iterations=width)`` removes).
    """
    inner = mask
    padded = np.zeros((mask.shape[0] + 2, mask.shape[1] + 2), dtype=bool)
    for _ in range(width):
        padded[1:-1, 1:-1] = inner
        inner = padded[1:-1, 1:-1] & padded[:-2, 1:-1]
        inner &= padded[2:, 1:-1]
        inner &= padded[1:-1, :-2]
        inner &= padded[1:-1, 2:]
        if not inner.any():
            break
    return mask & ~inner


def draw_rectangle(
    canvas: UInt8[np.ndarray, "height width 3"], box: Box, color: RGB, width: int
) -> None:
    """Draw an unfilled rectangle (``width`` px, inside ``box``) on ``canvas`` in place."""
    x0, y0, x1, y1 = box
    c = np.asarray(color, dtype=np.uint8)
    canvas[y0 : min(y0 + width, y1), x0:x1] = c
    canvas[max(y1 - width, y0) : y1, x0:x1] = c
    canvas[y0:y1, x0 : min(x0 + width, x1)] = c
    canvas[y0:y1, max(x1 - width, x0) : x1] = c


def draw_texts(
    canvas: UInt8[np.ndarray, "height width 3"],
    items: Sequence[tuple[tuple[int, int], str, RGB]],
    font: Font,
) -> Image.Image:
    """Draw ``(origin, text, colour)`` items on a PIL copy of ``canvas`` and return it."""
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    for origin, text, color in items:
        draw.text(origin, text, fill=color, font=font)
    return image
