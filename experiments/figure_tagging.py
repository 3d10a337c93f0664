"""Figure: Set-of-Mark tags on a real photo with weight-free superpixel regions.

Tags scikit-image's astronaut photo (512×512, shipped with scikit-image, no download)
with Felzenszwalb superpixels, twice: SoM-LLaVA's style (numbers, white on a black box,
smallest region first) and the original SoM's letter + mask style (letters, filled and
outlined masks). Writes the two side by side to ``figures/tagging_astronaut.png``.

Run: ``python experiments/figure_tagging.py [--out figures]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import _common as common
from PIL import Image
from skimage import data

from somprobe.io import atomic_path
from somprobe.tagging import tag_regions
from somprobe.tagging.regions import from_superpixels


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
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
    with atomic_path(out / "tagging_astronaut.png") as tmp:
        both.save(tmp, format="PNG", optimize=True)
    print(
        f"{len(regions)} regions → {len(numbers.tagset)} tags "
        f"({len(numbers.tagset.skipped)} skipped), font {numbers.tagset.options['font_size']} px"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=common.ROOT / "figures")
    main(parser.parse_args().out)
