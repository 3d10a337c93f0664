"""LLaVA-NeXT (``LlavaNextProcessor``): a base image plus anyres tiles, unpadded.

The image processor (a) stretches the whole picture to one tile (the base image) and
(b) picks the best resolution among ``image_grid_pinpoints`` for the picture, resizes it
to fit that canvas with its aspect kept, pads the rest with zeros (centred) and cuts the
canvas into tiles. The model encodes each tile, stitches the tiles' patch features back
into one grid, removes the rows (or columns) of patches that the model takes for
padding (``unpad_image``) and ends every remaining row with an ``image_newline`` token.
The ``<image>`` placeholder therefore expands to

    base patches (row-major) · for each kept row: its kept patches, then one newline

Here grid 0 is the base image and grid 1 the stitched, unpadded tile grid; the newline
tokens belong to no grid. Unpadding works in whole patches, so a kept patch can still
hold some padding (its box then reaches past the image, as in LLaVA-1.5's "pad").

Example:
    >>> plan = anyres_plan((800, 300), [[28, 56], [56, 28], [56, 56]], tile=28, patch=14)
    >>> plan.tiles, plan.kept_rows, plan.kept_cols
    ((1, 2), (0, 2), (0, 4))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from jaxtyping import Int

from somprobe.errors import LayoutError
from somprobe.models.layouts import base
from somprobe.models.layouts.base import ImageEntry, Inputs, PatchGrid, Preprocess, Sizes, TokenIds

NAME = "llava_next"
PROCESSOR_CLASSES = ("LlavaNextProcessor",)
MODEL_TYPES = ("llava_next",)


def best_resolution(
    original_size: tuple[int, int], pinpoints: Sequence[Sequence[int]]
) -> tuple[int, int]:
    """The ``(height, width)`` pinpoint LLaVA-NeXT picks for an image of ``(width, height)``.

    The one that keeps most of the image's pixels once it is scaled to fit; ties go to
    the one that wastes the least canvas, then to the first listed.

    Example:
        >>> best_resolution((100, 40), [[28, 56], [56, 28]])
        (28, 56)
    """
    width, height = original_size
    best: tuple[int, int] | None = None
    best_kept, best_waste = 0, math.inf
    for can_h, can_w in ((int(a), int(b)) for a, b in pinpoints):
        scale = min(can_w / width, can_h / height)
        kept = min(int(width * scale) * int(height * scale), width * height)
        waste = can_w * can_h - kept
        if kept > best_kept or (kept == best_kept and waste < best_waste):
            best, best_kept, best_waste = (can_h, can_w), kept, waste
    if best is None:
        raise LayoutError(f"no usable image_grid_pinpoints in {list(pinpoints)!r}")
    return best


@dataclass(frozen=True)
class AnyresPlan:
    """Where an image's tiles and kept tile patches lie (sizes are ``(width, height)``).

    Attributes:
        canvas: the chosen pinpoint, ``(width, height)`` in pixels.
        tiles: ``(rows, cols)`` of tiles on the canvas.
        resized: the image's size on the canvas (aspect kept).
        paste: the top-left corner of the resized image on the canvas.
        kept_rows, kept_cols: ``[start, stop)`` of the stitched patch grid after unpadding.
    """

    tile: int
    patch: int
    canvas: tuple[int, int]
    tiles: tuple[int, int]
    resized: tuple[int, int]
    paste: tuple[int, int]
    kept_rows: tuple[int, int]
    kept_cols: tuple[int, int]

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of the kept tile-patch grid."""
        return self.kept_rows[1] - self.kept_rows[0], self.kept_cols[1] - self.kept_cols[0]

    @property
    def base_side(self) -> int:
        """Patches per side of the base image (and of each tile)."""
        return self.tile // self.patch

    @property
    def n_tokens(self) -> int:
        """Image tokens of the image: base patches, kept tile patches, one newline a row."""
        rows, cols = self.shape
        return self.base_side**2 + rows * (cols + 1)

    def grids(
        self, tokens: Int[np.ndarray, " tokens"], original_size: tuple[int, int]
    ) -> tuple[PatchGrid, PatchGrid]:
        """The base grid and the kept tile grid of an image whose tokens are ``tokens``
        (base patches, then each kept row and its newline)."""
        side, patch = self.base_side, self.patch
        stretched = Preprocess.stretch(original_size, (self.tile, self.tile))
        whole = PatchGrid(tokens[: side * side], side, side, patch, stretched)
        rows, cols = self.shape
        stitched = tokens[side * side :].reshape(rows, cols + 1)
        tiles = Preprocess(
            style="pad",
            original_size=original_size,
            canvas_size=original_size,
            pad_offset=(0, 0),
            resized_size=self.resized,
            crop_origin=(
                self.kept_cols[0] * patch - self.paste[0],
                self.kept_rows[0] * patch - self.paste[1],
            ),
            input_size=(cols * patch, rows * patch),
        )
        positions = np.ascontiguousarray(stitched[:, :cols]).reshape(-1)
        return whole, PatchGrid(positions, rows, cols, patch, tiles)


