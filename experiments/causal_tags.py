"""Causal tests at tag tokens: attention knockout and activation patching, every training arm.

Does a model *need* the tagged object's patches (or the drawn mark's) when it writes or
answers about tag n? For held-out tagged toy scenes and each model (default: the shipped
arms that exist, ``models/toy-{baseline,som,control}``; name them ``baseline`` and ``som``
with ``--model`` for the SoM − baseline comparison):

* **Listing** (teacher-forced "List the items one by one." with the true answer): the
  log-probability of each item ("red circle") after its tag number, with the edges from
  the tag-number token(s) to a key set removed (``somprobe.capture.intervene.knockout``):
  ``object`` (the object's patches that are ≥ 50 % object and hold no mark), ``mark``
  (the patches holding the tag's drawn mark) or ``random`` (as many background patches,
  seeded: the control), at each single layer and at all layers. ``drop`` = log-prob
  without − with the knockout (nats; > 0: the edges were needed). The same knockouts
  are also made from every token of the line (``scope="line"``: the tokens that predict
  "." and the item), a control that can fail: if even the line does not need its object,
  the tag token cannot. A tag without a key set (no mark-free patch it half fills) is NaN.
* **Tag-QA** ("What is the object tagged with 3?", greedy): accuracy with the edges from
  the question's tag-number token to the same key sets removed (``chance``: one of the
  world's categories named at random).
* **Activation patching**: one object per scene is recoloured (a colour not in the scene);
  the clean run's residual stream at the object's patches (every patch it touches) is
  written into the corrupted run at one layer, and the log-probability difference
  "clean colour − new colour" of the item's colour word is read at the tag's line:
  ``restored`` = (patched − corrupted) / (clean − corrupted), by layer (patching the last
  layer cannot reach later tokens: 0 by construction, a check); NaN where recolouring
  moved the difference by less than 0.5 nats, or where the new colour is not one token.

Intervals: 95 % bootstrap over scenes; paired tests (object vs random per model and
window; SoM vs baseline per window and condition) resample and sign-flip whole scenes
with maxT over each family (``somprobe.measure.compare_scores``). Writes
``results/causal_tags/`` (per-mention tables, ``summary.csv``, ``comparison.csv``,
``patching.csv``, ``summary.json``) and ``results/causal_tags/figures/causal_knockout.png``,
``causal_patching.png`` (``--figures figures``: the shipped figures).

    python experiments/causal_tags.py                      # shipped arms, 24 scenes
    python experiments/causal_tags.py --model som=zzxslp/som-llava-v1.5-13b-hf \\
        --model baseline=llava-hf/llava-1.5-13b-hf --device cuda --dtype float16 --limit 100
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _common as common
import numpy as np
import pandas as pd
import torch

from somprobe.capture import Recorder, digit_token_filter
from somprobe.capture.intervene import Edges, knockout, patch_activations
from somprobe.data.listing import listing_answer
from somprobe.data.toyworld import COLOURS, WORLDS, tag_scene, world
from somprobe.data.toyworld.dataset import iter_scenes
from somprobe.errors import InputError
from somprobe.evals.tag_qa import answer_correct
from somprobe.measure import compare_scores, save_figure
from somprobe.models import ImageLayout, build_prompt, load_model, prepare_inputs
from somprobe.models.inputs import to_model

JOB = "causal_tags"
CONDITIONS = ("object", "mark", "random")
LISTING_QUESTION = "List the items one by one."
QA_TEMPLATE = "What is the object tagged with {label}?"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", action="append", default=None, metavar="NAME=PATH",
                   help="a model to test (repeat; default: the shipped arms: baseline, som and,\n"
                   "where shipped, control)")  # fmt: skip
    p.add_argument("--world", default=None, choices=sorted(WORLDS),
                   help="toy world of the scenes (default: the first model's, else v2)")  # fmt: skip
    p.add_argument("--limit", type=int, default=24, help="held-out scenes")
    p.add_argument("--batch-size", type=int, default=12)
    p.add_argument("--seed", type=int, default=0, help="scene, random-set and bootstrap seed")
    p.add_argument("--bootstrap", type=int, default=2000)
    p.add_argument("--no-patching", action="store_true")
    p.add_argument("--no-qa", action="store_true")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-progress", action="store_true")
    common.add_output_args(p, JOB)
    return common.resolve_outputs(p.parse_args(argv), JOB)


def check_args(args: argparse.Namespace) -> dict[str, str]:
    common.check_positive(args, "limit", "batch_size", "bootstrap")
    if args.threads is not None and args.threads < 1:
        raise InputError(f"--threads must be ≥ 1, got {args.threads}")
    models = common.named_paths(args.model or [])
    if not models:  # the shipped arms that are there (the control arm comes with world v2)
        found = {
            "baseline": common.SHIPPED["base"],
            "som": common.SHIPPED["som"],
            "control": common.CONTROL,
        }
        models = {n: str(p) for n, p in found.items() if (p / "config.json").is_file()}
        if not {"baseline", "som"} <= set(models):
            raise InputError(
                "the shipped toy models are missing (models/toy-baseline, models/toy-som); "
                "name models with --model"
            )
    if args.world is None:
        args.world = common.trained_world(next(iter(models.values()))) or common.DEFAULT_WORLD
    common.check_outputs(args)
    return models


def key_sets(
    layout: ImageLayout, tagged: Any, b: int, rng: np.random.Generator
) -> dict[int, dict[str, np.ndarray]]:
    """For each tag of image ``b``: the *patch indices* of its object, mark and random sets
    (and every patch the object touches). Patches, not token positions: the same image sits
    at other positions in each padded batch, so each batch maps them with its own layout."""
    tags = list(tagged.tagset)
    objects = [layout.mask_to_patches(t.mask, image=b).ravel() for t in tags]
    marks = [layout.box_to_patches(t.mark_box, image=b).ravel() for t in tags]
    any_mark = np.max(marks, axis=0) > 0
    background = np.flatnonzero((np.max(objects, axis=0) == 0) & ~any_mark)
    out = {}
    for tag, obj, mark in zip(tags, objects, marks, strict=True):
        own = np.flatnonzero((obj >= 0.5) & ~any_mark)
        pool = (
            background if len(background) >= len(own) else np.flatnonzero((obj == 0) & (mark == 0))
        )
        rand = (
            rng.choice(pool, size=min(len(own), len(pool)), replace=False)
            if len(own)
            else np.array([], int)
        )
        out[tag.id] = {
            "object": own,
            "mark": np.flatnonzero(mark > 0),
            "random": np.sort(rand),
            "touched": np.flatnonzero(obj > 0),
        }
    return out


def token_positions(layout: ImageLayout, image: int, patches: np.ndarray) -> list[int]:
    """The token positions of ``patches`` of ``image`` in the batch ``layout`` describes."""
    return [int(p) for p in layout.patch_positions(image=image)[patches]]


@dataclass
class ListingBatch:
    """One batch of teacher-forced listings: inputs, their layout, each row's lines."""

    inputs: dict[str, Any]
    layout: ImageLayout
    items: list[list[dict[str, Any]]]


