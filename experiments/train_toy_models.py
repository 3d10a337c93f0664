"""Train the toy models the experiments compare: three matched arms, several seeds.

World ``v2`` (objects 2.4–3.7 patches across, a 9 px mark covering under 10 % of its
object on average; see ``somprobe.data.toyworld.coverage``). Per training seed:

0. **Vision warm-up** (``--vision-steps``, the toy stand-in for CLIP's pretraining): the
   vision tower of a tiny LLaVA (vision 4×128, text 4×224, 112 px, patch 14; ~4.6M
   parameters; random weights) alone learns to name the shape and colour of the object
   under each patch (``somprobe.finetune.vision_warmup``); without it, shape was still at
   chance after 750 instruction steps.
1. **Stage 1** (shared by the arms of that seed): the projector and language model (the
   warmed vision tower stays frozen here and in stage 2, as LLaVA keeps CLIP frozen) on
   untagged instruction data
   (captions, colour, shape, count, existence) and digit reading, warmup then a constant
   learning rate, until the **gate** holds on a separate validation split: untagged
   colour and shape accuracy ≥ ``--gate`` (checked every ``--gate-every`` steps). A run
   that reaches ``--stage1-max-steps`` without passing trains no arm; the job goes on
   with its other seeds and ends with an error naming the seeds that missed.
2. **Stage 2**, from stage 1, one epoch of each arm file (the instruction records are the
   same records in the same order in every arm; ``somprobe.data.toyworld.arms``):
   ``baseline`` (instruction only), ``som`` (+ S SoM records, listing : tag-QA 1 : 2) and
   ``control`` (+ S reading-order lists on the same tagged images); the learning rate
   decays from the stage-1 value by a cosine to 0.1×. Loss: every answer turn weighs
   the same (``loss="turn"``).

Held-out scores (listing, tag-QA, POPE, untagged questions) are logged along the way
(``toy_training_curve.csv``) and at the end (``toy_arms_results.csv``, one row per seed,
arm and metric). Seed 0's models are shipped in ``models/toy-{baseline,som,control}``
(fp16, model card, ``check_sample.json``). Every stage checkpoints and resumes, so the
run can be finished over several sittings: run the same command again.

    python experiments/train_toy_models.py                 # seed 0, every arm (shipped)
    python experiments/train_toy_models.py --seeds 1 2     # more seeds, same data
    python experiments/train_toy_models.py --smoke --out /tmp/toy-models   # 2 min check
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import _common as common
import pandas as pd
import torch

from somprobe.data.toyworld import world
from somprobe.data.toyworld.arms import (
    ARMS,
    arm_files,
    instruction_digest,
    load_arms_manifest,
    write_arms_dataset,
)
from somprobe.data.toyworld.dataset import write_eval_split
from somprobe.errors import SomprobeError
from somprobe.evals import evaluate
from somprobe.finetune import PeriodicEval, finetune
from somprobe.finetune.vision_warmup import load_warmup_result, warmup_vision
from somprobe.io import atomic_write
from somprobe.measure import save_figure
from somprobe.models import build_tiny_llava, load_model

#: The toy models' shape (fits the 10 MB fp16 budget).
MODEL_SHAPE: dict[str, Any] = {
    "image_size": 112,
    "patch_size": 14,
    "vision_layers": 4,
    "vision_width": 128,
    "vision_heads": 4,
    "text_layers": 4,
    "text_width": 224,
    "text_heads": 4,
}
WORLD = "v2"
TASKS = ("listing", "tag_qa", "pope", "instruct")
#: What the curve and the summary keep: (task, setting, metric).
KEEP = {
    ("listing", "all", "list_accuracy"),
    ("listing", "all", "colour_accuracy"),
    ("listing", "all", "shape_accuracy"),
    ("listing", "all", "recall"),
    ("tag_qa", "all", "accuracy"),
    ("pope", "random", "accuracy"),
    ("pope", "adversarial", "accuracy"),
    ("instruct", "all", "accuracy"),
    ("instruct", "colour", "accuracy"),
    ("instruct", "shape", "accuracy"),
}
SMOKE = {"vision_steps": 3, "stage1_records": 320, "instruct_pool": 320, "instruct_records": 320,
         "eval_scenes": 12, "gate_scenes": 10,
         "stage1_max_steps": 8, "gate_every": 4, "gate": 0.0, "eval_every": 10,
         "eval_samples": 6, "final_eval_samples": 6}  # fmt: skip
log = logging.getLogger("train_toy_models")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--out", type=Path, default=common.ROOT / "models", help="where seed 0's models go"
    )
    p.add_argument("--work", type=Path, default=common.ROOT / "runs" / "toy_arms",
                   help="data, checkpoints, logs (not committed)")  # fmt: skip
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds")
    p.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    p.add_argument("--world-seed", type=int, default=0)
    p.add_argument("--stage1-records", type=int, default=48_000)
    p.add_argument("--instruct-pool", type=int, default=25_600,
                   help="instruction records written into the dataset; the stage-1 scenes "
                   "come after them, so this, not --instruct-records, fixes the data")  # fmt: skip
    p.add_argument("--instruct-records", type=int, default=25_600,
                   help="stage-2 instruction records (the baseline arm's epoch): the first "
                   "of the pool, at most --instruct-pool")  # fmt: skip
    p.add_argument("--som-share", type=float, default=0.25,
                   help="S, the SoM (and control) records, as a share of the instruction records")  # fmt: skip
    p.add_argument("--eval-scenes", type=int, default=500)
    p.add_argument("--gate-scenes", type=int, default=100,
                   help="validation scenes for the stage-1 gate (another world seed)")  # fmt: skip
    p.add_argument("--gate", type=float, default=0.95,
                   help="untagged colour and shape accuracy stage 1 must reach")  # fmt: skip
    p.add_argument("--gate-every", type=int, default=250)
    p.add_argument("--continue-below-gate", action="store_true",
                   help="train stage 2 even when stage 1 missed the gate (recorded in the cards)")  # fmt: skip
    p.add_argument("--vision-steps", type=int, default=400,
                   help="vision warm-up steps before stage 1 (0: none)")  # fmt: skip
    p.add_argument("--stage1-max-steps", type=int, default=4000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--eval-every", type=int, default=300)
    p.add_argument("--eval-samples", type=int, default=48)
    p.add_argument("--final-eval-samples", type=int, default=300)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", choices=["cpu", "cuda"], default=None,
                   help="default: cuda when visible")  # fmt: skip
    p.add_argument("--sequential", action="store_true",
                   help="train the arms one after the other (default on CPU: one 1-thread "
                   "process per arm, in parallel)")  # fmt: skip
    p.add_argument("--smoke", action="store_true", help="tiny sizes: a plumbing check")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)  # "seed:arm"
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.smoke:  # tiny sizes wherever the command line left the default
        for key, value in SMOKE.items():
            if getattr(args, key) == p.get_default(key):
                setattr(args, key, value)
    for flag, value, low in (
        ("--stage1-records", args.stage1_records, 1), ("--instruct-records", args.instruct_records, 1),
        ("--instruct-pool", args.instruct_pool, 1),
        ("--eval-scenes", args.eval_scenes, 1), ("--gate-scenes", args.gate_scenes, 1),
        ("--gate-every", args.gate_every, 1), ("--stage1-max-steps", args.stage1_max_steps, 1),
        ("--batch-size", args.batch_size, 1), ("--eval-every", args.eval_every, 1),
        ("--eval-samples", args.eval_samples, 1), ("--final-eval-samples", args.final_eval_samples, 1),
        ("--warmup", args.warmup, 0), ("--vision-steps", args.vision_steps, 0),
    ):  # fmt: skip
        if value < low:
            p.error(f"{flag} must be ≥ {low}, got {value}")
    if any(s < 0 for s in args.seeds) or len(set(args.seeds)) != len(args.seeds):
        p.error(f"--seeds must be distinct whole numbers ≥ 0, got {args.seeds}")
    if args.instruct_records > args.instruct_pool:
        p.error(f"--instruct-records {args.instruct_records} exceeds --instruct-pool "
                f"{args.instruct_pool}")  # fmt: skip
    if not 0 < args.som_share <= 1:
        p.error(f"--som-share must lie in (0, 1], got {args.som_share}")
    if not 0 <= args.gate <= 1:
        p.error(f"--gate must lie in [0, 1], got {args.gate}")
    if not args.lr > 0:
        p.error(f"--lr must be > 0, got {args.lr}")
    if args.threads is not None and args.threads < 1:
        p.error(f"--threads must be ≥ 1, got {args.threads}")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no GPU is visible")
    for flag, folder in (("--out", args.out), ("--work", args.work)):
        try:
            common.check_folder(folder, flag)
        except SomprobeError as err:
            p.error(str(err))
    return args


class GateMissed(SomprobeError):
    """Stage 1 of a seed reached --stage1-max-steps without passing the gate."""


def device(args: argparse.Namespace) -> str:
    return args.device or ("cuda" if torch.cuda.is_available() else "cpu")


def device_text(args: argparse.Namespace) -> str:
    """The device, with the thread count on CPU: training is bit-identical given the same
    start, data and thread count, and not across thread counts (summation order)."""
    return "cuda" if device(args) == "cuda" else f"cpu ({torch.get_num_threads()} threads)"


def data_dir(args: argparse.Namespace) -> Path:
    """The arms dataset and the gate split, written once and reused; a dataset written
    with other sizes or seed is an error, never silently trained on."""
    root = args.work / "data"
    if (root / "manifest.json").is_file():
        check_dataset(load_arms_manifest(root), args, root)
    else:
        log.info("writing the %s world's arms dataset to %s", WORLD, root)
        write_arms_dataset(
            root, config=world(WORLD), stage1_records=args.stage1_records,
            instruct_records=args.instruct_pool, som_share=args.som_share,
            eval_scenes=args.eval_scenes, seed=args.world_seed, progress=not args.no_progress,
            coverage_scenes=20 if args.smoke else 500,
        )  # fmt: skip
    gate = args.work / "gate"
    if not (gate / "instruct.json").is_file():
        write_eval_split(gate, world(WORLD), args.gate_scenes, seed=args.world_seed + 1000,
                         progress=False)  # fmt: skip
    return root


def check_dataset(manifest: Mapping[str, Any], args: argparse.Namespace, root: Path) -> None:
    """Raise when the dataset in ``root`` was written with other arguments than ``args``
    (which scenes are drawn depends on them all)."""
    pools = manifest["pools"]
    wanted = {"--world-seed": (manifest["seed"], args.world_seed),
              "--stage1-records": (pools["stage1"], args.stage1_records),
              "--instruct-pool": (pools["instruct"], args.instruct_pool),
              "--som-share": (manifest["som"]["share"], args.som_share),
              "--eval-scenes": (manifest["eval"]["files"]["scenes"], args.eval_scenes)}  # fmt: skip
    differ = [f"{flag} {have} (asked: {asked})" for flag, (have, asked) in wanted.items()
              if have != asked]  # fmt: skip
    if differ:
        raise SomprobeError(
            f"{root} was written with {', '.join(differ)}; pass those values or use another --work"
        )


def seed_files(args: argparse.Namespace, data: Path, seed: int) -> dict[str, Path]:
    """The arm files of ``seed``: the whole pools, or the first --instruct-records of them
    (and S = --som-share of that) when the pool is larger. ``data`` comes from
    :func:`data_dir`, which checked its pool against --instruct-pool (≥ --instruct-records)."""
    pools = load_arms_manifest(data)["pools"]
    n = args.instruct_records
    return arm_files(data, seed, instruct=n, som=min(pools["som"], round(n * args.som_share)))


def score(
    model: Any, processor: Any, eval_dir: Path, limit: int, tasks: Sequence[str] = TASKS
) -> pd.DataFrame:
    result = evaluate(model, processor, eval_dir, tasks=tasks, limit=limit, batch_size=32,
                      progress=False)  # fmt: skip
    return result.summary


def flat(summary: pd.DataFrame) -> dict[str, float]:
    """``task/setting/metric`` → value for the rows in :data:`KEEP`."""
    return {
        f"{r.task}/{r.setting}/{r.metric}": float(r.value)
        for r in summary.itertuples()
        if (r.task, r.setting, r.metric) in KEEP
    }


def base_settings(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "preset": "toy", "global_batch_size": args.batch_size,
        "per_device_batch_size": args.batch_size, "learning_rate": args.lr,
        "order": "sequential", "loss": "turn",
        # a warmed vision tower stays frozen, as LLaVA keeps CLIP frozen: trained on by the
        # language loss at this learning rate it lost its shape information within 600 steps
        "trainable": "projector+lm" if args.vision_steps else "all",
        "bf16": device(args) == "cuda", "save_steps": 200,  # a kill loses ≤ 200 steps
        "logging_steps": 25, "progress": not args.no_progress,
    }  # fmt: skip


def vision_stage(args: argparse.Namespace, seed: int) -> Path:
    """The random init of ``seed`` and, with --vision-steps, its vision warm-up; returns
    the model stage 1 starts from."""
    init = args.work / f"seed{seed}" / "init"
    if not (init / "config.json").is_file():
        build_tiny_llava(init, seed=seed, **MODEL_SHAPE)
    if not args.vision_steps:
        return init
    warm = args.work / f"seed{seed}" / f"vision{args.vision_steps}"
    if not (warm / "vision_warmup.json").is_file():
        result = warmup_vision(init, warm, world(WORLD), steps=args.vision_steps,
                               world_seed=args.world_seed, seed=seed,
                               eval_scenes=20 if args.smoke else 200,
                               progress=not args.no_progress)  # fmt: skip
        log.info("seed %d: vision warm-up, %d steps, held-out shape %.3f colour %.3f",
                 seed, args.vision_steps, result.shape_accuracy, result.colour_accuracy)  # fmt: skip
    return warm


def stage1(args: argparse.Namespace, seed: int, files: dict[str, Path], data: Path) -> Path:
    """Stage 1 of ``seed`` until the gate holds; returns its folder."""
    folder = args.work / f"seed{seed}" / "stage1"
    gate_file = folder / "gate.json"
    if gate_file.is_file() and (
        json.loads(gate_file.read_text())["passed"] or args.continue_below_gate
    ):
        return folder
    init = vision_stage(args, seed)
    _, processor = load_model(init)
    gate_dir = args.work / "gate"

    def fn(model: Any) -> dict[str, float]:
        table = score(model, processor, gate_dir, 4 * args.gate_scenes, tasks=("instruct",))
        return {f"untagged_{r.setting}": float(r.value) for r in table.itertuples()}

    def passed(m: Mapping[str, float]) -> bool:
        return m.get("untagged_colour", 0) >= args.gate and m.get("untagged_shape", 0) >= args.gate

    periodic = PeriodicEval(fn, args.gate_every, csv_path=args.work / f"seed{seed}" / "gate_curve.csv",
                            labels={"seed": seed}, at_start=False, stop_when=passed)  # fmt: skip
    t0 = time.perf_counter()
    result = finetune(
        init, files["stage1"], data / "train", folder, max_steps=args.stage1_max_steps,
        lr_scheduler="constant_with_warmup", lr_scheduler_kwargs={}, warmup=args.warmup,
        seed=seed, callbacks=[periodic], **base_settings(args),
    )  # fmt: skip
    rows = [r for r in periodic.rows if r["step"] == result.global_step] or periodic.rows[-1:]
    metrics = {r["metric"]: r["value"] for r in rows}
    ok = passed(metrics)
    vision = load_warmup_result(init) if args.vision_steps else None
    record = {"passed": ok, "step": result.global_step, "gate": args.gate, "metrics": metrics,
              "vision_warmup": None if vision is None else {
                  "steps": vision.steps, "shape_accuracy": vision.shape_accuracy,
                  "colour_accuracy": vision.colour_accuracy, "objects": vision.objects,
                  "seconds": vision.seconds},
              "seconds": round(time.perf_counter() - t0, 1), "max_steps": args.stage1_max_steps,
              "device": device_text(args)}  # fmt: skip
    common.write_json(record, gate_file)
    if not ok and args.continue_below_gate:
        log.warning("seed %d: stage 1 missed the gate (%s); stage 2 runs anyway "
                    "(--continue-below-gate)", seed, metrics)  # fmt: skip
    elif not ok:
        raise GateMissed(
            f"seed {seed}: stage 1 did not pass the gate (colour and shape ≥ {args.gate}) in "
            f"{result.global_step} steps: {metrics}; raise --stage1-max-steps and rerun"
        )
    log.info("seed %d: stage 1 passed the gate at step %d: %s", seed, result.global_step, metrics)
    return folder


def stage2(
    args: argparse.Namespace, seed: int, arm: str, files: dict[str, Path], data: Path
) -> dict[str, Any]:
    """Train one arm from its seed's stage 1; score it; return its record."""
    folder = args.work / f"seed{seed}" / arm
    done = folder / "scores.json"
    if done.is_file():  # trained and scored already (e.g. by a parallel child)
        return dict(json.loads(done.read_text()))
    start = args.work / f"seed{seed}" / "stage1"
    gate = json.loads((start / "gate.json").read_text())
    records = len(json.loads(files[arm].read_text()))
    steps = math.ceil(records / args.batch_size)
    _, processor = load_model(start)
    eval_dir = data / "eval"

    def fn(model: Any) -> dict[str, float]:
        return flat(score(model, processor, eval_dir, args.eval_samples))

    periodic = PeriodicEval(fn, args.eval_every, csv_path=args.work / f"curve_seed{seed}_{arm}.csv",
                            labels={"seed": seed, "arm": arm})  # fmt: skip
    t0 = time.perf_counter()
    result = finetune(
        start, files[arm], data / "train", folder, max_steps=steps,
        lr_scheduler="cosine_with_min_lr", lr_scheduler_kwargs={"min_lr_rate": 0.1}, warmup=0,
        seed=seed, callbacks=[periodic], save_dtype="float16", **base_settings(args),
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    model, processor = load_model(folder, dtype=torch.float32)
    if device(args) == "cuda":
        model.to("cuda")  # type: ignore[arg-type]
    final = score(model, processor, eval_dir, args.final_eval_samples)
    record = {
        "seed": seed, "arm": arm, "records": records, "steps": result.global_step,
        "stage1_steps": gate["step"], "stage1_seconds": gate["seconds"],
        "stage1_gate": gate, "final_eval_samples": args.final_eval_samples,
        "stage2_seconds": round(seconds, 1), "seconds_per_step": result.seconds_per_step,
        "final_loss": result.last_loss, "instruction_digest": instruction_digest(files[arm]),
        "hyperparameters": result.hyperparameters, "held_out": final.to_dict("records"),
        "device": device_text(args),
    }  # fmt: skip
    common.write_json(record, done)
    return record


def run_children(
    args: argparse.Namespace, argv: Sequence[str], jobs: list[tuple[int, str]]
) -> None:
    """Train arms in parallel, one 1-thread process each (CPU)."""
    procs = {}
    for seed, arm in jobs:
        log_path = args.work / f"train_seed{seed}_{arm}.log"
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            *child_argv(argv),
            "--child",
            f"{seed}:{arm}",
            "--threads",
            "1",
        ]
        log.info("starting seed %d %s (log: %s)", seed, arm, log_path)
        procs[(seed, arm)] = subprocess.Popen(
            cmd, stdout=log_path.open("w"), stderr=subprocess.STDOUT
        )
    failed = [f"seed {s} {a}" for (s, a), proc in procs.items() if proc.wait() != 0]
    if failed:
        raise SomprobeError(
            f"training {', '.join(failed)} failed; see {args.work}/train_seed*_*.log"
        )


