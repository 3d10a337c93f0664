"""Main job: does a tag token look at the object it tags? Two models, side by side.

Default (no flags, no network): the two toy models shipped in ``models/`` (a baseline
trained on the instruction mix, and a SoM model trained with listing + tag-QA data) on a
held-out toy-world split. Each model is teacher-forced through the ground-truth listing
("1. red circle\\n2. …") and also asked to write its own; the attention of every tag
token is captured (SDPA kept on), scored against the tag's object, its mark, the other
tags and the background per layer and head, and the two models are compared with paired
statistics. Writes ``results/attn_alignment/`` (CSV tables, summary) and figures.

Real checkpoints go through the same code path:

    python experiments/attn_alignment.py --base llava-hf/llava-1.5-13b-hf \\
        --som zzxslp/som-llava-v1.5-13b-hf --images coco \\
        --coco-annotations instances_val2017.json --image-dir val2017 \\
        --device cuda --dtype float16 --limit 200
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from somprobe.align import aggregate_by_layer, region_maps  # noqa: F401  (re-used below)
from somprobe.capture import digit_token_filter, teacher_force
from somprobe.data.listing import listing_answer
from somprobe.errors import SomprobeError
from somprobe.marks import TaggedImage, tag_regions
from somprobe.measure import DEFAULT_QUESTION, listing_alignment
from somprobe.models import build_tiny_llava, load_model
from somprobe.plots import plot_layer_curves, plot_layer_head_map, plot_top_patches, save_figure
from somprobe.stats import compare_models
from somprobe.tags import find_tag_mentions

ROOT = Path(__file__).resolve().parent.parent
METRICS = ["share_object", "share_mark", "lift_object", "topk_hit", "pointing", "auroc"]
SHIPPED = {"base": ROOT / "models" / "toy-baseline", "som": ROOT / "models" / "toy-som"}


def add_model_choice(p: argparse.ArgumentParser) -> None:
    """The two models every job compares, and their names in tables and figures."""
    p.add_argument("--base", default=None, help="baseline model (folder or cached hub name)")
    p.add_argument("--som", default=None, help="SoM-trained model (folder or cached hub name)")
    p.add_argument("--base-name", default="baseline")
    p.add_argument("--som-name", default="SoM")


def load_dtype(dtype: str | None, device: str) -> str | None:
    """The dtype to load: as asked, else float32 on CPU (the toy checkpoints are stored in
    float16, which CPUs multiply very slowly), else the checkpoint's own."""
    return dtype or ("float32" if str(device) == "cpu" else None)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_model_choice(p)
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
    p.add_argument("--short-side", type=int, default=640, help="resize real photos to this")
    p.add_argument("--limit", type=int, default=48, help="number of images")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default=None, help="float32 | float16 | bfloat16 (CPU: float32)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--k", type=int, default=5, help="top-k patches (paper's Fig. 4: 5)")
    p.add_argument("--modes", default="teacher_forced,generated")
    p.add_argument("--question", default=DEFAULT_QUESTION)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "results" / "attn_alignment")
    p.add_argument("--figures", type=Path, default=ROOT / "figures")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def resolve_models(args: argparse.Namespace) -> tuple[str, str, bool]:
    """The two model paths; random tiny stand-ins (announced) if the toy models are absent."""
    if args.base and args.som:
        return args.base, args.som, False
    if args.base or args.som:
        raise SomprobeError("give both --base and --som, or neither (the shipped toy models)")
    if SHIPPED["base"].exists() and SHIPPED["som"].exists():
        return str(SHIPPED["base"]), str(SHIPPED["som"]), False
    cache = ROOT / ".cache" / "untrained"
    print(
        "NOTE: the trained toy models (models/toy-baseline, models/toy-som) are not in this "
        "checkout; using two UNTRAINED random tiny LLaVAs (seeds 0 and 1) so the pipeline "
        "runs end to end. Their scores measure nothing about SoM training.",
        file=sys.stderr,
    )
    paths = []
    for seed in (0, 1):
        path = cache / f"seed{seed}"
        if not (path / "config.json").exists():
            build_tiny_llava(path, seed=seed)
        paths.append(str(path))
    return paths[0], paths[1], True