def listing_batch(processor: Any, batch: list[Any]) -> ListingBatch:
    """The true listing of every tagged image, teacher-forced, and where each line is."""
    images = [t.image for t in batch]
    full = [
        build_prompt(processor, LISTING_QUESTION, answer=listing_answer(t.tagset)) for t in batch
    ]
    inputs = prepare_inputs(processor, images, full)
    prefix = prepare_inputs(
        processor, images, [build_prompt(processor, LISTING_QUESTION)] * len(batch)
    )
    items = []
    for b in range(len(batch)):
        start = int((~inputs["attention_mask"][b].bool()).sum()) + int(
            prefix["attention_mask"][b].sum()
        )
        items.append(listing_items(processor.tokenizer, inputs["input_ids"][b], start))
    layout = ImageLayout.from_inputs(processor, inputs, images=images)
    return ListingBatch(dict(inputs), layout, items)


def listing_items(tokenizer: Any, ids: torch.Tensor, start: int) -> list[dict[str, Any]]:
    """Each listing line of one row: tag number, its digit positions, item token positions."""
    tokens = tokenizer.convert_ids_to_tokens(ids.tolist())
    digits = digit_token_filter(tokenizer)
    items, i = [], start
    while i < len(tokens):
        if not digits(int(ids[i])):
            i += 1
            continue
        run = [i]
        while run[-1] + 1 < len(tokens) and digits(int(ids[run[-1] + 1])):
            run.append(run[-1] + 1)
        dot = run[-1] + 1
        if dot >= len(tokens) or tokens[dot] != ".":
            i = dot
            continue
        label = int("".join(tokenizer.convert_tokens_to_string([tokens[j]]).strip() for j in run))
        end = dot + 1
        while end < len(tokens) and tokens[end] not in ("\n", "<0x0A>", tokenizer.eos_token):
            end += 1
        items.append({"tag_id": label, "digits": run, "item": list(range(dot + 1, end))})
        i = end
    return items


