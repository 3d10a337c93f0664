"""Main job: does a tag token look at the object it tags? Two models, side by side.

Default (no flags, no network): the two toy models shipped in ``models/`` (a baseline
trained on the instruction mix, and a SoM model trained with listing + tag-QA data) on a
held-out toy-world split. Each model is teacher-forced through the ground-truth listing
("1. red circle\\n2. …") and also asked to write its own; the attention of every tag
token is captured (SDPA kept on), scored against the tag's object, its mark, the other
tags and the background per layer and head, and the two models are compared with paired
statistics. Writes ``results/attn_alignment/`` under the current folder (CSV tables,
``summary.json`` with the run record) and its ``figures/``; ``--figures figures`` (from
the repository root) regenerates the shipped figures instead.

Photos without region names (``--images folder``: superpixel or SAM regions) are listed
as "1. region\\n2. region …" (``--describe region``, their default): the teacher-forced
listing then names no object, and only the tag numbers carry information.

Real checkpoints go through the same code path:

    python experiments/attn_alignment.py --base llava-hf/llava-1.5-13b-hf \\
        --som zzxslp/som-llava-v1.5-13b-hf --images coco \\
        --coco-annotations instances_val2017.json --image-dir val2017 \\
        --device cuda --dtype float16 --limit 200
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, cast

import _common as common
import pandas as pd
import torch

from somprobe.data.listing import Describer, label_describer, region_describer
from somprobe.errors import DataFormatError, InputError, SomprobeError
from somprobe.measure import (
    DEFAULT_QUESTION,
    aggregate_by_layer,
    compare_scores,
    listing_alignment,
    plot_layer_curves,
    plot_layer_head_map,
    plot_top_patches,
    save_figure,
    tag_attention_maps,
)
from somprobe.tagging import TaggedImage, tag_regions

#: compared per layer, absolute mass beside the share conditional on the image; one family
METRICS = [
    "mass_object_markfree",
    "image_share_object_markfree",
    "lift_object_markfree",
    "mass_object",
    "image_share_object",
    "mass_mark",
    "image_share_mark",
    "mass_image",
    "topk_hit",
    "pointing",
    "auroc",
]
#: the chance level printed beside each ranking metric (per layer, mean over mentions)
CHANCE = {"topk_hit": "chance_topk", "pointing": "chance_pointing", "auroc": "chance_auroc"}
CURVES = [
    "mass_object_markfree",
    "image_share_object_markfree",
    "mass_mark",
    "image_share_mark",
    "topk_hit",
    "auroc",
]
MODES = ("teacher_forced", "generated")
#: --describe: the phrase after each tag number of the teacher-forced listing.
DESCRIBERS: dict[str, Describer] = {"category": label_describer, "region": region_describer}
JOB = "attn_alignment"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    common.add_model_args(p)
    p.add_argument("--images", choices=["toy", "coco", "folder"], default="toy")
    p.add_argument("--coco-annotations", type=Path, help="COCO instances JSON (--images coco)")
    p.add_argument("--image-dir", type=Path, help="image folder (--images coco|folder)")
    p.add_argument(
        "--regions",
        choices=["coco", "superpixels", "sam"],
        default=None,
        help="region source (default: coco for --images coco, superpixels for folder)",
    )
    p.add_argument("--sam-model", default=None, help="SAM checkpoint for --regions sam")
    p.add_argument(
        "--describe",
        choices=sorted(DESCRIBERS),
        default=None,
        help="phrase after each tag number of the teacher-forced listing: 'category' (the\n"
        "region's category; every region needs one) or 'region' (the category, else the\n"
        "neutral word 'region'). Default: region for superpixel and SAM regions, else category",
    )
    p.add_argument("--short-side", type=int, default=640, help="resize real photos to this")
    p.add_argument("--limit", type=int, default=48, help="number of images")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--k", type=int, default=5, help="top-k patches (paper's Fig. 4: 5)")
    p.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, from {MODES}")
    p.add_argument("--question", default=DEFAULT_QUESTION)
    p.add_argument("--seed", type=int, default=0)
    common.add_output_args(p, JOB)
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (whole images)")
    p.add_argument(
        "--permutations",
        type=int,
        default=9999,
        help="sign flips of whole images for the p-values (maxT over layers × metrics)",
    )
    args = common.resolve_outputs(p.parse_args(argv), JOB)
    if args.images != "toy":
        args.regions = args.regions or ("coco" if args.images == "coco" else "superpixels")
    if args.describe is None:
        args.describe = "region" if args.regions in ("superpixels", "sam") else "category"
    return args


AlignMode = Literal["teacher_forced", "generated"]


def check_args(args: argparse.Namespace) -> list[AlignMode]:
    """Reject every argument that would fail later (or measure nothing); return the modes.
    Creates nothing."""
    common.check_model_args(args)
    common.check_positive(
        args, "limit", "batch_size", "max_new_tokens", "k", "bootstrap", "permutations"
    )
    common.check_positive(args, "short_side")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or sorted(set(modes)) != sorted(modes) or not set(modes) <= set(MODES):
        raise InputError(f"--modes must name one or both of {MODES} once each, got {args.modes!r}")
    if args.images == "toy":
        for option in ("image_dir", "coco_annotations", "regions", "sam_model"):
            if getattr(args, option) is not None:
                flag = f"--{option.replace('_', '-')}"
                raise InputError(f"{flag} needs --images coco or folder (the toy scenes need none)")
    else:
        common.check_input_folder(args.image_dir, "--image-dir", f"--images {args.images}")
        if args.regions == "coco" and args.coco_annotations is None:
            raise InputError("--regions coco needs --coco-annotations (a COCO instances JSON)")
        if args.regions == "sam" and not args.sam_model:
            raise InputError("--regions sam needs --sam-model (a local or cached SAM)")
    common.check_outputs(args)
    return [cast(AlignMode, m) for m in modes]


def image_source(args: argparse.Namespace) -> str:
    """The images of the run, in words (for the run record)."""
    if args.images == "toy":
        return common.toy_images(args)
    where = str(args.image_dir.resolve())
    if args.images == "coco":
        return f"COCO {args.coco_annotations.resolve()} images in {where} (regions: {args.regions})"
    return f"folder {where} (regions: {args.regions})"


def load_images(args: argparse.Namespace) -> tuple[list[TaggedImage], list[str]]:
    """The tagged images and their ids: held-out toy scenes, or photos with regions."""
    if args.images == "toy":
        from somprobe.data.toyworld import tag_scene
        from somprobe.data.toyworld.dataset import iter_scenes

        scenes = list(iter_scenes(common.toy_world(args), "eval", args.limit, seed=args.seed))
        return [tag_scene(scene) for _, scene in scenes], [key for key, _ in scenes]
    from PIL import Image

    from somprobe.tagging.regions import from_coco, from_sam, from_superpixels, resize_regions

    source = args.regions
    suffixes = {".jpg", ".jpeg", ".png"}
    files = sorted(p for p in args.image_dir.iterdir() if p.suffix.lower() in suffixes)
    if source == "coco":
        from somprobe.tagging.regions import load_coco

        coco = load_coco(args.coco_annotations)
        names = {img.get("file_name"): img["id"] for img in coco.dataset["images"]}
        files = [f for f in files if f.name in names]
    tagged, ids = [], []
    for path in files[: args.limit]:
        try:
            with Image.open(path) as opened:
                image = opened.convert("RGB")
        except OSError as err:
            raise DataFormatError(f"{path} is not a readable image: {err}") from err
        scale = args.short_side / min(image.size)
        size = (round(image.width * scale), round(image.height * scale))
        if source == "coco":
            regions = from_coco(coco, names[path.name])
            regions = resize_regions(regions, size)
        image = image.resize(size, Image.Resampling.BICUBIC)
        if source == "superpixels":
            regions = from_superpixels(image)
        elif source == "sam":
            regions = from_sam(image, model=args.sam_model, device=args.device)
        tagged.append(tag_regions(image, regions))
        ids.append(path.name)
    if not tagged:
        what = " listed in the COCO annotations" if source == "coco" else ""
        raise SomprobeError(f"no usable images (.jpg, .png){what} found in {args.image_dir}")
    return tagged, ids


def main(argv: Sequence[str] | None = None) -> int:
    return common.run_job(run, parse_args(argv), JOB)


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    modes = check_args(args)
    tagged, image_ids = load_images(args)
    torch.manual_seed(args.seed)
    dtype = common.setup_torch(args)
    pair = common.resolve_models(args)
    describer = DESCRIBERS[args.describe]
    base, som = pair.names
    scores: dict[tuple[str, str], pd.DataFrame] = {}
    mentions: dict[tuple[str, str], pd.DataFrame] = {}
    models = {}
    for name, model, processor in common.load_each(pair, args, dtype):
        models[name] = (model, processor)
        for mode in modes:
            s, m = listing_alignment(
                model,
                processor,
                tagged,
                mode=mode,
                question=args.question,
                describer=describer,
                k=args.k,
                batch_size=args.batch_size,
                max_new_tokens=args.max_new_tokens,
                progress=not args.no_progress,
                image_ids=image_ids,
            )
            scores[(name, mode)] = s.assign(model=name, mode=mode)
            mentions[(name, mode)] = m.assign(model=name, mode=mode)
    all_scores = pd.concat(scores.values(), ignore_index=True)
    all_mentions = pd.concat(mentions.values(), ignore_index=True)
    common.write_csv(all_scores, args.out / "scores.csv.gz")
    common.write_csv(all_mentions.drop(columns=["scored_positions"]), args.out / "mentions.csv")

    summary: dict[str, Any] = {"untrained_stand_ins": pair.untrained, "images": len(tagged)}
    summary["run"] = common.run_record(args, pair, image_source(args), len(tagged))
    per: dict[str, list[pd.DataFrame]] = {n: [] for n in pair.names}
    for mode in modes:
        if scores[(base, mode)].empty or scores[(som, mode)].empty:
            counts = {n: int(mentions[(n, mode)]["captured"].sum()) for n in pair.names}
            summary[mode] = f"no paired comparison: tag mentions scored per model {counts}"
            continue
        for n in pair.names:
            per[n].append(aggregate_by_layer(scores[(n, mode)], per_mention=True).assign(mode=mode))
    if per[base]:
        tables = {n: pd.concat(frames, ignore_index=True) for n, frames in per.items()}
        # one family: every mode × layer × metric, resampled and sign-flipped by image
        comparison = compare_scores(
            tables[base],
            tables[som],
            METRICS,
            cluster="batch",
            by=["mode", "layer"],
            pair_on=["batch", "mention", "tag_id"],
            n_resamples=args.bootstrap,
            n_permutations=args.permutations,
            seed=args.seed,
        )
        common.write_csv(comparison, args.out / "comparison.csv")
        for mode, comp in comparison.groupby("mode", sort=False):
            by_mode = {n: t[t["mode"] == mode] for n, t in tables.items()}
            summary[str(mode)] = summarise(comp, by_mode, pair.names)
            fig = plot_layer_curves(
                by_mode,
                CURVES,
                title=f"Tag-token attention by layer, {str(mode).replace('_', '-')} listing "
                "(mark-free object; dashed: chance)",
            )
            save_figure(fig, args.figures / f"attn_layer_curves_{mode}.png")
        summary["comparison"] = {
            "family": f"{len(comparison)} rows: modes × layers × {len(METRICS)} metrics",
            "correction": comparison.attrs.get("correction"),
            "resampled": "whole images (bootstrap) and sign flips of whole images (p)",
        }
    tf = scores.get((som, "teacher_forced"))
    if tf is not None and not tf.empty:
        key = ["batch", "mention", "layer", "head"]
        metric = "mass_object_markfree"
        diff = tf.set_index(key)[metric] - scores[(base, "teacher_forced")].set_index(key)[metric]
        fig = plot_layer_head_map(
            diff.rename(metric).reset_index(),
            metric,
            center=0.0,
            title=f"{metric}: {som} − {base} (teacher-forced, absolute attention)",
        )
        save_figure(fig, args.figures / "attn_layer_head_diff.png")
        # the picture's layer: where the two models together look most at their objects
        # (chosen without favouring either model)
        pooled = pd.concat([tf, scores[(base, "teacher_forced")]])
        figure_layer = int(pooled.groupby("layer")["image_share_object_markfree"].mean().idxmax())
        summary["figure_layer"] = figure_layer
        item = tagged[0]
        maps, layouts = {}, {}
        for name, (model, processor) in models.items():  # each model's own image tokens
            maps[name], layouts[name] = tag_attention_maps(
                model, processor, item, figure_layer, question=DEFAULT_QUESTION, describer=describer
            )
        fig = plot_top_patches(
            item.image,
            maps,
            layouts,
            item.tagset,
            k=args.k,
            title=f"Top-{args.k} patches per tag token, layer {figure_layer} (heads averaged)",
        )
        save_figure(fig, args.figures / "attn_top_patches.png")
    summary["seconds"] = round(time.perf_counter() - started, 1)
    common.write_json(summary, args.out / "summary.json")
    print_summary(summary)
    return 0


def summarise(
    comp: pd.DataFrame, per: dict[str, pd.DataFrame], names: tuple[str, str]
) -> dict[str, Any]:
    """Every layer of every metric: both models' means, the paired difference with its
    image-bootstrap interval and family-adjusted p, the pairs and images behind it, and
    (for top-k, pointing, AUROC) the chance level."""
    out: dict[str, Any] = {
        "mentions": {n: len(v[["batch", "mention"]].drop_duplicates()) for n, v in per.items()}
    }
    for metric in METRICS:
        rows = comp[comp["metric"] == metric].sort_values("layer")
        layers = []
        for r in rows.itertuples():
            row: dict[str, Any] = {
                "layer": int(r.layer),
                names[0]: round(float(r.mean_a), 4),
                names[1]: round(float(r.mean_b), 4),
                "diff": round(float(r.mean_diff), 4),
                "ci95": [round(float(r.ci_low), 4), round(float(r.ci_high), 4)],
                "p_adjusted": float(r.p_adjusted),
                "significant": bool(r.significant),
                "n_pairs": int(r.n_pairs),
                "n_images": int(r.n_clusters),
            }
            if metric in CHANCE:
                for n, table in per.items():
                    at = table[(table["layer"] == r.layer) & table[metric].notna()]
                    row[f"chance_{n}"] = round(float(at[CHANCE[metric]].mean()), 4)
            layers.append(row)
        out[metric] = layers
    return out


def print_summary(summary: dict[str, Any]) -> None:
    print(f"\nimages: {summary['images']}  time: {summary['seconds']} s")
    if summary["untrained_stand_ins"]:
        print("(untrained stand-in models: numbers show the pipeline works, nothing more)")
    if "comparison" in summary:
        c = summary["comparison"]
        print(f"family: {c['family']}; correction {c['correction']}; {c['resampled']}")
    for mode, block in summary.items():
        if mode in {"images", "seconds", "untrained_stand_ins", "run", "comparison"}:
            continue
        if mode == "figure_layer":
            continue
        if not isinstance(block, dict):
            print(f"\n{mode}: {block}")
            continue
        print(f"\n{mode}: mentions scored {block['mentions']}")
        for metric in METRICS:
            for r in block.get(metric, []):
                models = [k for k in r if k not in ROW_KEYS and not k.startswith("chance_")]
                vals = "  ".join(f"{m} {r[m]:.4f}" for m in models)
                chance = [f"{r[k]:.3f}" for k in r if k.startswith("chance_")]
                mark = "*" if r["significant"] else " "
                print(
                    f"  {metric:28s} L{r['layer']}: {vals}  diff {r['diff']:+.4f} "
                    f"[{r['ci95'][0]:+.4f}, {r['ci95'][1]:+.4f}] p_adj={r['p_adjusted']:.3g}{mark}"
                    + (f"  chance {'/'.join(chance)}" if chance else "")
                )


ROW_KEYS = {"layer", "diff", "ci95", "p_adjusted", "significant", "n_pairs", "n_images"}


if __name__ == "__main__":
    raise SystemExit(main())
