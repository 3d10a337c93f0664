"""``somprobe capture``: capture a dataset into a sharded trace store; merge a split run.

Example:
    $ somprobe capture run models/toy-som runs/capture --toy toy/ --queries digits
    $ somprobe capture run llava-hf/llava-1.5-7b-hf runs/cap --records data.json \\
          --images coco/ --batch-size 16 --shard-size 256 --shard 0/4   # × 4 machines
    $ somprobe capture run models/toy-som runs/cap-free --toy toy/ --generate 64  # own answers
    $ somprobe capture merge runs/cap
    $ accelerate launch --num_processes 2 -m somprobe.capture.cli run MODEL runs/cap --toy toy/

A run killed part-way resumes when started again with the same arguments.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from somprobe.cli import command_group
from somprobe.cli import run as run_app
from somprobe.errors import InputError
from somprobe.io import check_writable

app = command_group("capture", "Capture attention and hidden states over a dataset.")


def _indices(text: str | None, what: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"--{what} {text!r}: give comma-separated integers, e.g. 0,1,2") from None


@app.command()
def run(
    model: Annotated[str, typer.Argument(help="Model folder or cached hub name.")],
    out: Annotated[Path, typer.Argument(help="Trace store folder (created; resumed).")],
    records: Annotated[
        Path | None, typer.Option(help="LLaVA .json/.jsonl records (image + first turn).")
    ] = None,
    images: Annotated[
        Path | None, typer.Option(help="Folder the records' images are relative to.")
    ] = None,
    toy: Annotated[
        Path | None, typer.Option(help="Toy-world dataset folder: capture its eval split.")
    ] = None,
    task: Annotated[
        str, typer.Option(help="Eval file of --toy (listing, tag_qa, ...).")
    ] = "listing",
    queries: Annotated[str, typer.Option(help="answer (every answer token) or digits.")] = "answer",
    layers: Annotated[
        str | None, typer.Option(help="Comma-separated layers (default all).")
    ] = None,
    heads: Annotated[str | None, typer.Option(help="Comma-separated heads (default all).")] = None,
    attention: Annotated[bool, typer.Option(help="Capture attention rows.")] = True,
    hidden: Annotated[bool, typer.Option(help="Capture hidden states.")] = True,
    batch_size: Annotated[int, typer.Option(help="Records per forward pass.")] = 8,
    shard_size: Annotated[int, typer.Option(help="Records per shard file.")] = 64,
    store_dtype: Annotated[
        str | None, typer.Option(help="Store tensors as float32 / float16 / bfloat16.")
    ] = None,
    dtype: Annotated[str | None, typer.Option(help="Model dtype.")] = None,
    device_map: Annotated[str | None, typer.Option(help="e.g. 'auto' or 'cuda:0'.")] = None,
    shard: Annotated[
        str | None, typer.Option(help="i/n: write every n-th shard from i (0-based).")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Skip shards a previous run finished.")] = True,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    generate: Annotated[
        int,
        typer.Option(
            help="Let the model answer (greedy, up to N tokens) and capture while it "
            "writes; 0 teacher-forces the records' answers (then required)."
        ),
    ] = 0,
) -> None:
    """Teacher-force each record's answer (or let the model answer) and store the captures."""
    from somprobe.capture.dataset import capture_dataset, parse_shard
    from somprobe.capture.items import ItemSource, llava_items, toy_eval_items
    from somprobe.capture.store import SETTINGS_FILE
    from somprobe.models.loading import load_model

    if (records is None) == (toy is None):
        raise InputError("give exactly one of --records FILE or --toy DATASET")
    spec = parse_shard(shard)  # fail on a bad spec before loading anything
    if generate < 0:
        raise InputError(f"--generate {generate}: give a token count ≥ 0 (0: teacher forcing)")
    check_writable(out / SETTINGS_FILE)
    source: ItemSource = (
        llava_items(records, images, require_answer=not generate)
        if records is not None
        else toy_eval_items(toy, task)  # type: ignore[arg-type]
    )
    if device_map is None and spec is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from accelerate import PartialState

        device_map = str(PartialState().device)
    mdl, processor = load_model(model, dtype=dtype, device_map=device_map)
    store = capture_dataset(
        mdl, processor, source, out, batch_size=batch_size, shard_size=shard_size,
        queries=queries,  # type: ignore[arg-type]
        layers=_indices(layers, "layers"), heads=_indices(heads, "heads"),
        attention=attention, hidden_states=hidden, dtype=store_dtype, shard=spec,
        resume=resume, progress=progress, max_new_tokens=generate,
    )  # fmt: skip
    if store is None:
        typer.echo(
            f"wrote shard {shard} of {out}; run `somprobe capture merge {out}` when all are done"
        )
    else:
        typer.echo(f"{out}: {len(store)} records in {store.index['shard'].nunique()} shards")


@app.command()
def merge(
    store: Annotated[Path, typer.Argument(help="Trace store folder written by `capture run`.")],
) -> None:
    """Check every shard of a split run and write the store's index."""
    from somprobe.capture.store import finish_store

    index = finish_store(store)
    typer.echo(f"{store}: {len(index)} records in {index['shard'].nunique()} shards, verified")


def main() -> None:
    """``python -m somprobe.capture.cli ...``: as ``somprobe capture ...``."""
    run_app(app)


if __name__ == "__main__":
    main()