def logprob(logp: torch.Tensor, ids: torch.Tensor, b: int, positions: list[int]) -> float:
    """Sum of log p(token at t | tokens < t) over ``positions`` of row ``b`` (``logp``: the
    pass's log-softmax, computed once)."""
    if not positions:
        return float("nan")
    return float(sum(logp[b, t - 1, int(ids[b, t])] for t in positions))


def log_softmax(model: Any, inputs: dict[str, Any]) -> torch.Tensor:
    with torch.no_grad():
        return torch.log_softmax(model(**inputs).logits.float(), dim=-1)


def windows(n_layers: int) -> list[tuple[str, list[int]]]:
    return [(f"L{la}", [la]) for la in range(n_layers)] + [("all", list(range(n_layers)))]


def listing_knockout(
    model: Any,
    lb: ListingBatch,
    keys: list[dict],
    scene_ids: list[int],
    n_layers: int,  # type: ignore[type-arg]
) -> pd.DataFrame:
    ids = lb.inputs["input_ids"]
    items = dict(enumerate(lb.items))
    model_inputs = to_model(model, lb.inputs)
    plain = log_softmax(model, model_inputs)
    base = {(b, it["tag_id"]): logprob(plain, ids, b, it["item"]) for b in items for it in items[b]}
    scopes = {  # tag: the number's token(s); line: every token that predicts ".", the item
        "tag": lambda it: it["digits"],
        "line": lambda it: list(range(it["digits"][0], it["item"][-1])),
    }
    rows = []
    for scope, queries in scopes.items():
        for window, layers in windows(n_layers):
            for cond in CONDITIONS:
                edges = [Edges({b: queries(it)}, {b: token_positions(lb.layout, b, keys[b][it["tag_id"]][cond])},
                               layers=layers)
                         for b in items for it in items[b] if len(keys[b][it["tag_id"]][cond])]  # fmt: skip
                with knockout(model, edges):
                    cut = log_softmax(model, model_inputs)
                for b in items:
                    for it in items[b]:
                        k = keys[b][it["tag_id"]]
                        after = logprob(cut, ids, b, it["item"]) if len(k[cond]) else float("nan")
                        before = base[(b, it["tag_id"])]
                        rows.append({"scene": scene_ids[b], "tag_id": it["tag_id"], "scope": scope,
                                     "window": window, "condition": cond, "n_keys": len(k[cond]),
                                     "logp": before, "logp_knocked": after, "drop": before - after})  # fmt: skip
    return pd.DataFrame(rows)


def qa_knockout(
    model: Any,
    processor: Any,
    batch: list[Any],
    keys: list[dict],
    scene_ids: list[int],
    n_layers: int,
) -> pd.DataFrame:  # type: ignore[type-arg]
    questions = [(b, t) for b, tagged in enumerate(batch) for t in tagged.tagset]
    prompts = [build_prompt(processor, QA_TEMPLATE.format(label=t.label)) for _, t in questions]
    images = [batch[b].image for b, _ in questions]
    inputs = prepare_inputs(processor, images, prompts)
    layout = ImageLayout.from_inputs(processor, inputs, images=images)  # question q: image q
    ids = inputs["input_ids"]
    digits = digit_token_filter(processor.tokenizer)
    model_inputs = to_model(model, inputs)
    length = ids.shape[1]

    def answers(edges: list[Edges] | None) -> list[str]:
        cut = knockout(model, edges) if edges is not None else contextlib.nullcontext()
        with torch.no_grad(), cut:
            out = model.generate(**model_inputs, max_new_tokens=6, do_sample=False)
        return processor.tokenizer.batch_decode(out[:, length:], skip_special_tokens=True)

    plain = answers(None)
    rows = []
    for window, layers in [("none", []), *windows(n_layers)]:
        for cond in CONDITIONS if layers else ("none",):
            if layers:
                edges = [Edges({q: [p for p in range(length) if digits(int(ids[q, p]))]},
                               {q: token_positions(layout, q, keys[b][t.id][cond])}, layers=layers)
                         for q, (b, t) in enumerate(questions) if len(keys[b][t.id][cond])]  # fmt: skip
                said = answers(edges)
            else:
                said = plain
            for q, (b, t) in enumerate(questions):
                defined = not layers or bool(len(keys[b][t.id][cond]))  # no key set: NaN, not 0
                correct = float(answer_correct("what_is_tagged", said[q], t.category))
                rows.append({"scene": scene_ids[b], "tag_id": t.id, "window": window, "condition": cond,
                             "answer": said[q].strip(), "truth": t.category,
                             "correct": correct if defined else float("nan")})  # fmt: skip
    return pd.DataFrame(rows)


