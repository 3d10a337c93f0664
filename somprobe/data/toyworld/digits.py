"""Digit reading: numbers drawn in the Set-of-Mark style on an empty textured background.

Every training arm gets these records, so a model that never sees a tagged scene can
still read the marks' digits, as LLaVA-1.5 could before SoM training. The numbers sit
at random patch centres away from any object (there are none), so reading them teaches
nothing about which object a number belongs to.

Example:
    >>> from somprobe.data.toyworld.scenes import world
    >>> image, numbers, centres = digit_image(world("v2"), (0, 5, 1))
    >>> image.size, 1 <= len(numbers) <= 3
    ((112, 112), True)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from somprobe.data.toyworld.scenes import BACKGROUNDS, WorldConfig, background
from somprobe.errors import InputError
from somprobe.tagging.draw import blend_box, draw_texts, label_layout, load_font

DIGIT_QUESTIONS: tuple[str, ...] = (
    "What numbers are written in the image?",
    "Read the numbers in the image.",
    "Which numbers can you see?",
)


def digit_image(
    cfg: WorldConfig, seed: int | Sequence[int], *, max_numbers: int = 3
) -> tuple[Image.Image, list[int], list[tuple[float, float]]]:
    """A background with 1..``max_numbers`` distinct numbers 1–9, their ``(x, y)`` centres.

    Numbers and centres come in reading order (top to bottom, left to right).

    Drawn as the tagger draws a mark (white digit on a black box of alpha 0.8, the
    world's font size), each centred on a distinct patch centre.

    Raises:
        InputError: ``max_numbers`` outside 1..9 or more than the patch grid holds.
    """
    grid = cfg.image_size // cfg.patch_size
    if not 1 <= max_numbers <= min(9, grid * grid):
        raise InputError(f"max_numbers={max_numbers} must lie in 1..{min(9, grid * grid)}")
    rng = np.random.default_rng(seed)
    kind = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    canvas = background(kind, cfg.image_size, rng)
    k = int(rng.integers(1, max_numbers + 1))
    numbers = [int(n) + 1 for n in rng.choice(9, size=k, replace=False)]
    cells = sorted(int(c) for c in rng.choice(grid * grid, size=k, replace=False))
    font = load_font(cfg.font_size or 11)
    texts = []
    centres = []
    for number, cell in zip(numbers, cells, strict=True):
        row, col = divmod(cell, grid)
        centre = ((col + 0.5) * cfg.patch_size, (row + 0.5) * cfg.patch_size)
        box, origin = label_layout(str(number), font, centre, (cfg.image_size, cfg.image_size))
        centres.append(centre)
        blend_box(canvas, box, (0, 0, 0), 0.8)
        texts.append((origin, str(number), (255, 255, 255)))
    return draw_texts(canvas, texts, font), numbers, centres


def digit_answer(numbers: Sequence[int]) -> str:
    """``"7"``, ``"3 and 8"``, ``"2, 5 and 9"`` (reading order, as drawn)."""
    words = [str(n) for n in numbers]
    if not words:
        raise InputError("no numbers to read")
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


__all__ = ["DIGIT_QUESTIONS", "digit_answer", "digit_image"]
