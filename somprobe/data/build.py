"""Build listing or tag-QA records from a tagged folder, resumable and shardable.

Reads the ``tagsets/<key>.json`` files written by :func:`somprobe.data.tagging.tag_images`
and writes one LLaVA JSON array. Each image's record is drawn from its own generator
(:func:`somprobe.data.seeding.rng_for` with the seed and the key), so the output does
not depend on sharding or on where a run was interrupted. Records point at
``<image_prefix>images/<key>.png``: with the default empty prefix, the tagged folder is
the training image folder.

Example:
    >>> build_listing("som_out/", "listing.json", seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from somprobe.data.listing import Describer, listing_record
from somprobe.data.llava_json import LlavaRecord, dumps_record
from somprobe.data.runner import Journal, journal_path, pause_hook, shard_keys
from somprobe.data.seeding import check_seed, rng_for
from somprobe.data.tag_qa import COCO_CATEGORIES, QA_KINDS, QAKind, qa_record
from somprobe.errors import InputError
from somprobe.io import check_writable
from somprobe.tagging.io import load_tagset
from somprobe.tagging.types import TagSet

Maker = Callable[[str, str, TagSet, "Image.Image | None"], LlavaRecord | None]


def tagged_keys(tagged_dir: str | Path) -> list[str]:
    """Sorted keys of the TagSet files under ``tagged_dir/tagsets``.

    Raises:
        InputError: no ``tagsets`` folder or no TagSet files in it.
    """
    root = Path(tagged_dir) / "tagsets"
    if not root.is_dir():
        raise InputError(f"{root} does not exist; run `somprobe data tag` into {tagged_dir} first")
    keys = sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.json"))
    if not keys:
        raise InputError(f"no TagSet files under {root}")
    return keys


def load_describer(spec: str | None) -> Describer | None:
    """``"package.module:function"`` → that callable (None → None, the default labels).

    Raises:
        InputError: the module or attribute cannot be found, or is not callable.
    """
    if spec is None:
        return None
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise InputError(f"describer {spec!r}: write it as package.module:function")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise InputError(f"describer {spec!r} cannot be loaded: {err}") from None
    except Exception as err:  # the user's module failed while being imported
        raise InputError(
            f"describer {spec!r}: importing {module_name} failed with {type(err).__name__}: {err}"
        ) from None
    if not callable(fn):
        raise InputError(f"describer {spec!r} is not callable")
    return fn  # type: ignore[no-any-return]


@dataclass
class BuildSummary:
    """Counts from a build: keys of the shard, finished before, written, and skipped."""

    selected: int = 0
    already_done: int = 0
    records: int = 0
    skipped: dict[str, int] = field(default_factory=dict)


def build_records(
    tagged_dir: str | Path,
    out_path: str | Path,
    make: Maker,
    *,
    settings: dict[str, Any],
    shard: tuple[int, int] = (0, 1),
    image_prefix: str = "",
    needs_image: bool = False,
    progress: bool = True,
    desc: str = "build",
) -> BuildSummary:
    """Run ``make(key, image_path, tagset, image)`` for every key of the shard; resumable.

    A record of None means "nothing to write for this image" and is counted under
    ``skipped["no record"]``; images with empty TagSets are counted as ``"no tags"``.

    Raises:
        WriteError: ``out_path`` cannot be written (checked before anything is read).
        InputError: no tagged folder, or a tagged image missing from ``images/``.
    """
    from tqdm import tqdm

    check_writable(out_path)
    root = Path(tagged_dir)
    keys = shard_keys(tagged_keys(root), *shard)
    settings = {**settings, "shard": list(shard), "image_prefix": image_prefix}
    journal = Journal(journal_path(out_path), settings)
    summary = BuildSummary(selected=len(keys), already_done=len(journal))
    done_now = 0
    try:
        for key in tqdm(keys, desc=desc, unit="img", disable=not progress):
            if key in journal:
                continue
            tagset = load_tagset(root / "tagsets" / f"{key}.json")
            image_path = f"{image_prefix}images/{key}.png"
            if len(tagset) == 0:
                journal.add(key, None, note="no tags")
            else:
                image = None
                if needs_image:
                    image = _open_tagged(root / "images" / f"{key}.png")
                record = make(key, image_path, tagset, image)
                line = None if record is None else dumps_record(record)
                journal.add(key, line, note=None if record is not None else "no record")
            done_now += 1
            pause_hook(done_now)
        summary.skipped = journal.notes()
        summary.records = journal.finish(out_path, keys)
    finally:
        journal.close()
    return summary


def _open_tagged(path: Path) -> Image.Image:
    """A tagged image as RGB (for describers).

    Raises:
        InputError: missing or unreadable.
    """
    if not path.is_file():
        raise InputError(f"tagged image {path} does not exist; rerun `somprobe data tag`")
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except OSError as err:
        raise InputError(
            f"tagged image {path} cannot be read ({err}); rerun `somprobe data tag`"
        ) from None


def build_listing(
    tagged_dir: str | Path,
    out_path: str | Path,
    *,
    seed: int = 0,
    describer: str | None = None,
    shard: tuple[int, int] = (0, 1),
    image_prefix: str = "",
    progress: bool = True,
) -> BuildSummary:
    """Listing records (one per tagged image, id ``som_listing_<key>``).

    Raises:
        InputError: a negative seed, a describer that cannot be loaded.
    """
    check_seed(seed)
    describe = load_describer(describer)

    def make(key: str, image_path: str, tagset: TagSet, image: Image.Image | None) -> LlavaRecord:
        return listing_record(
            f"som_listing_{key}", image_path, tagset, rng_for(seed, key),
            describer=describe, image=image,
        )  # fmt: skip

    settings = {"kind": "listing", "seed": seed, "describer": describer}
    return build_records(
        tagged_dir, out_path, make, settings=settings, shard=shard, image_prefix=image_prefix,
        needs_image=describe is not None, progress=progress, desc="listing",
    )  # fmt: skip


def build_qa(
    tagged_dir: str | Path,
    out_path: str | Path,
    *,
    seed: int = 0,
    questions: int = 4,
    kinds: Sequence[QAKind] = QA_KINDS,
    vocabulary: Sequence[str] = COCO_CATEGORIES,
    describer: str | None = None,
    shard: tuple[int, int] = (0, 1),
    image_prefix: str = "",
    progress: bool = True,
) -> BuildSummary:
    """Tag-QA records (one multi-turn record per tagged image, id ``som_qa_<key>``).

    Raises:
        InputError: ``questions`` below 1, unknown kinds, a vocabulary that is not a list
            of names (checked before anything is read or written).
    """
    check_seed(seed)
    if isinstance(questions, bool) or not isinstance(questions, int) or questions < 1:
        raise InputError(f"questions={questions!r}: ask at least one question per image")
    kinds = list(kinds)
    unknown = [k for k in kinds if k not in QA_KINDS]
    if unknown or not kinds:
        raise InputError(f"unknown QA kinds {unknown or kinds!r}; choose from {QA_KINDS}")
    if isinstance(vocabulary, str) or not all(isinstance(v, str) for v in vocabulary):
        raise InputError("vocabulary must be a list of category names (strings)")
    describe = load_describer(describer)
    vocab = list(vocabulary)

    def make(
        key: str, image_path: str, tagset: TagSet, image: Image.Image | None
    ) -> LlavaRecord | None:
        return qa_record(
            f"som_qa_{key}", image_path, tagset, rng_for(seed, key), n=questions,
            kinds=kinds, vocabulary=vocab, describer=describe, image=image,
        )  # fmt: skip

    settings = {
        "kind": "qa", "seed": seed, "questions": questions, "kinds": list(kinds),
        "vocabulary": vocab, "describer": describer,
    }  # fmt: skip
    return build_records(
        tagged_dir, out_path, make, settings=settings, shard=shard, image_prefix=image_prefix,
        needs_image=describe is not None, progress=progress, desc="qa",
    )  # fmt: skip


__all__ = [
    "BuildSummary",
    "build_listing",
    "build_qa",
    "build_records",
    "load_describer",
    "tagged_keys",
]