def recoloured(scene: Any, index: int, colour: str) -> Any:
    """The scene with object ``index`` painted in ``colour`` (same masks, same tags)."""
    pixels = np.asarray(scene.image).copy()
    pixels[scene.regions[index].mask] = COLOURS[colour]
    from PIL import Image

    return dataclasses.replace(scene, image=Image.fromarray(pixels))


def patching(
    model: Any,
    processor: Any,
    scenes: list[Any],
    tagged: list[Any],
    lb: ListingBatch,
    keys: list[dict],  # type: ignore[type-arg]
    scene_ids: list[int],
    n_layers: int,
    rng: np.random.Generator,
) -> pd.DataFrame:
    corrupt_t, picks = [], []
    for scene, image, lines in zip(scenes, tagged, lb.items, strict=True):
        tag = image.tagset[lines[int(rng.integers(len(lines)))]["tag_id"]]
        present = {o.colour for o in scene.objects}
        options = [c for c in scene.config.colours if c not in present]
        new = options[int(rng.integers(len(options)))]
        corrupt_t.append(tag_scene(recoloured(scene, int(tag.source_index), new)))
        picks.append((tag, new))
    texts = [
        build_prompt(processor, LISTING_QUESTION, answer=listing_answer(t.tagset))
        for t in corrupt_t
    ]
    corrupt = prepare_inputs(processor, [t.image for t in corrupt_t], texts)  # the clean answers
    ids = lb.inputs["input_ids"]
    targets = []
    for b, (tag, new) in enumerate(picks):
        item = next(it for it in lb.items[b] if it["tag_id"] == tag.id)
        colour_pos = item["item"][0]
        new_id = processor.tokenizer.convert_tokens_to_ids("▁" + new)
        if new_id is None or new_id == processor.tokenizer.unk_token_id:
            new_id = -1  # the new colour is not one token: no difference to read (NaN)
        touched = token_positions(lb.layout, b, keys[b][tag.id]["touched"])
        targets.append((colour_pos, int(ids[b, colour_pos]), new_id, touched))
    positions = {b: t[3] for b, t in enumerate(targets)}

    def diff(logits: torch.Tensor, b: int) -> float:
        pos, right, wrong = targets[b][:3]
        if wrong < 0:
            return float("nan")
        logp = torch.log_softmax(logits[b, pos - 1].float(), dim=-1)
        return float(logp[right] - logp[wrong])

    with torch.no_grad():
        with Recorder(model, queries=positions, attention=False) as rec:
            clean_logits = model(**to_model(model, lb.inputs)).logits
        corrupt_inputs = to_model(model, corrupt)
        corrupt_logits = model(**corrupt_inputs).logits
        patched = {}
        for layer in range(n_layers):
            with patch_activations(model, rec.trace, positions, layers=[layer]):
                patched[layer] = model(**corrupt_inputs).logits
    rows = []
    for b, (tag, new) in enumerate(picks):
        c, x = diff(clean_logits, b), diff(corrupt_logits, b)
        for layer in range(n_layers):
            p = diff(patched[layer], b)
            rows.append({"scene": scene_ids[b], "tag_id": tag.id, "layer": layer, "new_colour": new,
                         "clean": c, "corrupted": x, "patched": p, "effect": c - x,
                         "restored": (p - x) / (c - x) if c - x > 0.5 else float("nan")})  # fmt: skip
    return pd.DataFrame(rows)


