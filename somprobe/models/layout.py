"""Which tokens of a sequence are image patches, and where each patch lies in the picture.

An :class:`ImageLayout` is built from a LLaVA processor and the inputs it produced. For
every image in the batch it records the token positions of its patches (row-major, the
CLS token handled by the select strategy), the patch grid, and the exact geometric map
between the model's input pixels and the *original* image, for both preprocessing
styles: the HF processor's resize-shorter-side + center-crop, and LLaVA's pad-to-square
with the mean colour ("pad", ``do_pad=True``). Every image holds a tuple of grids, so
tiled models (LLaVA-NeXT) can add more than one grid per image later.

Coordinates: original-image pixels, ``x`` right and ``y`` down, pixel ``(x, y)`` covering
the unit square ``[x, x+1) × [y, y+1)``; boxes ``(x0, y0, x1, y1)``.

Example:
    >>> inputs = prepare_inputs(processor, [image], ["List the tagged items one by one."])
    >>> layout = ImageLayout.from_inputs(processor, inputs, images=[image])
    >>> layout.grid(0)
    (24, 24)
    >>> coverage = layout.mask_to_patches(mask, image=0)   # (24, 24) fractions in [0, 1]
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from PIL import Image

from somprobe.errors import InputError, LayoutError

Style = Literal["crop", "pad"]
FloatBox = tuple[float, float, float, float]


@dataclass(frozen=True)
class Preprocess:
    """The geometric transform from an original image to the model's input pixels.

    The original (``original_size``) is placed on a canvas at ``pad_offset`` (LLaVA's pad
    to square; zero offset otherwise), the canvas is resized to ``resized_size``, and a
    window of ``input_size`` is cut at ``crop_origin`` (may be negative when the crop is
    larger than the resized image, which the processor fills with zeros).
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


def _int(value: Any, what: str) -> int:
    if not isinstance(value, bool):
        try:
            return operator.index(value)
        except TypeError:
            pass
    raise InputError(f"{what} must be an integer, got {value!r}")


def _size_pair(size: Any, index: int) -> tuple[int, int]:
    """``(width, height)`` given for image ``index``, as two integers."""
    try:
        width, height = (_int(v, "size") for v in size)
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
    return {k: getattr(size, k, None) for k in ("height", "width", "shortest_edge")}


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
        index = _int(index, "patch index")
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
    """One image of the batch: where its tokens are and its grid(s)."""

    batch: int
    original_size: tuple[int, int]
    grids: tuple[PatchGrid, ...]
    cls_position: int | None
    token_positions: Int[np.ndarray, " tokens"]


