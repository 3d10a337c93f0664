"""Write a whole toy-world dataset folder: images, TagSets, training mixes, eval splits.

Layout (every JSON file is LLaVA's format; image paths are relative to the split folder)::

    <out>/manifest.json                 world config, seeds, counts, mix compositions
    <out>/train/untagged/<key>.png      untagged scenes
    <out>/train/tagged/images/<key>.png the same scenes tagged (SoM-LLaVA style)
    <out>/train/tagged/tagsets/<key>.json  their TagSets (ground truth)
    <out>/train/instruct.json           one multi-turn instruction record per scene
    <out>/train/listing.json            one listing record per scene  (data pipeline)
    <out>/train/qa.json                 one multi-turn tag-QA record per scene (data pipeline)
    <out>/train/mix_instruct.json       the *instruction* mix: N instruction records
    <out>/train/mix_som.json            the *SoM* mix: N records, a share of them SoM data
    <out>/eval/...                      held-out scenes, same layout, and eval files:
        listing.json, tag_qa.json, pope_random.json, pope_popular.json,
        pope_adversarial.json, instruct.json

Both mixes hold the same number of records, so at one batch size they train for the same
number of steps. Scene seeds are ``[seed, 0, i]`` for training and ``[seed, 1, i]`` for
evaluation (numpy ``SeedSequence`` entropy), so no evaluation scene is ever drawn from a
training seed. Eval records carry their ground truth in an extra ``"eval"`` key (kept by
the LLaVA JSON reader), which :mod:`somprobe.evals` scores against.

Example:
    >>> manifest = write_toy_dataset("toy/", train_scenes=2000, eval_scenes=200)  # doctest: +SKIP
    >>> manifest["train"]["mixes"]["som"]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from PIL import Image

from somprobe.data.build import build_listing, build_qa
from somprobe.data.listing import LISTING_INSTRUCTIONS
from somprobe.data.llava_json import LlavaRecord, dumps_record, make_record
from somprobe.data.mix import MixSource, mix_files
from somprobe.data.seeding import check_seed, rng_for
from somprobe.data.tag_qa import tag_questions
from somprobe.data.toyworld.questions import (
    EXISTS_TEMPLATE,
    POPE_SETTINGS,
    SceneFacts,
    category_counts,
    instruct_questions,
    pope_negatives,
    present_categories,
)
from somprobe.data.toyworld.scenes import ToyScene, WorldConfig, make_scene, tag_scene
from somprobe.errors import DataFormatError, InputError
from somprobe.io import atomic_path, atomic_write, check_writable
from somprobe.tagging.io import save_tagset

TRAIN, EVAL = "train", "eval"
SPLIT_CODES = {TRAIN: 0, EVAL: 1}
EVAL_LISTING_PROMPT = LISTING_INSTRUCTIONS[0]
FORMAT_VERSION = 1


def scene_seed(seed: int, split: str, index: int) -> tuple[int, int, int]:
    """The seed of scene ``index`` of ``split`` ("train" or "eval") in world ``seed``."""
    if split not in SPLIT_CODES:
        raise InputError(f"split must be one of {sorted(SPLIT_CODES)}, got {split!r}")
    return (int(seed), SPLIT_CODES[split], int(index))


def scene_key(split: str, index: int) -> str:
    return f"{split}_{index:06d}"


def iter_scenes(
    cfg: WorldConfig, split: str, count: int, *, seed: int = 0, start: int = 0
) -> Iterator[tuple[str, ToyScene]]:
    """``(key, scene)`` for scenes ``start .. start + count - 1`` of a split."""
    for i in range(start, start + count):
        yield scene_key(split, i), make_scene(cfg, scene_seed(seed, split, i))


def _save_png(image: Image.Image, path: Path) -> None:
    """Write a PNG atomically (no fsync: many small files, rewritten by a rerun)."""
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG", compress_level=1)


def _write_scene(root: Path, key: str, scene: ToyScene) -> Any:
    _save_png(scene.image, root / "untagged" / f"{key}.png")
    tagged = tag_scene(scene)
    _save_png(tagged.image, root / "tagged" / "images" / f"{key}.png")
    tagset_path = root / "tagged" / "tagsets" / f"{key}.json"
    tagset_path.parent.mkdir(parents=True, exist_ok=True)
    save_tagset(tagged.tagset, tagset_path)
    return tagged.tagset


def _write_lines(lines: list[str], path: Path) -> int:
    with atomic_write(path) as fh:
        fh.write("[")
        for i, line in enumerate(lines):
            fh.write(("\n" if i == 0 else ",\n") + line)
        fh.write("\n]\n" if lines else "]\n")
    return len(lines)


def _eval_record(rid: str, image: str, question: str, answer: str, truth: dict[str, Any]) -> str:
    rec = make_record(rid, image, [(question, answer)])
    rec = LlavaRecord(rec.id, rec.image, rec.conversations, {"eval": truth})
    return dumps_record(rec)


def write_train_split(
    root: Path,
    cfg: WorldConfig,
    count: int,
    *,
    seed: int = 0,
    turns: int = 4,
    qa_questions: int = 4,
    progress: bool = True,
) -> dict[str, int]:
    """Scenes, ``instruct.json``, ``listing.json`` and ``qa.json`` of the training split."""
    from tqdm import tqdm

    lines = []
    for key, scene in tqdm(
        iter_scenes(cfg, TRAIN, count, seed=seed), total=count, desc="train scenes",
        disable=not progress,
    ):  # fmt: skip
        _write_scene(root, key, scene)
        qs = instruct_questions(scene, rng_for(seed, f"instruct/{key}"), n=turns)
        rec = make_record(
            f"instruct_{key}", f"untagged/{key}.png", [(q.question, q.answer) for q in qs]
        )
        lines.append(dumps_record(rec))
    n_inst = _write_lines(lines, root / "instruct.json")
    listing = build_listing(
        root / "tagged", root / "listing.json", seed=seed, image_prefix="tagged/", progress=False
    )
    qa = build_qa(
        root / "tagged", root / "qa.json", seed=seed, questions=qa_questions,
        vocabulary=cfg.categories, image_prefix="tagged/", progress=False,
    )  # fmt: skip
    return {"scenes": count, "instruct": n_inst, "listing": listing.records, "qa": qa.records}


def write_eval_split(
    root: Path,
    cfg: WorldConfig,
    count: int,
    *,
    seed: int = 0,
    pope_per_image: int = 3,
    qa_per_image: int = 4,
    progress: bool = True,
) -> dict[str, int]:
    """Held-out scenes and their evaluation files (single-turn records with ``"eval"``)."""
    from tqdm import tqdm

    scenes: list[tuple[str, SceneFacts]] = []  # no pixels: memory flat in ``count``
    listing, qa, instruct = [], [], []
    for key, scene in tqdm(
        iter_scenes(cfg, EVAL, count, seed=seed), total=count, desc="eval scenes",
        disable=not progress,
    ):  # fmt: skip
        tagset = _write_scene(root, key, scene)
        tagged_path = f"tagged/images/{key}.png"
        truth = {
            "task": "listing",
            "tags": {t.label: t.category for t in tagset},
            "attributes": {
                t.label: {"colour": t.metadata["colour"], "shape": t.metadata["shape"]}
                for t in tagset
            },
        }
        answer = "\n".join(f"{t.label}. {t.category}" for t in tagset)
        listing.append(
            _eval_record(f"listing_{key}", tagged_path, EVAL_LISTING_PROMPT, answer, truth)
        )
        pairs = tag_questions(
            tagset, rng_for(seed, f"eval_qa/{key}"), n=qa_per_image, vocabulary=cfg.categories
        )
        for j, p in enumerate(pairs):
            t = {"task": "tag_qa", "kind": p.kind, "answer": p.answer}
            qa.append(_eval_record(f"tag_qa_{key}_{j}", tagged_path, p.question, p.answer, t))
        rng = rng_for(seed, f"eval_instruct/{key}")
        for j, q in enumerate(
            instruct_questions(scene, rng, n=4, kinds=("colour", "shape", "count"))
        ):
            t = {"task": "instruct", "kind": q.kind, "answer": q.answer}
            instruct.append(
                _eval_record(f"instruct_{key}_{j}", f"untagged/{key}.png", q.question, q.answer, t)
            )
        scenes.append((key, SceneFacts.of(scene)))
    written = {
        "scenes": count,
        "listing": _write_lines(listing, root / "listing.json"),
        "tag_qa": _write_lines(qa, root / "tag_qa.json"),
        "instruct": _write_lines(instruct, root / "instruct.json"),
    }
    popularity = category_counts([s for _, s in scenes])
    for setting in POPE_SETTINGS:
        lines = []
        for key, facts in scenes:
            rng = rng_for(seed, f"pope/{setting}/{key}")
            present = present_categories(facts)
            pos = [present[int(i)] for i in rng.permutation(len(present))[:pope_per_image]]
            neg = pope_negatives(facts, setting, len(pos), rng, popularity=popularity)
            items = [(c, "yes") for c in pos] + [(c, "no") for c in neg]
            for j, (cat, label) in enumerate(items):
                t = {"task": "pope", "setting": setting, "label": label, "object": cat}
                lines.append(
                    _eval_record(
                        f"pope_{setting}_{key}_{j}", f"untagged/{key}.png",
                        EXISTS_TEMPLATE.format(cat=cat), label.capitalize(), t,
                    )
                )  # fmt: skip
        written[f"pope_{setting}"] = _write_lines(lines, root / f"pope_{setting}.json")
    return written


def write_toy_dataset(
    out_dir: str | Path,
    *,
    config: WorldConfig | None = None,
    train_scenes: int = 20_000,
    eval_scenes: int = 500,
    seed: int = 0,
    mix_records: int | None = None,
    som_fraction: float = 0.5,
    listing_share: float = 0.5,
    turns: int = 4,
    progress: bool = True,
) -> dict[str, Any]:
    """Write the whole dataset folder (see the module docstring); return the manifest.

    Args:
        out_dir: output folder (created; existing files of the same names are replaced).
        config: the world (default :class:`WorldConfig`).
        train_scenes, eval_scenes: number of scenes per split; 0 leaves that split out
            (``train_scenes=0``: an evaluation split alone, no training files or mixes),
            but not both.
        seed: world seed (scene seeds, question draws, mixing).
        mix_records: records in each training mix (default: ``train_scenes``).
        som_fraction: share of the SoM mix that is SoM data (listing + tag-QA); the rest
            is instruction records.
        listing_share: share of the SoM data that is listing (the rest is tag-QA; the paper
            used 10k listing + 20k QA, i.e. 1/3).
        turns: question turns per instruction record.

    Raises:
        InputError: counts or fractions out of range, a negative seed.
        WriteError: ``out_dir`` cannot be written (checked before any scene is drawn).
    """
    cfg = config or WorldConfig()
    for name, value in (("train_scenes", train_scenes), ("eval_scenes", eval_scenes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InputError(f"{name}={value!r}: give a whole number of scenes ≥ 0")
    if train_scenes == eval_scenes == 0:
        raise InputError("train_scenes and eval_scenes are both 0: there is nothing to write")
    check_seed(seed)
    if not 0 <= som_fraction <= 1 or not 0 <= listing_share <= 1:
        raise InputError("som_fraction and listing_share must lie in [0, 1]")
    if isinstance(turns, bool) or not isinstance(turns, int) or turns < 1:
        raise InputError(f"turns={turns!r}: give at least one question turn per record")
    if mix_records is not None and (
        isinstance(mix_records, bool) or not isinstance(mix_records, int) or mix_records < 0
    ):
        raise InputError(f"mix_records={mix_records!r}: give a whole number of records")
    n_mix = train_scenes if mix_records is None else mix_records
    n_som = round(n_mix * som_fraction)
    n_list = round(n_som * listing_share)
    sizes = {"instruct": n_mix - n_som, "listing": n_list, "qa": n_som - n_list}
    if train_scenes == 0:
        if mix_records:
            raise InputError(
                f"mix_records={mix_records}: there are no training scenes to mix "
                "(train_scenes=0 writes the evaluation split only)"
            )
    elif n_mix < 1 or n_mix > train_scenes:
        raise InputError(
            f"mix_records={n_mix} must lie in 1..train_scenes ({train_scenes}): each source "
            "has one record per training scene"
        )
    out = Path(out_dir)
    check_writable(out / "manifest.json")
    t0 = time.perf_counter()
    train: dict[str, int] = {"scenes": 0}
    mixes: dict[str, Any] = {}
    if train_scenes:
        train = write_train_split(
            out / TRAIN, cfg, train_scenes, seed=seed, turns=turns, progress=progress
        )
        report = mix_files(
            [MixSource("instruct", out / TRAIN / "instruct.json", n_mix)],
            out / TRAIN / "mix_instruct.json",
            seed=seed,
        )
        mixes["instruct"] = report[["source", "taken", "share"]].to_dict("records")
        sources = [
            MixSource(name, out / TRAIN / f"{name}.json", size) for name, size in sizes.items()
        ]
        report = mix_files(sources, out / TRAIN / "mix_som.json", seed=seed)
        mixes["som"] = report[["source", "taken", "share"]].to_dict("records")
    evals: dict[str, int] = {"scenes": 0}
    if eval_scenes:
        evals = write_eval_split(out / EVAL, cfg, eval_scenes, seed=seed, progress=progress)
    manifest = {
        "format": "somprobe.toyworld",
        "version": FORMAT_VERSION,
        "config": cfg.to_dict(),
        "seed": seed,
        "scene_seeds": {
            TRAIN: f"[{seed}, 0, i] for i in 0..{train_scenes - 1}" if train_scenes else "none",
            EVAL: f"[{seed}, 1, i] for i in 0..{eval_scenes - 1}" if eval_scenes else "none",
        },
        "train": {"files": train, "mixes": mixes, "som_fraction": som_fraction,
                  "listing_share": listing_share, "mix_records": n_mix if train_scenes else 0},
        "eval": {"files": evals, "listing_prompt": EVAL_LISTING_PROMPT},
        "seconds": round(time.perf_counter() - t0, 1),
    }  # fmt: skip
    with atomic_write(out / "manifest.json") as fh:
        fh.write(json.dumps(manifest, indent=2) + "\n")
    return manifest


def load_manifest(
    out_dir: str | Path, *, kind: str | None = None, writer: str = "write_toy_dataset"
) -> dict[str, Any]:
    """The manifest of a dataset folder, and its world config as a :class:`WorldConfig`.

    ``kind``: the ``"format"`` the manifest must declare (None: any toy-world manifest);
    ``writer`` names the function the error messages point to.

    Raises:
        InputError: no manifest in ``out_dir``.
        DataFormatError: the manifest is not one written by ``writer``.
    """
    path = Path(out_dir) / "manifest.json"
    if not path.is_file():
        raise InputError(f"{path} not found; write the dataset with {writer} first")
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise DataFormatError(
            f"{path} is not valid JSON ({err}); write the dataset again"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        raise DataFormatError(
            f"{path} is not a toy-world manifest (no 'config' object); write the dataset again"
        )
    if kind is not None and data.get("format") != kind:
        raise DataFormatError(f"{path} is not a {kind!r} manifest; write it with {writer}")
    data["world"] = WorldConfig.from_dict(data["config"])
    return data


__all__ = [
    "EVAL_LISTING_PROMPT",
    "iter_scenes",
    "load_manifest",
    "scene_key",
    "scene_seed",
    "write_eval_split",
    "write_toy_dataset",
    "write_train_split",
]
