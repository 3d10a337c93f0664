"""The toy world: procedural scenes of coloured shapes, their datasets and eval splits."""

from somprobe.data.toyworld.scenes import (
    BACKGROUNDS,
    COLOURS,
    DEFAULT_SHAPES,
    SHAPES,
    SIZES,
    WORLDS,
    ToyObject,
    ToyScene,
    WorldConfig,
    make_scene,
    object_pixels,
    shape_mask,
    tag_scene,
    world,
)

__all__ = [
    "BACKGROUNDS",
    "COLOURS",
    "DEFAULT_SHAPES",
    "SHAPES",
    "SIZES",
    "WORLDS",
    "ToyObject",
    "ToyScene",
    "WorldConfig",
    "make_scene",
    "object_pixels",
    "shape_mask",
    "tag_scene",
    "world",
]