def bootstrap_mean(
    frame: pd.DataFrame, value: str, n: int, seed: int
) -> tuple[float, float, float, int]:
    """Mean of ``value`` with a 95 % percentile interval, resampling scenes."""
    data = frame.dropna(subset=[value])
    if data.empty:
        return float("nan"), float("nan"), float("nan"), 0
    groups = data.groupby("scene")[value]
    sums, counts = groups.sum().to_numpy(), groups.count().to_numpy()
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(sums), size=(n, len(sums)))
    means = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(sums.sum() / counts.sum()), float(low), float(high), len(data)


def summarise(
    tables: dict[str, pd.DataFrame], value: str, by: list[str], args: argparse.Namespace
) -> pd.DataFrame:
    rows = []
    for name, table in tables.items():
        for key, group in table.groupby(by, sort=False):
            mean, low, high, n = bootstrap_mean(group, value, args.bootstrap, args.seed)
            keys = key if isinstance(key, tuple) else (key,)
            rows.append({"model": name, **dict(zip(by, keys, strict=True)), "metric": value, "mean": mean,
                         "ci_low": low, "ci_high": high, "n": n, "n_scenes": group["scene"].nunique()})  # fmt: skip
    return pd.DataFrame(rows)


def comparisons(listing: dict[str, pd.DataFrame], args: argparse.Namespace) -> pd.DataFrame:
    """Object vs random knockout per model × window; SoM vs baseline per window × condition."""
    frames = []
    wide = pd.concat([t.assign(model=n) for n, t in listing.items()], ignore_index=True)
    obj = wide[wide["condition"] == "object"]
    rnd = wide[wide["condition"] == "random"]
    res = compare_scores(rnd, obj, "drop", cluster="scene", by=["model", "scope", "window"], pair_on=["scene", "tag_id"],
                         alternative="greater", n_resamples=args.bootstrap, n_permutations=args.bootstrap, seed=args.seed)  # fmt: skip
    frames.append(res.assign(comparison="object − random (drop)"))
    if {"som", "baseline"} <= set(listing):
        a, bt = listing["baseline"], listing["som"]
        res = compare_scores(a, bt, "drop", cluster="scene", by=["scope", "condition", "window"], pair_on=["scene", "tag_id"],
                             n_resamples=args.bootstrap, n_permutations=args.bootstrap, seed=args.seed)  # fmt: skip
        frames.append(res.assign(comparison="som − baseline (drop)"))
    return pd.concat(frames, ignore_index=True)


