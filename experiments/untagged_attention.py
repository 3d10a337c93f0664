"""Untagged images: where does a question's object word look, in either model?

The paper's Figs. 7–8 (SoM-LLaVA and LLaVA-1.5 asked about *untagged* images) and its
Fig. 2 (the 20 image patches a query token attends to most), made measurable.

Default (no flags, no network): the two toy models shipped in ``models/`` on held-out
toy-world scenes shown *untagged*. In each scene one object whose category is unique is
queried with the toy world's own question wordings:

* ``colour``: "What colour is the star?" (asked when its shape is unique; object word
  "star");
* ``shape``: "What shape is the red object?" (when its colour is unique; word "red");
* ``exists``: "Is there a red star in the image?" (words "red star").

Each model writes its answer (greedy). The attention of the question's object-word
tokens is captured in the prompt pass of that generation; the attention of the answer
tokens in one forward pass over the prompt and the model's own answer (so the last
token has a row too). Both are scored per layer and head against the queried object's
pixels (``somprobe.measure.align.score_alignment``: absolute attention mass on the object
and on the image, the object's share of the image attention, lift over its area, top-k hit
rate, pointing game, AUROC), heads averaged per layer, and the two models are compared on
the same questions with paired statistics (``somprobe.measure.compare_scores``: intervals
from resampling whole scenes, p-values from sign flips of whole scenes, maxT family-wise
adjustment over token groups × layers (and their mean) × metrics, every layer reported).

Writes ``results/untagged_attention/`` under the current folder (``scores.csv`` one row
per model × question × token group × layer × head, ``answers.csv``, ``comparison.csv``,
``summary.json`` with the run record) and, in its ``figures/``,
``untagged_attention_layers.png`` and ``query_top20_patches.png`` (``--figures figures``
from the repository root: the shipped figures).

Any two HF LLaVA checkpoints go through the same code path:

    python experiments/untagged_attention.py --base llava-hf/llava-1.5-13b-hf \\
        --som zzxslp/som-llava-v1.5-13b-hf --device cuda --dtype float16 --limit 200
"""

from __future__ import annotations

import argparse
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import _common as common
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from PIL import Image
from scipy.stats import binomtest
from tqdm.auto import tqdm

from somprobe.capture import capture
from somprobe.data.seeding import rng_for
from somprobe.data.toyworld import ToyScene, tag_scene
from somprobe.data.toyworld.dataset import iter_scenes
from somprobe.data.toyworld.questions import instruct_candidates
from somprobe.errors import InputError
from somprobe.evals.tag_qa import answer_correct
from somprobe.measure import (
    aggregate_by_layer,
    compare_scores,
    decode_with_offsets,
    patch_attention,
    plot_layer_curves,
    region_maps,
    save_figure,
    score_alignment,
    score_maps,
)
from somprobe.measure.plots import draw_top_patches
from somprobe.models import ImageLayout, build_prompt, pad_token_id, prepare_inputs
from somprobe.tagging import TagSet

KINDS = ("colour", "shape", "exists")
GROUPS = ("question_word", "answer")
METRICS = [
    "mass_object",
    "image_share_object",
    "lift_object",
    "mass_image",
    "topk_hit",
    "pointing",
    "auroc",
]
# the evals' scoring rule of each kind (exists: yes/no as in POPE)
_SCORED_AS = {"colour": "colour", "shape": "shape", "exists": "is_there"}
JOB = "untagged_attention"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    common.add_model_args(p)
    p.add_argument("--limit", type=int, default=48, help="number of held-out scenes")
    p.add_argument("--kinds", default=",".join(KINDS), help=f"question kinds from {KINDS}")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=12)
    p.add_argument("--k", type=int, default=5, help="top-k of the hit rate")
    p.add_argument("--top", type=int, default=20, help="patches drawn per panel (Fig. 2: 20)")
    p.add_argument("--figure-scenes", type=int, default=3, help="scenes in the Fig. 2 picture")
    p.add_argument("--figure-layer", type=int, default=None, help="default: most object-focused")
    p.add_argument("--seed", type=int, default=0)
    common.add_output_args(p, JOB)
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (scenes)")
    p.add_argument(
        "--permutations", type=int, default=9999, help="sign flips of whole scenes for p-values"
    )
    args = common.resolve_outputs(p.parse_args(argv), JOB)
    args.kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    return args


