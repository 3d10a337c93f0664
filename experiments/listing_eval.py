"""Tag-listing accuracy (the paper's measure) and POPE existence: two models side by side.

Default (no flags, no network): the two toy models shipped in ``models/`` on held-out
toy-world scenes (scene seeds ``[seed, 1, i]``, never drawn for training), written to a
temporary eval split by ``somprobe.data.toyworld.dataset.write_eval_split``. Each model is

* asked to list the tagged items one by one on the *tagged* scenes (greedy decoding) and
  scored by ``somprobe.evals``: list-wise accuracy (items listed correctly / items
  listed), recall (correct / tags), the exact-list rate, the share of listed items whose
  colour / shape word is right, and the hallucinated-tag rate;
* asked yes/no existence questions on the *untagged* scenes (POPE: random, popular and
  adversarial negatives) and scored by F1, accuracy and the yes ratio.

Every metric is a ratio of sums over items, so its 95% interval comes from one seeded
cluster bootstrap over scenes (whole images resampled, the same draws for both models),
and the paired difference (SoM − baseline) uses the same draws. Writes
``results/listing_eval/`` under the current folder (``summary.csv``, ``comparison.csv``,
per-item tables, ``run.json``) and ``results/listing_eval/figures/listing_accuracy.png``
(``--figures figures`` from the repository root: the shipped figure).

Real checkpoints go through the same code path (on the same toy scenes):

    python experiments/listing_eval.py --base llava-hf/llava-1.5-13b-hf \\
        --som zzxslp/som-llava-v1.5-13b-hf --device cuda --dtype float16 --limit 200
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import _common as common
import numpy as np
import pandas as pd

from somprobe.data.toyworld.dataset import write_eval_split
from somprobe.errors import SomprobeError
from somprobe.evals import evaluate
from somprobe.measure import save_figure
from somprobe.probes.bootstrap import Resampler

#: metric -> (numerator column, denominator column; None: one per item), per task.
LISTING_METRICS: dict[str, tuple[str, str | None]] = {
    "list_accuracy": ("correct", "listed"),
    "recall": ("correct", "tags"),
    "exact_rate": ("exact", None),
    "colour_accuracy": ("colour_hits", "attr_items"),
    "shape_accuracy": ("shape_hits", "attr_items"),
    "hallucinated_rate": ("hallucinated", "listed"),
}
POPE_METRICS: dict[str, tuple[str, str | None]] = {
    "f1": ("f1_num", "f1_den"),  # F1 = 2TP / (2TP + FP + FN)
    "accuracy": ("hit", None),
    "yes_ratio": ("said_yes", None),
}
TOY_THREADS_HELP = (
    "1 for the toy models on CPU, which are tiny and much slower with more threads on a\n"
    "busy machine; else torch's"
)
JOB = "listing_eval"
PLOTTED = [
    ("listing", "all", "list_accuracy", "list-wise\naccuracy"),
    ("listing", "all", "recall", "recall"),
    ("listing", "all", "exact_rate", "exact\nlist"),
    ("listing", "all", "colour_accuracy", "colour\ncorrect"),
    ("listing", "all", "shape_accuracy", "shape\ncorrect"),
    ("pope", "random", "f1", "F1\nrandom"),
    ("pope", "popular", "f1", "F1\npopular"),
    ("pope", "adversarial", "f1", "F1\nadversarial"),
]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    common.add_model_args(p, threads_default=TOY_THREADS_HELP)
    p.add_argument("--limit", type=int, default=150, help="number of held-out scenes")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0, help="toy-world seed and bootstrap seed")
    common.add_output_args(p, JOB)
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples")
    return common.resolve_outputs(p.parse_args(argv), JOB)


def check_args(args: argparse.Namespace) -> None:
    """Reject values that would only fail later (or silently measure nothing); creates
    nothing."""
    common.check_positive(args, "limit", "batch_size", "bootstrap")
    common.check_model_args(args)
    common.check_outputs(args)


def item_tables(result: Any, model: str, split: Path) -> dict[str, pd.DataFrame]:
    """The per-item tables of one model with the counts the ratio metrics need.

    Image paths are made relative to the (temporary) eval split folder.
    """
    listing = result.items["listing"].copy()
    pope = result.items["pope"].copy()
    yes, truth = pope["parsed"].eq("yes"), pope["label"].eq("yes")
    pope["said_yes"] = yes.astype(int)
    pope["hit"] = pope["parsed"].eq(pope["label"]).astype(int)
    pope["f1_num"] = 2 * (yes & truth).astype(int)
    pope["f1_den"] = pope["f1_num"] + (yes & ~truth).astype(int) + (~yes & truth).astype(int)
    out = {}
    for task, table in (("listing", listing), ("pope", pope)):
        table.insert(0, "model", model)
        table.insert(1, "scene", [Path(p).stem for p in table["image"]])
        table["image"] = [Path(p).relative_to(split).as_posix() for p in table["image"]]
        out[task] = table
    return out


def interval(boot: Resampler, stats: np.ndarray) -> tuple[float, float, float]:
    """Point estimate and percentile interval of one statistic (NaN where undefined)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN: nothing listed at all
        point, lo, hi = boot.interval(stats[:, None])
    return float(point[0]), float(lo[0]), float(hi[0])


