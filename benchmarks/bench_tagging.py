"""Speed of Set-of-Mark tagging against the unavoidable I/O of one image.

Tags a 640×480 photo (scikit-image's coffee, resized) with 20 regions and compares, in
one run with interleaved repetitions, the median (and minimum) time of:

* ``io``: decoding the JPEG and encoding the result again (quality 90), the I/O every
  tagging job pays anyway;
* ``tag``: ``tag_regions`` alone, SoM-LLaVA defaults (numbers, mark only);
* ``tag+io``: decode, tag, encode: the whole per-image job;
* ``tag mask``: ``tag_regions`` with letters, fill, outline and marks;
* ``tag, centres given``: ``tag`` with each mark centre passed in (``centers=``), i.e.
  everything but the placement: overlap removal, the per-tag masks, drawing;
* ``edt only``: just the exact mark placement (``mark_position`` on each remaining mask:
  scipy's distance transform of 8×8 blocks, then exact distances of the few pixels that
  can still be the farthest), to show where the time goes.

Two region sets: 20 disjoint SLIC superpixels, and 20 overlapping ellipses (so overlap
removal and skipping do real work). Prints one table of medians, minima and ratios to
``io``. With ``--reference`` it also times ``tag`` and ``edt only`` with the plain
placement (scipy's distance transform of every remaining mask's whole box, the earlier
implementation, same marks), so the speed-up is measured side by side.

With ``--opencv`` (needs ``pip install opencv-python-headless``, not a somprobe
dependency) it also times ``edt only`` with OpenCV's exact distance transform
(``cv2.distanceTransform``, ``DIST_L2``, ``DIST_MASK_PRECISE``, one thread) of each padded
box, the transform SoM's own code uses, and checks that it gives the same marks: a
compiled transform of each box is the alternative to the bounds used here.

``--clock cpu`` times with the process's CPU time instead of the wall clock, for a machine
busy with other work (it leaves out the waits for a core, not the slow-down of shared
caches).

Run: ``python benchmarks/bench_tagging.py [--reps 30] [--reference] [--opencv] [--clock cpu]``
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Callable

import numpy as np
from PIL import Image
from skimage import data, draw, segmentation

from somprobe.tagging import mark_position, tag_regions
from somprobe.tagging import place as placement
from somprobe.tagging.regions import Region, from_label_image
from somprobe.tagging.regions.base import mask_bbox

W, H, N = 640, 480, 20


def photo_jpeg() -> bytes:
    image = Image.fromarray(data.coffee()).resize((W, H), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def superpixel_regions(pixels: np.ndarray) -> list[Region]:
    for n_segments in range(N, 3 * N):
        labels = segmentation.slic(pixels, n_segments=n_segments, start_label=1)
        regions = from_label_image(labels, background=None)
        if len(regions) >= N:
            return regions[:N]
    raise RuntimeError("SLIC did not give 20 segments")


def ellipse_regions(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    masks = []
    for _ in range(N):
        m = np.zeros((H, W), dtype=bool)
        r, c = rng.integers(0, H), rng.integers(0, W)
        rr, cc = draw.ellipse(r, c, rng.integers(10, 150), rng.integers(10, 200), shape=(H, W))
        m[rr, cc] = True
        masks.append(m)
    return masks


def decode(jpeg: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(jpeg))
    image.load()
    return image


def encode(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def dense_placement(fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` run with the plain placement: the distance transform of each whole box."""

    def run() -> object:
        fast = placement._farthest_pixel
        placement._farthest_pixel = placement._farthest_pixel_dense
        try:
            return fn()
        finally:
            placement._farthest_pixel = fast

    return run


