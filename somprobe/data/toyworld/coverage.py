"""How perceivable a toy world is: object size in patches and how much the mark hides.

For every tagged object of sampled scenes: the share of its visible pixels the drawn
mark covers, its width in patches (the shorter side of the bounding box of its visible
pixels that the mark leaves free), and how many patches it fills at least half of.

Example:
    >>> from somprobe.data.toyworld.scenes import world
    >>> table = coverage_table(world("v2"), scenes=20)
    >>> bool(table["mark_cover"].mean() < 0.15)
    True
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from somprobe.data.toyworld.scenes import WorldConfig, make_scene, tag_scene
from somprobe.errors import InputError


def coverage_table(cfg: WorldConfig, *, scenes: int = 500, seed: int = 12345) -> pd.DataFrame:
    """One row per tagged object of ``scenes`` scenes drawn with seeds ``[seed, i]``.

    Columns: ``scene``, ``tag``, ``shape``, ``size``, ``area`` (visible pixels),
    ``mark_cover`` (mark-box pixels on the object / visible pixels), ``width_patches``
    (shorter bounding-box side of the mark-free visible pixels, in patches),
    ``patches_half`` (patches at least half covered by the object).

    Raises:
        InputError: ``scenes`` < 1.
    """
    if isinstance(scenes, bool) or not isinstance(scenes, int) or scenes < 1:
        raise InputError(f"scenes={scenes!r}: give at least one scene")
    p = cfg.patch_size
    grid = cfg.image_size // p
    rows = []
    for i in range(scenes):
        tagged = tag_scene(make_scene(cfg, (seed, i)))
        for tag in tagged.tagset:
            mask = tag.mask
            x0, y0, x1, y1 = tag.mark_box
            box = np.zeros_like(mask)
            box[y0:y1, x0:x1] = True
            free = mask & ~box
            ys, xs = np.nonzero(free)
            width = min(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1) / p if len(xs) else 0.0
            fill = mask[: grid * p, : grid * p].reshape(grid, p, grid, p).mean(axis=(1, 3))
            rows.append(
                {
                    "scene": i,
                    "tag": tag.id,
                    "shape": tag.metadata["shape"],
                    "size": tag.metadata["size"],
                    "area": int(mask.sum()),
                    "mark_cover": float((mask & box).sum() / mask.sum()),
                    "width_patches": float(width),
                    "patches_half": int((fill >= 0.5).sum()),
                }
            )
    return pd.DataFrame(rows)


def coverage_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per shape and overall: mean and max mark cover, min and median width, n objects."""
    if table.empty:
        raise InputError("empty coverage table: no tagged object to summarise")
    groups = [("all", table), *((str(k), g) for k, g in table.groupby("shape"))]
    return pd.DataFrame(
        [
            {
                "shape": name,
                "n": len(g),
                "mark_cover_mean": g["mark_cover"].mean(),
                "mark_cover_max": g["mark_cover"].max(),
                "width_patches_min": g["width_patches"].min(),
                "width_patches_median": g["width_patches"].median(),
                "patches_half_median": g["patches_half"].median(),
            }
            for name, g in groups
        ]
    )


__all__ = ["coverage_summary", "coverage_table"]