def anyres_plan(
    original_size: tuple[int, int], pinpoints: Sequence[Sequence[int]], *, tile: int, patch: int
) -> AnyresPlan:
    """The tiling and unpadding of an image of ``(width, height)`` (see the module)."""
    width, height = original_size
    can_h, can_w = best_resolution(original_size, pinpoints)
    if can_h % tile or can_w % tile:
        raise LayoutError(
            f"image_grid_pinpoint {[can_h, can_w]} is not a multiple of the tile size {tile}"
        )
    sx, sy = can_w / width, can_h / height
    if sx < sy:  # fit the width, the height follows (rounded up)
        resized = (can_w, min(math.ceil(height * sx), can_h))
    else:
        resized = (min(math.ceil(width * sy), can_w), can_h)
    paste = ((can_w - resized[0]) // 2, (can_h - resized[1]) // 2)
    side = tile // patch
    cur_h, cur_w = (can_h // tile) * side, (can_w // tile) * side
    rows, cols = (0, cur_h), (0, cur_w)
    if width / height > cur_w / cur_h:
        kept = int(round(height * (cur_w / width), 7))
        pad = (cur_h - kept) // 2
        rows = (pad, cur_h - pad)
    else:
        kept = int(round(width * (cur_h / height), 7))
        pad = (cur_w - kept) // 2
        cols = (pad, cur_w - pad)
    return AnyresPlan(
        tile=tile,
        patch=patch,
        canvas=(can_w, can_h),
        tiles=(can_h // tile, can_w // tile),
        resized=resized,
        paste=paste,
        kept_rows=rows,
        kept_cols=cols,
    )


def _tile_side(image_processor: Any) -> int:
    """The tile side in pixels; refuses settings whose geometry is not one square tile."""
    size = base.processor_size(image_processor, "size")
    crop = base.processor_size(image_processor, "crop_size")
    if crop.get("height"):
        tile = int(crop["height"])
    elif size.get("height"):
        tile = int(size["height"])
    else:
        tile = int(size.get("shortest_edge") or 0)
    base_size = (
        (int(size["width"]), int(size["height"]))
        if size.get("height") and size.get("width")
        else (int(size.get("shortest_edge") or 0),) * 2
    )
    square = base_size == (tile, tile)
    if getattr(image_processor, "do_center_crop", False) and crop.get("height"):
        square &= (int(crop["width"]), int(crop["height"])) == (tile, tile)
    if tile < 1 or not square:
        raise LayoutError(
            f"unsupported LLaVA-NeXT image processor geometry (size={size}, crop_size={crop}): "
            "somprobe expects square tiles whose side equals the base image's side"
        )
    return tile


def _check_inputs(inputs: Inputs, sizes: Sizes, tile: int) -> None:
    base.refuse_qwen_inputs(inputs, "LLaVA-NeXT")
    pixel_values = inputs.get("pixel_values")
    if pixel_values is not None:
        shape = tuple(torch.as_tensor(pixel_values).shape)
        if len(shape) != 5:
            raise LayoutError(
                f"pixel_values of shape {shape}: a LLaVA-NeXT processor makes (images, tiles, "
                "channels, height, width); these inputs come from another processor (LLaVA-1.5?)"
            )
        base.check_image_count(len(sizes), shape[0])
        if shape[-2:] != (tile, tile):
            raise LayoutError(
                f"pixel_values tiles are {shape[-1]}×{shape[-2]} but the processor's tile is "
                f"{tile}×{tile}; pass the processor that made the inputs"
            )
    given = inputs.get("image_sizes")
    if given is not None:
        hw = [tuple(int(v) for v in s) for s in torch.as_tensor(given).reshape(-1, 2).tolist()]
        expected = [(h, w) for w, h in sizes]
        if hw != expected:
            raise LayoutError(
                f"the inputs' image_sizes {hw} (height, width) differ from the original sizes "
                f"given {expected}; give the images (or sizes) in the order of the processor"
            )


def build_entries(
    processor: Any, inputs: Inputs, input_ids: TokenIds, sizes: Sizes
) -> list[ImageEntry]:
    """The image entries of a LLaVA-NeXT batch (see the module docstring).

    Raises:
        LayoutError: inputs from another family's processor, sizes that differ from the
            inputs' ``image_sizes``, an unsupported processor setting, or ``<image>``
            tokens that do not match the images.
    """
    image_processor = processor.image_processor
    tile = _tile_side(image_processor)
    _check_inputs(inputs, sizes, tile)
    patch = int(processor.patch_size)
    if tile % patch:
        raise LayoutError(f"patch_size {patch} does not divide the tile side {tile}")
    strategy, extra = base.select_strategy(processor)
    if (strategy, extra) not in (("default", 1), ("full", 0)):
        raise LayoutError(
            f"vision_feature_select_strategy={strategy!r} with num_additional_image_tokens="
            f"{extra} does not make whole tiles; LLaVA-NeXT needs ('default', 1) or ('full', 0)"
        )
    pinpoints = [list(p) for p in image_processor.image_grid_pinpoints]
    plans = [anyres_plan(s, pinpoints, tile=tile, patch=patch) for s in sizes]
    runs = base.image_runs(processor, input_ids, [p.n_tokens for p in plans])
    return [
        ImageEntry(
            batch=row,
            original_size=size,
            grids=plan.grids(chunk, size),
            cls_position=None,
            token_positions=chunk,
        )
        for (row, chunk), plan, size in zip(runs, plans, sizes, strict=True)
    ]
