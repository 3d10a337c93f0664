"""Does every patch of a toy model's frozen vision tower say which shape and colour it shows?

A diagnostic of the stage-1 gate (README, "Seeds 1 and 2"): the language model of some
training seeds cannot find an object *by its shape*. If that came from the vision
warm-up, the seeds' frozen towers would differ in how well each patch's features give
its object's shape. This job fits linear probes (``somprobe.probes.probe_layers``) on
every vision layer's patch features (embeddings first; the projector reads
``vision_feature_layer``) of held-out world scenes that neither the warm-up nor the
datasets used (seeds ``(world_seed, 5, i)``): one sample per patch that an object owns
(``somprobe.data.toyworld.patch_labels``, ≥ 25% of the patch), targets its object's
shape and colour; splits, folds and bootstrap intervals keep a scene's patches together.
Chance is the majority class of the test patches.

Writes ``results/vision_patch_probe/`` under the current folder: ``scores.csv`` (model ×
layer × target: accuracy, 95% CI by scene, chance, n), ``per_shape.csv`` (model × layer ×
shape: test accuracy of the shape probe and n) and ``run.json``.

    python experiments/vision_patch_probe.py                       # the shipped seed-0 tower
    python experiments/vision_patch_probe.py --model "seed 0=models/toy-baseline" \\
        --model "seed 1=runs/toy_arms/seed1/vision400"
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import _common as common
import numpy as np
import pandas as pd
import torch

from somprobe.data.toyworld import make_scene, world
from somprobe.data.toyworld.patch_labels import patch_labels
from somprobe.errors import InputError
from somprobe.finetune.vision_warmup import check_world_fits, vision_patch_features
from somprobe.models import load_model
from somprobe.probes import probe_layers

JOB = "vision_patch_probe"
SCENE_CODE = 5  # scene seeds (world_seed, 5, i): apart from the datasets (0-2) and warm-up (3-4)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model", action="append", default=None, metavar="LABEL=PATH",
        help="a model whose vision tower is probed (repeat; default: the shipped seed-0 tower)",
    )  # fmt: skip
    p.add_argument("--world", default=common.DEFAULT_WORLD, choices=sorted(common.WORLDS))
    p.add_argument("--scenes", type=int, default=300, help="held-out scenes (all patches)")
    p.add_argument("--world-seed", type=int, default=0)
    p.add_argument("--bootstrap", type=int, default=1000, help="resamples of scenes for CIs")
    p.add_argument("--seed", type=int, default=0, help="splits and bootstrap")
    p.add_argument("--threads", type=int, default=None)
    common.add_output_args(p, JOB)
    return common.resolve_outputs(p.parse_args(argv), JOB)


def check_args(args: argparse.Namespace) -> None:
    """Every option sane and every model a folder, before anything is loaded or written."""
    common.check_positive(args, "scenes")
    if args.scenes < 10:
        raise InputError(f"--scenes must be ≥ 10 (five folds of whole scenes), got {args.scenes}")
    if args.bootstrap < 0:
        raise InputError(f"--bootstrap must be ≥ 0, got {args.bootstrap}")
    specs = args.model or [f"seed 0={common.SHIPPED['base']}"]
    args.models = {k: Path(v) for k, v in common.named_paths(specs, label="LABEL").items()}
    for label, path in args.models.items():
        if not path.is_dir():
            raise InputError(f"--model {label}={path}: {path} is not a folder")
    common.check_outputs(args)


def probe_model(
    label: str, path: Path, args: argparse.Namespace
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The scores and per-shape accuracies of one model's vision tower."""
    cfg = world(args.world)
    model, processor = load_model(path, dtype=torch.float32)
    check_world_fits(model, cfg)
    scenes = [make_scene(cfg, (args.world_seed, SCENE_CODE, i)) for i in range(args.scenes)]
    feats = vision_patch_features(model, processor, scenes)
    labels = [patch_labels(s) for s in scenes]
    owned = np.stack([lab.owner.ravel() >= 0 for lab in labels])  # [scene, patch]
    shape = np.stack([lab.shape.ravel() for lab in labels])[owned]
    colour = np.stack([lab.colour.ravel() for lab in labels])[owned]
    groups = np.repeat(np.arange(len(scenes)), owned.sum(axis=1))
    x = feats[:, torch.from_numpy(owned)]  # [layer, owned patch, width]
    names = {"shape": np.array(cfg.shapes)[shape - 1], "colour": np.array(cfg.colours)[colour - 1]}
    result = probe_layers(x, names, groups, n_boot=args.bootstrap, seed=args.seed)
    scores = result.scores[result.scores["probe"] == "task"].copy()
    projector = model.config.vision_feature_layer % x.shape[0]
    scores.insert(0, "model", label)
    scores["projector_reads"] = scores["layer"] == projector
    tests = result.per_sample[
        (result.per_sample["target"] == "shape") & (result.per_sample["probe"] == "task")
    ]
    tests = tests.assign(shape=names["shape"][tests["sample_id"].astype(int)])
    per_shape = (
        tests.groupby(["layer", "shape"], as_index=False)
        .agg(accuracy=("score", "mean"), n=("score", "size"))
        .assign(model=label)
    )
    return scores, per_shape[["model", "layer", "shape", "accuracy", "n"]]


def run(args: argparse.Namespace) -> int:
    check_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    parts = [probe_model(label, path, args) for label, path in args.models.items()]
    scores = pd.concat([s for s, _ in parts], ignore_index=True)
    per_shape = pd.concat([p for _, p in parts], ignore_index=True)
    common.write_csv(scores, args.out / "scores.csv")
    common.write_csv(per_shape, args.out / "per_shape.csv")
    common.write_json(
        {
            "models": {k: str(v) for k, v in args.models.items()},
            "world": args.world,
            "scenes": args.scenes,
            "scene_seeds": f"({args.world_seed}, {SCENE_CODE}, i) for i < {args.scenes}",
            "bootstrap": args.bootstrap,
            "seed": args.seed,
            "seconds": round(time.perf_counter() - t0, 1),
        },
        args.out / "run.json",
    )
    wide = per_shape.pivot_table(index=["model", "layer"], columns="shape", values="accuracy")
    for row in scores.itertuples():
        mark = " (projector)" if row.projector_reads else ""
        print(
            f"{row.model} layer {row.layer}{mark} {row.target}: "
            f"{common.fmt_ci(row.value, row.ci_low, row.ci_high)} "
            f"(chance {row.chance:.3f}, n_test {row.n_test})"
        )
    print("shape probe accuracy per shape (test patches):")
    print(wide.round(3).to_string())
    print(f"wrote scores.csv, per_shape.csv and run.json to {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return common.run_job(run, parse_args(argv), JOB)


if __name__ == "__main__":
    raise SystemExit(main())
