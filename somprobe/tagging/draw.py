"""Drawing Set-of-Mark tags: :func:`annotate` draws any TagSet on its image in a
:class:`TagStyle`; below it, label text, font size, colours, label boxes, fills, outlines.

The geometry rules (documented here once, used by :func:`somprobe.tagging.tag_regions`):

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
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from jaxtyping import Bool, UInt8
from PIL import Image, ImageDraw, ImageFont

from somprobe.errors import InputError
from somprobe.tagging.regions.base import mask_bbox
from somprobe.tagging.rgb import as_rgb_array

if TYPE_CHECKING:
    from somprobe.tagging.types import Tag, TagSet

RGB = tuple[int, int, int]
Box = tuple[int, int, int, int]
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
DrawMode = Literal["mark", "box", "outline", "fill"]
DRAW_MODES: tuple[str, ...] = ("mark", "box", "outline", "fill")

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
        return letter_label(tag_id)
    raise InputError(f"label_mode must be 'number' or 'letter', got {mode!r}")


def letter_label(tag_id: int) -> str:
    """The letter label of a tag id, bijective base 26: 1→"a", 26→"z", 27→"aa".

    Example:
        >>> [letter_label(i) for i in (1, 26, 27, 28, 702)]
        ['a', 'z', 'aa', 'ab', 'zz']
    """
    if tag_id < 1:
        raise InputError(f"letter labels start at tag 1, got tag id {tag_id}")
    out = []
    n = tag_id
    while n > 0:
        n, rem = divmod(n - 1, 26)
        out.append(chr(ord("a") + rem))
    return "".join(reversed(out))


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


# --------------------------------------------------------------------------------------
# annotate: draw a TagSet


@dataclass(frozen=True)
class TagStyle:
    """How tags are drawn; the defaults are SoM-LLaVA's (white numbers on a black box).

    Attributes:
        draw: any of "mark" (label box + text), "box" (region bounding box), "outline"
            (mask border), "fill" (mask fill with ``fill_alpha``); outlines, boxes and
            fills use the tag's seeded colour and its (remaining) mask.
        text_color: RGB, or "auto" (black or white, whichever reads on the label box).
        box_color: RGB, or "region" (the tag's colour).
        box_alpha: opacity of the label box (0 draws no box).
        contrast: "fixed" uses ``text_color`` on ``box_color``; "auto" uses white on black
            unless the pixels under the box are dark (mean luma < 80), then black on white.
        fill_alpha: opacity of "fill".
        line_width: width of "box"/"outline" lines; None: ``max(1, round(2 * short/640))``.

    Example:
        >>> TagStyle(draw=("mark", "outline"), box_color="region").modes
        ['mark', 'outline']
    """

    draw: DrawMode | Sequence[DrawMode] = "mark"
    text_color: RGB | Literal["auto"] = (255, 255, 255)
    box_color: RGB | Literal["region"] = (0, 0, 0)
    box_alpha: float = 0.8
    contrast: Literal["fixed", "auto"] = "fixed"
    fill_alpha: float = 0.4
    line_width: int | None = None

    def __post_init__(self) -> None:
        draw = self.draw
        if not (
            isinstance(draw, str)
            or (
                isinstance(draw, (Sequence, set, frozenset))
                and all(isinstance(m, str) for m in draw)
            )
        ):
            raise InputError(
                f"draw must be a mode or a list of modes from {list(DRAW_MODES)}, got {draw!r}"
            )
        bad = set(self.modes) - set(DRAW_MODES)
        if bad:
            raise InputError(f"unknown draw mode(s) {sorted(bad)}; choose from {list(DRAW_MODES)}")
        if self.contrast not in ("fixed", "auto"):
            raise InputError(f"contrast must be 'fixed' or 'auto', got {self.contrast!r}")
        _check_color("text_color", self.text_color, ("auto",))
        _check_color("box_color", self.box_color, ("region",))
        for name, value in (("box_alpha", self.box_alpha), ("fill_alpha", self.fill_alpha)):
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
                raise InputError(f"{name} must be a number in [0, 1], got {value!r}")
            if not 0.0 <= float(value) <= 1.0:
                raise InputError(f"{name} must lie in [0, 1], got {value}")
        width = self.line_width
        if width is not None:
            if isinstance(width, bool) or not isinstance(width, (int, np.integer)):
                raise InputError(f"line_width must be an integer (pixels) or None, got {width!r}")
            if width < 1:
                raise InputError(f"line_width must be ≥ 1, got {width}")

    @property
    def modes(self) -> list[str]:
        """The draw modes, sorted."""
        return sorted({self.draw} if isinstance(self.draw, str) else set(self.draw))

    def line_width_for(self, width: int, height: int) -> int:
        """The line width on a ``width`` × ``height`` image."""
        if self.line_width is not None:
            return int(self.line_width)
        return max(1, round(2 * min(width, height) / 640))


def annotate(
    image: Image.Image | np.ndarray, tagset: TagSet, style: TagStyle | None = None
) -> Image.Image:
    """Draw ``tagset``'s tags on ``image`` (any TagSet: fresh, loaded or edited).

    The label boxes are laid out again from each tag's centre with the font size the
    TagSet was made with (``tagset.options["font_size"]``; else the size rule of this
    module), so a TagSet drawn by :func:`somprobe.tagging.tag_regions` and redrawn here in
    the same style gives the same pixels.

    A tag without a colour (``color=None``, e.g. one built by hand) is drawn in the seeded
    colour :func:`~somprobe.tagging.tag_regions` would give it (``region_colors`` with
    ``tagset.options["seed"]``, default 0).

    Args:
        image: the untagged image, PIL or array (converted as :mod:`somprobe.tagging.rgb`
            documents); its size must be ``tagset.image_size``.
        tagset: what to draw.
        style: how (default :class:`TagStyle`'s SoM-LLaVA defaults).

    Raises:
        InputError: ``tagset`` is not a TagSet or is for another image size, a tag's mask
            is empty or of another shape, ``style`` is not a TagStyle, the image cannot be
            converted.

    Example:
        >>> from somprobe.tagging import load_tagset  # doctest: +SKIP
        >>> annotate(photo, load_tagset("tags.json"), TagStyle(draw=("mark", "outline")))
        ... # doctest: +SKIP
    """
    from somprobe.tagging.types import TagSet

    if not isinstance(tagset, TagSet):
        raise InputError(f"tagset must be a TagSet, got {type(tagset).__name__}")
    if style is not None and not isinstance(style, TagStyle):
        raise InputError(f"style must be a TagStyle (or None), got {type(style).__name__}")
    style = style or TagStyle()
    pixels = as_rgb_array(image)
    width, height = int(pixels.shape[1]), int(pixels.shape[0])
    if tuple(tagset.image_size) != (width, height):
        raise InputError(
            f"the TagSet is for a {tagset.image_size[0]}×{tagset.image_size[1]} image but the "
            f"image is {width}×{height}; draw a TagSet on the image it was made for"
        )
    size = tagset.options.get("font_size") or font_size_for(width, height)
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise InputError(
            f"the TagSet's options['font_size'] must be an integer (pixels), got {size!r}"
        )
    font = load_font(int(size))
    seed = tagset.options.get("seed", 0)
    colors = region_colors(len(tagset), seed if isinstance(seed, int) and seed >= 0 else 0)
    tags: list[Tag] = []
    crops: list[tuple[np.ndarray, Box]] = []
    origins: list[tuple[int, int]] = []
    for tag, color in zip(tagset, colors, strict=True):
        if np.shape(tag.mask) != (height, width):
            raise InputError(
                f"tag {tag.id} has a mask of shape {np.shape(tag.mask)} but the image is "
                f"{width}×{height} (expected ({height}, {width}))"
            )
        box = mask_bbox(tag.mask)
        if box is None:
            raise InputError(f"tag {tag.id} has an empty mask; nothing marks it")
        x0, y0, x1, y1 = box
        tags.append(tag if tag.color is not None else replace(tag, color=color))
        crops.append((tag.mask[y0:y1, x0:x1], box))
        origins.append(label_layout(tag.label, font, tag.center, (width, height))[1])
    return draw_tags(pixels.copy(), tags, crops, origins, font, style)


def draw_tags(
    canvas: UInt8[np.ndarray, "height width 3"],
    tags: Sequence[Tag],
    crops: Sequence[tuple[np.ndarray, Box]],
    origins: Sequence[tuple[int, int]],
    font: Font,
    style: TagStyle,
) -> Image.Image:
    """Draw placed tags on ``canvas`` (modified) and return the image: fills and outlines
    first, then region boxes, then label boxes and text.

    ``crops`` holds each tag's mask cropped to its tight box, ``origins`` each label's
    text origin (both as :func:`somprobe.tagging.place.place` returns them).
    """
    modes = set(style.modes)
    height, width = canvas.shape[:2]
    lw = style.line_width_for(width, height)
    for tag, (mask, (x0, y0, _, _)) in zip(tags, crops, strict=True):
        assert tag.color is not None
        if "fill" in modes and style.fill_alpha > 0:
            blend_mask(canvas, mask, (x0, y0), tag.color, float(style.fill_alpha))
        if "outline" in modes:
            blend_mask(canvas, outline_of(mask, lw), (x0, y0), tag.color, 1.0)
    if "box" in modes:
        for tag, (_, box) in zip(tags, crops, strict=True):
            assert tag.color is not None
            draw_rectangle(canvas, box, tag.color, lw)
    texts: list[tuple[tuple[int, int], str, RGB]] = []
    if "mark" in modes:
        for tag, origin in zip(tags, origins, strict=True):
            bg, fg = _mark_colors(canvas, tag, style)
            if style.box_alpha > 0:
                blend_box(canvas, tag.mark_box, bg, float(style.box_alpha))
            texts.append((origin, tag.label, fg))
    return draw_texts(canvas, texts, font) if texts else Image.fromarray(canvas)


def _check_color(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if isinstance(value, str):
        if value not in allowed:
            raise InputError(
                f"{name} must be an (r, g, b) tuple or one of {allowed}, got {value!r}"
            )
        return
    arr = np.asarray(value)
    if arr.shape != (3,) or arr.dtype.kind not in "iu" or arr.min() < 0 or arr.max() > 255:
        raise InputError(f"{name} must be an (r, g, b) tuple of ints in 0..255, got {value!r}")


def _mark_colors(canvas: np.ndarray, tag: Tag, style: TagStyle) -> tuple[RGB, RGB]:
    """(box colour, text colour) for one label, following the contrast rules."""
    white, black = (255, 255, 255), (0, 0, 0)
    x0, y0, x1, y1 = tag.mark_box
    under = canvas[y0:y1, x0:x1]
    if style.contrast == "auto":
        dark = luminance(under) < DARK_BACKGROUND_LUMINANCE
        return (white, black) if dark else (black, white)
    bg: RGB
    if style.box_color == "region":
        assert tag.color is not None
        bg = tag.color
    else:
        bg = tuple(int(c) for c in style.box_color)  # type: ignore[assignment]
    if style.text_color != "auto":
        return bg, tuple(int(c) for c in style.text_color)  # type: ignore[return-value]
    seen = style.box_alpha * luminance(bg) + (1 - style.box_alpha) * luminance(under)
    return bg, (black if seen > LIGHT_BOX_LUMINANCE else white)
