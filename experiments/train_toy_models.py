"""Train the two toy models the default job compares: a baseline and a SoM model.

Both start from the same randomly initialised tiny LLaVA (vision 4×128, text 4×224,
112 px, patch 14: ~4.6M parameters, ~9.1 MB in fp16) and, optionally, from one shared
stage 1 on untagged data (the toy world's instruction mix: captions, colours, shapes,
counts, existence). Stage 2 trains each model for the same number of steps with the same
seed and batch order settings:

* baseline: the instruction mix only (untagged images);
* SoM: the SoM mix (the same number of records, a share of them listing + tag-QA on
  tagged images).

During stage 2 both models are scored on the held-out split every ``--eval-every`` steps
(list-wise listing accuracy, colour/shape accuracy of the listed items, POPE existence
F1 on untagged images) and the rows go to a tidy CSV for the accuracy-vs-steps curve. At
the end each model is scored on a larger held-out sample and saved in fp16 safetensors
with its processor and a model card (README.md: data, steps, seed, training time,
held-out scores) in ``models/toy-baseline`` and ``models/toy-som``, with
``check_sample.json`` (listing scores on the first 24 held-out scenes, which a slow test
re-checks). The defaults are the shipped recipe.

Works on CPU (set ``--threads``); uses a GPU when one is visible (bf16 there).

    python experiments/train_toy_models.py --parallel --fresh    # the shipped run (CPU)
    python experiments/train_toy_models.py --steps 20 --stage1-steps 10 \\
        --eval-samples 8 --train-scenes 400 --eval-scenes 16 --out /tmp/toy-models  # smoke
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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import _common as common
import pandas as pd
import torch

from somprobe.data.toyworld import WorldConfig
from somprobe.data.toyworld.dataset import load_manifest, write_eval_split, write_toy_dataset
from somprobe.errors import SomprobeError
from somprobe.evals import evaluate
from somprobe.finetune import PeriodicEval, finetune
from somprobe.io import atomic_write
from somprobe.measure import save_figure
from somprobe.models import build_tiny_llava, load_model

#: The toy models' shape: the feasibility run's, with the text width trimmed to fit 10 MB.
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
MODELS = {"baseline": "mix_instruct.json", "som": "mix_som.json"}
CURVE_METRICS = {
    ("listing", "list_accuracy"),
    ("listing", "recall"),
    ("listing", "exact_rate"),
    ("listing", "colour_accuracy"),
    ("listing", "shape_accuracy"),
    ("pope", "f1"),
}
log = logging.getLogger("train_toy_models")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=common.ROOT / "models", help="where the models go")
    p.add_argument(
        "--work",
        type=Path,
        default=common.ROOT / "runs" / "toy_models",
        help="checkpoints, logs, the generated dataset (not committed)",
    )
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        help="toy-world dataset folder (default: <work>/data; written if missing)",
    )
    p.add_argument("--train-scenes", type=int, default=30_000)
    p.add_argument("--eval-scenes", type=int, default=500)
    p.add_argument(
        "--som-fraction",
        type=float,
        default=0.75,
        help="share of the SoM mix that is SoM data (listing + tag-QA)",
    )
    p.add_argument(
        "--listing-share",
        type=float,
        default=0.8,
        help="share of the SoM data that is listing (the rest tag-QA)",
    )
    p.add_argument("--world-seed", type=int, default=0, help="the toy world's seed")
    p.add_argument("--seed", type=int, default=0, help="initialisation and data-order seed")
    p.add_argument(
        "--stage1-steps",
        type=int,
        default=600,
        help="shared stage 1 on the instruction mix (0: none)",
    )
    p.add_argument("--steps", type=int, default=2600, help="stage-2 steps of each model")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=float, default=100)
    p.add_argument(
        "--trainable",
        default="all",
        choices=["all", "projector+lm"],
        help="stage 2: 'all' (the toy tower learns the tags) or 'projector+lm' "
        "(SoM-LLaVA's frozen vision tower)",
    )
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument(
        "--eval-samples",
        type=int,
        default=48,
        help="held-out records per eval file at each periodic evaluation",
    )
    p.add_argument(
        "--final-eval-samples",
        type=int,
        default=200,
        help="held-out records per eval file for the model cards",
    )
    p.add_argument("--eval-batch-size", type=int, default=32)
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (1 is faster on a busy shared machine)",
    )
    p.add_argument(
        "--no-bf16",
        dest="bf16",
        action="store_false",
        help="train in fp32 (default: bf16 autocast, ~1.45x faster on this CPU)",
    )
    p.add_argument("--only", choices=sorted(MODELS), default=None, help="train one model")
    p.add_argument(
        "--fresh", action="store_true", help="discard earlier runs in --work (default: resume them)"
    )
    p.add_argument(
        "--parallel",
        action="store_true",
        help="after the shared data and stage 1, train both models at once in two "
        "processes with 1 thread each (on 2 CPU cores ~2x the throughput of one after the other)",
    )
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    at_least = {
        "--train-scenes": (args.train_scenes, 1), "--eval-scenes": (args.eval_scenes, 1),
        "--steps": (args.steps, 1), "--stage1-steps": (args.stage1_steps, 0),
        "--batch-size": (args.batch_size, 1), "--eval-every": (args.eval_every, 1),
        "--eval-samples": (args.eval_samples, 1),
        "--final-eval-samples": (args.final_eval_samples, 1),
        "--eval-batch-size": (args.eval_batch_size, 1),
    }  # fmt: skip
    for flag, (value, low) in at_least.items():
        if value < low:
            p.error(f"{flag} must be ≥ {low}, got {value}")
    for flag, share in (("--som-fraction", args.som_fraction),
                        ("--listing-share", args.listing_share)):  # fmt: skip
        if not 0.0 <= share <= 1.0:
            p.error(f"{flag} must lie in [0, 1], got {share}")
    if args.threads is not None and args.threads < 1:
        p.error(f"--threads must be ≥ 1, got {args.threads}")
    if not args.lr > 0:
        p.error(f"--lr must be > 0, got {args.lr}")
    if not args.warmup >= 0:
        p.error(f"--warmup must be ≥ 0, got {args.warmup}")
    for flag, folder in (("--out", args.out), ("--work", args.work)):
        try:
            common.check_folder(folder, flag)
        except SomprobeError as err:
            p.error(str(err))
    return args


def dataset(args: argparse.Namespace) -> Path:
    """The toy-world dataset folder, written once and reused."""
    root = args.data or args.work / "data"
    if (root / "manifest.json").is_file():
        manifest = load_manifest(root)
        if manifest["train"]["files"]["scenes"] < args.train_scenes:
            log.warning("%s holds fewer training scenes than --train-scenes; using it", root)
        return root
    log.info("writing the toy world (%d train, %d eval scenes) to %s", args.train_scenes,
             args.eval_scenes, root)  # fmt: skip
    write_toy_dataset(
        root, train_scenes=args.train_scenes, eval_scenes=args.eval_scenes,
        seed=args.world_seed, som_fraction=args.som_fraction,
        listing_share=args.listing_share, progress=not args.no_progress,
    )  # fmt: skip
    return root


def scores(model: Any, processor: Any, eval_dir: Path, limit: int, batch: int) -> pd.DataFrame:
    """Held-out listing (tagged) and POPE existence (untagged) scores, tidy rows."""
    result = evaluate(
        model, processor, eval_dir, tasks=("listing", "pope"), limit=limit,
        batch_size=batch, progress=False,
    )  # fmt: skip
    return result.summary


def curve_fn(processor: Any, eval_dir: Path, limit: int, batch: int) -> Any:
    def fn(model: Any) -> dict[str, float]:
        table = scores(model, processor, eval_dir, limit, batch)
        out: dict[str, float] = {}
        for row in table.itertuples():
            if (row.task, row.metric) in CURVE_METRICS:
                key = row.metric if row.task == "listing" else f"pope_{row.setting}_{row.metric}"
                out[key] = float(row.value)
        return out

    return fn


def curve_path(work: Path, name: str) -> Path:
    """One curve CSV per model, so parallel runs never write the same file."""
    return work / f"curve_{name}.csv"


def train(args: argparse.Namespace, argv: Sequence[str] | None = None) -> dict[str, Any]:
    torch.manual_seed(args.seed)
    cuda = torch.cuda.is_available()
    work = args.work
    if args.fresh:
        for sub in ("init", "stage1", *MODELS, *(curve_path(work, m).name for m in MODELS)):
            target = work / sub
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    data = dataset(args)
    train_dir, eval_dir = data / "train", data / "eval"
    check_split = write_check_split(work / "check_split")  # before any parallel children
    manifest = load_manifest(data)
    init = build_tiny_llava(work / "init", seed=args.seed, **MODEL_SHAPE)
    common: dict[str, Any] = {
        "preset": "toy",
        "global_batch_size": args.batch_size,
        "per_device_batch_size": args.batch_size,
        "learning_rate": args.lr,
        "warmup": args.warmup,
        "seed": args.seed,
        "bf16": args.bf16,
        "save_steps": max(args.eval_every, 100),
        "logging_steps": max(1, min(50, args.steps // 10)),
        "progress": not args.no_progress,
    }
    timings: dict[str, float] = {}
    start = init
    if args.stage1_steps > 0 and finished(work / "stage1", args.stage1_steps):
        log.info("stage 1 already done in %s", work / "stage1")
        start = work / "stage1"
        timings["stage1"] = json.loads((start / "finetune_summary.json").read_text())["seconds"]
    elif args.stage1_steps > 0:
        t0 = time.perf_counter()
        stage1 = finetune(
            init, train_dir / "mix_instruct.json", train_dir, work / "stage1",
            max_steps=args.stage1_steps, trainable="all", **common,
        )  # fmt: skip
        timings["stage1"] = time.perf_counter() - t0
        log.info("stage 1: %d steps, %.0f s, loss %.3f", stage1.global_step,
                 timings["stage1"], stage1.last_loss or float("nan"))  # fmt: skip
        start = work / "stage1"
    cards: dict[str, Any] = {}
    names = [args.only] if args.only else list(MODELS)
    if args.parallel and len(names) > 1 and not cuda:
        return train_in_parallel(args, argv, names)
    for name in names:
        run_dir = work / name
        _, processor = load_model(start)
        periodic = PeriodicEval(
            curve_fn(processor, eval_dir, args.eval_samples, args.eval_batch_size),
            args.eval_every, csv_path=curve_path(work, name), labels={"model": name},
        )  # fmt: skip
        t0 = time.perf_counter()
        result = finetune(
            start, train_dir / MODELS[name], train_dir, run_dir, max_steps=args.steps,
            trainable=args.trainable, callbacks=[periodic], save_dtype="float16", **common,
        )  # fmt: skip
        timings[name] = time.perf_counter() - t0
        model, processor = load_model(run_dir, dtype=torch.float32)
        if cuda:
            model.to("cuda")  # type: ignore[arg-type]
        final = scores(model, processor, eval_dir, args.final_eval_samples, args.eval_batch_size)
        dest = args.out / f"toy-{name}"
        ship(run_dir, dest)
        card = {
            "model": f"toy-{name}",
            "data": {
                "world": manifest["config"],
                "world_seed": manifest["seed"],
                "stage1": "train/mix_instruct.json" if args.stage1_steps else None,
                "stage2": f"train/{MODELS[name]}",
                "mixes": manifest["train"]["mixes"],
                "train_scenes": manifest["train"]["files"]["scenes"],
                "eval_scenes": manifest["eval"]["files"]["scenes"],
            },
            "shape": MODEL_SHAPE,
            "stage1_steps": args.stage1_steps,
            "steps": result.global_step,
            "batch_size": args.batch_size,
            "seed": args.seed,
            "trainable": args.trainable,
            "hyperparameters": result.hyperparameters,
            "train_seconds": {"stage1": timings.get("stage1", 0.0), "stage2": timings[name]},
            "seconds_per_step": result.seconds_per_step,
            "final_loss": result.last_loss,
            "device": "cuda" if cuda else f"cpu ({torch.get_num_threads()} threads)",
            "eval_samples_per_file": args.final_eval_samples,
            "held_out": final.to_dict("records"),
            "skipped_records": result.skipped,
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "python": platform.python_version(),
            "torch": torch.__version__,
        }
        write_card(dest, card, final)
        write_check_sample(dest, model.to("cpu"), processor, check_split)
        cards[name] = card
        log.info("%s: %d steps in %.0f s; held-out:\n%s", name, result.global_step,
                 timings[name], final.to_string(index=False))  # fmt: skip
    write_curve(args)
    return cards


def write_curve(args: argparse.Namespace) -> None:
    """Merge the per-model curve CSVs into ``<out>/toy_training_curve.{csv,png}``."""
    parts = [pd.read_csv(f) for m in MODELS if (f := curve_path(args.work, m)).is_file()]
    if not parts:
        return
    curve = pd.concat(parts, ignore_index=True).sort_values(["model", "step", "metric"])
    common.write_csv(curve, args.out / "toy_training_curve.csv")
    plot_curve(curve, args.out / "toy_training_curve.png")


def child_argv(argv: Sequence[str], name: str) -> list[str]:
    """The parent's arguments for one child: no --parallel/--fresh/--only/--threads."""
    out: list[str] = []
    skip_value = False
    for arg in argv:
        if skip_value:
            skip_value = False
            continue
        key = arg.split("=", 1)[0]
        if key in ("--parallel", "--fresh"):
            continue
        if key in ("--only", "--threads"):
            skip_value = "=" not in arg
            continue
        out.append(arg)
    return [*out, "--only", name, "--threads", "1"]