def ratio_stats(boot: Resampler, table: pd.DataFrame, num: str, den: str | None) -> np.ndarray:
    """``sum(num) / sum(den)`` on the full sample (row 0) and on every resample."""

    def sums(values: np.ndarray) -> np.ndarray:
        per_scene = np.bincount(boot.codes, weights=values, minlength=boot.n_groups)
        return boot.counts @ per_scene

    numerator = sums(table[num].to_numpy(float))
    denominator = sums(np.ones(len(table)) if den is None else table[den].to_numpy(float))
    with np.errstate(divide="ignore", invalid="ignore"):
        return numerator / denominator


def summarise(
    tables: dict[str, dict[str, pd.DataFrame]], names: tuple[str, str], n_boot: int, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per model and metric the value with its interval; and the paired differences.

    ``n`` is the number of scenes (the resampled unit), ``items`` the questions behind it.
    """
    base, som = names
    rows: list[dict[str, Any]] = []
    diffs: list[dict[str, Any]] = []
    for task, metrics in (("listing", LISTING_METRICS), ("pope", POPE_METRICS)):
        a, b = tables[base][task], tables[som][task]
        for setting, ta in a.groupby("setting", sort=False) if task == "pope" else [("all", a)]:
            tb = b.loc[ta.index]
            if ta["id"].tolist() != tb["id"].tolist():
                raise SomprobeError(f"the two models answered different {task} items")
            boot = Resampler(ta["scene"].to_numpy(), n_boot=n_boot, seed=seed)
            key = {"task": task, "setting": setting}
            counts = {"n": boot.n_groups, "items": len(ta)}
            for metric, (num, den) in metrics.items():
                stats = {m: ratio_stats(boot, t, num, den) for m, t in ((base, ta), (som, tb))}
                diff: dict[str, Any] = {**key, "metric": metric, "model_a": base, "model_b": som}
                for side, model in (("a", base), ("b", som)):
                    point, lo, hi = interval(boot, stats[model])
                    rows.append({"model": model, **key, "metric": metric, "value": point,
                                 "low": lo, "high": hi, **counts})  # fmt: skip
                    diff |= {f"value_{side}": point, f"low_{side}": lo, f"high_{side}": hi}
                point, lo, hi = interval(boot, stats[som] - stats[base])
                diffs.append(diff | {"diff": point, "low": lo, "high": hi, **counts})
    return pd.DataFrame(rows), pd.DataFrame(diffs)


def plot_summary(summary: pd.DataFrame, names: tuple[str, str], title: str) -> Any:
    """Grouped bars (one per model) with their 95% intervals as whiskers."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    colours = sns.color_palette("colorblind", 2)
    fig, ax = plt.subplots(figsize=(11, 4.4))
    x = np.arange(len(PLOTTED))
    width = 0.38
    index = summary.set_index(["model", "task", "setting", "metric"])
    for k, model in enumerate(names):
        rows = [index.loc[(model, t, s, m)] for t, s, m, _ in PLOTTED]
        value = np.array([float(r["value"]) for r in rows])
        lo = np.array([float(r["low"]) for r in rows])
        hi = np.array([float(r["high"]) for r in rows])
        err = np.nan_to_num(np.vstack([value - lo, hi - value]).clip(min=0))
        pos = x + (k - 0.5) * width
        ax.bar(pos, np.nan_to_num(value), width, yerr=err, capsize=3, color=colours[k],
               label=model, error_kw={"elinewidth": 1.2})  # fmt: skip
        tops = np.fmax(np.nan_to_num(value), np.nan_to_num(hi))
        for px, v, top in zip(pos, value, tops, strict=True):
            label = "n/a" if np.isnan(v) else f"{v:.2f}"
            ax.text(px, top + 0.015, label, ha="center", va="bottom", fontsize=8)
    ax.axvline(len([p for p in PLOTTED if p[0] == "listing"]) - 0.5, color="grey", lw=1)
    ax.set_xticks(x, [p[3] for p in PLOTTED])
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("score (95% bootstrap CI over scenes)")
    ax.set_xlabel("tag listing on tagged scenes  |  POPE existence on untagged scenes")
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), title="model")
    if summary["value"].isna().any():
        ax.text(1.01, 0.0, "n/a: the model\nlisted no item", transform=ax.transAxes, fontsize=8)
    fig.tight_layout()
    return fig


