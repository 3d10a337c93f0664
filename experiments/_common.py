"""Plumbing shared by the experiment scripts: the two models, output files, the job runner.

Every two-model job compares a baseline with a SoM-trained model: by default the toy
models shipped in ``models/`` (or, in a checkout without them, two untrained random tiny
LLaVAs, announced as such), else any two HF LLaVA checkpoints named with ``--base`` and
``--som``. Experiments import only ``somprobe`` and this module.

Outputs: ``--out`` defaults to ``results/<job>`` under the *current* folder and
``--figures`` to ``<out>/figures``, so a run never writes into the repository unless
asked; the shipped figures in ``figures/`` are regenerated with ``--figures figures``
(from the repository root). Every argument is checked before anything is loaded or
written; a bad one is one line on stderr and exit code 2 (:func:`run_job`).

Example:
    >>> p = argparse.ArgumentParser(); add_model_args(p)
    >>> args = p.parse_args([])
    >>> pair = resolve_models(args)  # doctest: +SKIP
    >>> for name, model, processor in load_each(pair, args):  # doctest: +SKIP
    ...     ...
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

import somprobe
from somprobe.data.toyworld import WORLDS, WorldConfig, world
from somprobe.errors import InputError, SomprobeError, WriteError
from somprobe.io import atomic_path, atomic_write
from somprobe.models import build_tiny_llava, load_model

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = {"base": ROOT / "models" / "toy-baseline", "som": ROOT / "models" / "toy-som"}
#: The third training arm (same instruction data + reading-order lists on tagged scenes).
CONTROL = ROOT / "models" / "toy-control"
DEFAULT_WORLD = "v2"


def add_model_args(p: argparse.ArgumentParser, *, threads_default: str = "torch's") -> None:
    """The options every two-model job shares: models, names, device, dtype, threads."""
    p.add_argument("--base", default=None, help="baseline model (folder or cached hub name)")
    p.add_argument("--som", default=None, help="SoM-trained model (folder or cached hub name)")
    p.add_argument("--base-name", default="baseline")
    p.add_argument("--som-name", default="SoM")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--world",
        default=None,
        choices=sorted(WORLDS),
        help="toy world of the held-out scenes (default: the one the models were trained\n"
        f"in, from their training.json; else {DEFAULT_WORLD})",
    )
    p.add_argument(
        "--dtype",
        default=None,
        help="float32 | float16 | bfloat16 (default: float32 on CPU, where half precision\n"
        "is slow, else the checkpoint's own)",
    )
    p.add_argument(
        "--threads", type=int, default=None, help=f"torch CPU threads (default: {threads_default})"
    )
    p.add_argument("--no-progress", action="store_true")


def check_model_args(args: argparse.Namespace) -> None:
    """Reject model options that would only fail later."""
    if args.threads is not None and args.threads < 1:
        raise InputError(f"--threads must be ≥ 1, got {args.threads}")
    if args.base_name == args.som_name:
        raise InputError("--base-name and --som-name must differ")


def check_positive(args: argparse.Namespace, *names: str) -> None:
    """Each named option must be at least 1 (a count, a size, a budget)."""
    for name in names:
        if getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be ≥ 1, got {getattr(args, name)}")


def named_paths(specs: list[str], *, label: str = "NAME") -> dict[str, str]:
    """``--model LABEL=PATH`` options as {label: path}, in order.

    Raises:
        InputError: a spec without a label or a path, or a label given twice.
    """
    named: dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise InputError(f"--model needs {label}=PATH, got {spec!r}")
        if name in named:
            raise InputError(f"--model name {name!r} given twice")
        named[name] = path
    return named


def add_output_args(p: argparse.ArgumentParser, job: str) -> None:
    """``--out`` (default ``results/<job>`` under the current folder) and ``--figures``
    (default ``<out>/figures``); :func:`resolve_outputs` fills the defaults in."""
    p.add_argument("--out", type=Path, default=None, help=f"output folder (default: results/{job})")
    p.add_argument(
        "--figures",
        type=Path,
        default=None,
        help="figure folder (default: <out>/figures; `--figures figures` from the repository\n"
        "root regenerates the shipped figures)",
    )


def resolve_outputs(args: argparse.Namespace, job: str) -> argparse.Namespace:
    """Fill in the output defaults of :func:`add_output_args` (relative to the current folder)."""
    if args.out is None:
        args.out = Path("results") / job
    if args.figures is None:
        args.figures = args.out / "figures"
    return args


def check_folder(path: Path, option: str) -> None:
    """``path`` can become a writable folder; nothing is created (that waits for the results).

    Raises:
        WriteError: ``path`` or a parent of it is a file, or the nearest existing parent
            is not writable.
    """
    if path.exists() and not path.is_dir():
        raise WriteError(f"{option} {path} is a file, not a folder; give a folder")
    parent = path
    while not parent.exists():
        if parent.parent == parent:
            break
        parent = parent.parent
    if not parent.is_dir():
        raise WriteError(f"{option} {path} cannot be created: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise WriteError(f"{option} {path} cannot be written: {parent} is not writable")


def check_outputs(args: argparse.Namespace) -> None:
    """``--out`` and ``--figures`` can be written (checked without creating them)."""
    check_folder(args.out, "--out")
    check_folder(args.figures, "--figures")


def check_input_folder(path: Path | None, option: str, needed_by: str) -> Path:
    """An existing folder given with ``option`` (which ``needed_by`` needs)."""
    if path is None:
        raise InputError(f"{needed_by} needs {option}")
    if not path.exists():
        raise InputError(f"{option} {path} does not exist")
    if not path.is_dir():
        raise InputError(f"{option} {path} is not a folder")
    return path


def load_dtype(dtype: str | None, device: str) -> str | None:
    """The dtype to load: as asked, else float32 on CPU (the toy checkpoints are stored in
    float16, which CPUs multiply very slowly), else the checkpoint's own."""
    return dtype or ("float32" if str(device) == "cpu" else None)


