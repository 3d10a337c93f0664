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

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from somprobe.data.runner import pause_hook, shard_keys
from somprobe.errors import DataFormatError, InputError
from somprobe.io import atomic_write
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
            regions = from_label_image(np.asarray(Image.open(png)), categories=cats or None)
        elif npy.is_file():
            stack = np.load(npy)
            regions = from_masks(stack, categories=[cats.get(i) for i in range(len(stack))])
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


def superpixel_source(method: str = "felzenszwalb") -> RegionSource:
    """Weight-free regions: superpixels of each image (no categories)."""
    from somprobe.tagging.regions.superpixels import from_superpixels

    def source(item: ImageItem, image: Image.Image) -> list[Region]:
        return from_superpixels(image, method)  # type: ignore[arg-type]

    return source


def _resize(image: Image.Image, short_side: int) -> Image.Image:
    w, h = image.size
    scale = short_side / min(w, h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return image if size == (w, h) else image.resize(size, Image.Resampling.BICUBIC)


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
        short_side: resize images (and masks, nearest) to this shorter side first
            (SoM-LLaVA used 640); None keeps the size.
        limit: stop after this many items of the shard (None: all).
        progress: show a tqdm bar.
        tag_options: keyword arguments for :func:`somprobe.tagging.tag_regions`.

    Raises:
        InputError: a missing or unreadable image, named.
    """
    from tqdm import tqdm

    out = Path(out_dir)
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
        if short_side is not None:
            image = _resize(image, short_side)
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
    "coco_source",
    "folder_items",
    "mask_folder_source",
    "superpixel_source",
    "tag_images",
]