def train_in_parallel(
    args: argparse.Namespace, argv: Sequence[str] | None, names: list[str]
) -> dict[str, Any]:
    """Train each model in its own 1-thread process; the data and stage 1 are already done."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args.work.mkdir(parents=True, exist_ok=True)
    procs = {}
    for name in names:
        log_file = (args.work / f"train_{name}.log").open("w")
        cmd = [sys.executable, str(Path(__file__).resolve()), *child_argv(argv, name)]
        log.info("starting %s: %s (log: %s)", name, " ".join(cmd), log_file.name)
        procs[name] = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT)
    failed = [name for name, proc in procs.items() if proc.wait() != 0]
    if failed:
        raise SomprobeError(
            f"training {', '.join(failed)} failed; see {args.work}/train_<model>.log"
        )
    write_curve(args)
    return {
        name: json.loads((args.out / f"toy-{name}" / "training.json").read_text()) for name in names
    }


def finished(run_dir: Path, steps: int) -> bool:
    """Whether ``run_dir`` holds a finished run of ``steps`` steps."""
    summary = run_dir / "finetune_summary.json"
    return summary.is_file() and json.loads(summary.read_text())["global_step"] >= steps


def ship(run_dir: Path, dest: Path) -> None:
    """Copy the final model + processor (not the checkpoints) to ``dest``."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(
        run_dir, dest, ignore=shutil.ignore_patterns("checkpoint-*", "training_args.bin")
    )
    size = (dest / "model.safetensors").stat().st_size
    if size > 10 * 1024 * 1024:
        log.warning(
            "%s is %.1f MB, over the 10 MB budget", dest / "model.safetensors", size / 2**20
        )