def print_summary(comparison: pd.DataFrame, names: tuple[str, str], info: dict[str, Any]) -> None:
    print(
        f"\nheld-out scenes: {info['scenes']}  time: {info['seconds']} s (CPU {info['cpu_seconds']} s)"
    )
    if info["untrained_stand_ins"]:
        print("(untrained stand-in models: numbers show the pipeline works, nothing more)")
    print(f"{'task':9s} {'setting':11s} {'metric':17s} {names[0]:>22s} {names[1]:>22s} "
          f"{names[1] + ' - ' + names[0]:>24s}")  # fmt: skip
    for r in comparison.itertuples():
        a, b = (
            common.fmt_ci(r.value_a, r.low_a, r.high_a),
            common.fmt_ci(r.value_b, r.low_b, r.high_b),
        )
        d = common.fmt_ci(r.diff, r.low, r.high, signed=True)
        print(f"{r.task:9s} {r.setting:11s} {r.metric:17s} {a:>22s} {b:>22s} {d:>24s}")


def main(argv: Sequence[str] | None = None) -> int:
    return common.run_job(run, parse_args(argv), JOB)


def run(args: argparse.Namespace) -> int:
    started, cpu = time.perf_counter(), time.process_time()
    check_args(args)
    dtype = common.setup_torch(args, toy_cpu_threads=1)
    pair = common.resolve_models(args)
    names = pair.names
    tables: dict[str, dict[str, pd.DataFrame]] = {}
    with tempfile.TemporaryDirectory(prefix="listing_eval_") as tmp:
        split = Path(tmp) / "eval"
        write_eval_split(split, common.toy_world(args), args.limit, seed=args.seed, progress=False)
        for name, model, processor in common.load_each(pair, args, dtype):
            result = evaluate(
                model, processor, split, tasks=("listing", "pope"),
                batch_size=args.batch_size, progress=not args.no_progress,
            )  # fmt: skip
            tables[name] = item_tables(result, name, split)
            del model
    summary, comparison = summarise(tables, names, args.bootstrap, args.seed)
    common.write_csv(summary, args.out / "summary.csv")
    common.write_csv(comparison, args.out / "comparison.csv")
    for task in ("listing", "pope"):
        items = pd.concat([tables[n][task] for n in names], ignore_index=True)
        common.write_csv(items, args.out / f"{task}_items.csv")
    title = f"{names[0]} vs {names[1]}: tag listing and POPE on {args.limit} held-out toy scenes"
    save_figure(plot_summary(summary, names, title), args.figures / "listing_accuracy.png")
    info = common.write_run_info(
        args, pair, (started, cpu), images=common.toy_images(args), n_images=args.limit
    )
    print_summary(comparison, names, info)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
