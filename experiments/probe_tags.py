"""Linear probes at tag tokens: what does each layer know about the object a tag marks?

Default (no flags, no network): the two toy models shipped in ``models/`` on held-out
tagged toy-world scenes (scene seeds ``[seed, 1, i]``, never drawn for training). Each
model is teacher-forced through the ground-truth listing ("1. red circle\\n2. …"), and
the residual stream after every decoder layer is recorded at each tag number (the last
token of the label: the first position at which the model has read the whole tag, and
before it has read the object's name). Per layer, linear probes decode the tagged
object's colour and shape (multinomial logistic, accuracy) and its centroid x, y and
area (ridge on values normalised to [0, 1], R²) with ``somprobe.probes``: whole images
held out for testing, L2 strength by grouped cross-validation, the Hewitt & Liang control
task (every tag number gets one fixed random label), selectivity (task − control), a
majority-class / training-mean baseline, and 95% cluster-bootstrap intervals over test
images. The two models are compared on the same test samples (paired bootstrap).

Reading the control: at a tag token the token *is* the tag number, so a label that is a
fixed function of the number (the control task) is decodable almost perfectly, and
selectivity (task − control) comes out negative. It still shows how far a probe's score
could come from the number alone; tags are numbered by object area (smallest first), so
area in particular is partly readable from the number. Compare the task curve with the
baseline, and the two models with each other.

Writes ``results/probe_tags/`` under the current folder (``probes.csv``: model × layer ×
target × probe; ``comparison.csv``: SoM − baseline; ``run.json``) and
``results/probe_tags/figures/probe_layers.png`` (``--figures figures`` from the
repository root: the shipped figure).

Real checkpoints go through the same code path (on the same toy scenes):

    python experiments/probe_tags.py --base llava-hf/llava-1.5-13b-hf \\
        --som zzxslp/som-llava-v1.5-13b-hf --device cuda --dtype float16 --limit 500
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

import _common as common
import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from somprobe.data.toyworld import WorldConfig, tag_scene
from somprobe.data.toyworld.dataset import EVAL_LISTING_PROMPT, iter_scenes
from somprobe.errors import InputError, SomprobeError
from somprobe.measure import save_figure, teacher_forced_listing
from somprobe.probes import (
    REGION_TARGETS,
    ProbeDataset,
    build_probe_dataset,
    compare_probes,
    plot_probe_curves,
    run_probes,
)
from somprobe.tagging import TaggedImage

TARGETS = ("colour", "shape", "centroid_x", "centroid_y", "area")
JOB = "probe_tags"
TARGET_LABELS = {
    "colour": "colour",
    "shape": "shape",
    "centroid_x": "centroid x",
    "centroid_y": "centroid y",
    "area": "area",
    "category": "category",
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    common.add_model_args(p, threads_default="1 for the toy models on CPU, else torch's")
    p.add_argument("--limit", type=int, default=300, help="number of held-out scenes")
    p.add_argument(
        "--targets",
        default=",".join(TARGETS),
        help="what to probe: tag metadata (colour, shape, size), category, centroid_x, "
        "centroid_y, area",
    )
    p.add_argument("--question", default=EVAL_LISTING_PROMPT, help="the listing request")
    p.add_argument("--batch-size", type=int, default=16, help="scenes per forward pass")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds for the L2")
    p.add_argument("--test-size", type=float, default=0.2, help="share of images held out")
    p.add_argument("--seed", type=int, default=0, help="toy-world, split and bootstrap seed")
    common.add_output_args(p, JOB)
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    return common.resolve_outputs(p.parse_args(argv), JOB)


def check_args(args: argparse.Namespace) -> list[str]:
    """Reject values that would only fail later; return the targets. Creates nothing
    (the targets are checked against the toy world's tag metadata)."""
    common.check_positive(args, "limit", "batch_size", "bootstrap")
    common.check_model_args(args)
    if args.folds < 2 or not 0 < args.test_size < 1:
        raise InputError("--folds must be ≥ 2 and --test-size lie strictly between 0 and 1")
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if not targets:
        raise InputError("--targets is empty; name at least one, e.g. colour")
    first = tag_scene(next(iter(iter_scenes(WorldConfig(), "eval", 1, seed=args.seed)))[1])
    known = {"category", *REGION_TARGETS, *(k for t in first.tagset for k in t.metadata)}
    unknown = sorted(set(targets) - known)
    if unknown:
        raise InputError(f"unknown --targets {unknown}; choose from {sorted(known)}")
    common.check_outputs(args)
    return targets


def tag_token_dataset(
    model: Any,
    processor: Any,
    tagged: Sequence[TaggedImage],
    keys: Sequence[str],
    args: argparse.Namespace,
    desc: str,
) -> ProbeDataset:
    """Hidden states at every tag number of the teacher-forced listing, all scenes."""
    parts = []
    starts = range(0, len(tagged), args.batch_size)
    for start in tqdm(starts, desc=desc, unit="batch", disable=args.no_progress):
        chunk = tagged[start : start + args.batch_size]
        result, mentions = teacher_forced_listing(
            model, processor, chunk, question=args.question, attention=False
        )
        for b, item in enumerate(chunk):
            found = mentions[mentions["batch"] == b]
            if sorted(found["tag_id"]) != sorted(item.tagset.ids):
                raise SomprobeError(
                    f"scene {keys[start + b]}: the listing's tag mentions {list(found['tag_id'])} "
                    f"do not match its tags {item.tagset.ids}"
                )
        parts.append(
            build_probe_dataset(
                result.trace,
                mentions[["batch", "position", "tag_id"]],
                [t.tagset for t in chunk],
                image_ids=list(keys[start : start + len(chunk)]),
            )
        )
    return concat_datasets(parts, args.batch_size)


def concat_datasets(parts: Sequence[ProbeDataset], batch_size: int) -> ProbeDataset:
    """One dataset from per-batch ones (``batch`` becomes the scene's index in the run)."""
    samples = []
    for k, part in enumerate(parts):
        samples.append(part.samples.assign(batch=part.samples["batch"] + k * batch_size))
    table = pd.concat(samples, ignore_index=True)
    table["sample"] = np.arange(len(table))
    features = torch.cat([p.features for p in parts], dim=1)
    return ProbeDataset(features, table, parts[0].layers, parts[0].target_columns)


def plot_layers(scores: pd.DataFrame, targets: Sequence[str], title: str) -> Any:
    """One panel per target: task, control and baseline by layer, one colour per model."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook", palette="colorblind")
    ncols = 3
    nrows = -(-(len(targets) + 1) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.5 * nrows), squeeze=False)
    flat = list(axes.flat)
    for ax, target in zip(flat, targets, strict=False):
        plot_probe_curves(scores, target, probes=("task", "control", "baseline"), ax=ax)
        rows = scores[scores["target"] == target]
        regression = rows["metric"].iloc[0] == "r2"
        ax.set_title(f"{TARGET_LABELS.get(target, target)} ({'R²' if regression else 'accuracy'})")
        ax.set_ylabel("test R²" if regression else "test accuracy")
        ax.set_xlabel("decoder layer")
        ax.xaxis.get_major_locator().set_params(integer=True)
        low = -0.25 if regression else 0.0
        ax.set_ylim(max(low, min(0.0, float(rows["ci_low"].min()))) - 0.02, 1.02)
        handles, labels = ax.get_legend_handles_labels()
        ax.get_legend().remove()
    for ax in flat[len(targets) :]:
        ax.axis("off")
    labels = [f"{lab[: -len(' baseline')]} majority / mean" if lab.endswith(" baseline") else lab
              for lab in labels]  # fmt: skip
    flat[len(targets)].legend(
        handles, labels, loc="upper center", title="model, probe", frameon=False
    )
    flat[len(targets)].text(
        0.5, 0.02, "control: one random label per tag number\n(Hewitt & Liang control task)",
        ha="center", va="bottom", fontsize=9, transform=flat[len(targets)].transAxes,
    )  # fmt: skip
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig


def summarise(
    scores: pd.DataFrame, comparison: pd.DataFrame, names: tuple[str, str]
) -> list[dict[str, Any]]:
    """Per target and model the best layer; per target the layer of the SoM model's largest
    selectivity gain (picked after looking: read its interval with that in mind)."""
    out = []
    table = scores.set_index(["model", "target", "probe", "layer"]).sort_index()
    for target in scores["target"].unique():
        block: dict[str, Any] = {"target": target}
        for model in names:
            task = table.loc[(model, target, "task")]
            layer = int(task["value"].idxmax())
            block[model] = {"layer": layer, "metric": task["metric"].iloc[0]} | {
                probe: interval(table.loc[(model, target, probe, layer)])
                for probe in ("task", "control", "selectivity", "baseline")
            }
        comp = comparison[comparison["target"] == target].set_index(["probe", "layer"]).sort_index()
        layer = int(comp.loc["selectivity", "value"].idxmax())
        block["diff"] = {"layer": layer} | {
            probe: interval(comp.loc[(probe, layer)]) for probe in ("task", "selectivity")
        }
        out.append(block)
    return out


def interval(row: pd.Series) -> tuple[float, float, float]:
    return (float(row["value"]), float(row["ci_low"]), float(row["ci_high"]))


def fmt(v: tuple[float, float, float], signed: bool = False) -> str:
    return common.fmt_ci(*v, signed=signed)


def print_summary(
    blocks: list[dict[str, Any]], names: tuple[str, str], info: dict[str, Any]
) -> None:
    print(
        f"\nheld-out scenes: {info['scenes']}  tag tokens: {info['samples']}  "
        f"layers: {info['layers']}  time: {info['seconds']} s (CPU {info['cpu_seconds']} s)"
    )
    if info["untrained_stand_ins"]:
        print("(untrained stand-in models: numbers show the pipeline works, nothing more)")
    for block in blocks:
        print(f"\n{block['target']}:")
        for model in names:
            r = block[model]
            print(
                f"  {model:10s} best layer {r['layer']}: {r['metric']} {fmt(r['task'])}, control "
                f"{r['control'][0]:.3f}, selectivity {fmt(r['selectivity'], True)}, "
                f"baseline {r['baseline'][0]:.3f}"
            )
        d = block["diff"]
        print(
            f"  {names[1]} − {names[0]} (layer {d['layer']}, largest selectivity gain): task "
            f"{fmt(d['task'], True)}, selectivity {fmt(d['selectivity'], True)}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    return common.run_job(run, parse_args(argv), JOB)


def run(args: argparse.Namespace) -> int:
    started, cpu = time.perf_counter(), time.process_time()
    targets = check_args(args)
    dtype = common.setup_torch(args, toy_cpu_threads=1)
    pair = common.resolve_models(args)
    names = pair.names
    scenes = list(iter_scenes(WorldConfig(), "eval", args.limit, seed=args.seed))
    tagged = [tag_scene(scene) for _, scene in scenes]
    keys = [key for key, _ in scenes]
    results, datasets = {}, {}
    for name, model, processor in common.load_each(pair, args, dtype):
        ds = tag_token_dataset(model, processor, tagged, keys, args, desc=f"{name} capture")
        del model
        datasets[name] = ds
        results[name] = run_probes(
            ds, targets, n_folds=args.folds, test_size=args.test_size, n_boot=args.bootstrap,
            seed=args.seed,
        )  # fmt: skip
    scores = pd.concat(
        [r.scores.assign(model=n) for n, r in results.items()], ignore_index=True
    ).pipe(lambda df: df[["model", *df.columns.drop("model")]])
    comparison = compare_probes(
        results[names[0]], results[names[1]], names=names, n_boot=args.bootstrap, seed=args.seed
    )
    common.write_csv(scores, args.out / "probes.csv")
    common.write_csv(comparison, args.out / "comparison.csv")
    ds = datasets[names[0]]
    title = (
        f"Linear probes at tag tokens, {names[0]} vs {names[1]}: task, control and baseline by "
        f"layer\n({args.limit} held-out toy scenes, shaded: 95% bootstrap CI over test images)"
    )
    save_figure(plot_layers(scores, targets, title), args.figures / "probe_layers.png")
    info = common.write_run_info(
        args, pair, (started, cpu), images=common.toy_images(args), n_images=len(tagged),
        samples=len(ds.samples), layers=ds.layers, targets=targets,
    )  # fmt: skip
    print_summary(summarise(scores, comparison, names), names, info)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
