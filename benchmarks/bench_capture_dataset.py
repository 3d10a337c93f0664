"""Dataset-scale capture: images/s, peak memory and time against the record count.

``capture_dataset`` teacher-forces a toy eval split's listings (tagged 336 px images, the
"llava-1.5-geometry" tiny LLaVA: 576 image tokens, ``--width`` wide, ``--layers`` deep)
and writes every layer and head at the tag-digit tokens to a sharded trace store. For
each record count N (default 100, 1,000, 10,000) a fresh process, so no count inherits
another's memory:

* **capture**: wall time, images/s, the resident set just before, the peak resident set
  during the capture (``VmHWM`` reset right before it, so the inputs' preparation is not
  counted), the resident set sampled every half second (thinned), the store's size;
* **baselines** (counts up to ``--baseline-max``, default 1,000), the same records in the
  same batches, nothing captured or written: *plain batched forward* (images loaded, the
  same teacher-forced prompt + answer, one forward pass: the capture's work without the
  capture) and *plain batched generate* (the question only, greedy, as many new tokens as
  the batch's longest answer: what a user would run to get the answers).

The data (model + eval split of the largest N) is written once into ``--data`` (default:
a temporary folder) before any timing; pass a folder to reuse it.

Run: ``python benchmarks/bench_capture_dataset.py`` (about 40 minutes on 2 quiet cores,
most of it the 10,000-record capture); writes ``benchmarks/results/bench_capture_dataset.md``
and a ``.json`` beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _measure import RssSampler, load_average, reset_peak_rss, settle, status_kib, write_report

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

FLAT = 0.10  # peak RSS may grow at most this much from 1,000 to 10,000 records
MIN_THROUGHPUT = 0.9  # capture images/s ≥ this × plain batched generate's


def prepare(data: Path, scenes: int, width: int, layers: int) -> None:
    """The tiny model and an eval split of ``scenes`` scenes, unless already there."""
    import torch

    from somprobe.data.toyworld.dataset import write_eval_split
    from somprobe.data.toyworld.scenes import WorldConfig
    from somprobe.models import build_tiny_llava

    model = data / f"model-w{width}-l{layers}"
    if not (model / "config.json").is_file():
        torch.manual_seed(0)
        heads = 8 if width <= 256 else width // 64
        build_tiny_llava(
            model, preset="llava-1.5-geometry", text_width=width, text_heads=heads,
            text_layers=layers,
        )  # fmt: skip
    done = data / "toy" / f"eval-{scenes}.done"
    if not done.is_file():
        shutil.rmtree(data / "toy", ignore_errors=True)
        print(f"writing {scenes} eval scenes into {data / 'toy'}", flush=True)
        write_eval_split(data / "toy" / "eval", WorldConfig(image_size=336), scenes)
        done.write_text("")


def _batches(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def worker(args: argparse.Namespace, n: int) -> dict[str, Any]:
    """Baselines (small N) and the capture of the first ``n`` records, in this process."""
    import torch

    from somprobe.capture import capture_dataset, toy_eval_items
    from somprobe.models import build_prompt, load_model, prepare_inputs

    model, processor = load_model(args.data / f"model-w{args.width}-l{args.layers}")
    items = list(toy_eval_items(args.data / "toy"))
    if len(items) < n:
        raise SystemExit(f"the split holds {len(items)} records, fewer than {n}")
    items = items[:n]
    result: dict[str, Any] = {"records": n, "width": args.width, "layers": args.layers}
    result["threads"] = torch.get_num_threads()

    def plain_forward() -> None:
        for batch in _batches(items, args.batch_size):
            images = [it.load_image() for it in batch]
            prompts = [build_prompt(processor, it.question, answer=it.answer) for it in batch]
            with torch.no_grad():
                model(**prepare_inputs(processor, images, prompts), use_cache=False)

    def plain_generate() -> None:
        tokenizer = processor.tokenizer
        for batch in _batches(items, args.batch_size):
            images = [it.load_image() for it in batch]
            prompts = [build_prompt(processor, it.question) for it in batch]
            new = max(len(tokenizer(it.answer, add_special_tokens=False).input_ids) for it in batch)
            with torch.no_grad():
                model.generate(
                    **prepare_inputs(processor, images, prompts), max_new_tokens=new,
                    min_new_tokens=new, do_sample=False,
                )  # fmt: skip

    if n <= args.baseline_max:
        for name, fn in (("plain_forward", plain_forward), ("plain_generate", plain_generate)):
            settle()
            start = time.perf_counter()
            fn()
            result[f"{name}_s"] = round(time.perf_counter() - start, 2)
            print(f"  {n} records: {name} {result[f'{name}_s']} s", flush=True)
    store_dir = Path(tempfile.mkdtemp(prefix="bench-store-", dir=args.data))
    try:
        settle()
        before = status_kib("VmRSS") / 1024
        peaked = reset_peak_rss()
        load = load_average()
        start, wall_start = time.perf_counter(), time.time()
        with RssSampler(0.5) as rss:
            store = capture_dataset(
                model, processor, items, store_dir, batch_size=args.batch_size,
                shard_size=args.shard_size, queries="digits", progress=False,
            )  # fmt: skip
        seconds = time.perf_counter() - start
        assert store is not None
        size = sum(p.stat().st_size for p in store_dir.rglob("*") if p.is_file())
        first, last = shard_seconds(store_dir, wall_start, args.shard_size, n)
        result.update(
            capture_s=round(seconds, 2),
            images_per_s=round(n / seconds, 2),
            rss_before_mib=round(before, 1),
            peak_rss_mib=round(status_kib("VmHWM") / 1024, 1) if peaked else float("nan"),
            rss_samples_mib=rss.thinned(),
            store_mib=round(size / 2**20, 2),
            captured_tokens=int(store.index["n_queries"].sum()),
            load_average=round((load + load_average()) / 2, 2),
            shard_s_first_tenth=first,
            shard_s_last_tenth=last,
        )
    finally:
        shutil.rmtree(store_dir, ignore_errors=True)
    print(f"  {n} records: capture {result['capture_s']} s", flush=True)
    return result


def shard_seconds(store: Path, start: float, shard_size: int, n: int) -> tuple[float, float]:
    """Median seconds per full shard in the first and the last tenth of one run.

    A shard is done when its index part is written, so the gaps between the parts'
    modification times are the shards' durations; comparing the run's two ends shows
    whether the cost of a record grows with the store, free of the run-to-run speed of
    the machine. The first shard (model warm-up) and a last, partial shard are left out.
    """
    done = sorted(p.stat().st_mtime for p in (store / "shards").glob("*.index.parquet"))
    gaps = np.diff(np.asarray([start, *done]))[1 : n // shard_size]
    if len(gaps) < 2:
        return float("nan"), float("nan")
    tenth = max(1, len(gaps) // 10)
    return round(float(np.median(gaps[:tenth])), 2), round(float(np.median(gaps[-tenth:])), 2)


def report(results: list[dict[str, Any]]) -> tuple[str, list[str]]:
    """The markdown table and the target verdicts."""
    lines = [
        "| records | capture (s) | images/s | s per 1,000 | RSS before (MiB) | peak RSS (MiB) "
        "| store (MiB) | plain forward (s) | plain generate (s) | capture ÷ forward "
        "throughput | capture ÷ generate throughput | load |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        fwd, gen = r.get("plain_forward_s"), r.get("plain_generate_s")
        cap = r["capture_s"]
        lines.append(
            f"| {r['records']:,} | {r['capture_s']} | {r['images_per_s']} "
            f"| {1000 * r['capture_s'] / r['records']:.1f} | {r['rss_before_mib']} "
            f"| {r['peak_rss_mib']} | {r['store_mib']} | {fwd or '—'} | {gen or '—'} "
            f"| {f'{fwd / cap:.3f}' if fwd else '—'} "
            f"| {f'{gen / cap:.3f}' if gen else '—'} | {r['load_average']} |"
        )
    lines += [
        "",
        "Seconds per shard within each run (median of the first and the last tenth "
        "of its shards; the first shard and a partial last one left out):",
        "",
    ]
    lines += [
        f"- {r['records']:,} records: {r.get('shard_s_first_tenth')} → "
        f"{r.get('shard_s_last_tenth')} s"
        for r in results
    ]
    lines += ["", "Resident set during each capture (MiB, sampled every 0.5 s, thinned):", ""]
    lines += [f"- {r['records']:,} records: {r['rss_samples_mib']}" for r in results]
    by_n = {r["records"]: r for r in results}
    verdicts: list[str] = []
    counts = sorted(by_n)
    if len(counts) >= 2:
        small, large = by_n[counts[-2]], by_n[counts[-1]]
        growth = large["peak_rss_mib"] / small["peak_rss_mib"] - 1
        verdicts.append(
            f"peak RSS from {small['records']:,} to {large['records']:,} records: "
            f"{small['peak_rss_mib']} → {large['peak_rss_mib']} MiB ({growth:+.1%}; target "
            f"within {FLAT:.0%}): {'met' if abs(growth) <= FLAT else 'MISSED'}"
        )
        per = [1000 * by_n[c]["capture_s"] / c for c in counts]
        spread = max(per) / min(per) - 1
        verdicts.append(
            "time per 1,000 records at "
            + ", ".join(f"{c:,}: {p:.1f} s" for c, p in zip(counts, per, strict=True))
            + f" (largest / smallest {spread:+.1%}; linear within 10%: "
            + f"{'met' if spread <= 0.10 else 'MISSED'})"
        )
    largest = by_n[counts[-1]]
    ends = largest.get("shard_s_first_tenth"), largest.get("shard_s_last_tenth")
    if all(isinstance(v, float) and v == v for v in ends):
        drift = ends[1] / ends[0] - 1
        verdicts.append(
            f"within the {largest['records']:,}-record run: {ends[0]} s per shard in its first "
            f"tenth, {ends[1]} s in its last ({drift:+.1%}; linear within 10%: "
            f"{'met' if abs(drift) <= 0.10 else 'MISSED'})"
        )
    for r in results:
        if r.get("plain_generate_s"):
            ratio = r["plain_generate_s"] / r["capture_s"]
            verdicts.append(
                f"{r['records']:,} records: capture throughput {ratio:.3f}× plain batched "
                f"generate (target ≥ {MIN_THROUGHPUT}): "
                f"{'met' if ratio >= MIN_THROUGHPUT else 'MISSED'}; "
                f"{r['plain_forward_s'] / r['capture_s']:.3f}× a plain batched forward of "
                "the same teacher-forced inputs (no target; the stricter comparison)"
            )
    return "\n".join(lines), verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--shard-size", type=int, default=64)
    parser.add_argument("--baseline-max", type=int, default=1000)
    parser.add_argument("--data", type=Path, help="folder for the model and split (reused)")
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/bench_capture_dataset.md")
    )
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.json.write_text(json.dumps(worker(args, args.worker)))
        return
    own = args.data is None
    args.data = Path(tempfile.mkdtemp(prefix="bench-dataset-")) if own else args.data
    try:
        args.data.mkdir(parents=True, exist_ok=True)
        prepare(args.data, max(args.records), args.width, args.layers)
        results = []
        for n in sorted(args.records):
            out = args.data / f"result-{n}.json"
            command = [sys.executable, __file__, "--worker", str(n), "--json", str(out)]
            command += ["--data", str(args.data), "--width", str(args.width)]
            command += ["--layers", str(args.layers), "--batch-size", str(args.batch_size)]
            command += ["--shard-size", str(args.shard_size)]
            command += ["--baseline-max", str(args.baseline_max)]
            subprocess.run(command, check=True)
            results.append(json.loads(out.read_text()))
    finally:
        if own:
            shutil.rmtree(args.data, ignore_errors=True)
    body, verdicts = report(results)
    write_report(
        args.out,
        "Dataset-scale capture (benchmarks/bench_capture_dataset.py)",
        (
            f"Toy eval listings, tag-digit tokens, every layer and head, tiny LLaVA with "
            f"LLaVA-1.5 geometry (576 image tokens), text width {args.width}, {args.layers} "
            f"layers, CPU, torch threads {results[0]['threads']}; batch {args.batch_size}, "
            f"shard {args.shard_size}. Each count in a fresh process."
        ),
        body,
        verdicts,
        results,
    )


if __name__ == "__main__":
    main()
