"""``somprobe data``: make SoM training data from images + regions, mix it, survey it.

Example:
    $ somprobe data tag val2017/ som/ --coco instances_val2017.json --short-side 640
    $ somprobe data listing som/ listing.json --seed 0
    $ somprobe data qa som/ qa.json --seed 0 --questions 4
    $ somprobe data mix mixed.json --source llava=llava_v1_5_mix665k.json \\
          --source listing=listing.json:10000 --source qa=qa.json:20000 \\
          --image-prefix listing=som/ --image-prefix qa=som/ --seed 0
    $ somprobe data survey llava_v1_5_mix665k.json mixed.json

Records of ``listing`` and ``qa`` name ``images/<key>.png``, relative to the tagged folder
(``som/``); ``--image-prefix listing=som/`` makes them relative to the folder above it,
LLaVA's image root, as the records of LLaVA's own file are.

Every command checks that its outputs can be written before it starts, and writes
atomically; ``tag``, ``listing`` and ``qa`` skip finished images when run again (after a
kill too) and take ``--shard i/n`` (i from 0) to split the images among machines; ``mix``
run again starts over and removes what a killed run left behind. Errors end in one line
(``somprobe: error: ...``) and exit code 2.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import pandas as pd
import typer

from somprobe.cli import command_group, run
from somprobe.errors import InputError
from somprobe.io import check_writable

if TYPE_CHECKING:
    from somprobe.data.build import BuildSummary
    from somprobe.data.mix import MixSource

app = command_group(
    "data", "Make SoM training data (tagged images, listing, tag-QA), mix and survey it."
)


# Options shared by several commands, declared once.
ShardOption = Annotated[
    str | None, typer.Option(help="i/n: handle every n-th image from i (0-based).")
]
ProgressOption = Annotated[bool, typer.Option(help="Show a progress bar.")]
ImagePrefixOption = Annotated[str, typer.Option(help="Prepended to images/<key>.png in records.")]


def _check_seed(seed: int) -> None:
    from somprobe.data.seeding import check_seed

    check_seed(seed, "--seed")


@app.command()
def tag(
    images: Annotated[Path, typer.Argument(help="Folder of images.")],
    out: Annotated[Path, typer.Argument(help="Output folder (images/ and tagsets/ go here).")],
    coco: Annotated[Path | None, typer.Option(help="COCO instance annotation JSON.")] = None,
    masks: Annotated[
        Path | None,
        typer.Option(help="Folder of per-image masks: <key>.png label image or <key>.npy stack."),
    ] = None,
    superpixels: Annotated[
        str | None, typer.Option(help="No annotations: use superpixels ('felzenszwalb' or 'slic').")
    ] = None,
    short_side: Annotated[
        int | None,
        typer.Option(
            help="Shrink images whose shorter side is longer to this shorter side first "
            "(SoM-LLaVA: 640); smaller images are kept as they are, never enlarged."
        ),
    ] = None,
    shard: ShardOption = None,
    limit: Annotated[
        int | None, typer.Option(help="Stop after this many images of the shard.")
    ] = None,
    label_mode: Annotated[str, typer.Option(help="'number' or 'letter' labels.")] = "number",
    progress: ProgressOption = True,
) -> None:
    """Tag images with Set-of-Mark numbers: writes images/<key>.png and tagsets/<key>.json."""
    from somprobe.data.runner import parse_shard
    from somprobe.data.tagging import (
        check_tag_arguments,
        check_tag_output,
        coco_source,
        folder_items,
        mask_folder_source,
        superpixel_source,
        tag_images,
    )

    check_tag_output(out)
    chosen = [x is not None for x in (coco, masks, superpixels)]
    if sum(chosen) != 1:
        raise InputError("give exactly one region source: --coco, --masks or --superpixels")
    options = {"label_mode": label_mode}
    check_tag_arguments(short_side=short_side, limit=limit, tag_options=options)
    parsed_shard = parse_shard(shard)
    if coco is not None:
        items, source = coco_source(coco, images)
    else:
        items = folder_items(images)
        source = (
            mask_folder_source(masks) if masks is not None
            else superpixel_source(str(superpixels))
        )  # fmt: skip
    summary = tag_images(
        items, source, out, shard=parsed_shard, short_side=short_side, limit=limit,
        progress=progress, tag_options=options,
    )  # fmt: skip
    typer.echo(
        f"tagged {summary.tagged} images ({summary.tags} tags), {summary.already_done} already "
        f"done, {len(summary.without_tags)} without tags, of {summary.selected} in this shard"
    )


def _echo_build(kind: str, out: Path, s: BuildSummary) -> None:
    skipped = ", ".join(f"{v} {k}" for k, v in s.skipped.items()) or "none"
    typer.echo(
        f"wrote {s.records} {kind} records to {out} "
        f"({s.already_done} images resumed from a previous run; skipped: {skipped})"
    )


@app.command()
def listing(
    tagged: Annotated[Path, typer.Argument(help="Folder written by `somprobe data tag`.")],
    out: Annotated[Path, typer.Argument(help="Output LLaVA JSON file.")],
    seed: Annotated[int, typer.Option(help="Seed of the instruction sampling.")] = 0,
    describer: Annotated[
        str | None, typer.Option(help="package.module:function turning (tag, image) into a phrase.")
    ] = None,
    image_prefix: ImagePrefixOption = "",
    shard: ShardOption = None,
    progress: ProgressOption = True,
) -> None:
    """Listing records: a sampled instruction and "1. <object>" lines in tag order."""
    from somprobe.data.build import build_listing
    from somprobe.data.runner import parse_shard

    check_writable(out)
    _check_seed(seed)
    summary = build_listing(
        tagged, out, seed=seed, describer=describer, shard=parse_shard(shard),
        image_prefix=image_prefix, progress=progress,
    )  # fmt: skip
    _echo_build("listing", out, summary)


@app.command()
def qa(
    tagged: Annotated[Path, typer.Argument(help="Folder written by `somprobe data tag`.")],
    out: Annotated[Path, typer.Argument(help="Output LLaVA JSON file.")],
    seed: Annotated[int, typer.Option(help="Seed of the question sampling.")] = 0,
    questions: Annotated[
        int, typer.Option(help="Questions per image (fewer if the image allows).")
    ] = 4,
    kinds: Annotated[
        str, typer.Option(help="Comma-separated question kinds.")
    ] = "what_is_tagged,which_tag,how_many,is_there",
    vocabulary: Annotated[
        Path | None,
        typer.Option(help="Category names (one per line) for 'is there' negatives; default COCO."),
    ] = None,
    describer: Annotated[
        str | None, typer.Option(help="package.module:function for phrases.")
    ] = None,
    image_prefix: ImagePrefixOption = "",
    shard: ShardOption = None,
    progress: ProgressOption = True,
) -> None:
    """Tag-QA records: questions about the tags answered from the ground truth."""
    from somprobe.data.build import build_qa
    from somprobe.data.runner import parse_shard
    from somprobe.data.tag_qa import COCO_CATEGORIES, QA_KINDS

    check_writable(out)
    _check_seed(seed)
    kind_list = [k.strip() for k in kinds.split(",") if k.strip()]
    bad = [k for k in kind_list if k not in QA_KINDS]
    if bad or not kind_list:
        raise InputError(f"--kinds: unknown {bad or kinds!r}; choose from {QA_KINDS}")
    vocab: list[str] = list(COCO_CATEGORIES)
    if vocabulary is not None:
        if not vocabulary.is_file():
            raise InputError(f"--vocabulary {vocabulary} does not exist; give a text file")
        vocab = [v.strip() for v in vocabulary.read_text().splitlines() if v.strip()]
        if not vocab:
            raise InputError(f"--vocabulary {vocabulary} is empty; give one category per line")
    summary = build_qa(
        tagged, out, seed=seed, questions=questions, kinds=kind_list,  # type: ignore[arg-type]
        vocabulary=vocab, describer=describer, shard=parse_shard(shard),
        image_prefix=image_prefix, progress=progress,
    )  # fmt: skip
    _echo_build("tag-QA", out, summary)


def _parse_source(spec: str, prefixes: dict[str, str]) -> MixSource:
    from somprobe.data.mix import MixSource

    name, eq, rest = spec.partition("=")
    if not eq or not name or not rest:
        raise InputError(f"--source {spec!r}: write it as NAME=PATH or NAME=PATH:SIZE")
    path, size = rest, None
    head, colon, tail = rest.rpartition(":")
    if colon and head and re.fullmatch(r"[+-]?\d+", tail.strip()):
        path, size = head, int(tail)
    return MixSource(name, Path(path), size, prefixes.pop(name, ""))


@app.command()
def mix(
    out: Annotated[Path, typer.Argument(help="Output LLaVA JSON file.")],
    source: Annotated[
        list[str], typer.Option(help="NAME=PATH[:SIZE], repeatable; no SIZE takes every record.")
    ],
    image_prefix: Annotated[
        list[str] | None,
        typer.Option(help="NAME=PREFIX, repeatable: prepended to that source's image paths."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the subsampling and shuffle.")] = 0,
    shuffle: Annotated[
        bool, typer.Option(help="Shuffle the output (else sources in order).")
    ] = True,
    report: Annotated[Path | None, typer.Option(help="Also write the composition as CSV.")] = None,
    progress: ProgressOption = True,
) -> None:
    """Mix instruction files at given sizes, seeded; prints the composition."""
    from somprobe.data.mix import mix_files
    from somprobe.io import atomic_write

    check_writable(out)
    if report is not None:
        check_writable(report)
    _check_seed(seed)
    prefixes = {}
    for p in image_prefix or []:
        name, eq, prefix = p.partition("=")
        if not eq or not name:
            raise InputError(f"--image-prefix {p!r}: write it as NAME=PREFIX")
        prefixes[name] = prefix
    sources = [_parse_source(s, prefixes) for s in source]
    if prefixes:
        raise InputError(f"--image-prefix names unknown sources {sorted(prefixes)}")
    table = mix_files(sources, out, seed=seed, shuffle=shuffle, progress=progress)
    if report is not None:
        with atomic_write(report) as fh:
            table.to_csv(fh, index=False)
    typer.echo(table.to_string(index=False))


@app.command()
def survey(
    files: Annotated[list[Path], typer.Argument(help="LLaVA JSON / JSONL files.")],
    min_items: Annotated[int, typer.Option(help="Numbered lines needed to count as a list.")] = 2,
    max_item_words: Annotated[
        int, typer.Option(help="Median words per item of an item listing.")
    ] = 8,
    csv: Annotated[Path | None, typer.Option(help="Also write the table as CSV.")] = None,
) -> None:
    """Share of listing-style answers (numbered item lists) per file."""
    from somprobe.data.survey import check_thresholds, survey_file
    from somprobe.io import atomic_write

    if csv is not None:
        check_writable(csv)
    check_thresholds(min_items, max_item_words)
    table = pd.concat(
        [survey_file(f, min_items=min_items, max_item_words=max_item_words) for f in files],
        ignore_index=True,
    )
    if csv is not None:
        with atomic_write(csv) as fh:
            table.to_csv(fh, index=False)
    typer.echo(table.to_string(index=False))


@app.command()
def validate(
    file: Annotated[Path, typer.Argument(help="LLaVA JSON / JSONL file.")],
    image_root: Annotated[
        Path | None, typer.Option(help="Check every image exists under it.")
    ] = None,
) -> None:
    """Check a LLaVA file: format, <image> placement, unique ids, image files."""
    from somprobe.data.llava_json import validate_file

    s = validate_file(file, image_root=image_root)
    typer.echo(f"{file}: {s.records} valid records ({s.with_image} with images, {s.turns} turns)")


# `somprobe data toy OUT`: the toy world's dataset writer, defined with the toy world.
from somprobe.data.toyworld.__main__ import toy as _toy  # noqa: E402

app.command("toy")(_toy)


def main() -> None:
    """``python -m somprobe.data.cli ...``: as ``somprobe data ...``."""
    run(app)


__all__ = ["app", "main"]

if __name__ == "__main__":
    main()
