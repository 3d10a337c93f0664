"""Atomic writes into a crowded folder: listing it once per process vs at every write.

The toy-world writer puts tens of thousands of PNGs into one folder through
``somprobe.io.atomic_path``. That used to look for killed writers' temporaries by
listing the whole folder at every write, so writing N files cost O(N²) (the 10,000-scene
eval split slowed from 30 to 13 scenes/s). It now lists a folder once per process.

Both ways write the same ``--files`` small files into a folder already holding
``--existing`` files: the current ``atomic_write``, and the same write preceded by the
per-write listing it replaced (``remove_stale`` of the destination's temporaries).
Repetitions are interleaved; medians reported.

Run: ``python benchmarks/bench_atomic_writes.py`` (about a minute on 2 cores, nearly all of
it the old way; ``--existing 20000 --files 1000`` about 6 minutes).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from somprobe.io import atomic_write, remove_stale


def fill(folder: Path, count: int) -> None:
    folder.mkdir(parents=True)
    for i in range(count):
        (folder / f"existing_{i:06d}.png").write_bytes(b"x")


def write_listing_once(folder: Path, files: int) -> None:
    for i in range(files):
        with atomic_write(folder / f"new_{i:06d}.png", "wb") as fh:
            fh.write(b"y" * 200)


def write_listing_each_time(folder: Path, files: int) -> None:
    for i in range(files):
        target = folder / f"new_{i:06d}.png"
        remove_stale(folder, f".{target.name}.", ".tmp")  # what every write used to do
        with atomic_write(target, "wb") as fh:
            fh.write(b"y" * 200)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--existing", type=int, default=10_000)
    p.add_argument("--files", type=int, default=500)
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args()
    times: dict[str, list[float]] = {"once": [], "each": []}
    root = Path(tempfile.mkdtemp(prefix="bench-atomic-"))
    try:
        for rep in range(args.reps):
            for name, fn in (("once", write_listing_once), ("each", write_listing_each_time)):
                folder = root / f"{name}{rep}"
                fill(folder, args.existing)
                t0 = time.perf_counter()
                fn(folder, args.files)
                times[name].append(time.perf_counter() - t0)
                assert len(list(folder.glob("new_*.png"))) == args.files
                shutil.rmtree(folder)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    once, each = (statistics.median(times[k]) for k in ("once", "each"))
    print(f"{args.files} writes into a folder of {args.existing} files, median of {args.reps}:")
    print(f"  listed once per process: {once:.3f} s ({args.files / once:.0f} files/s)")
    print(f"  listed at every write:   {each:.3f} s ({args.files / each:.0f} files/s)")
    print(f"  speed-up: {each / once:.1f}x")


if __name__ == "__main__":
    main()
