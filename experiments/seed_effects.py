"""Per-seed effects and their spread: one comparison table per training seed, side by side.

Each training seed's models are compared by the usual jobs (``attn_alignment.py``,
``untagged_attention.py``, ``listing_eval.py``, ``causal_tags.py``, ... run with
``--base/--som`` on that seed's models and ``--out <seed folder>/<job>``). This job reads
every ``comparison.csv`` those runs wrote and puts the seeds side by side:

* ``seed_effects.csv``: one row per (job, comparison row, seed): the effect, its 95%
  interval, the adjusted p-value where the job computed one (NaN otherwise) and whether
  it is significant (the job's own test; for jobs that give only an interval, whether
  the interval excludes 0);
* ``seed_spread.csv``: one row per comparison row: the number of seeds that have it, the
  mean, standard deviation, minimum and maximum of the effect over seeds, and how many
  seeds found it significant in each direction. A claim should hold in every seed.
* ``seed_headline.md``: the README's rows (:data:`HEADLINE`), one column per seed
  (``effect [low, high]``, ``*`` where that seed's own test found it), then the mean (sd)
  over seeds and the count of seeds significant in each direction.

Seeds are resampled nowhere: the intervals are each seed's own (by scene); the spread
over seeds is shown, not tested (three seeds make no test). A second training run of one
seed (the same start and data, e.g. another thread count) goes in as its own column with
a label of its own (``--seed 3-rerun=...``): it shows the run-to-run variance.

Example:
    $ python experiments/seed_effects.py --seed 0=results --seed 1=results/seeds/seed1 \\
          --jobs attn_alignment untagged_attention listing_eval
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import _common as common
import numpy as np
import pandas as pd

from somprobe.errors import DataFormatError, InputError
from somprobe.io import atomic_write

JOBS = (
    "attn_alignment",
    "attn_alignment_som_vs_control",
    "attn_alignment_control",
    "untagged_attention",
    "untagged_attention_control",
    "listing_eval",
    "listing_eval_control",
    "causal_tags",
)
#: The README's headline rows: (label, job, row filter, layers); "mean" is the job's
#: mean over layers, "—" a row without layers.
HEADLINE: tuple[tuple[str, str, dict[str, str], tuple[str, ...]], ...] = (
    ("tag → object, mark-free (mass), SoM − baseline", "attn_alignment",
     {"metric": "mass_object_markfree", "mode": "teacher_forced"}, ("0", "1", "2", "3")),
    ("tag → object, mark-free (mass), SoM − control", "attn_alignment_som_vs_control",
     {"metric": "mass_object_markfree", "mode": "teacher_forced"}, ("0", "1", "2", "3")),
    ("tag → object, mark-free (mass), control − baseline", "attn_alignment_control",
     {"metric": "mass_object_markfree", "mode": "teacher_forced"}, ("1",)),
    ("tag → object, mark-free (share of image attention), SoM − control",
     "attn_alignment_som_vs_control",
     {"metric": "image_share_object_markfree", "mode": "teacher_forced"}, ("1",)),
    ("pointing game, SoM − baseline", "attn_alignment",
     {"metric": "pointing", "mode": "teacher_forced"}, ("1",)),
    ("pointing game, SoM − control", "attn_alignment_som_vs_control",
     {"metric": "pointing", "mode": "teacher_forced"}, ("1",)),
    ("untagged: answer → object (mass), SoM − baseline", "untagged_attention",
     {"metric": "mass_object", "tokens": "answer"}, ("mean",)),
    ("untagged: answer → object (mass), control − baseline", "untagged_attention_control",
     {"metric": "mass_object", "tokens": "answer"}, ("mean",)),
    ("POPE adversarial accuracy, SoM − baseline", "listing_eval",
     {"metric": "accuracy", "task": "pope", "setting": "adversarial"}, ("—",)),
    ("POPE adversarial accuracy, control − baseline", "listing_eval_control",
     {"metric": "accuracy", "task": "pope", "setting": "adversarial"}, ("—",)),
)  # fmt: skip
#: Columns that carry numbers, not the identity of a comparison row.
_STATS = {
    "n_pairs", "n_clusters", "n_nan", "n_unmatched_a", "n_unmatched_b", "mean_a", "mean_b",
    "mean_diff", "ci_low", "ci_high", "statistic", "p_value", "p_adjusted", "significant",
    "direction", "value_a", "low_a", "high_a", "value_b", "low_b", "high_b", "diff", "low",
    "high", "n", "items",
}  # fmt: skip


def parse_seed(spec: str) -> tuple[str, Path]:
    """``"1=results/seeds/seed1"`` → ``("1", Path(...))``. The label is the seed, or any
    short name for a run of one (``3-rerun``): letters, digits, ``.``, ``_``, ``+``, ``-``."""
    seed, sep, folder = spec.partition("=")
    if not sep or not folder:
        raise InputError(f"--seed {spec!r}: write SEED=FOLDER, e.g. 1=results/seeds/seed1")
    if not re.fullmatch(r"[A-Za-z0-9_.+-]{1,32}", seed):
        raise InputError(
            f"--seed {spec!r}: the label must be 1-32 letters, digits or . _ + - (e.g. 3 or 3-rerun)"
        )
    return seed, Path(folder)


def read_comparison(path: Path) -> pd.DataFrame:
    """One job's ``comparison.csv`` as (keys..., effect, low, high, p_adjusted, significant).

    Raises:
        DataFormatError: neither the paired-test columns (``mean_diff``, ``ci_low``, ...)
            nor the interval columns (``diff``, ``low``, ``high``).
    """
    table = pd.read_csv(path)
    keys = [c for c in table.columns if c not in _STATS]
    if {"mean_diff", "ci_low", "ci_high", "p_adjusted", "significant"} <= set(table.columns):
        out = table[keys].assign(
            effect=table["mean_diff"], low=table["ci_low"], high=table["ci_high"],
            p_adjusted=table["p_adjusted"], significant=table["significant"].astype(bool),
        )  # fmt: skip
    elif {"diff", "low", "high"} <= set(table.columns):
        excludes = (table["low"] > 0) | (table["high"] < 0)
        out = table[keys].assign(
            effect=table["diff"], low=table["low"], high=table["high"], p_adjusted=np.nan,
            significant=excludes & table["diff"].notna(),
        )  # fmt: skip
    else:
        raise DataFormatError(f"{path}: not a comparison table of a somprobe experiment")
    return out


def collect(seeds: Sequence[tuple[str, Path]], jobs: Sequence[str]) -> pd.DataFrame:
    """Every seed's rows of every job, seeds in the order given; a job missing for a seed
    is an error, not a gap."""
    parts = []
    for seed, folder in seeds:
        for job in jobs:
            path = folder / job / "comparison.csv"
            if not path.is_file():
                raise InputError(
                    f"seed {seed}: no {path}; run {job} on that seed's models with "
                    f"--out {folder / job}, or leave {job} out of --jobs"
                )
            parts.append(read_comparison(path).assign(job=job, seed=seed))
    return pd.concat(parts, ignore_index=True)


def spread(effects: pd.DataFrame) -> pd.DataFrame:
    """Per comparison row: seeds, mean, sd, min, max of the effect; significant seeds by sign."""
    keys = [c for c in effects.columns if c not in {"seed", "effect", "low", "high",
                                                   "p_adjusted", "significant"}]  # fmt: skip
    effects = effects.assign(
        up=effects["significant"] & (effects["effect"] > 0),
        down=effects["significant"] & (effects["effect"] < 0),
    )
    grouped = effects.groupby(keys, dropna=False, sort=False)
    out = grouped.agg(
        seeds=("seed", "nunique"),
        defined=("effect", "count"),
        mean=("effect", "mean"),
        sd=("effect", "std"),
        min=("effect", "min"),
        max=("effect", "max"),
        significant_up=("up", "sum"),
        significant_down=("down", "sum"),
    ).reset_index()
    return out


def _layer_text(value: object) -> str:
    """A layer cell as the headline names it: ``"1"``, ``"mean"``, ``"—"`` (none)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "—"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def headline(effects: pd.DataFrame) -> str:
    """The :data:`HEADLINE` rows found in ``effects`` as a markdown table (rows of jobs
    not collected are left out; a seed without the row shows "—"); seeds in the order of
    ``effects``."""
    seeds = list(dict.fromkeys(effects["seed"]))
    layer = (
        effects["layer"].map(_layer_text) if "layer" in effects else pd.Series("—", effects.index)
    )
    lines = [
        "| comparison | layer | " + " | ".join(f"seed {s}" for s in seeds)
        + " | mean (sd) over seeds | seeds significant |",
        "|---|---|" + "---|" * len(seeds) + "---|---|",
    ]  # fmt: skip
    for label, job, where, layers in HEADLINE:
        mine = effects["job"] == job
        for key, value in where.items():
            mine &= effects[key].astype(str) == value if key in effects else False
        for name in layers:
            rows = effects[mine & (layer == name)].set_index("seed")
            if rows.empty:
                continue
            cells = [
                f"{r.effect:+.3f} [{r.low:+.3f}, {r.high:+.3f}]{'*' if r.significant else ''}"
                if s in rows.index and not np.isnan((r := rows.loc[s]).effect) else "—"
                for s in seeds
            ]  # fmt: skip
            eff = rows["effect"].dropna()
            sd = f"{eff.std():.3f}" if len(eff) > 1 else "—"
            up = int((rows["significant"] & (rows["effect"] > 0)).sum())
            down = int((rows["significant"] & (rows["effect"] < 0)).sum())
            lines.append(
                f"| {label} | {name} | " + " | ".join(cells)
                + f" | {eff.mean():+.3f} ({sd}) | {up}↑ {down}↓ of {len(rows)} |"
            )  # fmt: skip
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    seeds = [parse_seed(s) for s in args.seed]
    if len({s for s, _ in seeds}) != len(seeds):
        raise InputError("each --seed may be given once")
    unknown = [j for j in args.jobs if j not in JOBS]
    if unknown:
        raise InputError(f"unknown job(s) {unknown}; choose from {list(JOBS)}")
    common.check_folder(args.out, "--out")
    effects = collect(seeds, args.jobs)
    table = spread(effects)
    common.write_csv(effects, args.out / "seed_effects.csv")
    common.write_csv(table, args.out / "seed_spread.csv")
    text = headline(effects)
    with atomic_write(args.out / "seed_headline.md") as fh:
        fh.write(text)
    print(text)
    print(f"{len(seeds)} seeds, {len(args.jobs)} jobs, {len(table)} comparison rows")
    consistent = table[(table["significant_up"] == table["seeds"])
                       | (table["significant_down"] == table["seeds"])]  # fmt: skip
    print(f"significant in the same direction in every seed: {len(consistent)} rows")
    print(f"wrote seed_effects.csv, seed_spread.csv and seed_headline.md to {args.out}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--seed", action="append", required=True,
        help="SEED=FOLDER holding that seed's job folders (repeat per seed; SEED is a label: "
        "3, or 3-rerun for a second run of seed 3); columns in the order given",
    )  # fmt: skip
    p.add_argument("--jobs", nargs="+", default=list(JOBS[:6]), help=f"from {list(JOBS)}")
    p.add_argument("--out", type=Path, default=Path("results") / "seeds")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return common.run_job(run, args, "seed_effects")


if __name__ == "__main__":
    sys.exit(main())
