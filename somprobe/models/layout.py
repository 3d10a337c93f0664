"""Which tokens of a sequence are image patches, and where each patch lies in the picture.

An :class:`ImageLayout` is built from a processor and the inputs it produced. For every
image in the batch it records the positions of its image tokens, its patch grid(s), and
the exact geometric map between the model's input pixels and the *original* image. The
per-family arithmetic lives in :mod:`somprobe.models.layouts` (one module per family,
one registry keyed by processor class):

- LLaVA-1.5 (``LlavaProcessor``): one grid; resize-shorter-side + center-crop, or
  pad-to-square with the mean colour (``do_pad=True``); the CLS under "full".
- LLaVA-NeXT (``LlavaNextProcessor``): grid 0 is the base image (the whole picture
  stretched to one tile), grid 1 the anyres tiles stitched and unpadded as the model
  packs them; each row of grid 1 is followed by an image-newline token (no box).
- Qwen2-VL / Qwen2.5-VL: one grid of merged tokens (``merge_size`` × ``merge_size``
  patches each) over the image resized to multiples of the merged patch.

``patch_box``/``mask_to_patches``/``box_to_patches`` speak of grid 0; ``token_boxes``,
``mask_to_tokens`` and ``box_to_tokens`` cover every image token of an image, in the
order of :meth:`ImageLayout.image_token_positions`.

Coordinates: original-image pixels, ``x`` right and ``y`` down, pixel ``(x, y)`` covering
the unit square ``[x, x+1) × [y, y+1)``; boxes ``(x0, y0, x1, y1)``.

Example:
    >>> inputs = prepare_inputs(processor, [image], ["List the tagged items one by one."])
    >>> layout = ImageLayout.from_inputs(processor, inputs, images=[image])
    >>> layout.grid(0)
    (24, 24)
    >>> coverage = layout.mask_to_patches(mask, image=0)   # (24, 24) fractions in [0, 1]
    >>> per_token = layout.mask_to_tokens(mask, image=0)   # every image token, NaN if no box
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from PIL import Image

from somprobe.errors import InputError, require_int
from somprobe.models.layouts import family_for
from somprobe.models.layouts.base import (
    FloatBox,
    ImageEntry,
    PatchGrid,
    Preprocess,
    Style,
    _image_size,
    _size_pair,
)

__all__ = ["FloatBox", "ImageEntry", "ImageLayout", "PatchGrid", "Preprocess", "Style"]


@dataclass(frozen=True)
class ImageLayout:
    """Image-token layout of a processed batch. See the module docstring.

    ``family`` names the layout family that built it ("llava", "llava_next", "qwen2_vl").
    """

    images: tuple[ImageEntry, ...]
    sequence_length: int
    image_token_id: int
    family: str = "llava"

    def __len__(self) -> int:
        return len(self.images)

    def _entry(self, image: int) -> ImageEntry:
        image = require_int(image, "image index")
        if not 0 <= image < len(self.images):
            raise InputError(f"image {image} out of range: the batch has {len(self.images)} images")
        return self.images[image]

    def _grid(self, image: int, grid: int) -> PatchGrid:
        grids = self._entry(image).grids
        grid = require_int(grid, "grid index")
        if not 0 <= grid < len(grids):
            raise InputError(
                f"grid {grid} out of range: image {image} has {len(grids)} grid(s) "
                f"(0..{len(grids) - 1})"
            )
        return grids[grid]

    def grid(self, image: int = 0, grid: int = 0) -> tuple[int, int]:
        g = self._grid(image, grid)
        return g.rows, g.cols

    def num_grids(self, image: int = 0) -> int:
        """How many patch grids ``image`` has (1, or 2 for LLaVA-NeXT's base + tiles)."""
        return len(self._entry(image).grids)

    def patch_positions(self, image: int = 0, grid: int = 0) -> Int[np.ndarray, " patches"]:
        """Token positions of the patches of ``image`` (row-major), CLS excluded."""
        return self._grid(image, grid).positions

    def image_token_positions(self, image: int = 0) -> Int[np.ndarray, " tokens"]:
        """All image-token positions of ``image`` (the CLS under "full", newlines too)."""
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

    def token_grid(self, image: int = 0) -> Int[np.ndarray, " tokens"]:
        """The grid of each image token of ``image``; -1 for the CLS and image newlines."""
        return self._entry(image).token_grid()

    def token_boxes(self, image: int = 0, *, clip: bool = False) -> Float[np.ndarray, "tokens 4"]:
        """Box ``(x0, y0, x1, y1)`` in original pixels of every image token of ``image``.

        Rows follow :meth:`image_token_positions`; tokens with no box (the CLS, image
        newlines) are NaN rows.

        Example:
            >>> layout.token_boxes(0).shape  # doctest: +SKIP
            (len(layout.image_token_positions(0)), 4)
        """
        return self._entry(image).token_boxes(clip=clip)

    def mask_to_tokens(
        self, mask: Bool[np.ndarray, "height width"], image: int = 0
    ) -> Float[np.ndarray, " tokens"]:
        """Fraction of every image token's box that ``mask`` covers (NaN for no box).

        Entries follow :meth:`image_token_positions`; each grid's entries equal its
        ``mask_to_patches``, flattened row-major.
        """
        return self._entry(image).mask_to_tokens(mask)

    def box_to_tokens(self, box: Sequence[float], image: int = 0) -> Float[np.ndarray, " tokens"]:
        """Fraction of every image token's box inside ``box`` (NaN for no box)."""
        return self._entry(image).box_to_tokens(box)

    @classmethod
    def from_inputs(
        cls,
        processor: Any,
        inputs: Mapping[str, Any],
        *,
        images: Sequence[Image.Image] | None = None,
        image_sizes: Sequence[tuple[int, int]] | None = None,
    ) -> ImageLayout:
        """Build the layout of ``inputs`` (``input_ids`` and the pixel inputs).

        Args:
            processor: the processor that made ``inputs`` (LLaVA-1.5, LLaVA-NeXT,
                Qwen2-VL or Qwen2.5-VL).
            inputs: its output (a BatchFeature or dict).
            images: the original images (PIL images or numpy arrays), in the order given
                to the processor; or
            image_sizes: their ``(width, height)``.

        Raises:
            InputError: neither or both of ``images``/``image_sizes``, images that are not
                images, sizes that are not two positive integers, inputs without
                ``input_ids``.
            LayoutError: the images and the image tokens of ``inputs`` do not match, or
                the inputs were made by another family's processor.
            UnsupportedModelError: a processor of no supported family.
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
        for i, (w, h) in enumerate(sizes):
            if w < 1 or h < 1:
                raise InputError(f"image size must be positive, got {(w, h)} for image {i}")
        if not isinstance(inputs, Mapping) or "input_ids" not in inputs:
            raise InputError(
                "inputs must be the processor's output, with input_ids (prepare_inputs makes it)"
            )
        family = family_for(processor)
        input_ids = torch.as_tensor(inputs["input_ids"])
        if input_ids.ndim == 1:
            input_ids = input_ids[None]
        entries = family.build(processor, inputs, input_ids, [(int(w), int(h)) for w, h in sizes])
        return cls(
            images=tuple(entries),
            sequence_length=int(input_ids.shape[1]),
            image_token_id=int(processor.image_token_id),
            family=family.name,
        )
