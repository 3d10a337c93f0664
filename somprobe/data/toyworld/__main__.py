"""``python -m somprobe.data.toyworld OUT``: write a toy-world dataset folder.

Example:
    $ python -m somprobe.data.toyworld toy/ --train 20000 --eval 500 --seed 0
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from somprobe.cli import command_group, run

app = command_group(None, "Write a toy-world dataset folder.")


@app.command()
def toy(
    out: Annotated[Path, typer.Argument(help="Output folder.")],
    train: Annotated[
        int, typer.Option(help="Training scenes (0: write the eval split only).")
    ] = 20_000,
    eval_scenes: Annotated[
        int, typer.Option("--eval", help="Held-out eval scenes (0: training files only).")
    ] = 500,
    seed: Annotated[int, typer.Option(help="World seed.")] = 0,
    world_name: Annotated[
        str, typer.Option("--world", help="Named world: v2 (the shipped models') or v1.")
    ] = "v2",
    image_size: Annotated[
        int | None, typer.Option(help="Image side in pixels (default: the world's).")
    ] = None,
    patch_size: Annotated[
        int | None, typer.Option(help="Vision patch size, tags snap to it (default: the world's).")
    ] = None,
    min_objects: Annotated[int | None, typer.Option(help="Fewest objects per scene.")] = None,
    max_objects: Annotated[int | None, typer.Option(help="Most objects per scene (≤ 8).")] = None,
    mix_records: Annotated[
        int | None, typer.Option(help="Records per training mix (default: --train).")
    ] = None,
    som_fraction: Annotated[float, typer.Option(help="SoM share of the SoM mix.")] = 0.5,
    listing_share: Annotated[float, typer.Option(help="Listing share of the SoM data.")] = 0.5,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Scenes, TagSets, instruction / SoM training mixes and held-out eval files."""
    from dataclasses import replace

    from somprobe.data.toyworld.dataset import write_toy_dataset
    from somprobe.data.toyworld.scenes import world

    given: dict[str, Any] = {"image_size": image_size, "patch_size": patch_size, "min_objects": min_objects,
             "max_objects": max_objects}  # fmt: skip
    base = world(world_name)
    cfg = replace(base, **{k: v for k, v in given.items() if v is not None})
    manifest = write_toy_dataset(
        out, config=cfg, train_scenes=train, eval_scenes=eval_scenes, seed=seed,
        mix_records=mix_records, som_fraction=som_fraction, listing_share=listing_share,
        progress=progress,
    )  # fmt: skip
    typer.echo(f"wrote {out} in {manifest['seconds']} s")
    typer.echo(f"train: {manifest['train']['files']}")
    typer.echo(f"eval:  {manifest['eval']['files']}")


def main() -> None:
    """``python -m somprobe.data.toyworld OUT ...``: as ``somprobe data toy OUT ...``."""
    run(app)


if __name__ == "__main__":
    main()
