"""Per-patch ground truth of a toy scene: which object's shape and colour each patch shows.

The labels of the vision warm-up (:mod:`somprobe.finetune.vision_warmup`): a patch
belongs to the object that covers the largest share of it, when that share is at least
``min_share``; otherwise it is background (label 0). Shapes and colours are numbered
from 1 in the world's order (``cfg.shapes``, ``cfg.colours``).

Example:
    >>> from somprobe.data.toyworld.scenes import make_scene, world
    >>> labels = patch_labels(make_scene(world("v2"), 0))
    >>> labels.shape.shape, int(labels.shape.max()) <= len(world("v2").shapes)
    ((8, 8), True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from jaxtyping import Float, Int

from somprobe.data.toyworld.scenes import ToyScene
from somprobe.errors import InputError


@dataclass(frozen=True)
class PatchLabels:
    """Labels of one scene on its patch grid (row-major, like the image tokens).

    Attributes:
        shape: 0 for background, else 1 + the index of the patch's object's shape.
        colour: 0 for background, else 1 + the index of its colour.
        owner: the paint index of the patch's object, -1 for background.
        share: the share of the patch its owner covers (the largest object share).
    """

    shape: Int[np.ndarray, "rows cols"]
    colour: Int[np.ndarray, "rows cols"]
    owner: Int[np.ndarray, "rows cols"]
    share: Float[np.ndarray, "rows cols"]


def object_shares(scene: ToyScene) -> Float[np.ndarray, "object rows cols"]:
    """The share of every patch that each object's visible pixels cover (a world's image
    is a whole number of patches: :class:`WorldConfig` checks it)."""
    cfg = scene.config
    p, g = cfg.patch_size, cfg.image_size // cfg.patch_size
    if not scene.regions:
        return np.zeros((0, g, g))
    masks = np.stack([r.mask for r in scene.regions]).astype(np.float64)
    return masks.reshape(len(masks), g, p, g, p).mean(axis=(2, 4))


def patch_labels(scene: ToyScene, *, min_share: float = 0.25) -> PatchLabels:
    """Shape and colour label of every patch of ``scene`` (see the module docstring).

    Raises:
        InputError: ``min_share`` outside (0, 1].
    """
    if not 0 < min_share <= 1:
        raise InputError(f"min_share must lie in (0, 1], got {min_share}")
    cfg = scene.config
    shares = object_shares(scene)
    g = cfg.image_size // cfg.patch_size
    owner = np.full((g, g), -1, dtype=np.int64)
    share = np.zeros((g, g))
    if len(shares):
        best, share = shares.argmax(axis=0), shares.max(axis=0)
        owner = np.where(share >= min_share, best, -1)
    shape_ids = np.array([0] + [cfg.shapes.index(o.shape) + 1 for o in scene.objects])
    colour_ids = np.array([0] + [cfg.colours.index(o.colour) + 1 for o in scene.objects])
    return PatchLabels(shape_ids[owner + 1], colour_ids[owner + 1], owner, share)


__all__ = ["PatchLabels", "object_shares", "patch_labels"]