def check_args(args: argparse.Namespace) -> None:
    """Reject settings that would silently measure nothing."""
    bad = [k for k in args.kinds if k not in KINDS]
    if bad or not args.kinds:
        raise InputError(f"--kinds must name kinds from {KINDS}, got {args.kinds}")
    for name in ("limit", "batch_size", "max_new_tokens", "k", "top", "bootstrap", "permutations"):
        if getattr(args, name) < 1:
            raise InputError(
                f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}"
            )
    if args.figure_scenes < 0:
        raise InputError(f"--figure-scenes must be 0 or more, got {args.figure_scenes}")
    if args.figure_layer is not None and args.figure_layer < 0:
        raise InputError(f"--figure-layer must be 0 or more, got {args.figure_layer}")
    common.check_model_args(args)
    common.check_outputs(args)


# --------------------------------------------------------------------------------------
# questions


@dataclass(frozen=True)
class Item:
    """One question about one object of one untagged scene."""

    qid: int
    scene: int
    image: str
    kind: str
    question: str
    reference: str
    phrase: str  # the question's words that name the object
    tag_id: int
    category: str


def untagged_truth(scene: ToyScene) -> TagSet:
    """The scene's TagSet with empty mark boxes: nothing is drawn on an untagged image,
    so each object's whole mask counts as the object."""
    tagset = tag_scene(scene).tagset
    return replace(tagset, tags=[replace(t, mark_box=(0, 0, 0, 0)) for t in tagset.tags])


def _has_word(text: str, word: str) -> bool:
    return re.search(rf"(?<![a-z]){re.escape(word)}(?![a-z])", text, re.IGNORECASE) is not None


def scene_items(
    scene: ToyScene, tagset: TagSet, index: int, key: str, kinds: Sequence[str], seed: int
) -> list[Item]:
    """The questions of one scene about one queried object (seeded by scene key)."""
    objs = scene.objects
    cats = [o.category for o in objs]
    unique = [i for i, c in enumerate(cats) if cats.count(c) == 1]
    if not unique:
        return []

    shapes, colours = Counter(o.shape for o in objs), Counter(o.colour for o in objs)
    rng = rng_for(seed, f"untagged_attention/{key}")
    # prefer an object that all three kinds can ask about
    pool = [i for i in unique if shapes[objs[i].shape] == colours[objs[i].colour] == 1] or unique
    chosen = pool[int(rng.integers(len(pool)))]
    obj = objs[chosen]
    tag = next(t for t in tagset.tags if t.source_index == chosen)
    cands = instruct_candidates(scene, rng)
    wanted = {
        "colour": ([q for q in cands["colour"] if _has_word(q.question, obj.shape)], obj.shape),
        "shape": ([q for q in cands["shape"] if _has_word(q.question, obj.colour)], obj.colour),
        "exists": (
            [q for q in cands["exists"] if q.answer == "Yes" and obj.category in q.question],
            obj.category,
        ),
    }
    items = []
    for kind in kinds:
        found, phrase = wanted[kind]
        if found:
            q = found[0]
            items.append(
                Item(-1, index, key, kind, q.question, q.answer, phrase, tag.id, obj.category)
            )
    return items


def phrase_positions(tokenizer: Any, ids: Sequence[int], phrase: str) -> list[int]:
    """Token positions of the last occurrence of ``phrase`` (whole words) in ``ids``.

    Example:
        >>> phrase_positions(tokenizer, inputs["input_ids"][0].tolist(), "star")
        ... # doctest: +SKIP
        [75]

    Raises:
        InputError: the decoded tokens never spell ``phrase``.
    """
    decoded = decode_with_offsets(tokenizer, ids)
    pattern = rf"(?<![A-Za-z]){re.escape(phrase)}(?![A-Za-z])"
    matches = list(re.finditer(pattern, decoded.text, re.IGNORECASE))
    if not matches:
        raise InputError(
            f"the object words {phrase!r} do not occur in the tokenized prompt "
            f"{decoded.text[-120:]!r}; the question must name the queried object"
        )
    start, end = decoded.token_span(matches[-1].start(), matches[-1].end())
    return list(range(start, end))


