"""Shared geometry of every family: the preprocessing map, patch grids, image entries.

A family's layout module (:mod:`somprobe.models.layouts.llava`, ``llava_next``,
``qwen2_vl``) turns a processor's output into :class:`ImageEntry` objects built from
these pieces; :class:`somprobe.models.layout.ImageLayout` holds them.

Coordinates: original-image pixels, ``x`` right and ``y`` down, pixel ``(x, y)`` covering
the unit square ``[x, x+1) × [y, y+1)``; boxes ``(x0, y0, x1, y1)``.

Example:
    >>> pre = Preprocess.stretch((112, 56), (28, 28))
    >>> grid = PatchGrid(np.arange(4), rows=2, cols=2, patch_size=14, preprocess=pre)
    >>> grid.patch_box(3)
    (56.0, 28.0, 112.0, 56.0)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from PIL import Image

from somprobe.errors import InputError, LayoutError, require_int

#: "crop": resize the shorter side, cut the center (HF CLIP); "pad": pad to a square or a
#: tile canvas, then resize; "resize": stretch to the input size (LLaVA-NeXT's base image,
#: Qwen2-VL's resize to multiples of the merged patch).
Style = Literal["crop", "pad", "resize"]
FloatBox = tuple[float, float, float, float]
#: What a family's ``build_entries(processor, inputs, input_ids, sizes)`` takes: the
#: processor's output, its ``input_ids`` (batch, seq) and each image's ``(width, height)``.
Inputs = Mapping[str, Any]
TokenIds = Int[torch.Tensor, "batch seq"]
Sizes = list[tuple[int, int]]


@dataclass(frozen=True)
class Preprocess:
    """The geometric transform from an original image to the model's input pixels.

    The original (``original_size``) is placed on a canvas at ``pad_offset`` (LLaVA's pad
    to square; zero offset otherwise), the canvas is resized to ``resized_size``, and a
    window of ``input_size`` is cut at ``crop_origin`` (may be negative when the crop is
    larger than the resized image, which the processor fills with zeros).

    Example:
        >>> pre = Preprocess("resize", (80, 40), (80, 40), (0, 0), (28, 28), (0, 0), (28, 28))
        >>> pre.original_to_input(40.0, 20.0)
        (14.0, 14.0)
    """

    style: Style
    original_size: tuple[int, int]
    canvas_size: tuple[int, int]
    pad_offset: tuple[int, int]
    resized_size: tuple[int, int]
    crop_origin: tuple[int, int]
    input_size: tuple[int, int]

    @property
    def scale(self) -> tuple[float, float]:
        """Resized pixels per canvas pixel, ``(sx, sy)``."""
        return (
            self.resized_size[0] / self.canvas_size[0],
            self.resized_size[1] / self.canvas_size[1],
        )

    def input_to_original_x(self, x: np.ndarray) -> np.ndarray:
        return (x + self.crop_origin[0]) / self.scale[0] - self.pad_offset[0]

    def input_to_original_y(self, y: np.ndarray) -> np.ndarray:
        return (y + self.crop_origin[1]) / self.scale[1] - self.pad_offset[1]

    def original_to_input(self, x: float, y: float) -> tuple[float, float]:
        """Where the original pixel coordinate ``(x, y)`` lands in the input."""
        sx, sy = self.scale
        return (
            (x + self.pad_offset[0]) * sx - self.crop_origin[0],
            (y + self.pad_offset[1]) * sy - self.crop_origin[1],
        )

    @classmethod
    def stretch(cls, original_size: tuple[int, int], size: tuple[int, int]) -> Preprocess:
        """The whole image resized to ``size`` (aspect not kept), nothing padded or cut."""
        return cls("resize", original_size, original_size, (0, 0), size, (0, 0), size)

    @classmethod
    def from_image_processor(
        cls, image_processor: Any, original_size: tuple[int, int]
    ) -> Preprocess:
        """Mirror the arithmetic of LLaVA's CLIP-style image processors exactly."""
        width, height = original_size
        if width < 1 or height < 1:
            raise InputError(f"image size must be positive, got {original_size}")
        do_pad = bool(getattr(image_processor, "do_pad", False))
        if do_pad:
            side = max(width, height)
            canvas = (side, side)
            offset = ((side - width) // 2, (side - height) // 2)
        else:
            canvas, offset = (width, height), (0, 0)
        resized = canvas
        if getattr(image_processor, "do_resize", True):
            resized = _resized_size(canvas, _get(image_processor.size))
        origin, input_size = (0, 0), resized
        if getattr(image_processor, "do_center_crop", False):
            crop = _get(image_processor.crop_size)
            crop_w, crop_h = int(crop["width"]), int(crop["height"])
            origin = ((resized[0] - crop_w) // 2, (resized[1] - crop_h) // 2)
            input_size = (crop_w, crop_h)
        return cls(
            style="pad" if do_pad else "crop",
            original_size=(width, height),
            canvas_size=canvas,
            pad_offset=offset,
            resized_size=resized,
            crop_origin=origin,
            input_size=input_size,
        )


def _size_pair(size: Any, index: int) -> tuple[int, int]:
    """``(width, height)`` given for image ``index``, as two integers."""
    try:
        width, height = (require_int(v, "size") for v in size)
    except (InputError, TypeError, ValueError) as err:
        raise InputError(
            f"image size {index} must be (width, height), two integers, got {size!r}"
        ) from err
    return width, height


def _image_size(image: Any, index: int) -> tuple[int, int]:
    """``(width, height)`` of a PIL image or an ``(H, W)`` / ``(H, W, C)`` array."""
    if isinstance(image, Image.Image):
        return image.size
    if isinstance(image, np.ndarray) and image.ndim in (2, 3):
        return int(image.shape[1]), int(image.shape[0])
    shape = f" of shape {image.shape}" if isinstance(image, np.ndarray) else ""
    raise InputError(
        f"image {index} is a {type(image).__name__}{shape}; pass PIL images or (H, W[, C]) arrays"
    )


def _get(size: Any) -> dict[str, Any]:
    if isinstance(size, Mapping):
        return dict(size)
    return {k: getattr(size, k, None) for k in ("height", "width", "shortest_edge", "longest_edge")}


def _resized_size(canvas: tuple[int, int], size: dict[str, Any]) -> tuple[int, int]:
    width, height = canvas
    if size.get("shortest_edge"):
        short_target = int(size["shortest_edge"])
        short, long = (width, height) if width <= height else (height, width)
        long_target = int(short_target * long / short)
        return (short_target, long_target) if width <= height else (long_target, short_target)
    if size.get("height") and size.get("width"):
        return int(size["width"]), int(size["height"])
    raise LayoutError(f"unsupported image processor size {size}; expected shortest_edge or h×w")


def _interval_overlap(
    starts: np.ndarray, ends: np.ndarray, n_pixels: int
) -> Float[np.ndarray, "cells pixels"]:
    """Length of overlap of each interval [start, end) with each unit pixel [i, i+1)."""
    pixel = np.arange(n_pixels, dtype=np.float64)
    lo = np.maximum(starts[:, None], pixel[None, :])
    hi = np.minimum(ends[:, None], pixel[None, :] + 1.0)
    return np.clip(hi - lo, 0.0, None)


@dataclass(frozen=True)
class PatchGrid:
    """One grid of patches: its token positions and its geometry.

    Attributes:
        positions: token positions of the patches in the sequence, row-major.
        rows, cols: the grid shape.
        patch_size: patch side in input pixels.
        preprocess: the map between input pixels and the original image.
    """

    positions: Int[np.ndarray, " patches"]
    rows: int
    cols: int
    patch_size: int
    preprocess: Preprocess

    def _edges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        p = float(self.patch_size)
        cols, rows = np.arange(self.cols, dtype=np.float64), np.arange(self.rows, dtype=np.float64)
        x0 = self.preprocess.input_to_original_x(cols * p)
        x1 = self.preprocess.input_to_original_x((cols + 1) * p)
        y0 = self.preprocess.input_to_original_y(rows * p)
        y1 = self.preprocess.input_to_original_y((rows + 1) * p)
        return x0, x1, y0, y1

    def patch_box(self, index: int, *, clip: bool = False) -> FloatBox:
        """Box ``(x0, y0, x1, y1)`` of patch ``index`` (row-major) in original pixels.

        With ``clip`` the box is cut to the image (a padding-only patch gives an empty box).
        """
        index = require_int(index, "patch index")
        if not 0 <= index < self.rows * self.cols:
            raise InputError(f"patch {index} out of range: the grid has {self.rows * self.cols}")
        r, c = divmod(index, self.cols)
        x0, x1, y0, y1 = self._edges()
        box = (float(x0[c]), float(y0[r]), float(x1[c]), float(y1[r]))
        if clip:
            w, h = self.preprocess.original_size
            cx0, cx1 = min(max(box[0], 0.0), w), min(max(box[2], 0.0), w)
            cy0, cy1 = min(max(box[1], 0.0), h), min(max(box[3], 0.0), h)
            box = (cx0, cy0, cx1, cy1)
        return box

    def boxes(self, *, clip: bool = False) -> Float[np.ndarray, "patches 4"]:
        """Every patch's box ``(x0, y0, x1, y1)`` in original pixels, row-major.

        Example:
            >>> grid.boxes().shape  # doctest: +SKIP
            (64, 4)
        """
        x0, x1, y0, y1 = self._edges()
        boxes = np.empty((self.rows, self.cols, 4), dtype=np.float64)
        boxes[..., 0], boxes[..., 2] = x0[None, :], x1[None, :]
        boxes[..., 1], boxes[..., 3] = y0[:, None], y1[:, None]
        if clip:
            w, h = self.preprocess.original_size
            boxes[..., 0::2] = np.clip(boxes[..., 0::2], 0.0, w)
            boxes[..., 1::2] = np.clip(boxes[..., 1::2], 0.0, h)
        return boxes.reshape(-1, 4)

    def mask_to_patches(
        self, mask: Bool[np.ndarray, "height width"]
    ) -> Float[np.ndarray, "rows cols"]:
        """Fraction of each patch's area that a mask of the original image covers.

        Pixels are unit squares; a patch's area is measured in original pixels, so a patch
        that is partly padding is covered at most by its image part, and parts of the
        image that were cropped away do not count. A soft mask (floats in [0, 1]) counts
        each pixel by its value.
        """
        mask = np.asarray(mask)
        width, height = self.preprocess.original_size
        if mask.ndim != 2 or mask.shape != (height, width):
            raise InputError(
                f"mask has shape {mask.shape} but the image is {width}×{height} "
                f"(expected shape ({height}, {width})); masks must be in original-image pixels"
            )
        if mask.dtype.kind not in "biuf":
            raise InputError(f"mask has dtype {mask.dtype}; pass a boolean (or 0/1) array")
        if mask.dtype.kind != "b" and not (
            np.isfinite(mask).all() and mask.min() >= 0 and mask.max() <= 1
        ):
            raise InputError("mask values must lie in [0, 1] (a boolean or 0/1 mask)")
        x0, x1, y0, y1 = self._edges()
        wx = _interval_overlap(x0, x1, width)  # (cols, width)
        wy = _interval_overlap(y0, y1, height)  # (rows, height)
        covered = wy @ mask.astype(np.float64) @ wx.T
        area = (y1 - y0)[:, None] * (x1 - x0)[None, :]
        return np.clip(covered / area, 0.0, 1.0)

    def box_to_patches(self, box: Sequence[float]) -> Float[np.ndarray, "rows cols"]:
        """Fraction of each patch's area inside a pixel box ``(x0, y0, x1, y1)``."""
        try:
            values = [float(v) for v in box]
        except (TypeError, ValueError) as err:
            raise InputError(f"box must be four numbers (x0, y0, x1, y1), got {box!r}") from err
        if len(values) != 4 or not all(np.isfinite(values)):
            raise InputError(f"box must be four finite numbers (x0, y0, x1, y1), got {box!r}")
        bx0, by0, bx1, by1 = values
        if bx1 < bx0 or by1 < by0:
            raise InputError(f"box {tuple(box)} has negative size; expected (x0, y0, x1, y1)")
        x0, x1, y0, y1 = self._edges()
        ox = np.clip(np.minimum(x1, bx1) - np.maximum(x0, bx0), 0.0, None) / (x1 - x0)
        oy = np.clip(np.minimum(y1, by1) - np.maximum(y0, by0), 0.0, None) / (y1 - y0)
        return oy[:, None] * ox[None, :]


@dataclass(frozen=True)
class ImageEntry:
    """One image of the batch: where its tokens are and its grid(s).

    ``token_positions`` lists every image token of the image in sequence order (the CLS
    under "full", LLaVA-NeXT's image-newline tokens included); each grid's ``positions``
    are a subset of them. Tokens that belong to no grid have no box.

    Example:
        >>> entry.token_boxes().shape  # doctest: +SKIP
        (n_tokens, 4)
    """

    batch: int
    original_size: tuple[int, int]
    grids: tuple[PatchGrid, ...]
    cls_position: int | None
    token_positions: Int[np.ndarray, " tokens"]

    def token_index(self, grid: int) -> Int[np.ndarray, " patches"]:
        """Where the patches of ``grid`` (row-major) sit in :attr:`token_positions`."""
        positions = np.asarray(self.token_positions)
        patches = np.asarray(self.grids[grid].positions)
        index = np.searchsorted(positions, patches)
        inside = np.minimum(index, max(len(positions) - 1, 0))
        if len(patches) and (len(positions) == 0 or (positions[inside] != patches).any()):
            raise LayoutError(f"grid {grid} holds positions that are not image tokens")
        return index.astype(np.int64)

    def token_grid(self) -> Int[np.ndarray, " tokens"]:
        """The grid of each image token, ``-1`` for tokens of no grid (CLS, newlines)."""
        out = np.full(len(self.token_positions), -1, dtype=np.int64)
        for g in range(len(self.grids)):
            out[self.token_index(g)] = g
        return out

    def token_boxes(self, *, clip: bool = False) -> Float[np.ndarray, "tokens 4"]:
        """Box of every image token in original pixels; NaN rows for tokens of no grid."""
        out = np.full((len(self.token_positions), 4), np.nan)
        for g, grid in enumerate(self.grids):
            out[self.token_index(g)] = grid.boxes(clip=clip)
        return out

    def mask_to_tokens(
        self, mask: Bool[np.ndarray, "height width"]
    ) -> Float[np.ndarray, " tokens"]:
        """Fraction of every image token's box that ``mask`` covers; NaN for no box."""
        out = np.full(len(self.token_positions), np.nan)
        for g, grid in enumerate(self.grids):
            out[self.token_index(g)] = grid.mask_to_patches(mask).ravel()
        return out

    def box_to_tokens(self, box: Sequence[float]) -> Float[np.ndarray, " tokens"]:
        """Fraction of every image token's box inside ``box``; NaN for no box."""
        out = np.full(len(self.token_positions), np.nan)
        for g, grid in enumerate(self.grids):
            out[self.token_index(g)] = grid.box_to_patches(box).ravel()
        return out


def split_image_tokens(
    input_ids: Int[torch.Tensor, "batch seq"],
    image_token_id: int,
    n_tokens: Sequence[int],
    token: str = "<image>",
) -> list[tuple[int, Int[np.ndarray, " tokens"]]]:
    """Cut each sequence's image tokens into one run per image, in order.

    Args:
        input_ids: the batch's token ids.
        image_token_id: the id of the image placeholder token.
        n_tokens: how many tokens each image (in order over the batch) should have.
        token: the placeholder's text, for messages.

    Returns:
        ``(row, positions)`` per image.

    Raises:
        LayoutError: the tokens and the images do not match, or an image's tokens are not
            consecutive (images given in another order than the prompt's placeholders).

    Example:
        >>> split_image_tokens(torch.tensor([[5, 9, 9, 9, 9]]), 9, [4])[0][1].tolist()
        [1, 2, 3, 4]
    """
    out: list[tuple[int, np.ndarray]] = []
    for row in range(input_ids.shape[0]):
        found = torch.nonzero(input_ids[row] == image_token_id).flatten().numpy()
        cursor = 0
        while cursor < len(found):
            if len(out) >= len(n_tokens) and cursor and found[cursor] == found[cursor - 1] + 1:
                raise LayoutError(
                    f"sequence {row}: image {len(out) - 1} runs on for {len(found) - cursor} "
                    f"{token} token(s) past the {n_tokens[-1]} this processor makes for it; "
                    "the inputs were not made by this processor (or with other settings)"
                )
            if len(out) >= len(n_tokens):
                raise LayoutError(
                    f"sequence {row} has more {token} tokens than the {len(n_tokens)} image(s) "
                    f"given; every {token} placeholder needs one image"
                )
            need = int(n_tokens[len(out)])
            chunk = found[cursor : cursor + need]
            if len(chunk) < need:
                raise LayoutError(
                    f"sequence {row} has {len(found) - cursor} {token} token(s) left where "
                    f"an image needs {need}; the prompt was not expanded by this "
                    "processor, or its images and text do not match"
                )
            if chunk[-1] - chunk[0] != need - 1:  # a processor expands each placeholder in place
                raise LayoutError(
                    f"sequence {row}: image {len(out)} needs {need} consecutive {token} tokens "
                    f"but they break at position {int(chunk[np.flatnonzero(np.diff(chunk) > 1)[0]])}"
                    "; give the images (or sizes) in the order of the prompt's placeholders"
                )
            out.append((row, chunk.astype(np.int64)))
            cursor += need
    if len(out) != len(n_tokens):
        raise LayoutError(
            f"{len(n_tokens)} image(s) given but the prompts hold {token} tokens for "
            f"{len(out)}; put one {token} placeholder in the prompt per image"
        )
    return out


def image_runs(
    processor: Any, input_ids: TokenIds, n_tokens: Sequence[int], default_token: str = "<image>"
) -> list[tuple[int, Int[np.ndarray, " tokens"]]]:
    """:func:`split_image_tokens` with the processor's image token (id and text)."""
    token = str(getattr(processor, "image_token", default_token))
    return split_image_tokens(input_ids, int(processor.image_token_id), n_tokens, token)


def select_strategy(processor: Any) -> tuple[str, int]:
    """A LLaVA processor's ``vision_feature_select_strategy`` and its count of extra
    (CLS) tokens per image, ``num_additional_image_tokens``."""
    strategy = getattr(processor, "vision_feature_select_strategy", "default") or "default"
    return strategy, int(getattr(processor, "num_additional_image_tokens", 0) or 0)


def refuse_qwen_inputs(inputs: Inputs, family: str) -> None:
    """Refuse Qwen2-VL inputs given with a processor of ``family`` (a LLaVA one)."""
    if "image_grid_thw" in inputs:
        raise LayoutError(
            "the inputs hold image_grid_thw (a Qwen2-VL processor made them) but the processor "
            f"given is a {family} one; pass the processor that made the inputs"
        )


def check_image_count(n_images: int, n_processed: int) -> None:
    """Refuse a count of original sizes that is not the inputs' count of images."""
    if n_processed != n_images:
        raise LayoutError(
            f"{n_images} original image size(s) given but the inputs hold "
            f"{n_processed} processed image(s); give one per image, in order"
        )


def one_grid_entry(
    row: int, tokens: Int[np.ndarray, " tokens"], grid: PatchGrid, cls_position: int | None = None
) -> ImageEntry:
    """The entry of an image with one grid (LLaVA-1.5, Qwen2-VL) in sequence ``row``."""
    return ImageEntry(
        batch=row,
        original_size=grid.preprocess.original_size,
        grids=(grid,),
        cls_position=cls_position,
        token_positions=tokens,
    )


def processor_size(image_processor: Any, name: str) -> dict[str, Any]:
    """An image processor's ``size``/``crop_size`` setting as a plain dict."""
    return _get(getattr(image_processor, name, None) or {})


__all__ = [
    "FloatBox",
    "ImageEntry",
    "Inputs",
    "PatchGrid",
    "Preprocess",
    "Sizes",
    "Style",
    "TokenIds",
    "check_image_count",
    "image_runs",
    "one_grid_entry",
    "processor_size",
    "refuse_qwen_inputs",
    "select_strategy",
    "split_image_tokens",
]
