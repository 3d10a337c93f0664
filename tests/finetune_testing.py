"""Small LLaVA JSON training sets for the finetune tests (written on the fly, offline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from somprobe.data import make_record, write_records

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}


def write_colour_set(root: Path, n: int = 24, seed: int = 0) -> tuple[Path, Path]:
    """``n`` images of one coloured square on grey, each asked for its colour.

    Returns ``(json_path, image_folder)``.
    """
    rng = np.random.default_rng(seed)
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    records = []
    names = sorted(COLOURS)
    for i in range(n):
        name = names[i % len(names)]
        pixels = np.full((96, 128, 3), 128, dtype=np.uint8)
        x, y = rng.integers(0, 80), rng.integers(0, 50)
        pixels[y : y + 40, x : x + 40] = COLOURS[name]
        Image.fromarray(pixels).save(images / f"{i}.png")
        records.append(
            make_record(f"s{i}", f"{i}.png", [("What colour is the square?", f"a {name} square")])
        )
    path = root / "train.json"
    write_records(records, path)
    return path, images
