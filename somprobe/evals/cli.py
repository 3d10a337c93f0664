"""``somprobe eval``: run the evaluations of a model on an eval split.

Example:
    $ somprobe eval run models/toy-som toy/eval --tasks listing,pope --out results/
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from somprobe.cli import command_group
from somprobe.cli import run as run_app
from somprobe.errors import InputError
from somprobe.io import check_writable

app = command_group("eval", "Evaluate a LLaVA model: tag listing, tag-QA, POPE-style existence.")


@app.callback()
def _group() -> None:
    """Evaluate a LLaVA model on an eval split (see ``somprobe eval run --help``)."""


@app.command()
def run(
    model: Annotated[str, typer.Argument(help="Model folder or cached hub name.")],
    split: Annotated[Path, typer.Argument(help="Eval split folder (e.g. toy/eval).")],
    tasks: Annotated[
        str, typer.Option(help="Comma-separated: listing, tag_qa, pope, instruct.")
    ] = "listing,tag_qa,pope,instruct",
    limit: Annotated[int | None, typer.Option(help="At most N records per file.")] = None,
    batch_size: Annotated[int, typer.Option(help="Generation batch size.")] = 8,
    max_new_tokens: Annotated[
        int | None, typer.Option(help="Token budget for every answer (default: per task).")
    ] = None,
    dtype: Annotated[str | None, typer.Option(help="float32 / float16 / bfloat16.")] = None,
    device_map: Annotated[str | None, typer.Option(help="e.g. 'auto' or 'cuda:0'.")] = None,
    out: Annotated[
        Path | None, typer.Option(help="Folder for summary.csv and <task>.csv item tables.")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Generate answers greedily, score them, print the summary (and write CSVs)."""
    from somprobe.evals.runner import evaluate
    from somprobe.models.loading import load_model

    if out is not None:
        check_writable(out / "summary.csv")
    names = tuple(t.strip() for t in tasks.split(",") if t.strip())
    if limit is not None and limit < 1:
        raise InputError(f"--limit {limit}: give a positive number")
    if batch_size < 1:
        raise InputError(f"--batch-size {batch_size}: give a positive number")
    if max_new_tokens is not None and max_new_tokens < 1:
        raise InputError(f"--max-new-tokens {max_new_tokens}: give a positive number")
    mdl, processor = load_model(model, dtype=dtype, device_map=device_map)
    result = evaluate(
        mdl, processor, split, tasks=names, limit=limit, batch_size=batch_size,
        max_new_tokens=max_new_tokens, progress=progress,
    )  # fmt: skip
    typer.echo(result.summary.to_string(index=False))
    if out is not None:
        from somprobe.io import atomic_write

        for name, table in {"summary": result.summary, **result.items}.items():
            with atomic_write(out / f"{name}.csv") as fh:
                table.to_csv(fh, index=False)
        typer.echo(f"wrote {out}")


def main() -> None:
    """``python -m somprobe.evals.cli ...``: as ``somprobe eval ...``."""
    run_app(app)


if __name__ == "__main__":
    main()