def setup_torch(args: argparse.Namespace, *, toy_cpu_threads: int | None = None) -> str | None:
    """Set the CPU thread count (``--threads``, else ``toy_cpu_threads`` for the shipped toy
    models on CPU, else torch's default); return the dtype to load."""
    threads = args.threads or (toy_cpu_threads if args.device == "cpu" and not args.base else None)
    if threads:
        torch.set_num_threads(threads)
    return load_dtype(args.dtype, args.device)


@dataclass(frozen=True)
class ModelPair:
    """The two models a job compares: names (as in tables and figures) and paths."""

    names: tuple[str, str]
    paths: tuple[str, str]
    untrained: bool  # True: random stand-ins, whose scores measure nothing

    def as_dict(self) -> dict[str, str]:
        return dict(zip(self.names, self.paths, strict=True))


def resolve_models(args: argparse.Namespace) -> ModelPair:
    """The two models; random tiny stand-ins (announced) when the toy models are absent."""
    names = (args.base_name, args.som_name)
    if args.base and args.som:
        return ModelPair(names, (args.base, args.som), False)
    if args.base or args.som:
        raise SomprobeError("give both --base and --som, or neither (the shipped toy models)")
    if SHIPPED["base"].exists() and SHIPPED["som"].exists():
        return ModelPair(names, (str(SHIPPED["base"]), str(SHIPPED["som"])), False)
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
    return ModelPair(names, (paths[0], paths[1]), True)


def load_each(
    pair: ModelPair, args: argparse.Namespace, dtype: str | None = None
) -> Iterator[tuple[str, Any, Any]]:
    """``(name, model, processor)`` for the baseline, then the SoM model, each loaded in
    ``dtype`` on ``args.device`` (the caller keeps a model only if it needs it later)."""
    for name, path in zip(pair.names, pair.paths, strict=True):
        model, processor = load_model(path, dtype=dtype, device_map=None)
        model.to(args.device)
        yield name, model, processor


def write_csv(df: pd.DataFrame, path: Path) -> None:
    """A table, written atomically (gzip-compressed when ``path`` ends in ``.gz``)."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, compression="gzip" if path.suffix == ".gz" else None)


def write_json(obj: Any, path: Path) -> None:
    """A JSON document (indented, a newline at the end), written atomically."""
    with atomic_write(path) as fh:
        fh.write(json.dumps(obj, indent=2, default=str) + "\n")


def _plain(value: Any) -> Any:
    """A JSON-ready copy of an argument value (paths as strings)."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _model_path(path: str) -> str:
    """A local model folder as an absolute path; a hub name as given."""
    local = Path(path)
    return str(local.resolve()) if local.exists() else path