@dataclass(frozen=True)
class ImageLayout:
    """Image-token layout of a processed batch. See the module docstring."""

    images: tuple[ImageEntry, ...]
    sequence_length: int
    image_token_id: int

    def __len__(self) -> int:
        return len(self.images)

    def _entry(self, image: int) -> ImageEntry:
        image = _int(image, "image index")
        if not 0 <= image < len(self.images):
            raise InputError(f"image {image} out of range: the batch has {len(self.images)} images")
        return self.images[image]

    def _grid(self, image: int, grid: int) -> PatchGrid:
        grids = self._entry(image).grids
        grid = _int(grid, "grid index")
        if not 0 <= grid < len(grids):
            raise InputError(
                f"grid {grid} out of range: image {image} has {len(grids)} grid(s) "
                f"(0..{len(grids) - 1})"
            )
        return grids[grid]

    def grid(self, image: int = 0, grid: int = 0) -> tuple[int, int]:
        g = self._grid(image, grid)
        return g.rows, g.cols

    def patch_positions(self, image: int = 0, grid: int = 0) -> Int[np.ndarray, " patches"]:
        """Token positions of the patches of ``image`` (row-major), CLS excluded."""
        return self._grid(image, grid).positions

    def image_token_positions(self, image: int = 0) -> Int[np.ndarray, " tokens"]:
        """All image-token positions of ``image`` (the CLS included under "full")."""
        return self._entry(image).token_positions

    def image_size(self, image: int = 0) -> tuple[int, int]:
        """``(width, height)`` of the original image."""
        return self._entry(image).original_size

    def batch_of(self, image: int) -> int:
        """The sequence (row of ``input_ids``) that holds ``image``."""
        return self._entry(image).batch

    def images_in(self, batch: int) -> list[int]:
        """Indices of the images whose tokens lie in sequence ``batch``."""
        return [i for i, e in enumerate(self.images) if e.batch == batch]

    def patch_box(self, index: int, image: int = 0, *, clip: bool = False) -> FloatBox:
        return self._entry(image).grids[0].patch_box(index, clip=clip)

    def mask_to_patches(
        self, mask: Bool[np.ndarray, "height width"], image: int = 0
    ) -> Float[np.ndarray, "rows cols"]:
        return self._entry(image).grids[0].mask_to_patches(mask)

    def box_to_patches(
        self, box: Sequence[float], image: int = 0
    ) -> Float[np.ndarray, "rows cols"]:
        return self._entry(image).grids[0].box_to_patches(box)

    @classmethod
    def from_inputs(
        cls,
        processor: Any,
        inputs: Mapping[str, Any],
        *,
        images: Sequence[Image.Image] | None = None,
        image_sizes: Sequence[tuple[int, int]] | None = None,
    ) -> ImageLayout:
        """Build the layout of ``inputs`` (``input_ids`` and ``pixel_values``).

        Args:
            processor: the LLaVA processor that made ``inputs``.
            inputs: its output (a BatchFeature or dict).
            images: the original images (PIL images or numpy arrays), in the order given
                to the processor; or
            image_sizes: their ``(width, height)``.

        Raises:
            InputError: neither or both of ``images``/``image_sizes``, images that are not
                images, sizes that are not two positive integers, inputs without
                ``input_ids``.
            LayoutError: the images and the ``<image>`` tokens of ``inputs`` do not match.
        """
        if (images is None) == (image_sizes is None):
            raise InputError("pass exactly one of images= or image_sizes= (original sizes)")
        given: Any = images if images is not None else image_sizes
        if isinstance(given, (str, bytes, Image.Image, np.ndarray)) or not isinstance(
            given, Iterable
        ):
            what = "images" if images is not None else "image_sizes"
            raise InputError(f"{what} must be a list (one per image), got {type(given).__name__}")
        if images is not None:
            sizes = [_image_size(im, i) for i, im in enumerate(images)]
        else:
            sizes = [_size_pair(size, i) for i, size in enumerate(given)]
        if not isinstance(inputs, Mapping) or "input_ids" not in inputs:
            raise InputError(
                "inputs must be the processor's output, with input_ids (prepare_inputs makes it)"
            )
        input_ids = torch.as_tensor(inputs["input_ids"])
        if input_ids.ndim == 1:
            input_ids = input_ids[None]
        image_token_id = int(processor.image_token_id)
        patch = int(processor.patch_size)
        strategy = getattr(processor, "vision_feature_select_strategy", "default") or "default"
        extra = int(getattr(processor, "num_additional_image_tokens", 0) or 0)
        preprocess = [
            Preprocess.from_image_processor(processor.image_processor, (int(w), int(h)))
            for w, h in sizes
        ]
        pixel_values = inputs.get("pixel_values")
        if pixel_values is not None and len(pixel_values) != len(sizes):
            raise LayoutError(
                f"{len(sizes)} original image size(s) given but the inputs hold "
                f"{len(pixel_values)} processed image(s); give one per image, in order"
            )
        entries: list[ImageEntry] = []
        image_index = 0
        for row in range(input_ids.shape[0]):
            found = torch.nonzero(input_ids[row] == image_token_id).flatten().numpy()
            cursor = 0
            while cursor < len(found):
                if image_index >= len(sizes):
                    raise LayoutError(
                        f"sequence {row} has more <image> tokens than the {len(sizes)} image(s) "
                        "given; every <image> placeholder needs one image"
                    )
                pre = preprocess[image_index]
                rows, cols = pre.input_size[1] // patch, pre.input_size[0] // patch
                has_cls = strategy == "full" and extra > 0
                n_tokens = rows * cols + extra - (1 if strategy == "default" else 0)
                chunk = found[cursor : cursor + n_tokens]
                if len(chunk) < n_tokens:
                    raise LayoutError(
                        f"sequence {row} has {len(found) - cursor} <image> token(s) left where "
                        f"an image needs {n_tokens}; the prompt was not expanded by this "
                        "processor, or its images and text do not match"
                    )
                cls_pos = int(chunk[0]) if has_cls else None
                patches = chunk[extra:] if has_cls else chunk[len(chunk) - rows * cols :]
                grid = PatchGrid(
                    positions=patches.astype(np.int64),
                    rows=rows,
                    cols=cols,
                    patch_size=patch,
                    preprocess=pre,
                )
                entries.append(
                    ImageEntry(
                        batch=row,
                        original_size=pre.original_size,
                        grids=(grid,),
                        cls_position=cls_pos,
                        token_positions=chunk.astype(np.int64),
                    )
                )
                cursor += n_tokens
                image_index += 1
        if image_index != len(sizes):
            raise LayoutError(
                f"{len(sizes)} image(s) given but the prompts hold <image> tokens for "
                f"{image_index}; put one <image> placeholder in the prompt per image"
            )
        return cls(
            images=tuple(entries),
            sequence_length=int(input_ids.shape[1]),
            image_token_id=image_token_id,
        )
