"""Linear probes at tag tokens: what does each layer know about the object a tag marks?

Default (no flags, no network): the two toy models shipped in ``models/`` on held-out
tagged toy-world scenes (scene seeds ``[seed, 1, i]``, never drawn for training). Each
model is teacher-forced through the ground-truth listing ("1. red circle\\n2. …"), and
the residual stream after every decoder layer is recorded at three tokens of each listing
line (``--at``): the tag ``number`` (its last token: the model has read the whole tag but
not yet the object's name), the ``dot`` after it (where the model predicts the name) and
the first ``attribute`` word (in the toy world the colour word itself, so colour read there
is the token's identity). Per layer, linear probes decode the tagged object's colour and
shape (multinomial logistic, accuracy) and its centroid x, y and area (ridge on values
normalised to [0, 1], R²) with ``somprobe.probes``: whole images held out for testing, L2
strength by grouped cross-validation, 95% cluster-bootstrap intervals over test images.

Controls that can knock a claim over, each beside the task with its paired difference:

* ``control``: Hewitt & Liang's control task keyed on the object's identity (one fixed
  random label per category; in the toy world colour and shape are functions of the
  category, so a state that knows the category decodes both);
* ``binding``: the same hidden state probed for the attribute of *another* object of the
  same image (the next tag's, cyclically): near chance if the state is bound to its own
  object;
* ``number_baseline``: the attribute predicted from the tag number and list position alone
  (tags are numbered smallest object first, so the number alone tells something about
  area): a probe no better than this learned nothing from the hidden state;
* ``baseline``: the majority class / training mean; every row also carries its ``chance``.

The two models are compared on the same test samples (paired bootstrap).

Writes ``results/probe_tags/`` under the current folder (``probes.csv``: model × token ×
layer × target × probe; ``comparison.csv``: SoM − baseline; ``run.json``) and
``results/probe_tags/figures/probe_layers_<token>.png`` (``--figures figures`` from the
repository root: the shipped figures).

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

from somprobe.data.toyworld import tag_scene
from somprobe.data.toyworld.dataset import EVAL_LISTING_PROMPT, iter_scenes
from somprobe.errors import InputError, SomprobeError
from somprobe.measure import save_figure, teacher_forced_listing
from somprobe.probes import (
    POSITIONS,
    REGION_TARGETS,
    ProbeDataset,
    build_probe_datasets,
    compare_probes,
    listing_positions,
    plot_probe_curves,
    run_probes,
)
from somprobe.tagging import TaggedImage

TARGETS = ("colour", "shape", "centroid_x", "centroid_y", "area")
CONTROLS = ("control", "binding", "number_baseline")
PLOTTED = ("task", "control", "binding", "number_baseline", "baseline")
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
    p.add_argument(
        "--at",
        default=",".join(POSITIONS),
        help=f"listing tokens to probe, from {POSITIONS} (the tag number, the '.' after it, "
        "the first attribute word)",
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
    (the targets are checked against the toy world's tag metadata). Sets ``args.at``."""
    common.check_positive(args, "limit", "batch_size", "bootstrap")
    common.check_model_args(args)
    if args.folds < 2 or not 0 < args.test_size < 1:
        raise InputError("--folds must be ≥ 2 and --test-size lie strictly between 0 and 1")
    args.at = [a.strip() for a in str(args.at).split(",") if a.strip()]
    if not args.at or set(args.at) - set(POSITIONS):
        raise InputError(f"--at must name tokens from {POSITIONS}, got {args.at}")
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if not targets:
        raise InputError("--targets is empty; name at least one, e.g. colour")
    first = tag_scene(next(iter(iter_scenes(common.toy_world(args), "eval", 1, seed=args.seed)))[1])
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
) -> dict[str, ProbeDataset]:
    """Hidden states at the listing tokens ``args.at`` of every line, all scenes: one
    dataset per token, the same samples in the same order."""
    parts: dict[str, list[ProbeDataset]] = {at: [] for at in args.at}
    starts = range(0, len(tagged), args.batch_size)
    for start in tqdm(starts, desc=desc, unit="batch", disable=args.no_progress):
        chunk = tagged[start : start + args.batch_size]
        result, mentions = teacher_forced_listing(
            model, processor, chunk, question=args.question, queries="answer", attention=False
        )
        for b, item in enumerate(chunk):
            found = mentions[mentions["batch"] == b]
            if sorted(found["tag_id"]) != sorted(item.tagset.ids):
                raise SomprobeError(
                    f"scene {keys[start + b]}: the listing's tag mentions {list(found['tag_id'])} "
                    f"do not match its tags {item.tagset.ids}"
                )
        positioned = listing_positions(
            processor.tokenizer, result.inputs["input_ids"], result.answer_spans, mentions
        )
        built = build_probe_datasets(
            result.trace,
            positioned,
            [t.tagset for t in chunk],
            image_ids=list(keys[start : start + len(chunk)]),
            at=args.at,
        )
        for at, ds in built.items():
            parts[at].append(ds)
    return {at: concat_datasets(p, args.batch_size) for at, p in parts.items()}


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
    """One panel per target: task, controls and baseline by layer, one colour per model."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook", palette="colorblind")
    ncols = 3
    nrows = -(-(len(targets) + 1) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.5 * nrows), squeeze=False)
    flat = list(axes.flat)
    for ax, target in zip(flat, targets, strict=False):
        plot_probe_curves(scores, target, probes=PLOTTED, ax=ax)
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
        handles, labels, loc="upper center", title="model, probe", frameon=False, ncol=2,
        fontsize=9,
    )  # fmt: skip
    flat[len(targets)].text(
        0.5, 0.0, "control: one random label per category (Hewitt & Liang)\n"
        "binding: another object's label, same image\n"
        "number baseline: tag number + list position only",
        ha="center", va="bottom", fontsize=9, transform=flat[len(targets)].transAxes,
    )  # fmt: skip
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig


def summarise(
    scores: pd.DataFrame, comparison: pd.DataFrame, names: tuple[str, str]
) -> list[dict[str, Any]]:
    """Per listing token, target and model, every layer: the task with its interval and
    the controls' values; per token and target, the SoM − baseline task difference at
    every layer."""
    out = []
    probes = ("task", *CONTROLS, "baseline")
    table = scores.set_index(["at", "model", "target", "probe", "layer"]).sort_index()
    comp = comparison.set_index(["at", "target", "probe", "layer"]).sort_index()
    for (at, target), rows in scores.groupby(["at", "target"], sort=False):
        block: dict[str, Any] = {"at": at, "target": target, "metric": rows["metric"].iloc[0]}
        for model in names:
            block[model] = {
                int(layer): {p: interval(table.loc[(at, model, target, p, layer)]) for p in probes}
                for layer in sorted(rows["layer"].unique())
            }
        block["diff"] = {
            int(layer): interval(comp.loc[(at, target, "task", layer)])
            for layer in sorted(rows["layer"].unique())
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
        print(f"\n{block['target']} at the {block['at']} token ({block['metric']}):")
        for model in names:
            for layer, r in block[model].items():
                controls = ", ".join(f"{p} {r[p][0]:.3f}" for p in (*CONTROLS, "baseline"))
                print(f"  {model:10s} L{layer}: task {fmt(r['task'])}; {controls}")
        diffs = "  ".join(f"L{k} {fmt(v, True)}" for k, v in block["diff"].items())
        print(f"  {names[1]} − {names[0]} task: {diffs}")


def main(argv: Sequence[str] | None = None) -> int:
    return common.run_job(run, parse_args(argv), JOB)


def run(args: argparse.Namespace) -> int:
    started, cpu = time.perf_counter(), time.process_time()
    targets = check_args(args)
    dtype = common.setup_torch(args, toy_cpu_threads=1)
    pair = common.resolve_models(args)
    names = pair.names
    scenes = list(iter_scenes(common.toy_world(args), "eval", args.limit, seed=args.seed))
    tagged = [tag_scene(scene) for _, scene in scenes]
    keys = [key for key, _ in scenes]
    results: dict[tuple[str, str], Any] = {}
    samples = 0
    layers: list[int] = []
    for name, model, processor in common.load_each(pair, args, dtype):
        by_token = tag_token_dataset(model, processor, tagged, keys, args, desc=f"{name} capture")
        del model
        for at, ds in by_token.items():
            samples, layers = len(ds.samples), list(ds.layers)
            results[(name, at)] = run_probes(
                ds, targets, controls=CONTROLS, n_folds=args.folds, test_size=args.test_size,
                n_boot=args.bootstrap, seed=args.seed,
            )  # fmt: skip
    scores = pd.concat(
        [r.scores.assign(model=n, at=at) for (n, at), r in results.items()], ignore_index=True
    ).pipe(lambda df: df[["model", "at", *df.columns.drop(["model", "at"])]])
    comparison = pd.concat(
        [
            compare_probes(
                results[(names[0], at)], results[(names[1], at)], names=names,
                n_boot=args.bootstrap, seed=args.seed,
            ).assign(at=at)
            for at in args.at
        ],
        ignore_index=True,
    )  # fmt: skip
    common.write_csv(scores, args.out / "probes.csv")
    common.write_csv(comparison, args.out / "comparison.csv")
    for at in args.at:
        title = (
            f"Linear probes at the {at} token of each listing line, {names[0]} vs {names[1]}: "
            f"task, controls and baseline by layer\n({args.limit} held-out toy scenes, "
            "shaded: 95% bootstrap CI over test images)"
        )
        fig = plot_layers(scores[scores["at"] == at], targets, title)
        save_figure(fig, args.figures / f"probe_layers_{at}.png")
    info = common.write_run_info(
        args, pair, (started, cpu), images=common.toy_images(args), n_images=len(tagged),
        samples=samples, layers=layers, targets=targets, at=args.at, controls=list(CONTROLS),
    )  # fmt: skip
    print_summary(summarise(scores, comparison, names), names, info)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
