"""``somprobe models``: build tiny offline LLaVA models.

Example:
    $ somprobe models build-tiny ./tiny-llava --preset llava-1.5-geometry --seed 1
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from somprobe.cli import command_group, run
from somprobe.io import check_writable
from somprobe.models.tiny import PRESETS, build_tiny_llava

app = command_group(None, "Build tiny, randomly initialised LLaVA models offline.")


@app.command("build-tiny")
def build_tiny(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write the model and processor to.")],
    preset: Annotated[str, typer.Option(help=f"One of {sorted(PRESETS)}.")] = "test",
    seed: Annotated[int, typer.Option(help="Seed of the random initialisation.")] = 0,
    text_width: Annotated[int | None, typer.Option(help="Override the text width.")] = None,
    text_layers: Annotated[int | None, typer.Option(help="Override the text depth.")] = None,
    pad_to_square: Annotated[
        bool, typer.Option(help="LLaVA's pad-to-square preprocessing.")
    ] = False,
) -> None:
    """Write a tiny LLaVA that AutoProcessor / AutoModelForImageTextToText load offline."""
    check_writable(out_dir / "config.json")
    overrides: dict[str, Any] = {"seed": seed, "pad_to_square": pad_to_square}
    if text_width is not None:
        overrides["text_width"] = text_width
    if text_layers is not None:
        overrides["text_layers"] = text_layers
    path = build_tiny_llava(out_dir, preset, **overrides)
    typer.echo(f"wrote {path}")


def main() -> None:
    """``python -m somprobe.models.cli ...``: as ``somprobe models ...``."""
    run(app)


if __name__ == "__main__":
    main()