CHECK_SCENES = 24


def write_check_split(split: Path) -> Path:
    """The toy world's first 24 eval scenes (seed 0), written once; see ``write_check_sample``."""
    if not (split / "listing.json").is_file():
        write_eval_split(split, WorldConfig(), CHECK_SCENES, seed=0, progress=False)
    return split


def write_check_sample(dest: Path, model: Any, processor: Any, split: Path) -> None:
    """``check_sample.json``: listing scores on the first held-out scenes, for a quick re-check.

    ``tests/slow/test_shipped_toy_models.py`` rebuilds the same split (``write_check_split``)
    and checks that the shipped model still scores this.
    """
    result = evaluate(model, processor, split, tasks=("listing",), limit=CHECK_SCENES,
                      progress=False)  # fmt: skip
    summary = result.summary.set_index("metric")["value"]
    check = {
        "n": CHECK_SCENES,
        "split": f"toy world seed 0, eval scenes [0, 1, i] for i < {CHECK_SCENES}",
        "listing": {  # null: undefined, e.g. the accuracy of a model that listed nothing
            m: None if math.isnan(v := float(summary[m])) else round(v, 6)
            for m in ("list_accuracy", "recall", "colour_accuracy", "shape_accuracy")
        },
    }
    common.write_json(check, dest / "check_sample.json")


