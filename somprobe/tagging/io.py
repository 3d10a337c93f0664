"""Save and load a :class:`~somprobe.tagging.TagSet` as JSON, masks as COCO RLE.

The round trip is exact for masks, ids, labels, centers, boxes, colours, skipped entries
and JSON-native metadata. Metadata values are written as JSON: numpy scalars and arrays
become numbers and lists, tuples become lists (they come back as lists); anything else
that JSON cannot hold raises :class:`~somprobe.errors.InputError` on save.

File layout (``format: "somprobe.tagset"``, ``version: 1``)::

    {"format": ..., "version": 1, "image_size": [w, h], "label_mode": "number",
     "options": {...}, "skipped": [...],
     "tags": [{"id": 1, "label": "1", "center": [x, y], "mark_box": [x0, y0, x1, y1],
               "category": ..., "source_id": ..., "source_index": ..., "color": [r, g, b],
               "metadata": {...}, "mask": {"size": [h, w], "counts": "..."},
               "original_mask": {...}}]}

Example:
    >>> import numpy as np, tempfile, os
    >>> from somprobe.tagging import tag_regions
    >>> m = np.zeros((8, 8), bool); m[2:6, 2:6] = True
    >>> ts = tag_regions(np.zeros((8, 8, 3), np.uint8), [m], min_area=0).tagset
    >>> path = os.path.join(tempfile.mkdtemp(), "tags.json")
    >>> save_tagset(ts, path)
    >>> tagsets_equal(load_tagset(path), ts)
    True
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from jaxtyping import Bool
from pycocotools import mask as mask_utils

from somprobe.errors import DataFormatError, InputError, WriteError
from somprobe.io import atomic_path
from somprobe.tagging.types import Tag, TagSet

FORMAT = "somprobe.tagset"
VERSION = 1


def encode_mask(mask: Bool[np.ndarray, "height width"]) -> dict[str, Any]:
    """COCO RLE of a boolean mask, with ``counts`` as a str (JSON-ready)."""
    rle = mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_mask(rle: Any, where: str = "mask") -> Bool[np.ndarray, "height width"]:
    """Boolean mask from a COCO RLE dict (compressed ``counts`` str or bytes, or a list).

    The counts must describe exactly ``size`` pixels: a compressed string must be the one
    pycocotools writes for the mask it decodes to, a list must sum to ``h * w``.

    Raises:
        DataFormatError: ``rle`` is not such a dict; the message starts with ``where``.
    """
    try:
        size = [int(v) for v in rle["size"]]
        if len(size) != 2 or min(size) < 0:
            raise ValueError(f"size {rle['size']!r} is not [h, w]")
        counts = rle["counts"]
        if isinstance(counts, str):
            counts = counts.encode("ascii")
        if isinstance(counts, list):
            if sum(int(c) for c in counts) != size[0] * size[1] or min(counts, default=0) < 0:
                raise ValueError(f"the counts do not add up to {size[0]}×{size[1]} pixels")
            obj = mask_utils.frPyObjects({"size": size, "counts": counts}, *size)
        else:
            obj = {"size": size, "counts": counts}
        with warnings.catch_warnings():  # numpy-2 copy-keyword notice inside pycocotools
            warnings.simplefilter("ignore", DeprecationWarning)
            decoded = mask_utils.decode(obj)
        if isinstance(counts, bytes) and encode_mask(decoded)["counts"].encode("ascii") != counts:
            raise ValueError(f"the counts do not describe a {size[0]}×{size[1]} mask")
        return np.ascontiguousarray(decoded.astype(bool))
    except (KeyError, TypeError, ValueError, OverflowError, UnicodeEncodeError) as err:
        raise DataFormatError(
            f"{where} is not a COCO RLE dict with 'size' [h, w] and 'counts' ({err})"
        ) from err


def _jsonable(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, where) for v in value]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise InputError(f"{where} has a non-string key {k!r}; JSON keys are strings")
            out[k] = _jsonable(v, f"{where}[{k!r}]")
        return out
    raise InputError(
        f"{where} holds a {type(value).__name__}, which JSON cannot store; "
        "keep metadata to numbers, strings, lists and dicts"
    )


def tagset_to_dict(tagset: TagSet) -> dict[str, Any]:
    """A JSON-ready dict of ``tagset`` (masks as RLE)."""
    tags = []
    for tag in tagset.tags:
        tags.append(
            {
                "id": tag.id,
                "label": tag.label,
                "center": [float(tag.center[0]), float(tag.center[1])],
                "mark_box": [int(v) for v in tag.mark_box],
                "category": tag.category,
                "source_id": _jsonable(tag.source_id, f"tag {tag.id} source_id"),
                "source_index": tag.source_index,
                "color": None if tag.color is None else [int(c) for c in tag.color],
                "metadata": _jsonable(tag.metadata, f"tag {tag.id} metadata"),
                "mask": encode_mask(tag.mask),
                "original_mask": encode_mask(tag.original_mask),
            }
        )
    return {
        "format": FORMAT,
        "version": VERSION,
        "image_size": [int(v) for v in tagset.image_size],
        "label_mode": tagset.label_mode,
        "options": _jsonable(tagset.options, "options"),
        "skipped": _jsonable(tagset.skipped, "skipped"),
        "tags": tags,
    }


def _field(obj: dict[str, Any], key: str, where: str) -> Any:
    if key not in obj:
        raise DataFormatError(f"{where} has no {key!r} field")
    return obj[key]


def _ints(value: Any, n: int) -> tuple[int, ...] | None:
    """``value`` as ``n`` integers (JSON numbers with no fraction), or None."""
    if not isinstance(value, list) or len(value) != n:
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return None
    if not all(float(v).is_integer() for v in value):
        return None
    return tuple(int(v) for v in value)


def _tag_from_dict(raw: Any, i: int, width: int, height: int) -> Tag:
    where = f"tag entry {i}"
    if not isinstance(raw, dict):
        raise DataFormatError(f"{where} is not an object but {type(raw).__name__}")
    mask = decode_mask(_field(raw, "mask", where), f"{where} mask")
    original = decode_mask(_field(raw, "original_mask", where), f"{where} original_mask")
    for name, m in (("mask", mask), ("original_mask", original)):
        if m.shape != (height, width):
            raise DataFormatError(
                f"{where} {name} is {m.shape[0]}×{m.shape[1]} but image_size is "
                f"{width}×{height} (width×height)"
            )
    center = _field(raw, "center", where)
    if not (
        isinstance(center, list)
        and len(center) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in center)
        and all(np.isfinite(center))
    ):
        raise DataFormatError(f"{where} center must be [x, y], two numbers, got {center!r}")
    box = _ints(_field(raw, "mark_box", where), 4)
    if box is None:
        raise DataFormatError(f"{where} mark_box must be 4 integers, got {raw['mark_box']!r}")
    tag_id = _ints([_field(raw, "id", where)], 1)
    if tag_id is None:
        raise DataFormatError(f"{where} id must be an integer, got {raw['id']!r}")
    color = raw.get("color")
    rgb = None if color is None else _ints(color, 3)
    if color is not None and (rgb is None or not all(0 <= c <= 255 for c in rgb)):
        raise DataFormatError(f"{where} color must be [r, g, b] in 0..255 or null, got {color!r}")
    metadata = raw.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise DataFormatError(f"{where} metadata must be an object, got {metadata!r}")
    for name, types in (("category", (str,)), ("source_id", (str, int)), ("source_index", (int,))):
        value = raw.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, types)):
            raise DataFormatError(f"{where} {name} has the wrong type: {value!r}")
    return Tag(
        id=tag_id[0],
        label=str(_field(raw, "label", where)),
        mask=mask,
        original_mask=original,
        center=(float(center[0]), float(center[1])),
        mark_box=box,  # type: ignore[arg-type]
        category=raw.get("category"),
        source_id=raw.get("source_id"),
        metadata=dict(metadata or {}),
        source_index=raw.get("source_index"),
        color=rgb,  # type: ignore[arg-type]
    )


def tagset_from_dict(data: Any) -> TagSet:
    """The TagSet stored in ``data`` (as written by :func:`tagset_to_dict`).

    Raises:
        DataFormatError: a field is missing or malformed; the message names it.
    """
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DataFormatError(f"not a TagSet file: expected a JSON object with format {FORMAT!r}")
    if data.get("version") != VERSION:
        raise DataFormatError(
            f"TagSet file version {data.get('version')!r} is not supported (this is {VERSION})"
        )
    size = _ints(_field(data, "image_size", "TagSet"), 2)
    if size is None or min(size) < 1:
        raise DataFormatError(
            f"TagSet image_size must be [width, height], two integers ≥ 1, got "
            f"{data['image_size']!r}"
        )
    width, height = size
    raw_tags = _field(data, "tags", "TagSet")
    if not isinstance(raw_tags, list):
        raise DataFormatError(f"TagSet tags must be a list, got {type(raw_tags).__name__}")
    tags = [_tag_from_dict(raw, i, width, height) for i, raw in enumerate(raw_tags)]
    ids = [t.id for t in tags]
    if ids != list(range(1, len(tags) + 1)):
        raise DataFormatError(f"tag ids must be 1..N in order, got {ids[:10]}")
    label_mode = data.get("label_mode", "number")
    if label_mode not in ("number", "letter"):
        raise DataFormatError(f"label_mode must be 'number' or 'letter', got {label_mode!r}")
    skipped = data.get("skipped") or []
    if not isinstance(skipped, list) or not all(isinstance(e, dict) for e in skipped):
        raise DataFormatError(f"TagSet skipped must be a list of objects, got {skipped!r}")
    options = data.get("options") or {}
    if not isinstance(options, dict):
        raise DataFormatError(f"TagSet options must be an object, got {options!r}")
    return TagSet(
        tags=tags,
        image_size=(width, height),
        label_mode=label_mode,
        skipped=list(skipped),
        options=dict(options),
    )


def save_tagset(tagset: TagSet, path: str | os.PathLike[str]) -> None:
    """Write ``tagset`` to ``path`` as JSON, atomically (:func:`somprobe.io.atomic_path`).

    The folder must exist (it is not created).

    Raises:
        InputError: ``tagset`` is not a TagSet or holds metadata JSON cannot store, or the
            folder does not exist.
        WriteError: ``path`` cannot be written (a file stands where a folder should be, no
            permission, ``path`` is a folder, ...).
    """
    if not isinstance(tagset, TagSet):
        raise InputError(f"tagset must be a TagSet, got {type(tagset).__name__}")
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise WriteError(f"cannot write {target}: {existing} is a file, not a folder")
    if not folder.is_dir():
        raise InputError(f"folder {folder} does not exist; create it before saving {target.name}")
    text = json.dumps(tagset_to_dict(tagset), separators=(",", ":"))
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def load_tagset(path: str | os.PathLike[str]) -> TagSet:
    """Read a TagSet written by :func:`save_tagset`.

    Raises:
        InputError: the file does not exist or cannot be read.
        DataFormatError: the file is not valid TagSet JSON (truncated, corrupt, or a field
            missing or malformed; the message names it).
    """
    target = Path(path)
    if not target.is_file():
        raise InputError(f"no TagSet file at {target}")
    try:
        data = json.loads(target.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataFormatError(f"{target} is not valid JSON: {err}") from err
    except OSError as err:
        raise InputError(f"cannot read the TagSet file {target}: {err.strerror or err}") from err
    return tagset_from_dict(data)


def tagsets_equal(a: TagSet, b: TagSet) -> bool:
    """True when two TagSets hold the same tags (masks compared pixel by pixel)."""
    if (a.image_size, a.label_mode, a.skipped, a.options) != (
        b.image_size,
        b.label_mode,
        b.skipped,
        b.options,
    ):
        return False
    if len(a.tags) != len(b.tags):
        return False
    for s, t in zip(a.tags, b.tags, strict=True):
        same = (s.id, s.label, s.center, tuple(s.mark_box), s.category, s.source_id) == (
            t.id,
            t.label,
            t.center,
            tuple(t.mark_box),
            t.category,
            t.source_id,
        )
        same = same and (s.metadata, s.source_index, s.color) == (
            t.metadata,
            t.source_index,
            t.color,
        )
        if not (same and np.array_equal(s.mask, t.mask)):
            return False
        if not np.array_equal(s.original_mask, t.original_mask):
            return False
    return True
