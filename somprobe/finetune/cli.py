"""``somprobe finetune``: train a LLaVA on LLaVA JSON data, merge LoRA adapters.

Example:
    $ somprobe finetune train tiny-llava/ listing.json --image-folder som/ --output-dir out/ \\
          --preset toy --max-steps 200
    $ accelerate launch --config_file configs/accelerate/zero3.yaml -m somprobe.finetune.cli \\
          train llava-v1.5-13b-stage1/ mixed.json --image-folder playground/data/ \\
          --output-dir som-llava/ --preset som-llava-1.5
    $ somprobe finetune merge-lora llava-1.5-7b-hf/ out/adapter merged/
    $ somprobe finetune presets

``--image-folder`` is the folder the records' ``image`` paths are relative to: for records
of ``somprobe data listing som/ ...`` (``images/<key>.png``) that is ``som/``; for a mix
with LLaVA-1.5's data, LLaVA's image root holding ``coco/``, ``gqa/``, ... and ``som/``
(mixed with ``--image-prefix listing=som/``).

The same ``train`` line runs on one CPU, one GPU, or under ``accelerate launch``. A
checkpoint is saved every 10 % of the run by default (``--save-steps``), and the same line
run again resumes from the last complete checkpoint in ``--output-dir`` unless
``--no-resume`` is given.
Records that cannot be used (missing image, no assistant turn, too long) are skipped and
counted, and the counts are printed at the end (``--on-bad-record error`` stops instead).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from somprobe.cli import command_group, run

app = command_group(
    "finetune", "Finetune LLaVA models (SoM-LLaVA recipe, toy models), merge LoRA adapters."
)


@app.command()
def train(
    model: Annotated[str, typer.Argument(help="LLaVA checkpoint folder (or cached hub name).")],
    data: Annotated[list[Path], typer.Argument(help="LLaVA .json/.jsonl training file(s).")],
    output_dir: Annotated[Path, typer.Option(help="Checkpoints and the final model go here.")],
    image_folder: Annotated[
        Path | None, typer.Option(help="Folder the records' image paths are relative to.")
    ] = None,
    preset: Annotated[str, typer.Option(help="'toy' or 'som-llava-1.5'.")] = "toy",
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many steps.")] = None,
    epochs: Annotated[float | None, typer.Option(help="Epochs (when no --max-steps).")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="Peak learning rate.")] = None,
    global_batch_size: Annotated[int | None, typer.Option(help="Batch per optimizer step.")] = None,
    per_device_batch_size: Annotated[int | None, typer.Option(help="Batch per process.")] = None,
    warmup: Annotated[float | None, typer.Option(help="<1: fraction of steps; else steps.")] = None,
    trainable: Annotated[
        str | None, typer.Option(help="'projector', 'projector+lm' (vision frozen) or 'all'.")
    ] = None,
    image_aspect_ratio: Annotated[str | None, typer.Option(help="'pad' or 'crop'.")] = None,
    template: Annotated[str | None, typer.Option(help="'auto', 'chat' or 'vicuna_v1'.")] = None,
    max_length: Annotated[int | None, typer.Option(help="Longest sequence kept.")] = None,
    bf16: Annotated[bool | None, typer.Option("--bf16/--no-bf16", help="bf16 autocast.")] = None,
    gradient_checkpointing: Annotated[
        bool | None, typer.Option("--gradient-checkpointing/--no-gradient-checkpointing")
    ] = None,
    save_steps: Annotated[
        float | None,
        typer.Option(
            help="Checkpoint every N steps (N ≥ 1), or every fraction of the run (N < 1; "
            "preset default 0.1: every 10 %)."
        ),
    ] = None,
    logging_steps: Annotated[int | None, typer.Option(help="Log every N steps.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of weights init, data order.")] = None,
    lora: Annotated[bool, typer.Option("--lora/--full", help="LoRA instead of full.")] = False,
    lora_r: Annotated[int, typer.Option(help="LoRA rank.")] = 128,
    lora_alpha: Annotated[int, typer.Option(help="LoRA alpha.")] = 256,
    merge: Annotated[bool, typer.Option("--merge/--no-merge", help="Merge LoRA at end.")] = True,
    deepspeed: Annotated[
        str, typer.Option(help="'preset' (the preset's ZeRO-3 on GPUs), 'off', or a JSON path.")
    ] = "preset",
    resume: Annotated[
        bool,
        typer.Option(
            "--resume/--no-resume",
            help="Continue from the last complete checkpoint in --output-dir.",
        ),
    ] = True,
    on_bad_record: Annotated[str, typer.Option(help="'skip' (count) or 'error'.")] = "skip",
    system_prompt: Annotated[str | None, typer.Option(help="System prompt ('' for none).")] = None,
    save_dtype: Annotated[str | None, typer.Option(help="e.g. float16 for the final save.")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Finetune MODEL on DATA; print a JSON summary (steps, loss, time, skipped records)."""
    from somprobe.finetune.trainer import LoraOptions, finetune

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    overrides: dict[str, Any] = {
        "max_steps": max_steps,
        "epochs": epochs,
        "learning_rate": learning_rate,
        "global_batch_size": global_batch_size,
        "per_device_batch_size": per_device_batch_size,
        "warmup": warmup,
        "trainable": trainable,
        "image_aspect_ratio": image_aspect_ratio,
        "template": template,
        "max_length": max_length,
        "bf16": bf16,
        "gradient_checkpointing": gradient_checkpointing,
        "save_steps": save_steps,
        "logging_steps": logging_steps,
        "seed": seed,
    }
    ds: str | None = None if deepspeed == "off" else deepspeed
    result = finetune(
        model,
        data,
        image_folder,
        output_dir,
        preset=preset,
        lora=LoraOptions(r=lora_r, alpha=lora_alpha, merge=merge) if lora else None,
        resume=resume,
        deepspeed=ds,
        on_bad_record=on_bad_record,  # type: ignore[arg-type]
        system_prompt=system_prompt,
        save_dtype=save_dtype,
        progress=progress,
        **overrides,
    )
    if _is_main_process():
        typer.echo(result.to_json())


def _is_main_process() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"


@app.command("merge-lora")
def merge_lora_command(
    base: Annotated[str, typer.Argument(help="The base LLaVA checkpoint.")],
    adapter: Annotated[Path, typer.Argument(help="The saved adapter folder.")],
    out: Annotated[Path, typer.Argument(help="Where to write the merged model.")],
    dtype: Annotated[str | None, typer.Option(help="e.g. float16.")] = None,
) -> None:
    """Merge a LoRA adapter into its base model and save a plain checkpoint."""
    from somprobe.finetune.trainer import merge_lora

    path = merge_lora(base, adapter, out, dtype=dtype)
    typer.echo(f"merged model written to {path}")


@app.command()
def presets() -> None:
    """Print the training presets as JSON."""
    from somprobe.finetune.presets import PRESETS

    typer.echo(json.dumps({k: json.loads(v.to_json()) for k, v in PRESETS.items()}, indent=2))


def main() -> None:
    """``python -m somprobe.finetune.cli ...`` (e.g. under ``accelerate launch``): as
    ``somprobe finetune ...``, errors included (one line, exit code 2)."""
    run(app)


if __name__ == "__main__":
    main()