# --------------------------------------------------------------------------------------
# one model


@dataclass
class Capture:
    """Per model: scores, answers, and the question-word maps of the figure's questions."""

    scores: pd.DataFrame
    answers: pd.DataFrame
    maps: dict[int, tuple[np.ndarray, ImageLayout, int]]  # qid → ((layer, head, r, c), layout, b)


def _score(
    trace: Any,
    layout: ImageLayout,
    chunk: list[Item],
    truths: dict[int, TagSet],
    positions: dict[int, list[int]],
    group: str,
    k: int,
) -> pd.DataFrame:
    """Score one token group of one batch; rows keyed by (scene, qid·2 + group)."""
    rows = [
        {"batch": b, "mention": 2 * it.qid + GROUPS.index(group), "tag_id": it.tag_id,
         "label": it.category, "format": group, "scored_positions": tuple(positions[b])}
        for b, it in enumerate(chunk) if positions.get(b)
    ]  # fmt: skip
    if not rows:
        return pd.DataFrame()
    tagsets = {b: truths[it.scene] for b, it in enumerate(chunk)}
    # nothing is drawn on an untagged image: the target is the object's own patches
    scores = score_alignment(trace, layout, tagsets, pd.DataFrame(rows), k=k, target="object")
    scores["batch"] = [chunk[b].scene for b in scores["batch"]]
    return scores


def run_model(
    model: Any,
    processor: Any,
    items: list[Item],
    scenes: list[ToyScene],
    truths: dict[int, TagSet],
    args: argparse.Namespace,
    figure_qids: set[int],
    desc: str,
) -> Capture:
    """Generate every answer, capture and score both token groups."""
    tok = processor.tokenizer
    pad = pad_token_id(tok)
    frames, answers, maps = [], [], {}
    starts = range(0, len(items), args.batch_size)
    for start in tqdm(starts, desc=desc, unit="batch", disable=args.no_progress):
        chunk = items[start : start + args.batch_size]
        images: list[Image.Image] = [scenes[it.scene].image for it in chunk]
        inputs = prepare_inputs(
            processor, images, [build_prompt(processor, it.question) for it in chunk]
        )
        layout = ImageLayout.from_inputs(processor, inputs, images=images)
        ids = inputs["input_ids"]
        asked = {b: phrase_positions(tok, ids[b].tolist(), it.phrase) for b, it in enumerate(chunk)}
        first = capture(
            model, inputs, queries=asked, hidden_states=False,
            max_new_tokens=args.max_new_tokens, pad_token_id=pad,
        )  # fmt: skip
        assert first.sequences is not None
        length = ids.shape[1]
        new = first.sequences[:, length:].cpu()
        n_new = [row.index(tok.eos_token_id) if tok.eos_token_id in row else len(row)
                 for row in new.tolist()]  # fmt: skip
        frames.append(_score(first.trace, layout, chunk, truths, asked, GROUPS[0], args.k))
        for b, it in enumerate(chunk):
            if it.qid in figure_qids:
                maps[it.qid] = (patch_attention(first.trace, layout, b, asked[b]), layout, b)
            text = tok.decode(new[b, : n_new[b]], skip_special_tokens=True).strip()
            answers.append(
                {"image": it.image, "qid": it.qid, "kind": it.kind, "question": it.question,
                 "object": it.category, "reference": it.reference, "answer": text,
                 "answer_tokens": n_new[b],
                 "correct": answer_correct(_SCORED_AS[it.kind], text, it.reference)}
            )  # fmt: skip
        if max(n_new) == 0:
            continue
        # one forward pass over prompt + own answer: a row for every answer token
        width = length + max(n_new)
        mask = torch.arange(max(n_new))[None, :] < torch.tensor(n_new)[:, None]
        full = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
        full["input_ids"] = first.sequences[:, :width].cpu()
        full["attention_mask"] = torch.cat([inputs["attention_mask"], mask.long()], dim=1)
        said = {b: list(range(length, length + n)) for b, n in enumerate(n_new)}
        second = capture(model, full, queries=said, hidden_states=False)
        frames.append(_score(second.trace, layout, chunk, truths, said, GROUPS[1], args.k))
    scores = pd.concat([f for f in frames if len(f)], ignore_index=True)
    return Capture(scores, pd.DataFrame(answers), maps)


