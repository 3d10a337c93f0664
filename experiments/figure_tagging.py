"""Figure: Set-of-Mark tags on a real photo with weight-free superpixel regions.

Tags scikit-image's astronaut photo (512×512, shipped with scikit-image, no download)
with Felzenszwalb superpixels, twice: SoM-LLaVA's style (numbers, white on a black box,
smallest region first) and the original SoM's letter + mask style (letters, filled and
outlined masks). Writes the two side by side to ``tagging_astronaut.png`` in
``--figures`` (default ``results/figure_tagging/figures`` under the current folder;
``--figures figures`` from the repository root regenerates the shipped figure).

Run: ``python experiments/figure_tagging.py [--figures figures]``
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import _common as common
from PIL import Image
from skimage import data

from somprobe.io import atomic_path
from somprobe.tagging import tag_regions
from somprobe.tagging.regions import from_superpixels

JOB = "figure_tagging"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_output_args(parser, JOB)
    return common.resolve_outputs(parser.parse_args(argv), JOB)


def run(args: argparse.Namespace) -> int:
    common.check_folder(args.figures, "--figures")
    image = data.astronaut()
    regions = from_superpixels(image, method="felzenszwalb", scale=400, min_size=1500)
    numbers = tag_regions(image, regions)
    letters = tag_regions(
        image, regions, label_mode="letter", draw=("fill", "outline", "mark"), fill_alpha=0.45
    )
    w, h = numbers.image.size
    gap = 8
    both = Image.new("RGB", (2 * w + gap, h), "white")
    both.paste(numbers.image, (0, 0))
    both.paste(letters.image, (w + gap, 0))
    path = args.figures / "tagging_astronaut.png"
    with atomic_path(path) as tmp:
        both.save(tmp, format="PNG", optimize=True)
    print(
        f"{len(regions)} regions → {len(numbers.tagset)} tags "
        f"({len(numbers.tagset.skipped)} skipped), font {numbers.tagset.options['font_size']} px"
        f"; wrote {path}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return common.run_job(run, parse_args(argv), JOB)


if __name__ == "__main__":
    raise SystemExit(main())