def write_card(dest: Path, card: dict[str, Any], final: pd.DataFrame) -> None:
    common.write_json(card, dest / "training.json")
    rows = "\n".join(
        f"| {r.task} | {r.setting} | {r.metric} | {r.value:.3f} | {r.n} |"
        for r in final.itertuples()
    )
    stage1 = card["stage1_steps"]
    text = f"""# {card["model"]}

A tiny LLaVA ({card["shape"]["vision_layers"]}×{card["shape"]["vision_width"]} CLIP vision tower,
{card["shape"]["text_layers"]}×{card["shape"]["text_width"]} Llama text model,
{card["shape"]["image_size"]} px images, patch {card["shape"]["patch_size"]}) trained from
random weights on somprobe's toy world, by `experiments/train_toy_models.py`.

- **Data**: toy world (seed {card["data"]["world_seed"]}, {card["data"]["train_scenes"]} training
  scenes); stage 1: {f"{stage1} steps on {card['data']['stage1']}" if stage1 else "none"};
  stage 2: `{card["data"]["stage2"]}`.
- **Steps**: {card["steps"]} (stage 2), batch {card["batch_size"]}, trainable parts
  `{card["trainable"]}`, AdamW lr {card["hyperparameters"]["learning_rate"]}, cosine to 0.1×.
- **Seed**: {card["seed"]} (initialisation and data order; the baseline and SoM models share
  the initialisation and stage 1).
- **Training time**: stage 1 {card["train_seconds"]["stage1"]:.0f} s, stage 2
  {card["train_seconds"]["stage2"]:.0f} s on {card["device"]}.
- **Held-out scores** ({card["eval_samples_per_file"]} records per eval file, greedy decoding):

| task | setting | metric | value | n |
|---|---|---|---|---|
{rows}

Listing is scored on tagged held-out scenes (list-wise accuracy = items listed correctly /
items listed); POPE is existence on untagged held-out scenes. Full details:
`training.json`.
"""
    with atomic_write(dest / "README.md") as fh:
        fh.write(text)


