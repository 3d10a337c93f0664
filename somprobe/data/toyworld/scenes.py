"""Procedural toy scenes: coloured shapes on textured backgrounds, with exact ground truth.

A scene is drawn from one seed: 2–8 objects (shape × colour × size), each painted as a
flat colour over a low-saturation textured background; later objects may overlap earlier
ones a little. Every object's ground-truth mask is the set of pixels that show it (its
shape minus the objects painted over it), so ``image[mask] == object.rgb`` exactly.

Learnability at a vision encoder's resolution (patch size 14 at 112–224 px) drives the
defaults: object centres are *snapped to patch centres* and the SoM tag of each object is
drawn at its centre (:func:`tag_scene`), so one tag glyph sits inside one patch; shapes are
21–34 px across at 112 px (1.5–2.4 patches); objects of one colour never touch. Backgrounds are grey-ish (all three channels
within 24 of each other) and object colours are saturated (channels ≥ 140 apart), so no
background pixel can take an object's colour.

Example:
    >>> cfg = WorldConfig()
    >>> scene = make_scene(cfg, 7)
    >>> scene.image.size, 2 <= len(scene.objects) <= 5
    ((112, 112), True)
    >>> tagged = tag_scene(scene)
    >>> sorted(t.category for t in tagged.tagset) == sorted(o.category for o in scene.objects)
    True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from jaxtyping import Bool, UInt8
from PIL import Image, ImageDraw
from scipy import ndimage

from somprobe.errors import InputError
from somprobe.tagging.regions.base import Region
from somprobe.tagging.tag import tag_regions
from somprobe.tagging.types import TaggedImage

RGB = tuple[int, int, int]

#: Object colours (saturated: max - min channel ≥ 140) with names the tokenizer knows.
COLOURS: dict[str, RGB] = {
    "red": (225, 35, 35),
    "green": (35, 185, 45),
    "blue": (35, 75, 235),
    "yellow": (240, 215, 25),
    "purple": (150, 40, 210),
    "cyan": (25, 205, 225),
}
#: Shapes the scenes can draw.
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "diamond")
DEFAULT_SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross")
#: Half-extent of each size class as a fraction of the image side.
SIZES: dict[str, float] = {"small": 0.095, "large": 0.15}
BACKGROUNDS: tuple[str, ...] = ("noise", "stripes", "checker", "blobs")

_MAX_ATTEMPTS = 200


@dataclass(frozen=True)
class WorldConfig:
    """What a toy world looks like; one config defines one world (train and eval alike).

    Attributes:
        image_size: side of the square images in pixels.
        patch_size: the vision encoder's patch size; with ``snap`` object centres (and so
            the tags) sit on patch centres ``((i + 0.5) * patch, (j + 0.5) * patch)``.
        min_objects, max_objects: objects per scene, drawn uniformly (the issue's 2–8
            range is supported; the default 2–5 is the easier training distribution the
            feasibility runs learned in minutes on a CPU).
        colours: colour names (keys of :data:`COLOURS`).
        shapes: shape names (from :data:`SHAPES`).
        sizes: size classes, name → half-extent as a fraction of ``image_size``.
        colour_weights, shape_weights: relative sampling frequencies (a mild skew makes
            POPE's "popular" negatives differ from random ones); None = uniform.
        snap: snap object centres to patch centres (False: any pixel centre).
        min_gap: minimum centre distance as a fraction of the sum of the two objects'
            half-extents (1.0: bounding circles do not overlap; lower allows overlap).
        min_visible: every object keeps at least this fraction of its pixels visible.
        jitter: per-object colour jitter (± per channel), keeping colours saturated.
        font_size: tag font size in pixels (None: the tagger's default rule).
        count_retries: placement attempts that keep the drawn object count before it is
            lowered by one (0: a new count at every rejected draw, which biases crowded
            worlds towards few objects; ``v2`` keeps each count for 50 attempts).
    """

    image_size: int = 112
    patch_size: int = 14
    min_objects: int = 2
    max_objects: int = 5
    colours: tuple[str, ...] = tuple(COLOURS)
    shapes: tuple[str, ...] = DEFAULT_SHAPES
    sizes: Mapping[str, float] = field(default_factory=lambda: dict(SIZES))
    colour_weights: tuple[float, ...] | None = (1.4, 1.2, 1.0, 1.0, 0.8, 0.6)
    shape_weights: tuple[float, ...] | None = (1.4, 1.2, 1.0, 0.8, 0.6)
    snap: bool = True
    min_gap: float = 0.8
    min_visible: float = 0.6
    jitter: int = 12
    font_size: int | None = 11
    count_retries: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.image_size < 32:
            problems.append(f"image_size={self.image_size} is too small (≥ 32)")
        if self.patch_size < 1 or self.image_size % self.patch_size:
            problems.append(f"patch_size={self.patch_size} must divide image_size")
        if not 1 <= self.min_objects <= self.max_objects:
            problems.append(f"need 1 ≤ min_objects ≤ max_objects, got {self.min_objects}..")
        for name, pool, known in (
            ("colours", self.colours, tuple(COLOURS)),
            ("shapes", self.shapes, SHAPES),
        ):
            bad = [x for x in pool if x not in known]
            if bad or not pool or len(set(pool)) != len(pool):
                problems.append(f"{name} must be distinct names from {known}, got {pool}")
        for name, weights, pool in (
            ("colour_weights", self.colour_weights, self.colours),
            ("shape_weights", self.shape_weights, self.shapes),
        ):
            if weights is not None and (len(weights) != len(pool) or min(weights) <= 0):
                problems.append(f"{name} needs {len(pool)} positive numbers, got {weights}")
        if not self.sizes or any(not 0.02 <= f <= 0.3 for f in self.sizes.values()):
            problems.append(f"sizes must map names to fractions in [0.02, 0.3], got {self.sizes}")
        if not 0 < self.min_gap <= 2 or not 0 < self.min_visible <= 1:
            problems.append("min_gap must lie in (0, 2] and min_visible in (0, 1]")
        if isinstance(self.count_retries, bool) or not 0 <= self.count_retries < _MAX_ATTEMPTS:
            problems.append(f"count_retries must lie in 0..{_MAX_ATTEMPTS - 1}")
        if not 0 <= self.jitter <= 30:
            problems.append(f"jitter must lie in 0..30, got {self.jitter}")
        if problems:
            raise InputError("invalid WorldConfig: " + "; ".join(problems))

    @property
    def categories(self) -> list[str]:
        """Every ``"colour shape"`` category of the world, colour-major order."""
        return [f"{c} {s}" for c in self.colours for s in self.shapes]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["sizes"] = dict(self.sizes)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorldConfig:
        """Inverse of :meth:`to_dict` (lists become tuples)."""
        known = set(cls.__dataclass_fields__)
        bad = set(data) - known
        if bad:
            raise InputError(f"unknown WorldConfig field(s) {sorted(bad)}")
        kwargs: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in data.items()
        }
        return cls(**kwargs)


@dataclass(frozen=True)
class ToyObject:
    """One object of a scene, in paint order."""

    shape: str
    colour: str
    size: str
    center: tuple[float, float]
    radius: float
    rgb: RGB

    @property
    def category(self) -> str:
        """``"colour shape"``, e.g. ``"red circle"``."""
        return f"{self.colour} {self.shape}"


@dataclass(frozen=True, eq=False)
class ToyScene:
    """An untagged scene and its ground truth.

    Attributes:
        seed: the seed it was drawn from.
        image: the RGB image.
        objects: the objects in paint order (later ones may cover earlier ones).
        regions: one :class:`Region` per object (same order): the visible pixels, category
            ``"colour shape"``, ``source_id`` = paint index, metadata colour / shape / size /
            rgb / center / full_area.
        background: the background texture kind.
        config: the world it belongs to.
    """

    seed: int | tuple[int, ...]
    image: Image.Image
    objects: list[ToyObject]
    regions: list[Region]
    background: str
    config: WorldConfig


#: Named worlds. ``v1`` is the first shipped world (objects 1.5–2.4 patches across, an
#: 11 px mark covering about 31 % of an object). ``v2`` is sized so that shape can be
#: seen at a 14 px patch: objects about 2.4–3.7 patches across, at most 4 per scene, four
#: shapes (no star: its thin points leave no patch that is half star and free of the mark,
#: so attention scores would be undefined for it), a 9 px mark covering on average under
#: 10 % of its object (measured by
#: :func:`somprobe.data.toyworld.coverage.coverage_table`; the numbers are in the README).
WORLDS: dict[str, WorldConfig] = {
    "v1": WorldConfig(),
    "v2": WorldConfig(
        max_objects=4,
        sizes={"small": 0.18, "large": 0.23},
        min_gap=0.8,
        count_retries=49,
        font_size=9,
        shapes=("circle", "square", "triangle", "cross"),
        shape_weights=(1.2, 1.1, 0.9, 0.8),
    ),
}


def world(name: str) -> WorldConfig:
    """The named world (see :data:`WORLDS`).

    Raises:
        InputError: an unknown name.

    Example:
        >>> world("v2").max_objects
        4
    """
    if name not in WORLDS:
        raise InputError(f"unknown toy world {name!r}; choose from {sorted(WORLDS)}")
    return WORLDS[name]


def shape_mask(shape: str, center: tuple[float, float], radius: float, size: int) -> np.ndarray:
    """Boolean ``(size, size)`` mask of one shape (aliased drawing: exact pixels).

    Example:
        >>> m = shape_mask("square", (20.0, 20.0), 8.0, 40)
        >>> bool(m[20, 20]), bool(m[0, 0])
        (True, False)
    """
    cx, cy = center
    r = float(radius)
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r - 1, cy + r - 1], fill=1)
    elif shape == "square":
        h = 0.85 * r
        draw.rectangle([cx - h, cy - h, cx + h - 1, cy + h - 1], fill=1)
    elif shape == "diamond":
        h = 1.1 * r
        draw.polygon([(cx, cy - h), (cx + h, cy), (cx, cy + h), (cx - h, cy)], fill=1)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx + r, cy + 0.8 * r), (cx - r, cy + 0.8 * r)], fill=1)
    elif shape == "star":
        points = []
        for k in range(10):
            rr = r if k % 2 == 0 else 0.45 * r
            angle = -math.pi / 2 + k * math.pi / 5
            points.append((cx + rr * math.cos(angle), cy + rr * math.sin(angle)))
        draw.polygon(points, fill=1)
    elif shape == "cross":
        w = 0.34 * r
        draw.rectangle([cx - r, cy - w, cx + r - 1, cy + w - 1], fill=1)
        draw.rectangle([cx - w, cy - r, cx + w - 1, cy + r - 1], fill=1)
    else:
        raise InputError(f"unknown shape {shape!r}; choose from {SHAPES}")
    return np.asarray(canvas, dtype=np.uint8).astype(bool)


def background(kind: str, size: int, rng: np.random.Generator) -> UInt8[np.ndarray, "size size 3"]:
    """A grey-ish textured background (all channels within 24 of each other).

    The texture is one luminance field shared by the three channels plus a constant tint
    per channel in [-12, 12], so it never looks like a saturated object colour.
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle = rng.uniform(0, 2 * math.pi)
    low, high = sorted(rng.uniform(95, 185, size=2))
    lum = low + (high - low) * (0.5 + 0.5 * (np.cos(angle) * xx + np.sin(angle) * yy))
    if kind == "stripes":
        freq = rng.uniform(4, 10)
        phi = rng.uniform(0, 2 * math.pi)
        a2 = rng.uniform(0, math.pi)
        lum += 10 * np.sin(2 * math.pi * freq * (np.cos(a2) * xx + np.sin(a2) * yy) + phi)
    elif kind == "checker":
        cell = int(rng.integers(4, 11))
        iy, ix = np.mgrid[0:size, 0:size] // cell
        lum += np.where((iy + ix) % 2 == 0, 8.0, -8.0)
    elif kind == "blobs":
        lum += 60 * ndimage.gaussian_filter(rng.standard_normal((size, size)), 4.0)
    elif kind != "noise":
        raise InputError(f"unknown background {kind!r}; choose from {BACKGROUNDS}")
    lum += rng.normal(0, 5, size=(size, size))
    tint = rng.integers(-12, 13, size=3)
    out = np.clip(lum[..., None] + tint[None, None, :], 40, 230)
    return np.rint(out).astype(np.uint8)


def _weights(weights: tuple[float, ...] | None, n: int) -> np.ndarray:
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    return w / w.sum()


def _jittered(rgb: RGB, jitter: int, rng: np.random.Generator) -> RGB:
    if jitter == 0:
        return rgb
    values = np.clip(np.asarray(rgb) + rng.integers(-jitter, jitter + 1, size=3), 0, 255)
    return (int(values[0]), int(values[1]), int(values[2]))


def _centers(cfg: WorldConfig, radius: float) -> np.ndarray:
    """Candidate ``(x, y)`` centres keeping an object of ``radius`` inside the image."""
    if cfg.snap:
        axis = (np.arange(cfg.image_size // cfg.patch_size) + 0.5) * cfg.patch_size
    else:
        axis = np.arange(cfg.image_size) + 0.5
    axis = axis[(axis - radius >= 1) & (axis + radius <= cfg.image_size - 1)]
    xs, ys = np.meshgrid(axis, axis)
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def _place(cfg: WorldConfig, rng: np.random.Generator, n: int) -> list[ToyObject] | None:
    size_names = list(cfg.sizes)
    cw, sw = (
        _weights(cfg.colour_weights, len(cfg.colours)),
        _weights(cfg.shape_weights, len(cfg.shapes)),
    )
    objects: list[ToyObject] = []
    for _ in range(n):
        colour = cfg.colours[int(rng.choice(len(cfg.colours), p=cw))]
        shape = cfg.shapes[int(rng.choice(len(cfg.shapes), p=sw))]
        size = size_names[int(rng.integers(len(size_names)))]
        radius = cfg.sizes[size] * cfg.image_size
        cands = _centers(cfg, radius)
        ok = np.ones(len(cands), dtype=bool)
        for other in objects:
            dist = np.hypot(cands[:, 0] - other.center[0], cands[:, 1] - other.center[1])
            ok &= dist >= cfg.min_gap * (radius + other.radius)
        if not ok.any():
            return None
        cx, cy = cands[rng.choice(np.flatnonzero(ok))]
        rgb = _jittered(COLOURS[colour], cfg.jitter, rng)
        while any(o.rgb == rgb for o in objects):  # distinct colours: exact pixel truth
            rgb = _jittered(COLOURS[colour], max(cfg.jitter, 1), rng)
        objects.append(ToyObject(shape, colour, size, (float(cx), float(cy)), radius, rgb))
    return objects


def _same_colour_touch(objects: list[ToyObject], full: list[np.ndarray]) -> bool:
    """True if two objects of one colour name touch (they would read as one blob)."""
    for i, a in enumerate(objects):
        grown = None
        for j in range(i + 1, len(objects)):
            if objects[j].colour != a.colour:
                continue
            if grown is None:
                grown = ndimage.binary_dilation(full[i], iterations=2)
            if (grown & full[j]).any():
                return True
    return False


def _visible_masks(
    objects: list[ToyObject], full: list[np.ndarray]
) -> tuple[list[np.ndarray], list[int]]:
    visible = []
    for i, mask in enumerate(full):
        covered = np.zeros_like(mask)
        for later in full[i + 1 :]:
            covered |= later
        visible.append(mask & ~covered)
    return visible, [int(m.sum()) for m in full]


def _center_pixel(center: tuple[float, float]) -> tuple[int, int]:
    return math.floor(center[1]), math.floor(center[0])


def make_scene(cfg: WorldConfig, seed: int | Sequence[int]) -> ToyScene:
    """Draw the scene of ``seed`` (an int or a sequence of ints) in world ``cfg``.

    Objects are placed one at a time at a random allowed centre (patch centres when
    ``cfg.snap``) at least ``cfg.min_gap`` × (sum of half-extents) from every earlier
    object; a draw is rejected and redrawn (from the same generator, so the result is
    still a function of the seed) when an object cannot be placed, keeps less than
    ``cfg.min_visible`` of its pixels, or has its centre pixel covered.

    Raises:
        InputError: no valid scene after many draws (too many objects for the image), or
            a seed that is not a whole number ≥ 0 (or a sequence of them).
    """
    parts = [seed] if isinstance(seed, int | np.integer) else seed
    if (
        isinstance(seed, bool | str | bytes)
        or not isinstance(parts, Sequence)
        or not parts
        or any(isinstance(x, bool) or not isinstance(x, int | np.integer) or x < 0 for x in parts)
    ):
        raise InputError(f"scene seed {seed!r}: give a whole number ≥ 0 or a sequence of them")
    rng = np.random.default_rng(seed)
    size = cfg.image_size
    n = 0
    for attempt in range(_MAX_ATTEMPTS):
        if cfg.count_retries == 0 or attempt == 0:
            n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
        elif attempt % (cfg.count_retries + 1) == 0:  # this count did not fit: one fewer
            n = max(cfg.min_objects, n - 1)
        objects = _place(cfg, rng, n)
        if objects is None:
            continue
        full = [shape_mask(o.shape, o.center, o.radius, size) for o in objects]
        if _same_colour_touch(objects, full):
            continue
        visible, areas = _visible_masks(objects, full)
        good = all(
            v.sum() >= cfg.min_visible * a and v[_center_pixel(o.center)]
            for v, a, o in zip(visible, areas, objects, strict=True)
        )
        if good:
            break
    else:
        raise InputError(
            f"could not place {cfg.min_objects}..{cfg.max_objects} objects in a "
            f"{size} px image after {_MAX_ATTEMPTS} draws; lower max_objects, min_gap or sizes"
        )
    kind = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    pixels = background(kind, size, rng)
    regions = []
    for i, (obj, mask) in enumerate(zip(objects, visible, strict=True)):
        pixels[full[i]] = obj.rgb
        meta = {
            "colour": obj.colour,
            "shape": obj.shape,
            "size": obj.size,
            "rgb": list(obj.rgb),
            "center": list(obj.center),
            "full_area": areas[i],
        }
        regions.append(Region(mask, category=obj.category, source_id=i, metadata=meta))
    seed_out: int | tuple[int, ...] = seed if isinstance(seed, int) else tuple(int(s) for s in seed)
    return ToyScene(seed_out, Image.fromarray(pixels), objects, regions, kind, cfg)


def tag_scene(scene: ToyScene, **options: Any) -> TaggedImage:
    """Tag ``scene`` the SoM-LLaVA way, each mark at its object's (snapped) centre.

    SoM-LLaVA defaults (tags by area ascending, white digits on a black box of alpha
    0.8); the mark is placed at the object's centre instead of the distance-transform
    maximum so that, with ``snap``, one tag glyph lies inside one patch. ``options`` go to
    :func:`somprobe.tagging.tag_regions` (e.g. ``font_size``, ``label_mode``).
    """
    opts: dict[str, Any] = {"min_area": 0}
    if scene.config.font_size is not None:
        opts["font_size"] = scene.config.font_size
    opts.update(options)
    opts.setdefault("centers", [o.center for o in scene.objects])
    return tag_regions(scene.image, scene.regions, **opts)


def object_pixels(scene: ToyScene, index: int) -> Bool[np.ndarray, "height width"]:
    """Pixels of the image whose colour is exactly object ``index``'s colour."""
    arr = np.asarray(scene.image)
    return np.all(arr == np.asarray(scene.objects[index].rgb, dtype=np.uint8), axis=-1)


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
    "background",
    "make_scene",
    "object_pixels",
    "shape_mask",
    "tag_scene",
    "world",
]