def plot(summary: pd.DataFrame, patch: pd.DataFrame | None, figures: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    models = list(dict.fromkeys(summary["model"]))
    panels = [(m, sc) for m, sc in (("drop", "tag"), ("drop", "line"), ("correct", "tag"))
              if not summary[(summary["metric"] == m) & (summary["scope"] == sc)].empty]  # fmt: skip
    titles = {("drop", "tag"): "listing log-prob drop, tag-number queries",
              ("drop", "line"): "listing log-prob drop, whole-line queries",
              ("correct", "tag"): "tag-QA accuracy, tag-number queries"}  # fmt: skip
    fig, axes = plt.subplots(
        len(panels), len(models), figsize=(3.8 * len(models), 2.9 * len(panels)), squeeze=False
    )
    for r, (metric, scope) in enumerate(panels):
        for c, name in enumerate(models):
            ax = axes[r, c]
            part = summary[
                (summary["model"] == name)
                & (summary["metric"] == metric)
                & (summary["scope"] == scope)
            ]
            order = [w for w in dict.fromkeys(part["window"]) if w != "none"]
            for cond in CONDITIONS:
                rows = part[part["condition"] == cond].set_index("window").reindex(order)
                x = np.arange(len(order))
                ax.errorbar(x, rows["mean"], yerr=[rows["mean"] - rows["ci_low"], rows["ci_high"] - rows["mean"]],
                            marker="o", ms=3, capsize=2, label=cond)  # fmt: skip
                ax.set_xticks(x, order, fontsize=7)
            plain = part[part["condition"] == "none"]
            if not plain.empty:  # no knockout
                ax.axhline(
                    float(plain["mean"].iloc[0]), color="black", ls="--", lw=0.8, label="none"
                )
            ax.axhline(0, color="grey", lw=0.5)
            ax.set_title(f"{name}: {titles[(metric, scope)]}", fontsize=7)
            ax.set_xlabel("knocked-out layers", fontsize=7)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    out.append(save_figure(fig, figures / "causal_knockout.png", dpi=130))
    if patch is not None and not patch.empty:
        fig, ax = plt.subplots(figsize=(4.5, 3.2))
        for name, part in patch.groupby("model", sort=False):
            ax.errorbar(part["layer"], part["mean"], yerr=[part["mean"] - part["ci_low"], part["ci_high"] - part["mean"]],
                        marker="o", capsize=2, label=name)  # fmt: skip
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_xlabel("patched layer (output of)")
        ax.set_ylabel("share of the colour effect restored")
        ax.legend(fontsize=7)
        fig.tight_layout()
        out.append(save_figure(fig, figures / "causal_patching.png", dpi=130))
    return out


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    models = check_args(args)
    dtype = common.load_dtype(args.dtype, args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = world(args.world)
    scenes = [
        (int(key.split("_")[1]), s)
        for key, s in iter_scenes(cfg, "eval", args.limit, seed=args.seed)
    ]
    tagged = [tag_scene(s) for _, s in scenes]
    ids = [i for i, _ in scenes]
    listing: dict[str, pd.DataFrame] = {}
    qa: dict[str, pd.DataFrame] = {}
    patch: dict[str, pd.DataFrame] = {}
    for name, path in models.items():
        model, processor = load_model(path, dtype=dtype, device_map=None)
        model.to(args.device)
        n_layers = model.config.text_config.num_hidden_layers
        parts_l, parts_q, parts_p = [], [], []
        for start in range(0, len(tagged), args.batch_size):
            batch = tagged[start : start + args.batch_size]
            batch_ids = ids[start : start + args.batch_size]
            rng = np.random.default_rng([args.seed, start])
            lb = listing_batch(processor, batch)
            keys = [key_sets(lb.layout, t, b, rng) for b, t in enumerate(batch)]
            parts_l.append(listing_knockout(model, lb, keys, batch_ids, n_layers))
            if not args.no_qa:
                parts_q.append(qa_knockout(model, processor, batch, keys, batch_ids, n_layers))
            if not args.no_patching:
                sc = [s for _, s in scenes[start : start + args.batch_size]]
                patch_rng = np.random.default_rng([args.seed, 7, start])
                parts_p.append(
                    patching(model, processor, sc, batch, lb, keys, batch_ids, n_layers, patch_rng)
                )
        listing[name] = pd.concat(parts_l, ignore_index=True)
        if parts_q:
            qa[name] = pd.concat(parts_q, ignore_index=True)
        if parts_p:
            patch[name] = pd.concat(parts_p, ignore_index=True)
        per_item = 2 * len(CONDITIONS) * (n_layers + 1)  # scopes × conditions × windows
        print(f"{name}: {len(listing[name]) // per_item} listing items, "
              f"{time.perf_counter() - started:.0f} s so far")  # fmt: skip
        del model
    summary = pd.concat([summarise(listing, "drop", ["scope", "window", "condition"], args),
                         *([summarise({k: v.assign(scope="tag") for k, v in qa.items()}, "correct",
                                      ["scope", "window", "condition"], args)] if qa else [])],
                        ignore_index=True)  # fmt: skip
    # chance of a tag-QA answer: naming one of the world's categories at random; a drop has none
    summary["chance"] = np.where(summary["metric"] == "correct", 1 / len(cfg.categories), np.nan)
    comp = comparisons(listing, args)
    patch_summary = summarise(patch, "restored", ["layer"], args) if patch else None
    out = args.out
    for name in models:
        common.write_csv(listing[name], out / f"listing_{name}.csv")
        if name in qa:
            common.write_csv(qa[name], out / f"qa_{name}.csv")
        if name in patch:
            common.write_csv(patch[name], out / f"patching_{name}.csv")
    common.write_csv(summary, out / "summary.csv")
    common.write_csv(comp, out / "comparison.csv")
    if patch_summary is not None:
        common.write_csv(patch_summary, out / "patching.csv")
    figures = plot(summary, patch_summary, args.figures)
    record = {"models": models, "world": args.world, "scenes": len(scenes),
              "seconds": round(time.perf_counter() - started, 1), "figures": [str(f) for f in figures],
              "arguments": {k: str(v) for k, v in sorted(vars(args).items())}}  # fmt: skip
    common.write_json(record, out / "summary.json")
    print(summary.round(3).to_string(index=False))
    print(f"wrote {out} in {record['seconds']} s")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return common.run_job(run, parse_args(argv), JOB)


if __name__ == "__main__":
    raise SystemExit(main())