def plot_curve(curve: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in ("list_accuracy", "pope_random_f1") if m in set(curve["metric"])]
    if not metrics:
        return
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.5), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for model, group in curve[curve["metric"] == metric].groupby("model"):
            ax.plot(group["step"], group["value"], marker="o", label=model)
        ax.set_xlabel("stage-2 step")
        ax.set_ylabel(metric)
        ax.set_ylim(0, 1)
        ax.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    try:
        cards = train(args, argv)
    except SomprobeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    summary = {
        name: {
            "steps": c["steps"],
            "seconds": c["train_seconds"],
            "seconds_per_step": c["seconds_per_step"],
            "held_out": {
                f"{r['task']}/{r['setting']}/{r['metric']}": round(r["value"], 4)
                for r in c["held_out"]
                if (r["task"], r["metric"]) in CURVE_METRICS
            },
        }
        for name, c in cards.items()
    }
    wall = time.perf_counter() - t0
    print(json.dumps(summary, indent=2))
    print(
        f"wall-clock time of this run (data, stage 1, both models, evaluations): {wall / 60:.1f} min"
    )
    if not args.only:
        run = {"wall_seconds": round(wall, 1), "command": " ".join(
            [Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)]),
            "cpu_count": os.cpu_count(), "parallel": bool(args.parallel)}  # fmt: skip
        common.write_json(run, args.out / "toy_training_run.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