# --------------------------------------------------------------------------------------
# statistics and figures


def per_question(scores: pd.DataFrame) -> pd.DataFrame:
    """Heads averaged: one row per question × token group × layer."""
    return aggregate_by_layer(scores, per_mention=True).rename(columns={"format": "tokens"})


def compare(
    per: dict[str, pd.DataFrame], args: argparse.Namespace
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Paired comparisons per token group × layer and on the layer means, in one family
    (maxT over every row), resampled by scene; returns (per layer, layer means)."""

    def with_means(df: pd.DataFrame) -> pd.DataFrame:
        means = df.groupby(["tokens", "batch", "mention"])[METRICS].mean().reset_index()
        return pd.concat([df.astype({"layer": object}), means.assign(layer="mean")])

    comparison = compare_scores(
        with_means(per["base"]),
        with_means(per["som"]),
        METRICS,
        cluster="batch",
        by=["tokens", "layer"],
        pair_on=["mention"],
        n_resamples=args.bootstrap,
        n_permutations=args.permutations,
        seed=args.seed,
    )
    overall = comparison["layer"].eq("mean")
    return comparison[~overall].reset_index(drop=True), comparison[overall].reset_index(drop=True)


def accuracy(
    answers: dict[str, pd.DataFrame], names: dict[str, str], args: argparse.Namespace
) -> dict[str, Any]:
    """Each model's answer accuracy (Wilson 95 % CI) and the paired difference (resampled
    and sign-flipped by scene: several questions come from one scene)."""
    out: dict[str, Any] = {}
    for key, df in answers.items():
        n, hits = len(df), int(df["correct"].sum())
        ci = binomtest(hits, n).proportion_ci(method="wilson")
        out[names[key]] = {"accuracy": round(hits / n, 4), "n": n,
                           "ci95": [round(ci.low, 4), round(ci.high, 4)]}  # fmt: skip
    a, b = (answers[k].assign(correct=answers[k]["correct"].astype(float)) for k in ("base", "som"))
    diff = compare_scores(a, b, "correct", cluster="image", by=[], pair_on=["qid"],
                          n_resamples=args.bootstrap, n_permutations=args.permutations,
                          seed=args.seed).iloc[0]  # fmt: skip
    out["diff"] = _diff_block(diff)
    return out


def _diff_block(row: pd.Series) -> dict[str, Any]:
    return {
        "diff": round(float(row["mean_diff"]), 4),
        "ci95": [round(float(row["ci_low"]), 4), round(float(row["ci_high"]), 4)],
        "p_adjusted": float(row["p_adjusted"]),
        "n_pairs": int(row["n_pairs"]),
        "n_scenes": int(row["n_clusters"]),
    }


def figure_layer(per: dict[str, pd.DataFrame], given: int | None) -> int:
    """The layer drawn in Fig. 2: given, or where the question word's object share,
    pooled over both models, is highest (chosen without favouring either model)."""
    words = pd.concat(per.values())
    words = words[words["tokens"] == GROUPS[0]]
    layers = sorted(words["layer"].unique().tolist())
    if given is not None:
        if given not in layers:
            raise InputError(f"--figure-layer {given} was not captured (layers {layers})")
        return given
    return int(words.groupby("layer")["image_share_object"].mean().idxmax())


def plot_query_patches(
    rows: list[dict[str, Any]], models: list[str], top: int, layer: int
) -> Figure:
    """Fig. 2 style: per scene (row), each model's top-``top`` patches of the object word,
    shown bright on a dimmed image."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="white", context="notebook")
    fig, axes = plt.subplots(
        len(rows), len(models), figsize=(3.4 * len(models), 3.7 * len(rows)), squeeze=False
    )
    colours = sns.color_palette("tab10", len(models))
    for r, row in enumerate(rows):
        for c, model in enumerate(models):
            ax = axes[r][c]
            attn, layout, b = row["maps"][model]
            draw_top_patches(
                ax, row["image"], attn, layout, image_index=b, k=top, mask=row["mask"],
                colour=colours[c], dim=0.6, line_width=1.0, outline_width=1.8,
            )  # fmt: skip
            answer = row["answers"][model]
            answer = answer if len(answer) <= 28 else answer[:27] + "…"
            ax.set_xlabel(
                f"{row['hits'][model]}/{top} top patches on the {row['category']}\n"
                f"answer: “{answer}” ({'right' if row['correct'][model] else 'wrong'})",
                fontsize=9,
            )
            if r == 0:
                ax.set_title(model, fontsize=12, fontweight="bold", color=colours[c])
            if c == 0:
                ax.set_ylabel(f"“{row['question']}”\nquery word: {row['phrase']}", fontsize=9)
    fig.suptitle(
        f"{' vs '.join(models)}: the {top} image patches the question's object word attends to\n"
        f"most (untagged scenes, layer {layer}, heads averaged; white: the queried object)",
        fontsize=10.5,
    )
    fig.tight_layout()
    return fig