def load_images(args: argparse.Namespace) -> tuple[list[TaggedImage], list[str]]:
    if args.images == "toy":
        from somprobe.data.toyworld import WorldConfig, tag_scene
        from somprobe.data.toyworld.dataset import iter_scenes

        scenes = list(iter_scenes(WorldConfig(), "eval", args.limit, seed=args.seed))
        return [tag_scene(scene) for _, scene in scenes], [key for key, _ in scenes]
    from PIL import Image

    from somprobe.regions import from_coco, from_sam, from_superpixels, resize_regions

    if args.image_dir is None:
        raise SomprobeError(f"--images {args.images} needs --image-dir")
    source = args.regions or ("coco" if args.images == "coco" else "superpixels")
    files = sorted(p for p in args.image_dir.iterdir() if p.suffix.lower() in {".jpg", ".png"})
    if source == "coco":
        if args.coco_annotations is None:
            raise SomprobeError("--regions coco needs --coco-annotations")
        from somprobe.regions import load_coco

        coco = load_coco(args.coco_annotations)
        names = {img["file_name"]: img["id"] for img in coco.dataset["images"]}
        files = [f for f in files if f.name in names]
    tagged, ids = [], []
    for path in files[: args.limit]:
        image = Image.open(path).convert("RGB")
        scale = args.short_side / min(image.size)
        size = (round(image.width * scale), round(image.height * scale))
        if source == "coco":
            regions = from_coco(coco, names[path.name])
            regions = resize_regions(regions, size)
        image = image.resize(size, Image.Resampling.BICUBIC)
        if source == "superpixels":
            regions = from_superpixels(image)
        elif source == "sam":
            if not args.sam_model:
                raise SomprobeError("--regions sam needs --sam-model (a local or cached SAM)")
            regions = from_sam(image, model=args.sam_model, device=args.device)
        tagged.append(tag_regions(image, regions))
        ids.append(path.name)
    if not tagged:
        raise SomprobeError(f"no usable images found in {args.image_dir}")
    return tagged, ids


def fig4_maps(
    model: Any, processor: Any, item: TaggedImage, layer: int
) -> tuple[dict[int, Any], Any]:
    """Per tag id, the head-averaged attention map of the tag token at ``layer``."""
    result = teacher_force(
        model,
        processor,
        [item.image],
        [DEFAULT_QUESTION],
        [listing_answer(item.tagset)],
        queries=digit_token_filter(processor.tokenizer),
        layers=[layer],
    )
    start, end = result.answer_spans[0]
    ids = result.inputs["input_ids"][0, start:end].tolist()
    mentions = find_tag_mentions(processor.tokenizer, ids, tag_ids=item.tagset, offset=start)
    rows, cols = result.layout.grid(0)
    keys = result.trace.key_positions(0).tolist()
    patch_cols = [keys.index(p) for p in result.layout.patch_positions(0).tolist()]
    maps = {}
    for _, m in mentions.iterrows():
        att = result.trace.attention(0, int(m["scored_positions"][-1]))[0].mean(0)
        maps[int(m["tag_id"])] = att[patch_cols].reshape(rows, cols).numpy()
    return maps, result.layout


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    torch.manual_seed(args.seed)
    base_path, som_path, untrained = resolve_models(args)
    tagged, image_ids = load_images(args)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    names = {"base": args.base_name, "som": args.som_name}
    args.out.mkdir(parents=True, exist_ok=True)
    scores: dict[tuple[str, str], pd.DataFrame] = {}
    mentions: dict[tuple[str, str], pd.DataFrame] = {}
    models = {}
    for key, path in (("base", base_path), ("som", som_path)):
        dtype = load_dtype(args.dtype, args.device)
        model, processor = load_model(path, dtype=dtype, device_map=None)
        model.to(args.device)
        models[key] = (model, processor)
        for mode in modes:
            s, m = listing_alignment(
                model,
                processor,
                tagged,
                mode=mode,
                question=args.question,
                k=args.k,
                batch_size=args.batch_size,
                max_new_tokens=args.max_new_tokens,
                progress=not args.no_progress,
                image_ids=image_ids,
            )
            scores[(key, mode)] = s.assign(model=names[key], mode=mode)
            mentions[(key, mode)] = m.assign(model=names[key], mode=mode)
    all_scores = pd.concat(scores.values(), ignore_index=True)
    all_mentions = pd.concat(mentions.values(), ignore_index=True)
    write_csv(all_scores, args.out / "scores.csv.gz")
    write_csv(all_mentions.drop(columns=["scored_positions"]), args.out / "mentions.csv")

    comparisons = []
    summary: dict[str, Any] = {"untrained_stand_ins": untrained, "images": len(tagged)}
    for mode in modes:
        if scores[("base", mode)].empty or scores[("som", mode)].empty:
            counts = {names[k]: int(mentions[(k, mode)]["captured"].sum()) for k in ("base", "som")}
            summary[mode] = f"no paired comparison: tag mentions scored per model {counts}"
            continue
        per = {k: aggregate_by_layer(scores[(k, mode)], per_mention=True) for k in ("base", "som")}
        pair_on = ["batch", "mention", "tag_id"]
        comp = compare_models(
            per["base"],
            per["som"],
            METRICS,
            pair_on=pair_on,
            n_resamples=args.bootstrap,
            seed=args.seed,
        )
        comparisons.append(comp.assign(mode=mode))
        fig = plot_layer_curves(
            {names["base"]: per["base"], names["som"]: per["som"]},
            ["share_object", "lift_object", "topk_hit"],
            title=f"Tag-token attention by layer, {mode.replace('_', '-')} listing",
        )
        save_figure(fig, args.figures / f"attn_layer_curves_{mode}.png")
        summary[mode] = summarise(comp, per, names)
    if comparisons:
        write_csv(pd.concat(comparisons, ignore_index=True), args.out / "comparison.csv")
    tf = scores.get(("som", "teacher_forced"))
    if tf is not None and not tf.empty:
        base_tf = scores[("base", "teacher_forced")]
        diff = (
            tf.set_index(["batch", "mention", "layer", "head"])["lift_object"]
            - base_tf.set_index(["batch", "mention", "layer", "head"])["lift_object"]
        )
        fig = plot_layer_head_map(
            diff.rename("lift_object").reset_index(),
            "lift_object",
            center=0.0,
            title=f"lift_object: {names['som']} − {names['base']} (teacher-forced)",
        )
        save_figure(fig, args.figures / "attn_layer_head_diff.png")
        best_layer = int(aggregate_by_layer(tf).sort_values("lift_object").iloc[-1]["layer"])
        item = tagged[0]
        maps, layout = {}, None
        for key in ("base", "som"):
            maps[names[key]], layout = fig4_maps(*models[key], item, best_layer)
        fig = plot_top_patches(
            item.image,
            maps,
            layout,
            item.tagset,
            k=args.k,
            title=f"Top-{args.k} patches per tag token, layer {best_layer} (heads averaged)",
        )
        save_figure(fig, args.figures / "attn_top_patches.png")
    summary["seconds"] = round(time.perf_counter() - started, 1)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print_summary(summary)
    return 0