def run_record(
    args: argparse.Namespace, pair: ModelPair, images: str, n_images: int
) -> dict[str, Any]:
    """What a job ran on, for its ``summary.json`` / ``run.json`` (key ``"run"``): the
    somprobe version, the models (name → path), the images (``source``, ``count``) and
    every argument (``vars(args)``, paths as strings)."""
    return {
        "somprobe_version": somprobe.__version__,
        "models": {n: _model_path(p) for n, p in pair.as_dict().items()},
        "untrained_stand_ins": pair.untrained,
        "images": {"source": images, "count": int(n_images)},
        "arguments": {k: _plain(v) for k, v in sorted(vars(args).items())},
    }


def trained_world(path: str | Path) -> str | None:
    """The toy world a model folder was trained in (its ``training.json``), if it says."""
    card = Path(path) / "training.json"
    if not card.is_file():
        return None
    data = json.loads(card.read_text(encoding="utf-8"))
    if isinstance(data.get("world"), str):
        return str(data["world"])
    config = data.get("data", {}).get("world")
    if isinstance(config, dict):
        return next(
            (
                n
                for n, w in WORLDS.items()
                if w.to_dict() == WorldConfig.from_dict(config).to_dict()
            ),
            None,
        )
    return None


def toy_world(args: argparse.Namespace) -> WorldConfig:
    """The world of the held-out toy scenes: ``--world``, else the models' own world.

    Raises:
        InputError: the two models were trained in different worlds (name one with --world).
    """
    if getattr(args, "world", None):
        return world(args.world)
    paths = (
        [args.base, args.som]
        if args.base and args.som
        else [str(SHIPPED["base"]), str(SHIPPED["som"])]
    )
    found = {w for p in paths if (w := trained_world(p))}
    if len(found) > 1:
        raise InputError(
            f"the models were trained in different toy worlds {sorted(found)}; pick one with --world"
        )
    args.world = found.pop() if found else DEFAULT_WORLD
    return world(args.world)


def toy_images(args: argparse.Namespace) -> str:
    """How the held-out toy scenes of a job are named in its run record."""
    name = getattr(args, "world", None) or DEFAULT_WORLD
    return f"toy world {name}, held-out eval split (seed {args.seed})"


def write_run_info(
    args: argparse.Namespace,
    pair: ModelPair,
    clocks: tuple[float, float],
    *,
    images: str,
    n_images: int,
    **extra: Any,
) -> dict[str, Any]:
    """What ran, and how long (wall and CPU seconds since ``clocks``): ``<out>/run.json``
    (the job's ``--limit`` scenes, ``--bootstrap`` and ``--seed``, ``extra``, and the
    :func:`run_record` under ``"run"``)."""
    info = {
        "scenes": args.limit,
        **extra,
        "models": pair.as_dict(),
        "untrained_stand_ins": pair.untrained,
        "bootstrap": args.bootstrap,
        "seed": args.seed,
        "seconds": round(time.perf_counter() - clocks[0], 1),
        "cpu_seconds": round(time.process_time() - clocks[1], 1),
        "run": run_record(args, pair, images, n_images),
    }
    write_json(info, args.out / "run.json")
    return info


def fmt_ci(value: float, low: float, high: float, *, signed: bool = False, digits: int = 3) -> str:
    """``value [low, high]``, or "n/a" for an undefined value."""
    if math.isnan(value):
        return "n/a"
    f = f"{'+' if signed else ''}.{digits}f"
    return f"{value:{f}} [{low:{f}}, {high:{f}}]"


def run_job(job: Callable[[argparse.Namespace], int], args: argparse.Namespace, name: str) -> int:
    """Run ``job``; a somprobe error (bad input, missing model) or a file-system error (a
    file that cannot be read or written) is one line and exit code 2."""
    try:
        return job(args)
    except (SomprobeError, OSError) as err:
        print(f"{name}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