def plot_layers(per: dict[str, pd.DataFrame], names: dict[str, str], seed: int) -> Figure:
    """Absolute attention on the object, its share of the image attention and AUROC per
    layer, one panel per token group, one line per model."""
    panels = {
        "mass_object": "attention on object\n(absolute)",
        "image_share_object": "share of image attention\non object",
        "auroc": "AUROC (object vs rest)",
    }
    wide = {}
    for key, df in per.items():
        parts = []
        for group in GROUPS:
            sub = df[df["tokens"] == group]
            cols = {m: f"{label}\n{group.replace('_', ' ')} tokens" for m, label in panels.items()}
            parts.append(sub[["layer", *panels]].rename(columns=cols))
        wide[names[key]] = pd.concat(parts, ignore_index=True)
    order = [f"{label}\n{g.replace('_', ' ')} tokens" for label in panels.values() for g in GROUPS]
    fig = plot_layer_curves(
        wide,
        order,
        title="Untagged scenes: attention on the queried object by layer, "
        f"{' vs '.join(wide)} (mean over questions, 95% bootstrap CI)",
        seed=seed,
        ncols=len(GROUPS),
    )
    area = float(pd.concat(per.values())["area_object"].mean())
    # per kind of panel: the uniform-attention level (none for the absolute mass, which
    # also depends on how much attention goes to the text)
    uniform = {"mass_object": None, "image_share_object": area, "auroc": 0.5}
    n = len(GROUPS)
    for i, ax in enumerate(fig.axes[: n * len(panels)]):
        level = uniform[list(panels)[i // n]]
        if level is not None:
            ax.axhline(level, color="grey", lw=1, ls="--", label="uniform attention")
        legend = ax.get_legend()
        if i and legend is not None:
            legend.remove()
        elif not i:
            ax.legend(fontsize=9, title=None)
    for k in range(len(panels)):  # one y range per kind of panel
        same = fig.axes[k * n : (k + 1) * n]
        low = min(ax.get_ylim()[0] for ax in same)
        high = max(ax.get_ylim()[1] for ax in same)
        for ax in same:
            ax.set_ylim(low, high)
    return fig


def figure_items(items: list[Item], n: int) -> list[Item]:
    """``n`` questions from ``n`` different scenes for the Fig. 2 picture: colour questions
    first (the paper's Fig. 2 asks for an object's colour), earlier scenes first."""
    chosen: dict[int, Item] = {}
    for it in sorted(items, key=lambda it: (it.kind != "colour", it.qid)):
        if it.scene not in chosen and len(chosen) < n:
            chosen[it.scene] = it
    return sorted(chosen.values(), key=lambda it: it.qid)


def figure_rows(
    items: list[Item],
    scenes: list[ToyScene],
    truths: dict[int, TagSet],
    runs: dict[str, Capture],
    names: dict[str, str],
    layer: int,
    top: int,
) -> list[dict[str, Any]]:
    """What each row of the Fig. 2 picture shows."""
    rows = []
    for it in items:
        if any(it.qid not in runs[k].maps for k in runs):
            continue
        row: dict[str, Any] = {
            "image": scenes[it.scene].image, "question": it.question, "phrase": it.phrase,
            "category": it.category, "mask": truths[it.scene][it.tag_id].mask,
            "maps": {}, "hits": {}, "answers": {}, "correct": {},
        }  # fmt: skip
        for key, run in runs.items():
            attn, layout, b = run.maps[it.qid]
            two_d = attn[layer].mean(0)
            maps = region_maps(
                truths[it.scene], it.tag_id, partial(layout.mask_to_patches, image=b)
            )
            hit = float(score_maps(two_d, maps, k=top, target="object")["topk_hit"])
            answer = run.answers.set_index("qid").loc[it.qid]
            name = names[key]
            row["maps"][name] = (two_d, layout, b)
            row["hits"][name] = round(hit * min(top, two_d.size))
            row["answers"][name] = answer["answer"]
            row["correct"][name] = bool(answer["correct"])
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------
# main


def main(argv: Sequence[str] | None = None) -> int:
    return common.run_job(run, parse_args(argv), JOB)


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    check_args(args)
    torch.manual_seed(args.seed)
    dtype = common.setup_torch(args)
    pair = common.resolve_models(args)
    names = dict(zip(("base", "som"), pair.names, strict=True))
    scenes, truths, items = [], {}, []
    for index, (key, scene) in enumerate(
        iter_scenes(common.toy_world(args), "eval", args.limit, seed=args.seed)
    ):
        scenes.append(scene)
        truths[index] = untagged_truth(scene)
        items += scene_items(scene, truths[index], index, key, args.kinds, args.seed)
    items = [replace(it, qid=i) for i, it in enumerate(items)]
    if not items:
        raise InputError(f"the {args.limit} scene(s) gave no question of kinds {args.kinds}")
    shown = figure_items(items, args.figure_scenes)
    runs: dict[str, Capture] = {}
    for key, (name, model, processor) in zip(
        names, common.load_each(pair, args, dtype), strict=True
    ):
        runs[key] = run_model(
            model, processor, items, scenes, truths, args, {it.qid for it in shown},
            desc=f"{name}: answer + capture",
        )  # fmt: skip
        del model

    info = pd.DataFrame([vars(it) for it in items])[["qid", "image", "kind", "question"]]
    scores = pd.concat(
        [_tidy(runs[k].scores, info, names[k]) for k in ("base", "som")], ignore_index=True
    )
    common.write_csv(scores, args.out / "scores.csv")
    answers = pd.concat([runs[k].answers.assign(model=names[k]) for k in ("base", "som")])
    common.write_csv(
        answers[["model", *[c for c in answers.columns if c != "model"]]], args.out / "answers.csv"
    )

    per = {k: per_question(runs[k].scores) for k in ("base", "som")}
    by_layer, overall = compare(per, args)
    common.write_csv(
        pd.concat([by_layer, overall.assign(layer="mean")]), args.out / "comparison.csv"
    )
    fig = plot_layers(per, names, args.seed)
    save_figure(fig, args.figures / "untagged_attention_layers.png")
    layer = figure_layer(per, args.figure_layer)
    if shown:
        rows = figure_rows(shown, scenes, truths, runs, names, layer, args.top)
        fig = plot_query_patches(rows, [names["base"], names["som"]], args.top, layer)
        save_figure(fig, args.figures / "query_top20_patches.png")

    summary = summarise(items, per, by_layer, overall, runs, names, args, pair.untrained)
    summary["figure_layer"] = layer
    images = f"{common.toy_images(args)}, shown untagged"
    summary["run"] = common.run_record(args, pair, images, len(scenes))
    summary["seconds"] = round(time.perf_counter() - started, 1)
    common.write_json(summary, args.out / "summary.json")
    print_summary(summary)
    return 0


def _tidy(scores: pd.DataFrame, info: pd.DataFrame, name: str) -> pd.DataFrame:
    """Score rows with model, question and token-group columns in front."""
    df = scores.rename(columns={"format": "tokens", "label": "object"})
    df["qid"] = df["mention"] // 2
    # nothing is drawn on an untagged image: the mark columns (and the mark-free object,
    # the same as the object here) say nothing
    unused = [c for c in df.columns if "mark" in c]
    df = df.drop(columns=["mention", "hallucinated", "batch", *unused])
    df = df.merge(info, on="qid", how="left")
    front = ["model", "image", "qid", "kind", "question", "object", "tag_id", "tokens"]
    df.insert(0, "model", name)
    return df[front + [c for c in df.columns if c not in front]]


def summarise(
    items: list[Item],
    per: dict[str, pd.DataFrame],
    by_layer: pd.DataFrame,
    overall: pd.DataFrame,
    runs: dict[str, Capture],
    names: dict[str, str],
    args: argparse.Namespace,
    untrained: bool,
) -> dict[str, Any]:
    kinds = pd.Series([it.kind for it in items]).value_counts()
    out: dict[str, Any] = {
        "untrained_stand_ins": untrained,
        "scenes": args.limit,
        "questions": {str(k): int(v) for k, v in kinds.items()},
        "answers": accuracy({k: r.answers for k, r in runs.items()}, names, args),
        "object_area": round(float(per["som"]["area_object"].mean()), 4),
    }
    for group in GROUPS:
        block: dict[str, Any] = {}
        for metric in METRICS:
            row = overall[(overall["tokens"] == group) & (overall["metric"] == metric)]
            if row.empty:
                continue
            r = row.iloc[0]
            layers = by_layer[(by_layer["tokens"] == group) & (by_layer["metric"] == metric)]
            block[metric] = {
                names["base"]: round(float(r["mean_a"]), 4),
                names["som"]: round(float(r["mean_b"]), 4),
                **_diff_block(r),
                "layers": [
                    {
                        "layer": int(x["layer"]),
                        names["base"]: round(float(x["mean_a"]), 4),
                        names["som"]: round(float(x["mean_b"]), 4),
                        **_diff_block(x),
                    }
                    for _, x in layers.sort_values("layer").iterrows()
                ],
                "layers_significant": int(layers["significant"].sum()),
            }
        out[group] = block
    return out


def print_summary(summary: dict[str, Any]) -> None:
    q = summary["questions"]
    print(
        f"\nuntagged held-out scenes: {summary['scenes']}, questions per model: "
        f"{sum(q.values())} ({', '.join(f'{k} {v}' for k, v in q.items())}); "
        f"time {summary['seconds']} s"
    )
    if summary["untrained_stand_ins"]:
        print("(untrained stand-in models: numbers show the pipeline works, nothing more)")
    acc = summary["answers"]
    models = [k for k in acc if k != "diff"]
    print(
        "answers correct: "
        + ", ".join(
            f"{m} {acc[m]['accuracy']:.3f} [{acc[m]['ci95'][0]:.3f}, {acc[m]['ci95'][1]:.3f}]"
            for m in models
        )
        + f"; diff {_fmt(acc['diff'])}"
    )
    print(
        f"queried object's share of the image area (uniform attention): {summary['object_area']:.3f}"
    )
    for group in GROUPS:
        print(f"\n{group.replace('_', ' ')} tokens, layer mean and every layer ({models[1]} − {models[0]}, "
              "95% CI over scenes, p maxT-adjusted over the family):")  # fmt: skip
        for metric, r in summary[group].items():
            print(
                f"  {metric:18s} mean {models[0]} {r[models[0]]:.4f}  {models[1]} "
                f"{r[models[1]]:.4f}  diff {_fmt(r)}"
            )
            for w in r["layers"]:
                print(
                    f"  {'':18s} L{w['layer']}   {models[0]} {w[models[0]]:.4f}  {models[1]} "
                    f"{w[models[1]]:.4f}  diff {_fmt(w)}"
                )


def _fmt(d: dict[str, Any]) -> str:
    ci = common.fmt_ci(d["diff"], *d["ci95"], signed=True, digits=4)
    return f"{ci} p_adj={d['p_adjusted']:.3g}"


if __name__ == "__main__":
    raise SystemExit(main())