def summarise(
    comp: pd.DataFrame, per: dict[str, pd.DataFrame], names: dict[str, str]
) -> dict[str, Any]:
    """Per metric, the layer where the SoM model gains most, with its interval."""
    out: dict[str, Any] = {
        "mentions": {
            names[k]: len(v[["batch", "mention"]].drop_duplicates()) for k, v in per.items()
        }
    }
    for metric, group in comp.groupby("metric"):
        row = group.sort_values("mean_diff").iloc[-1]
        out[str(metric)] = {
            "layer": int(row["layer"]),
            names["base"]: round(float(row["mean_a"]), 4),
            names["som"]: round(float(row["mean_b"]), 4),
            "diff": round(float(row["mean_diff"]), 4),
            "ci95": [round(float(row["ci_low"]), 4), round(float(row["ci_high"]), 4)],
            "p_holm": float(row["p_adjusted"]),
        }
    return out


def print_summary(summary: dict[str, Any]) -> None:
    print(f"\nimages: {summary['images']}  time: {summary['seconds']} s")
    if summary["untrained_stand_ins"]:
        print("(untrained stand-in models: numbers show the pipeline works, nothing more)")
    for mode, block in summary.items():
        if mode in {"images", "seconds", "untrained_stand_ins"}:
            continue
        if not isinstance(block, dict):
            print(f"\n{mode}: {block}")
            continue
        print(f"\n{mode}: mentions scored {block['mentions']}")
        for metric in METRICS:
            if metric in block:
                r = block[metric]
                vals = ", ".join(
                    f"{k} {v}" for k, v in r.items() if k not in {"layer", "diff", "ci95", "p_holm"}
                )
                print(
                    f"  {metric:13s} best layer {r['layer']}: {vals}; diff {r['diff']:+.4f} "
                    f"[{r['ci95'][0]:+.4f}, {r['ci95'][1]:+.4f}] p_holm={r['p_holm']:.3g}"
                )


def write_csv(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    df.to_csv(tmp, index=False, compression="gzip" if path.suffix == ".gz" else None)
    os.replace(tmp, path)


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except SomprobeError as err:
        print(f"attn_alignment: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