def child_argv(argv: Sequence[str]) -> list[str]:
    """The parent's arguments without --threads, --seeds and --arms (the child gets its own)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        key = arg.split("=", 1)[0]
        if skip and not arg.startswith("--"):
            continue
        skip = False
        if key in ("--threads", "--seeds", "--arms"):
            skip = "=" not in arg
            continue
        out.append(arg)
    return out


def train(args: argparse.Namespace, argv: Sequence[str]) -> list[dict[str, Any]]:
    data = data_dir(args)
    if args.child:
        seed_text, arm = args.child.split(":")
        seed = int(seed_text)
        return [stage2(args, seed, arm, seed_files(args, data, seed), data)]
    records = []
    missed: list[str] = []
    for seed in args.seeds:
        files = seed_files(args, data, seed)
        digests = {instruction_digest(files[a]) for a in ARMS}
        if len(digests) != 1:
            raise SomprobeError(
                f"seed {seed}: the arms' instruction records differ; rewrite {data}"
            )
        torch.manual_seed(seed)
        try:
            stage1(args, seed, files, data)
        except GateMissed as err:  # recorded in its gate.json; the other seeds go on
            log.error("%s; going on with the other seeds", err)
            missed.append(str(err))
            continue
        todo = [
            a for a in args.arms if not (args.work / f"seed{seed}" / a / "scores.json").is_file()
        ]
        if todo and device(args) == "cpu" and not args.sequential and len(todo) > 1:
            run_children(args, argv, [(seed, a) for a in todo])
        for arm in args.arms:
            records.append(stage2(args, seed, arm, files, data))
        if seed == 0:
            for arm, record in zip(args.arms, records[-len(args.arms) :], strict=True):
                ship(args, arm, record, data)
    write_results(args)
    if missed:
        raise SomprobeError(
            f"{len(missed)} of {len(args.seeds)} seeds trained no arm: " + " | ".join(missed)
        )
    return records


def write_results(args: argparse.Namespace) -> None:
    """``toy_arms_results.csv`` (every seed and arm found in --work) and the training curve."""
    rows = []
    for done in sorted(args.work.glob("seed*/*/scores.json")):
        rec = json.loads(done.read_text())
        for r in rec["held_out"]:
            rows.append({"seed": rec["seed"], "arm": rec["arm"], "task": r["task"],
                         "setting": r["setting"], "metric": r["metric"], "value": r["value"], "n": r["n"]})  # fmt: skip
    if rows:
        common.write_csv(pd.DataFrame(rows), args.out / "toy_arms_results.csv")
    parts = [pd.read_csv(f) for f in sorted(args.work.glob("curve_seed*_*.csv"))]
    if parts:
        curve = pd.concat(parts, ignore_index=True).sort_values(["seed", "arm", "step", "metric"])
        common.write_csv(curve, args.out / "toy_training_curve.csv")
        plot_curve(curve, args.out / "toy_training_curve.png")
    gates = [pd.read_csv(f) for f in sorted(args.work.glob("seed*/gate_curve.csv"))]
    if gates:
        common.write_csv(pd.concat(gates, ignore_index=True), args.out / "toy_stage1_gate.csv")


def ship(args: argparse.Namespace, arm: str, record: dict[str, Any], data: Path) -> None:
    """Copy seed 0's model of ``arm`` to ``<out>/toy-<arm>`` with its card."""
    run_dir = args.work / "seed0" / arm
    dest = args.out / f"toy-{arm}"
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(
        run_dir,
        dest,
        ignore=shutil.ignore_patterns("checkpoint-*", "training_args.bin", "scores.json"),
    )
    size = (dest / "model.safetensors").stat().st_size
    if size > 10 * 1024 * 1024:
        log.warning("%s is %.1f MB, over the 10 MB budget", dest, size / 2**20)
    manifest = load_arms_manifest(data)
    files = seed_files(args, data, 0)
    card = {**record, "model": f"toy-{arm}", "world": WORLD, "shape": MODEL_SHAPE,
            "data": {"world_config": manifest["config"], "world_seed": manifest["seed"],
                     "pools": manifest["pools"], "som": manifest["som"],
                     "arm_file": str(files[arm].relative_to(data)),
                     "stage1_file": str(files["stage1"].relative_to(data))},
            "gate": args.gate, "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "python": platform.python_version(), "torch": torch.__version__}  # fmt: skip
    common.write_json(card, dest / "training.json")
    write_card(dest, card)
    model, processor = load_model(dest, dtype=torch.float32)
    write_check_sample(dest, model, processor, args.work / "check_split")


CHECK_SCENES = 24


def write_check_split(split: Path) -> Path:
    """The v2 world's first 24 eval scenes (world seed 0), written once; see ``write_check_sample``."""
    if not (split / "listing.json").is_file():
        write_eval_split(split, world(WORLD), CHECK_SCENES, seed=0, progress=False)
    return split


def write_check_sample(dest: Path, model: Any, processor: Any, split: Path) -> None:
    """``check_sample.json``: listing scores on the first 24 held-out v2 scenes (world seed 0).

    ``tests/slow/test_shipped_toy_models.py`` rebuilds the split (``write_check_split``) and
    checks that the shipped model still scores this.
    """
    write_check_split(split)
    result = evaluate(
        model, processor, split, tasks=("listing",), limit=CHECK_SCENES, progress=False
    )
    summary = result.summary.set_index("metric")["value"]
    check = {
        "n": CHECK_SCENES, "world": WORLD,
        "split": f"toy world {WORLD}, seed 0, eval scenes [0, 1, i] for i < {CHECK_SCENES}",
        "listing": {m: None if math.isnan(v := float(summary[m])) else round(v, 6)
                    for m in ("list_accuracy", "recall", "colour_accuracy", "shape_accuracy")},
    }  # fmt: skip
    common.write_json(check, dest / "check_sample.json")


ARM_TEXT = {
    "baseline": "the stage-2 instruction records only (untagged scenes and digit reading)",
    "som": "the same instruction records in the same order plus S SoM records (listing : tag-QA = 1 : 2) on tagged scenes",
    "control": "the same instruction records in the same order plus S reading-order lists (no tag numbers) on the same tagged scenes as the SoM arm",
}


def gate_text(gate: dict[str, Any]) -> str:
    m = gate["metrics"]
    measured = f"colour {m.get('untagged_colour', float('nan')):.3f}, shape {m.get('untagged_shape', float('nan')):.3f}"
    if gate["passed"]:
        return f"**passed** at step {gate['step']} ({measured})"
    return f"**missed** at the step limit {gate['step']} ({measured}); stage 2 ran anyway (--continue-below-gate)"


def frozen_text(card: dict[str, Any]) -> str:
    if card["hyperparameters"].get("trainable") == "projector+lm":
        return "projector and language model trained, vision tower frozen in both stages"
    return "every part trained"


def vision_text(gate: dict[str, Any]) -> str:
    v = gate.get("vision_warmup")
    if not v:
        return "none (--vision-steps 0)"
    return (
        f"{v['steps']} steps training the vision tower alone to name the shape and colour "
        f"of the object under each patch of untagged scenes (held-out per-object shape "
        f"{v['shape_accuracy']:.3f}, colour {v['colour_accuracy']:.3f}, {v['objects']} objects; "
        f"{v['seconds']:.0f} s)"
    )


def write_card(dest: Path, card: dict[str, Any]) -> None:
    rows = "\n".join(
        f"| {r['task']} | {r['setting']} | {r['metric']} | {r['value']:.3f} | {r['n']} |"
        for r in card["held_out"]
    )
    shape = card["shape"]
    text = f"""# {card["model"]}

A tiny LLaVA ({shape["vision_layers"]}×{shape["vision_width"]} CLIP vision tower,
{shape["text_layers"]}×{shape["text_width"]} Llama text model, {shape["image_size"]} px
images, patch {shape["patch_size"]}) trained from random weights on somprobe's toy world
`{card["world"]}` by `experiments/train_toy_models.py` (training seed {card["seed"]}).

- **Vision warm-up** (the stand-in for CLIP's pretraining): {vision_text(card["stage1_gate"])}.
- **Stage 1** (shared by the three arms of this seed; {frozen_text(card)}): {card["stage1_steps"]} steps on
  untagged instruction data and digit reading ({card["stage1_seconds"]:.0f} s); gate:
  untagged colour and shape accuracy ≥ {card["gate"]} on a validation split —
  {gate_text(card["stage1_gate"])}.
- **Stage 2** ({card["arm"]} arm): one epoch, {card["records"]} records, {card["steps"]} steps:
  {ARM_TEXT[card["arm"]]}. Instruction-record digest `{card["instruction_digest"][:16]}…`
  (the same in every arm of this seed). {card["stage2_seconds"]:.0f} s on {card["device"]}.
- Batch {card["hyperparameters"]["global_batch_size"]}, AdamW lr {card["hyperparameters"]["learning_rate"]}
  (warmup, constant through stage 1, cosine to 0.1× through stage 2), each answer turn
  weighted equally in the loss.
- **Held-out scores** (greedy decoding; up to {card["final_eval_samples"]} records per eval file):

| task | setting | metric | value | n |
|---|---|---|---|---|
{rows}

Listing and tag-QA are asked on tagged held-out scenes, POPE and the untagged questions
on untagged ones. Full details: `training.json`.
"""
    with atomic_write(dest / "README.md") as fh:
        fh.write(text)


def plot_curve(curve: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in ("listing/all/list_accuracy", "tag_qa/all/accuracy", "pope/random/accuracy",
                           "instruct/shape/accuracy") if m in set(curve["metric"])]  # fmt: skip
    if not metrics:
        return
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for (seed, arm), group in curve[curve["metric"] == metric].groupby(["seed", "arm"]):
            ax.plot(group["step"], group["value"], marker="o", ms=3, label=f"{arm} s{seed}")
        ax.set_title(metric, fontsize=9)
        ax.set_xlabel("stage-2 step")
        ax.set_ylim(-0.02, 1.02)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    try:
        records = train(args, argv)
    except SomprobeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.child:
        return 0
    wall = time.perf_counter() - t0
    for rec in records:
        print(
            rec["seed"],
            rec["arm"],
            json.dumps({k: round(v, 3) for k, v in flat(pd.DataFrame(rec["held_out"])).items()}),
        )
    print(f"wall-clock time of this run: {wall / 60:.1f} min")
    run = {"wall_seconds": round(wall, 1), "seeds": args.seeds, "arms": args.arms,
           "command": " ".join(["train_toy_models.py", *argv]), "cpu_count": os.cpu_count(),
           "device": device(args)}  # fmt: skip
    common.write_json(
        run, args.out / f"toy_training_run_seeds{'_'.join(map(str, args.seeds))}.json"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