def opencv_placement(masks: list[np.ndarray]) -> Callable[[], object]:
    """:func:`mark_position` of each mask computed with OpenCV's exact distance transform."""
    import cv2  # optional: only with --opencv

    cv2.setNumThreads(1)

    def run() -> list[tuple[int, int]]:
        out = []
        for mask in masks:
            x0, y0, x1, y1 = mask_bbox(mask) or (0, 0, 0, 0)
            padded = np.pad(mask[y0:y1, x0:x1].view(np.uint8), 1)
            dist = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
            ties = np.flatnonzero(dist == dist.max())
            row, col = divmod(int(ties[ties.size // 2]), x1 - x0)
            out.append((x0 + col, y0 + row))
        return out

    return run


def main(reps: int, reference: bool, clock: str = "wall", opencv: bool = False) -> None:
    jpeg = photo_jpeg()
    pixels = np.asarray(decode(jpeg))
    region_sets = {"superpixels": superpixel_regions(pixels), "ellipses": ellipse_regions()}
    cases: dict[str, Callable[[], object]] = {"io": lambda: encode(decode(jpeg))}
    for name, regions in region_sets.items():
        cases[f"tag ({name})"] = lambda r=regions: tag_regions(pixels, r)
        cases[f"tag+io ({name})"] = lambda r=regions: encode(tag_regions(decode(jpeg), r).image)
        cases[f"tag mask ({name})"] = lambda r=regions: tag_regions(
            pixels, r, label_mode="letter", draw=("fill", "outline", "mark")
        )
        tagset = tag_regions(pixels, regions).tagset
        given: list[tuple[float, float] | None] = [None] * len(regions)
        for tag in tagset:
            given[tag.source_index or 0] = tag.center
        # everything but the placement: the same tags with their centres passed in
        cases[f"tag, centres given ({name})"] = lambda r=regions, c=given: tag_regions(
            pixels, r, centers=c
        )
    for name, regions in region_sets.items():
        remaining = [t.mask for t in tag_regions(pixels, regions).tagset]
        cases[f"edt only ({name})"] = lambda ms=remaining: [mark_position(m) for m in ms]
        if reference:
            same = [mark_position(m) for m in remaining]
            plain = dense_placement(lambda ms=remaining: [mark_position(m) for m in ms])()
            assert same == plain, "fast and plain placement disagree"
            cases[f"tag, plain edt ({name})"] = dense_placement(cases[f"tag ({name})"])
            cases[f"edt only, plain ({name})"] = dense_placement(cases[f"edt only ({name})"])
        if opencv:
            cases[f"edt only, OpenCV ({name})"] = opencv_placement(remaining)
            same = cases[f"edt only, OpenCV ({name})"]() == [mark_position(m) for m in remaining]
            assert same, "OpenCV and somprobe placement disagree"
    times: dict[str, list[float]] = {k: [] for k in cases}
    for fn in cases.values():  # warm up: fonts, imports, caches
        fn()
    now = time.process_time if clock == "cpu" else time.perf_counter
    for _ in range(reps):
        for name, fn in cases.items():
            t0 = now()
            fn()
            times[name].append(now() - t0)
    base = statistics.median(times["io"])
    base_min = min(times["io"])
    print(f"640×480 photo, {N} regions, {reps} interleaved repetitions, {clock} clock")
    print(f"{'case':<34} {'median ms':>10} {'ratio to io':>12} {'min ms':>8} {'min ratio':>10}")
    for name, ts in times.items():
        med, low = statistics.median(ts), min(ts)
        ratios = f"{med / base:>12.2f} {low * 1e3:>8.2f} {low / base_min:>10.2f}"
        print(f"{name:<34} {med * 1e3:>10.2f} {ratios}")
    tags = {k: len(tag_regions(pixels, r).tagset) for k, r in region_sets.items()}
    print(f"tags drawn: {tags}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument(
        "--reference", action="store_true", help="also time the plain (earlier) placement"
    )
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="cpu: process CPU time, for a machine busy with other work",
    )
    parser.add_argument(
        "--opencv", action="store_true", help="also time OpenCV's distance transform per box"
    )
    args = parser.parse_args()
    main(args.reps, args.reference, args.clock, args.opencv)
