"""Matched training arms: one instruction stream, and the same stream plus SoM or control data.

A SoM-vs-baseline comparison is only fair when both models saw the same instruction data
(the paper *added* 30k SoM records to LLaVA-1.5's 665k). This module writes record pools
once and, per training seed, three arm files that share the identical instruction
records in the identical order:

* ``baseline``: the stage-2 instruction records only (untagged scenes, plus digit reading);
* ``som``: the same records with ``S`` SoM records (listing : tag-QA = 1 : 2) inserted at
  seeded positions;
* ``control``: the same records with ``S`` control records at the *same* positions, on
  the *same tagged images*, answered as a numbered list in reading order (top to bottom,
  left to right) that never uses the tag numbers: it isolates the listing-by-tag
  objective from merely seeing marks and writing lists.

Stage 1 (shared by the arms of one seed) has its own pool of untagged instruction records
on other scenes. Every pool contains digit-reading records
(:mod:`somprobe.data.toyworld.digits`), so every model can read numbers.

Layout::

    <out>/manifest.json                     world, counts, seeds, coverage summary
    <out>/train/untagged/<key>.png           stage-1 and stage-2 scenes
    <out>/train/tagged/images/<key>.png      tagged copies of the SoM scenes
    <out>/train/tagged/tagsets/<key>.json
    <out>/train/digits/<key>.png             digit-reading images
    <out>/train/pools/{stage1,instruct,som,control}.json
    <out>/train/arms/seed<s>/{stage1,baseline,som,control}.json   (arm_files)
    <out>/eval/...                           held-out split (write_eval_split)

Example:
    >>> manifest = write_arms_dataset("toy2/", stage1_records=512, instruct_records=256,
    ...                               som_share=0.25, eval_scenes=16)  # doctest: +SKIP
    >>> files = arm_files("toy2/", seed=0)  # doctest: +SKIP
    >>> sorted(files)  # doctest: +SKIP
    ['baseline', 'control', 'som', 'stage1']
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from somprobe.data.listing import LISTING_INSTRUCTIONS, listing_answer, sample_instruction
from somprobe.data.llava_json import dumps_record, make_record, read_records
from somprobe.data.seeding import check_seed, rng_for
from somprobe.data.tag_qa import qa_record
from somprobe.data.toyworld.coverage import coverage_summary, coverage_table
from somprobe.data.toyworld.dataset import (
    EVAL,
    EVAL_LISTING_PROMPT,
    TRAIN,
    _save_png,
    _write_lines,
    load_manifest,
    scene_seed,
    write_eval_split,
)
from somprobe.data.toyworld.digits import DIGIT_QUESTIONS, digit_answer, digit_image
from somprobe.data.toyworld.questions import instruct_questions, reading_order
from somprobe.data.toyworld.scenes import WorldConfig, make_scene, tag_scene, world
from somprobe.errors import DataFormatError, InputError
from somprobe.io import atomic_write, check_writable
from somprobe.tagging.io import load_tagset, save_tagset

FORMAT = "somprobe.toyworld.arms"
ARMS: tuple[str, ...] = ("baseline", "som", "control")
#: Control prompts: a numbered list in reading order, worded unlike any listing prompt.
CONTROL_INSTRUCTIONS: tuple[str, ...] = (
    "Number the shapes in reading order, top to bottom and left to right.",
    "Go through the shapes from top to bottom and number them.",
    "Write a numbered list of the shapes in reading order.",
)
_DIGITS_CODE = 2  # scene seeds [seed, 2, i] draw digit images (0: train, 1: eval)


def control_answer(scene_objects: Iterable[Any]) -> str:
    """``"1. red circle\\n2. blue star"``: every object in reading order, numbered 1..n."""
    ordered = reading_order(list(scene_objects))
    return "\n".join(f"{i}. {o.category}" for i, o in enumerate(ordered, 1))


def _scene_chunk(job: dict[str, Any]) -> list[tuple[str, int, str]]:
    """Write scenes ``start..stop-1`` and return their records as ``(pool, order, line)``.

    Stage-2 scenes (index < ``n2``) get one instruction record; stage-1 scenes get one
    per question draw; the first ``n_som`` scenes also get a tagged copy and their
    control record.
    """
    cfg = WorldConfig.from_dict(job["config"])
    seed, root, turns = job["seed"], Path(job["root"]), job["turns"]
    n2, n1, n1_records, n_som = job["n2"], job["n1"], job["n1_records"], job["n_som"]
    out: list[tuple[str, int, str]] = []
    for i in range(job["start"], job["stop"]):
        key = f"{TRAIN}_{i:06d}"
        scene = make_scene(cfg, scene_seed(seed, TRAIN, i))
        _save_png(scene.image, root / "untagged" / f"{key}.png")
        if i < n2:
            draws = [(0, i)]
        else:
            j = i - n2
            draws = [(d, d * n1 + j) for d in range((n1_records - j + n1 - 1) // n1)]
        for draw, order in draws:
            qs = instruct_questions(scene, rng_for(seed, f"instruct/{key}/{draw}"), n=turns)
            rid = f"instruct_{i:06d}" if i < n2 else f"s1_{order:06d}"
            rec = make_record(rid, f"untagged/{key}.png", [(q.question, q.answer) for q in qs])
            out.append(("instruct" if i < n2 else "stage1", order, dumps_record(rec)))
        if i < n_som:
            tagged = tag_scene(scene)
            _save_png(tagged.image, root / "tagged" / "images" / f"{key}.png")
            path = root / "tagged" / "tagsets" / f"{key}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            save_tagset(tagged.tagset, path)
            rng = rng_for(seed, f"control/{key}")
            prompt = CONTROL_INSTRUCTIONS[int(rng.integers(len(CONTROL_INSTRUCTIONS)))]
            rec = make_record(
                f"control_{key}", f"tagged/images/{key}.png",
                [(prompt, control_answer(scene.objects))],
            )  # fmt: skip
            out.append(("control", i, dumps_record(rec)))
    return out


def _digit_chunk(args: tuple[str, dict[str, Any], int, int, int]) -> list[tuple[str, list[int]]]:
    root, cfg_dict, seed, start, stop = args
    cfg = WorldConfig.from_dict(cfg_dict)
    out = []
    for i in range(start, stop):
        key = f"digits_{i:06d}"
        image, numbers, _ = digit_image(cfg, (seed, _DIGITS_CODE, i))
        _save_png(image, Path(root) / "digits" / f"{key}.png")
        out.append((key, numbers))
    return out


def _run_chunks(fn: Any, jobs: list[Any], workers: int, desc: str, progress: bool) -> list[Any]:
    from tqdm import tqdm

    results: list[Any] = []
    bar = tqdm(total=len(jobs), desc=desc, disable=not progress, unit="chunk")
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            for part in pool.map(fn, jobs):
                results.extend(part)
                bar.update()
    else:
        for job in jobs:
            results.extend(fn(job))
            bar.update()
    bar.close()
    return results


def _chunks(start: int, stop: int, size: int = 500) -> list[tuple[int, int]]:
    return [(a, min(a + size, stop)) for a in range(start, stop, size)]


def write_arms_dataset(
    out_dir: str | Path,
    *,
    config: WorldConfig | None = None,
    stage1_records: int = 57_600,
    stage1_scenes: int | None = None,
    instruct_records: int = 28_800,
    som_share: float = 0.25,
    listing_fraction: float = 1 / 3,
    digit_share: float = 0.05,
    eval_scenes: int = 500,
    seed: int = 0,
    turns: int = 4,
    workers: int | None = None,
    coverage_scenes: int = 500,
    progress: bool = True,
) -> dict[str, Any]:
    """Write the scenes and record pools of matched arms; return the manifest.

    Args:
        out_dir: output folder (see the module docstring for the layout).
        config: the world (default ``world("v2")``).
        stage1_records: records of the shared stage 1 (untagged instruction + digits).
        stage1_scenes: distinct scenes behind them (default: half the scene records,
            each scene asked twice with different questions).
        instruct_records: stage-2 instruction records (one per scene, plus digits).
        som_share: SoM records ``S`` as a share of ``instruct_records`` (issue range
            0.10–0.25; the paper's 30k on 665k is 0.045).
        listing_fraction: share of the SoM records that are listing (the paper: 10k of
            30k); the rest are multi-turn tag-QA.
        digit_share: share of each instruction pool that is digit reading.
        eval_scenes: held-out scenes (evaluation files as :func:`write_eval_split`).
        seed: world seed (scenes, questions).
        turns: question turns per instruction record.
        workers: processes drawing scenes (default: CPU count, at most 4).
        coverage_scenes: scenes of the world's coverage statistics in the manifest.

    Raises:
        InputError: counts or shares out of range.
        WriteError: ``out_dir`` cannot be written (checked before any scene is drawn).
    """
    cfg = config or world("v2")
    check_seed(seed)
    for name, value, low in (
        ("stage1_records", stage1_records, 1),
        ("instruct_records", instruct_records, 1),
        ("eval_scenes", eval_scenes, 1),
        ("turns", turns, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InputError(f"{name}={value!r}: give a whole number ≥ {low}")
    for name, share, high in (("som_share", som_share, 1.0), ("digit_share", digit_share, 0.5),
                              ("listing_fraction", listing_fraction, 1.0)):  # fmt: skip
        if not 0.0 <= share <= high:
            raise InputError(f"{name}={share!r} must lie in [0, {high}]")
    n1_digits = round(stage1_records * digit_share)
    n1_scene_records = stage1_records - n1_digits
    n1_scenes = stage1_scenes or max(1, (n1_scene_records + 1) // 2)
    if not 1 <= n1_scenes <= n1_scene_records:
        raise InputError(f"stage1_scenes={stage1_scenes} must lie in 1..{n1_scene_records}")
    n2_digits = round(instruct_records * digit_share)
    n2_scenes = instruct_records - n2_digits
    n_som = round(instruct_records * som_share)
    n_listing = round(n_som * listing_fraction)
    if n_som > n2_scenes:
        raise InputError(f"som_share={som_share}: {n_som} SoM records but {n2_scenes} scenes")
    out = Path(out_dir)
    check_writable(out / "manifest.json")
    t0 = time.perf_counter()
    root = out / TRAIN
    workers = workers or min(4, os.cpu_count() or 1)
    cfg_dict = cfg.to_dict()
    # Stage-2 scenes come first so that the SoM scenes (tagged copies) are scenes 0..S-1.
    base = {"config": cfg_dict, "seed": seed, "root": str(root), "turns": turns, "n2": n2_scenes,
            "n1": n1_scenes, "n1_records": n1_scene_records, "n_som": n_som}  # fmt: skip
    jobs = [{**base, "start": a, "stop": b} for a, b in _chunks(0, n2_scenes + n1_scenes)]
    made = _run_chunks(_scene_chunk, jobs, workers, "train scenes", progress)
    digits = _run_chunks(
        _digit_chunk,
        [(str(root), cfg_dict, seed, a, b) for a, b in _chunks(0, n1_digits + n2_digits)],
        workers, "digit images", progress,
    )  # fmt: skip

    def digit_record(key: str, numbers: list[int]) -> str:
        rng = rng_for(seed, f"digits/{key}")
        q = DIGIT_QUESTIONS[int(rng.integers(len(DIGIT_QUESTIONS)))]
        return dumps_record(make_record(key, f"digits/{key}.png", [(q, digit_answer(numbers))]))

    def pool(name: str) -> list[str]:
        return [line for _, _, line in sorted(r for r in made if r[0] == name)]

    stage1 = pool("stage1") + [digit_record(k, n) for k, n in digits[:n1_digits]]
    instruct = pool("instruct") + [digit_record(k, n) for k, n in digits[n1_digits:]]
    control = pool("control")
    som = []
    for i in range(n_som):
        key = f"{TRAIN}_{i:06d}"
        image = f"tagged/images/{key}.png"
        tagset = load_tagset(root / "tagged" / "tagsets" / f"{key}.json")
        rng = rng_for(seed, f"som/{key}")
        if i < n_listing:
            prompt = sample_instruction(rng, LISTING_INSTRUCTIONS)
            rec = make_record(f"listing_{key}", image, [(prompt, listing_answer(tagset))])
        else:
            made_qa = qa_record(f"qa_{key}", image, tagset, rng, n=turns, vocabulary=cfg.categories)
            if made_qa is None:
                raise DataFormatError(f"no tag question for {key}; the world has empty scenes")
            rec = made_qa
        som.append(dumps_record(rec))
    pools = root / "pools"
    counts = {
        "stage1": _write_lines(stage1, pools / "stage1.json"),
        "instruct": _write_lines(instruct, pools / "instruct.json"),
        "som": _write_lines(som, pools / "som.json"),
        "control": _write_lines(control, pools / "control.json"),
    }
    evals = write_eval_split(out / EVAL, cfg, eval_scenes, seed=seed, progress=progress)
    cover = coverage_summary(coverage_table(cfg, scenes=coverage_scenes))
    manifest = {
        "format": FORMAT,
        "config": cfg_dict,
        "seed": seed,
        "pools": counts,
        "scenes": {"stage2": [0, n2_scenes], "stage1": [n2_scenes, n2_scenes + n1_scenes],
                   "som": [0, n_som], "digits": n1_digits + n2_digits},
        "som": {"share": som_share, "listing": n_listing, "tag_qa": n_som - n_listing},
        "digit_share": digit_share,
        "turns": turns,
        "eval": {"files": evals, "listing_prompt": EVAL_LISTING_PROMPT},
        "coverage": cover.round(4).to_dict("records"),
        "seconds": round(time.perf_counter() - t0, 1),
    }  # fmt: skip
    with atomic_write(out / "manifest.json") as fh:
        fh.write(json.dumps(manifest, indent=2) + "\n")
    return manifest


def load_arms_manifest(out_dir: str | Path) -> dict[str, Any]:
    """The manifest of an arms dataset, with ``world`` as a :class:`WorldConfig`.

    Raises:
        InputError: no manifest there.
        DataFormatError: not an arms manifest.
    """
    return load_manifest(out_dir, kind=FORMAT, writer="write_arms_dataset")


def _read_lines(path: Path) -> list[str]:
    return [dumps_record(r) for r in read_records(path)]


def arm_files(
    out_dir: str | Path, seed: int, *, instruct: int | None = None, som: int | None = None
) -> dict[str, Path]:
    """Write (once) and return the per-seed files ``stage1``, ``baseline``, ``som``, ``control``.

    The seed permutes each pool; the SoM records go to ``S`` seeded positions of the
    ``N + S`` slots and the control records to the same positions in the same order, so
    the three arms hold the identical instruction records in the identical order
    (:func:`instruction_digest` checks it). ``instruct`` / ``som`` take only the first
    ``N`` / ``S`` records of the permuted pools (a smaller run from the same data; the
    files go to their own folder).

    Raises:
        InputError, DataFormatError: as :func:`load_arms_manifest`; a bad seed; ``N`` or
            ``S`` outside 1..the pool size.
    """
    check_seed(seed)
    manifest = load_arms_manifest(out_dir)
    sizes = {"instruct": manifest["pools"]["instruct"], "som": manifest["pools"]["som"]}
    wanted = {"instruct": instruct, "som": som}
    for name, value in wanted.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or not 1 <= value <= sizes[name]):  # fmt: skip
            raise InputError(f"{name}={value!r}: the {name} pool holds {sizes[name]} records")
    subset = any(v is not None and v != sizes[k] for k, v in wanted.items())
    root = Path(out_dir) / TRAIN
    n, s = wanted["instruct"] or sizes["instruct"], wanted["som"] or sizes["som"]
    folder = root / "arms" / (f"seed{seed}_n{n}_s{s}" if subset else f"seed{seed}")
    names = ("stage1", *ARMS)
    paths = {n: folder / f"{n}.json" for n in names}
    if all(p.is_file() for p in paths.values()):
        return paths
    pools = {
        n: _read_lines(root / "pools" / f"{n}.json")
        for n in ("stage1", "instruct", "som", "control")
    }

    def permuted(lines: list[str], key: str) -> list[str]:
        order = rng_for(seed, f"arms/{key}").permutation(len(lines))
        return [lines[int(i)] for i in order]

    stage1 = permuted(pools["stage1"], "stage1")
    base = permuted(pools["instruct"], "instruct")[:n]
    order = rng_for(seed, "arms/som").permutation(len(pools["som"]))[:s]
    tagged = {k: [pools[k][int(i)] for i in order] for k in ("som", "control")}
    total = len(base) + len(order)
    slots = set(
        int(i) for i in rng_for(seed, "arms/slots").choice(total, len(order), replace=False)
    )

    def merged(extra: list[str]) -> list[str]:
        it_main, it_extra = iter(base), iter(extra)
        return [next(it_extra) if k in slots else next(it_main) for k in range(total)]

    _write_lines(stage1, paths["stage1"])
    _write_lines(base, paths["baseline"])
    _write_lines(merged(tagged["som"]), paths["som"])
    _write_lines(merged(tagged["control"]), paths["control"])
    return paths


def instruction_digest(
    path: str | Path, *, exclude: Sequence[str] = ("listing_", "qa_", "control_")
) -> str:
    """SHA-256 over the ids and conversations of the instruction records of an arm file, in order.

    Records whose id starts with one of ``exclude`` (the SoM and control records) are
    left out, so the digest of every arm of one seed must be the same.
    """
    h = hashlib.sha256()
    for rec in read_records(path):
        if str(rec.id).startswith(tuple(exclude)):
            continue
        h.update(dumps_record(rec).encode() + b"\n")
    return h.hexdigest()


__all__ = [
    "ARMS",
    "CONTROL_INSTRUCTIONS",
    "arm_files",
    "control_answer",
    "instruction_digest",
    "load_arms_manifest",
    "write_arms_dataset",
]
