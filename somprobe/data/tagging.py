"""Tag a folder of images: regions per image → tagged PNG + TagSet JSON, resumable.

Output layout under ``out_dir`` (``key`` = the image path relative to the image folder,
without its suffix)::

    images/<key>.png      the tagged image
    tagsets/<key>.json    its TagSet (the ground truth); written last, so its presence
                          marks the image as done and a rerun skips it

Both files are written atomically. Regions come from a :data:`RegionSource`, a function
``(item, image) -> list[Region]``: :func:`coco_source` (COCO instance annotations),
:func:`mask_folder_source` (a label PNG or ``.npy`` mask stack per image) and
:func:`superpixel_source` (no annotations needed) are provided.

Example:
    >>> items, source = coco_source("instances_val2017.json", "val2017/")  # doctest: +SKIP
    >>> tag_images(items, source, "som_out/", short_side=640)  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from somprobe.data.runner import pause_hook, shard_keys
from somprobe.errors import DataFormatError, InputError
from somprobe.io import atomic_write, check_writable
from somprobe.tagging.io import save_tagset
from somprobe.tagging.regions.base import Region, resize_regions
from somprobe.tagging.tag import tag_regions

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class ImageItem:
    """One image to tag: its key (output name), file, and source-specific info."""

    key: str
    path: Path
    info: dict[str, Any] = field(default_factory=dict)


RegionSource = Callable[[ImageItem, Image.Image], list[Region]]


def folder_items(images_dir: str | Path) -> list[ImageItem]:
    """Every image file under ``images_dir`` (recursively), sorted by key.

    Raises:
        InputError: the folder is missing or holds no images.
    """
    root = Path(images_dir)
    if not root.is_dir():
        raise InputError(f"image folder {root} does not exist")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {root}")
    items = [ImageItem(p.relative_to(root).with_suffix("").as_posix(), p) for p in paths]
    keys = [i.key for i in items]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise InputError(f"two images share the name {dup!r} (different suffixes); rename one")
    return items


def coco_source(
    annotations: str | Path, images_dir: str | Path, *, include_crowd: bool = False
) -> tuple[list[ImageItem], RegionSource]:
    """Items (one per COCO image entry, sorted by file name) and their regions.

    Raises:
        InputError: an image listed in the annotations is missing from ``images_dir``.
    """
    from somprobe.tagging.regions.coco import from_coco, load_coco

    coco = load_coco(annotations)
    root = Path(images_dir)
    items = []
    for img in sorted(coco.imgs.values(), key=lambda d: str(d["file_name"])):
        path = root / str(img["file_name"])
        key = Path(str(img["file_name"])).with_suffix("").as_posix()
        items.append(ImageItem(key, path, {"coco_image_id": int(img["id"])}))

    def source(item: ImageItem, image: Image.Image) -> list[Region]:
        regions = from_coco(coco, item.info["coco_image_id"], include_crowd=include_crowd)
        if regions and regions[0].mask.shape != (image.height, image.width):
            raise DataFormatError(
                f"image {item.path} is {image.width}×{image.height} but its COCO entry says "
                f"{regions[0].mask.shape[1]}×{regions[0].mask.shape[0]}; use the matching "
                "annotation file"
            )
        return regions

    return items, source


def mask_folder_source(mask_dir: str | Path) -> RegionSource:
    """Regions from per-image mask files under ``mask_dir``, looked up by key.

    Accepted per image: ``<key>.png`` (a label image: 0 = background, each other value
    one region) or ``<key>.npy`` (an ``(N, H, W)`` boolean stack). An optional
    ``<key>.json`` gives categories: ``{"<label value or stack index>": "name"}``.

    Raises:
        InputError: no mask file for an image, or a mask of the wrong size.
        DataFormatError: a mask or category file that cannot be read.
    """
    from somprobe.tagging.regions.arrays import from_label_image, from_masks

    root = Path(mask_dir)
    if not root.is_dir():
        raise InputError(f"mask folder {root} does not exist")

    def source(item: ImageItem, image: Image.Image) -> list[Region]:
        cats_path = root / f"{item.key}.json"
        cats: dict[int, str] = {}
        if cats_path.is_file():
            try:
                cats = {int(k): str(v) for k, v in json.loads(cats_path.read_text()).items()}
            except (ValueError, AttributeError) as err:
                raise DataFormatError(
                    f"{cats_path}: expected a JSON object {{label: category}} ({err})"
                ) from None
        png, npy = root / f"{item.key}.png", root / f"{item.key}.npy"
        if png.is_file():
            try:
                with Image.open(png) as im:
                    labels = np.asarray(im)
            except OSError as err:
                raise DataFormatError(f"mask {png} cannot be read as an image ({err})") from None
            regions = from_label_image(labels, categories=cats or None)
        elif npy.is_file():
            try:
                stack = np.load(npy, allow_pickle=False)
            except (OSError, ValueError, EOFError) as err:
                raise DataFormatError(
                    f"mask {npy} is not a numpy array file ({err}); save an (N, H, W) boolean "
                    "stack with numpy.save"
                ) from None
            count = len(stack) if stack.ndim == 3 else 0
            regions = from_masks(stack, categories=[cats.get(i) for i in range(count)])
        else:
            raise InputError(f"no mask file for image {item.path}: expected {png} or {npy}")
        for r in regions[:1]:
            if r.mask.shape != (image.height, image.width):
                raise InputError(
                    f"masks for {item.path} are {r.mask.shape[1]}×{r.mask.shape[0]} but the "
                    f"image is {image.width}×{image.height}"
                )
        return regions

    return source


SUPERPIXEL_METHODS = ("felzenszwalb", "slic")


def superpixel_source(method: str = "felzenszwalb") -> RegionSource:
    """Weight-free regions: superpixels of each image (no categories).

    Raises:
        InputError: an unknown method.
    """
    from somprobe.tagging.regions.superpixels import from_superpixels

    if method not in SUPERPIXEL_METHODS:
        raise InputError(f"superpixel method {method!r}: choose one of {SUPERPIXEL_METHODS}")

    def source(item: ImageItem, image: Image.Image) -> list[Region]:
        return from_superpixels(image, method)  # type: ignore[arg-type]

    return source


def shrink_to_short_side(image: Image.Image, short_side: int) -> Image.Image:
    """``image`` shrunk (bicubic) so that its shorter side is ``short_side``; an image
    whose shorter side is already ``short_side`` or less is returned as it is (never
    enlarged, as SoM-LLaVA's preprocessing).

    Example:
        >>> shrink_to_short_side(Image.new("RGB", (1280, 960)), 640).size
        (853, 640)
        >>> shrink_to_short_side(Image.new("RGB", (600, 400)), 640).size
        (600, 400)
    """
    w, h = image.size
    if min(w, h) <= short_side:
        return image
    scale = short_side / min(w, h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return image if size == (w, h) else image.resize(size, Image.Resampling.BICUBIC)


def check_tag_output(out_dir: str | Path) -> Path:
    """Fail now, before any image is read, when ``out_dir/images`` or ``out_dir/tagsets``
    cannot be written (creates them).

    Raises:
        WriteError: naming the folder and the reason.
    """
    out = Path(out_dir)
    for sub in ("images", "tagsets"):
        check_writable(out / sub / ".write-check")
    return out


_TAG_OPTIONS = frozenset(inspect.signature(tag_regions).parameters) - {"image", "regions"}


def check_tag_arguments(
    *,
    short_side: int | None = None,
    limit: int | None = None,
    tag_options: dict[str, Any] | None = None,
) -> None:
    """Check :func:`tag_images`' settings before any image is read.

    Raises:
        InputError: ``short_side`` or ``limit`` below 1, an unknown option of
            :func:`somprobe.tagging.tag_regions`, or an unknown label mode.
    """
    if short_side is not None and short_side < 1:
        raise InputError(
            f"--short-side {short_side}: give the shorter side in pixels, ≥ 1 (SoM-LLaVA: 640)"
        )
    if limit is not None and limit < 1:
        raise InputError(f"--limit {limit}: give a positive number of images, or no limit")
    options = dict(tag_options or {})
    unknown = sorted(set(options) - _TAG_OPTIONS)
    if unknown:
        raise InputError(
            f"unknown tagging option(s) {unknown}; tag_regions takes {sorted(_TAG_OPTIONS)}"
        )
    if options.get("label_mode", "number") not in ("number", "letter"):
        raise InputError(f"--label-mode {options['label_mode']!r}: choose 'number' or 'letter'")


@dataclass
class TagRunSummary:
    """Counts from :func:`tag_images`."""

    selected: int = 0
    already_done: int = 0
    tagged: int = 0
    tags: int = 0
    without_tags: list[str] = field(default_factory=list)


def tag_images(
    items: Sequence[ImageItem],
    source: RegionSource,
    out_dir: str | Path,
    *,
    shard: tuple[int, int] = (0, 1),
    short_side: int | None = None,
    limit: int | None = None,
    progress: bool = True,
    tag_options: dict[str, Any] | None = None,
) -> TagRunSummary:
    """Tag each image of this shard whose TagSet file does not exist yet.

    Args:
        items: the images, e.g. from :func:`folder_items` or :func:`coco_source`.
        source: gives each image's regions (in the original image's pixels).
        out_dir: where ``images/`` and ``tagsets/`` go.
        shard: ``(i, n)``: this run handles items ``i, i+n, …`` (0-based).
        short_side: shrink images (and masks, nearest) whose shorter side is longer
            than this to this shorter side first (SoM-LLaVA used 640); smaller images
            are kept as they are, never enlarged. None keeps every size.
        limit: stop after this many items of the shard (None: all).
        progress: show a tqdm bar.
        tag_options: keyword arguments for :func:`somprobe.tagging.tag_regions`.

    Raises:
        InputError: a missing or unreadable image, named; bad settings
            (:func:`check_tag_arguments`).
        WriteError: ``out_dir`` cannot be written (checked before any image is read).
    """
    from tqdm import tqdm

    check_tag_arguments(short_side=short_side, limit=limit, tag_options=tag_options)
    out = check_tag_output(out_dir)
    by_key = {i.key: i for i in items}
    keys = shard_keys([i.key for i in items], *shard)[:limit]
    summary = TagRunSummary(selected=len(keys))
    done_now = 0
    for key in tqdm(keys, desc="tag", unit="img", disable=not progress):
        item = by_key[key]
        tagset_path = out / "tagsets" / f"{key}.json"
        if tagset_path.is_file():
            summary.already_done += 1
            continue
        if not item.path.is_file():
            raise InputError(f"image {item.path} (key {key!r}) does not exist; check the folder")
        try:
            with Image.open(item.path) as im:
                image = im.convert("RGB")
        except OSError as err:
            raise InputError(f"image {item.path} cannot be read: {err}") from None
        regions = source(item, image)
        if short_side is not None and min(image.size) > short_side:
            image = shrink_to_short_side(image, short_side)
            regions = resize_regions(regions, image.size)
        tagged = tag_regions(image, regions, **(tag_options or {}))
        image_path = out / "images" / f"{key}.png"
        image_path.parent.mkdir(parents=True, exist_ok=True)
        tagset_path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(image_path, "wb") as fh:
            tagged.image.save(fh, format="PNG")
        save_tagset(tagged.tagset, tagset_path)
        summary.tagged += 1
        summary.tags += len(tagged.tagset)
        if len(tagged.tagset) == 0:
            summary.without_tags.append(key)
        done_now += 1
        pause_hook(done_now)
    return summary


__all__ = [
    "ImageItem",
    "RegionSource",
    "TagRunSummary",
    "check_tag_arguments",
    "check_tag_output",
    "coco_source",
    "folder_items",
    "mask_folder_source",
    "shrink_to_short_side",
    "superpixel_source",
    "tag_images",
]
