"""Peak memory and time of mixing LLaVA-style instruction files.

Generates a base file of N records (LLaVA-1.5-like sizes, ~2 KB each: the 665k mix is
~1 GB) plus SoM listing (10k) and tag-QA (20k) files, then mixes them in a fresh
subprocess per run and reads that process's peak resident memory (``ru_maxrss``).

Compared side by side (interleaved repetitions, medians) on a smaller file: somprobe's
streaming ``mix_files`` against the obvious in-memory way (``json.load`` everything,
``random.shuffle``, ``json.dump``). The large file is mixed by ``mix_files`` only, and
its peak must stay under 1 GiB.

Run:
    .venv/bin/python benchmarks/bench_data_mix.py            # 1M records
    .venv/bin/python benchmarks/bench_data_mix.py --records 200000 --small 50000
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

GIB = 1 << 30

_TEXT = (
    "the a cat dog person table red blue small large image shows on in with near left right "
    "of and is are two three wooden metal sitting standing holding looking street room"
)


def generate(path: Path, n: int, prefix: str, seed: int) -> None:
    """Write ``n`` LLaVA-like records (~2 KB each) as a JSON array, streaming."""
    rng = np.random.default_rng(seed)
    vocab = np.array(_TEXT.split())
    # pre-make a pool of answers, then pick: keeps generation to tens of seconds
    pool = [" ".join(vocab[rng.integers(len(vocab), size=int(k))]) for k in
            rng.integers(60, 260, size=2000)]  # fmt: skip
    picks = rng.integers(len(pool), size=(n, 2))
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("[")
        for i in range(n):
            rec = {
                "id": f"{prefix}{i:09d}",
                "image": f"coco/train2017/{i:012d}.jpg",
                "conversations": [
                    {"from": "human", "value": "<image>\n" + pool[picks[i, 0]][:120] + "?"},
                    {"from": "gpt", "value": pool[picks[i, 1]]},
                    {"from": "human", "value": "And what else?"},
                    {"from": "gpt", "value": pool[picks[i, 0]]},
                ],
            }
            fh.write(("\n" if i == 0 else ",\n") + json.dumps(rec))
        fh.write("\n]\n")


_STREAM = """
import resource, sys, time
from somprobe.data.mix import MixSource, mix_files
t = time.perf_counter()
base, listing, qa, out = sys.argv[1:5]
mix_files([MixSource("llava", base), MixSource("listing", listing, 10000),
           MixSource("qa", qa, 20000)], out, seed=0)
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""

_NAIVE = """
import json, random, resource, sys, time
t = time.perf_counter()
base, listing, qa, out = sys.argv[1:5]
rng = random.Random(0)
data = json.load(open(base))
data += rng.sample(json.load(open(listing)), 10000)
data += rng.sample(json.load(open(qa)), 20000)
rng.shuffle(data)
json.dump(data, open(out, "w"))
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def run(code: str, files: list[Path]) -> tuple[float, int]:
    """Wall seconds (inside the child) and peak RSS bytes of one mix in a fresh process."""
    out = subprocess.run(
        [sys.executable, "-c", code, *map(str, files)], check=True, capture_output=True, text=True
    ).stdout.split()
    return float(out[0]), int(out[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="large base file size")
    parser.add_argument("--small", type=int, default=200_000, help="side-by-side file size")
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-mix-") as tmp:
        d = Path(tmp)
        t = time.perf_counter()
        generate(d / "listing.json", 10_000, "som_listing_", 1)
        generate(d / "qa.json", 20_000, "som_qa_", 2)
        generate(d / "small.json", args.small, "base_", 3)
        generate(d / "large.json", args.records, "base_", 4)
        print(f"generated inputs in {time.perf_counter() - t:.0f} s")
        mb = {k: (d / f"{k}.json").stat().st_size / 1e6 for k in ("small", "large")}

        results: dict[str, list[tuple[float, int]]] = {"stream": [], "naive": []}
        for _ in range(args.reps):  # interleaved
            for name, code in (("stream", _STREAM), ("naive", _NAIVE)):
                files = [d / "small.json", d / "listing.json", d / "qa.json", d / "o.json"]
                results[name].append(run(code, files))
        large = run(_STREAM, [d / "large.json", d / "listing.json", d / "qa.json", d / "o.json"])
        out_mb = (d / "o.json").stat().st_size / 1e6

    def med(rows: list[tuple[float, int]], k: int) -> float:
        return statistics.median(r[k] for r in rows)

    print()
    print("| base records | input MB | method | peak RSS MiB | wall s |")
    print("|---:|---:|---|---:|---:|")
    for name in ("stream", "naive"):
        rss = med(results[name], 1) / 2**20
        print(f"| {args.small:,} | {mb['small']:.0f} | {name} (median of {args.reps}) | "
              f"{rss:.0f} | {med(results[name], 0):.1f} |")  # fmt: skip
    print(f"| {args.records:,} | {mb['large']:.0f} | stream | {large[1] / 2**20:.0f} | "
          f"{large[0]:.1f} |")  # fmt: skip
    ratio_rss = med(results["naive"], 1) / med(results["stream"], 1)
    ratio_t = med(results["naive"], 0) / med(results["stream"], 0)
    print()
    print(
        f"naive / stream at {args.small:,} records: peak RSS x{ratio_rss:.1f}, time x{ratio_t:.2f}"
    )
    print(f"output of the large mix: {out_mb:.0f} MB ({args.records + 30_000:,} records)")
    verdict = "PASS" if large[1] < GIB else "FAIL"
    print(f"{verdict}: peak RSS {large[1] / 2**20:.0f} MiB for {args.records:,} records "
          f"(limit 1024 MiB)")  # fmt: skip


if __name__ == "__main__":
    main()
