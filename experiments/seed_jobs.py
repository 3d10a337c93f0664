"""Run every comparison job on one training seed's three models (for ``seed_effects.py``).

Given the seed's ``baseline``, ``som`` and ``control`` model folders, each job of
``seed_effects.JOBS`` runs as its own process and writes ``<out>/<job>/``:

* ``attn_alignment``: baseline vs SoM; ``attn_alignment_som_vs_control``: control vs
  SoM; ``attn_alignment_control``: baseline vs control;
* ``untagged_attention`` / ``untagged_attention_control``: baseline vs SoM / control;
* ``listing_eval`` / ``listing_eval_control``: baseline vs SoM / control;
* ``causal_tags``: the three models.

A job whose ``comparison.csv`` exists is skipped, so an interrupted run is finished by
running the same command again. Each job's output goes to ``<out>/<job>.log``. With
``--tables DIR`` (e.g. ``models/seed_tables/seed1``), once every job has finished, each
job's ``comparison.csv`` and run record (``summary.json`` / ``run.json``, the checkout's
path left out of the paths in it) are copied to ``DIR/<job>/``: the small part worth
committing, which is all ``seed_effects.py`` reads.

Example:
    $ python experiments/seed_jobs.py --baseline runs/toy_arms/seed1/baseline \\
          --som runs/toy_arms/seed1/som --control runs/toy_arms/seed1/control \\
          --out results/seeds/seed1 --tables models/seed_tables/seed1
    $ python experiments/seed_effects.py --seed 0=results/seeds/seed0 \\
          --seed 1=results/seeds/seed1 --jobs attn_alignment ... causal_tags
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import _common as common

from somprobe.errors import InputError, SomprobeError
from somprobe.io import atomic_write

HERE = Path(__file__).resolve().parent
#: job → (script, its model arguments); B / S / C stand for the three model folders.
PLAN: dict[str, tuple[str, tuple[str, ...]]] = {
    "attn_alignment": ("attn_alignment.py", ("--base", "B", "--som", "S")),
    "attn_alignment_som_vs_control": (
        "attn_alignment.py", ("--base", "C", "--base-name", "control", "--som", "S")),
    "attn_alignment_control": (
        "attn_alignment.py", ("--base", "B", "--som", "C", "--som-name", "control")),
    "untagged_attention": ("untagged_attention.py", ("--base", "B", "--som", "S")),
    "untagged_attention_control": (
        "untagged_attention.py", ("--base", "B", "--som", "C", "--som-name", "control")),
    "listing_eval": ("listing_eval.py", ("--base", "B", "--som", "S")),
    "listing_eval_control": (
        "listing_eval.py", ("--base", "B", "--som", "C", "--som-name", "control")),
    "causal_tags": (
        "causal_tags.py", ("--model", "baseline=B", "--model", "som=S", "--model", "control=C")),
}  # fmt: skip
Runner = Callable[[list[str], Path], int]


def commands(args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    """``(job, argv)`` for every job asked for, models filled in, in :data:`PLAN` order."""
    folders = {"B": str(args.baseline), "S": str(args.som), "C": str(args.control)}

    def fill(token: str) -> str:
        name, eq, key = token.partition("=")
        if eq:
            return f"{name}={folders[key]}"
        return folders.get(token, token)

    out = []
    for job in args.jobs:
        script, model_args = PLAN[job]
        argv = [sys.executable, str(HERE / script), *map(fill, model_args)]
        argv += ["--out", str(args.out / job), "--threads", str(args.threads)]
        if args.no_progress:
            argv.append("--no-progress")
        out.append((job, argv))
    return out


def subprocess_runner(argv: list[str], log: Path) -> int:
    """Run ``argv``, its stdout and stderr to ``log``; its exit code."""
    with log.open("w") as fh:
        return subprocess.run(argv, stdout=fh, stderr=subprocess.STDOUT, check=False).returncode


def run(args: argparse.Namespace, runner: Runner = subprocess_runner) -> int:
    for flag in ("baseline", "som", "control"):
        if not (getattr(args, flag) / "config.json").is_file():
            raise InputError(f"--{flag} {getattr(args, flag)}: no model there (no config.json)")
    common.check_positive(args, "threads")
    common.check_folder(args.out, "--out")
    if args.tables is not None:
        common.check_folder(args.tables, "--tables")
    args.out.mkdir(parents=True, exist_ok=True)
    for job, argv in commands(args):
        if (args.out / job / "comparison.csv").is_file():
            print(f"{job}: done already, skipped")
            continue
        t0 = time.perf_counter()
        code = runner(argv, args.out / f"{job}.log")
        if code != 0:
            raise SomprobeError(f"{job} failed (exit code {code}); see {args.out / job}.log")
        print(f"{job}: {time.perf_counter() - t0:.0f} s")
    if args.tables is not None:
        copy_tables(args.out, args.tables, args.jobs)
        print(f"comparison tables and run records copied to {args.tables}")
    return 0


RECORDS = ("comparison.csv", "summary.json", "run.json")


def copy_tables(out: Path, tables: Path, jobs: Sequence[str]) -> None:
    """Each job's comparison table and run record, from ``out/<job>`` to ``tables/<job>``
    (every file written atomically; the repository's own path dropped from the records)."""
    prefix = f"{HERE.parent}/"
    for job in jobs:
        found = [name for name in RECORDS if (out / job / name).is_file()]
        if "comparison.csv" not in found or len(found) < 2:
            raise SomprobeError(f"{out / job} lacks its comparison.csv or run record")
        for name in found:
            text = (out / job / name).read_text(encoding="utf-8")
            with atomic_write(tables / job / name) as fh:
                fh.write(text.replace(prefix, "") if name.endswith(".json") else text)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for flag in ("baseline", "som", "control"):
        p.add_argument(f"--{flag}", type=Path, required=True, help=f"the seed's {flag} model")
    p.add_argument("--out", type=Path, required=True, help="this seed's results folder")
    p.add_argument("--jobs", nargs="+", choices=list(PLAN), default=list(PLAN))
    p.add_argument("--threads", type=int, default=1, help="torch threads per job")
    p.add_argument(
        "--tables", type=Path, default=None,
        help="copy each job's comparison.csv and run record here when all are done",
    )  # fmt: skip
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return common.run_job(run, args, "seed_jobs")


if __name__ == "__main__":
    sys.exit(main())
