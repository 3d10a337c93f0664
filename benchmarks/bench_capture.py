"""Capture cost: the Recorder against plain generate, HF output_attentions, TransformerLens, nnsight.

Shape: the "llava-1.5-geometry" tiny LLaVA (336 px, 576 image tokens) with 4 text layers,
one image and a ~40-token question (618 prompt tokens), 32 new tokens forced by a logits
processor to a SoM-LLaVA-style listing (``--listing``), every layer and head captured,
at two text widths (256 with 8 heads, 1024 with 16 heads). Two modes: capture at every
generated token, and at tag tokens only (``digit_token_filter``).

Methods (all produce the same tokens; checked):

* ``plain SDPA generate`` — ``model.generate``, nothing captured (the baseline);
* ``somprobe Recorder`` — ``capture(backend="native")``: SDPA kept, selected rows only;
* ``eager + output_attentions`` — HF ``generate(output_attentions=True)`` on an eager copy;
  captured bytes = every attention tensor it returns;
* ``TransformerLens bridge, cache all`` — a ``TransformerBridge`` built once, hooks keep
  every layer's ``hook_pattern`` and ``hook_resid_post`` at every step (what
  ``run_with_cache`` keeps), generation by ``bridge.hf_generate``;
* ``nnsight, save all`` — ``NNsight`` over an eager copy, ``tracer.iter[:32]`` keeps every
  layer's attention weights and output at every step;
* ``somprobe nnsight backend`` / ``somprobe TransformerLens backend`` —
  ``capture(backend=...)``: the same rows as the Recorder (so the same captured bytes) but
  computed with eager attention inside those frameworks (the TL one builds its bridge and
  takes it down again on every call).

The four methods that capture everything do the same work in both modes; they are timed
once per width and shown in both tables.

Measures, per run, side by side in one process per width (repetitions interleaved, order
rotated, medians): wall time; peak memory = the rise of the process's peak resident set
(``VmHWM``, reset through ``/proc/self/clear_refs`` after ``gc`` and ``malloc_trim``) over
its resident set just before the run — it counts torch's CPU allocations, which
``tracemalloc`` does not see, and the captured data still held at the end; captured
bytes = the tensors a method hands back. Ratios are to plain SDPA generate.

Run: ``python benchmarks/bench_capture.py`` (10 repetitions, about 5 minutes on 2 quiet
cores); it prints the tables and writes ``benchmarks/results/bench_capture.md``; each
verdict also counts the paired repetitions in which the Recorder was faster. On a GPU add
``--device cuda`` (optionally ``--dtype bfloat16``): times then wait for the device, and peak
memory is the rise of the GPU's peak allocated memory.

The dataset-scale capture is measured by ``bench_capture_dataset.py``, and LLaVA-1.5-7B /
13B shapes by ``bench_capture_shapes.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _measure import measure, torch_calls

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

NEW_TOKENS = 32
QUESTION = (
    "List the items tagged in this image one by one, with their numbers, in order, please, "
    "and describe each of them briefly."
)
LISTINGS = {
    # SoM-LLaVA's listing answers name each tagged item with a short description
    "described": (
        "1. A man in a red jacket\n2. A brown dog on a leash\n3. A wooden bench\n"
        "4. A green trash can\n5. A street lamp\n6. A parked white car"
    ),
    # bare names: the most tag tokens per generated token
    "names": "1. person\n2. dog\n3. chair\n4. cup\n5. table\n6. lamp\n7. book\n8. plant\n9. clock",
}
CAPTURE_ALL = (
    "plain SDPA generate",
    "eager + output_attentions",
    "TransformerLens bridge, cache all",
    "nnsight, save all",
)
PER_MODE = ("somprobe Recorder", "somprobe nnsight backend", "somprobe TransformerLens backend")
PEERS = CAPTURE_ALL[1:] + PER_MODE[1:]
MODES = ("every generated token", "tag tokens only")


# -- the shared setting -------------------------------------------------------------------------
def bench_inputs(processor: Any, device: str, dtype: Any) -> dict[str, Any]:
    """One 640×480 image and :data:`QUESTION`, on ``device`` (pixels in ``dtype``)."""
    from PIL import Image

    from somprobe.models import build_prompt, prepare_inputs

    image = Image.new("RGB", (640, 480), (120, 80, 30))
    inputs = prepare_inputs(processor, [image], [build_prompt(processor, QUESTION)])
    return {
        k: v.to(device, dtype) if k == "pixel_values" else v.to(device) for k, v in inputs.items()
    }


def forced_generation(
    tokenizer: Any, prompt_length: int, listing: str, device: str
) -> tuple[dict[str, Any], list[int]]:
    """``generate`` options that make any model write :data:`LISTINGS` ``[listing]``.

    Returns the options (greedy, exactly :data:`NEW_TOKENS` new tokens, a logits processor
    that forces the listing's tokens whatever the random weights say) and the forced ids.
    """
    import torch
    from transformers import LogitsProcessor, LogitsProcessorList

    forced = tokenizer(LISTINGS[listing], add_special_tokens=False).input_ids[:NEW_TOKENS]
    if len(forced) < NEW_TOKENS:
        raise SystemExit(f"the {listing!r} listing has fewer than {NEW_TOKENS} tokens")

    class ForceListing(LogitsProcessor):
        def __init__(self) -> None:
            self.tokens = torch.tensor(forced, device=device)

        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
            token = self.tokens[input_ids.shape[1] - prompt_length]
            out = torch.full_like(scores, float("-inf"))
            out[:, token] = 0.0
            return out

    options = {
        "max_new_tokens": NEW_TOKENS,
        "min_new_tokens": NEW_TOKENS,
        "do_sample": False,
        "logits_processor": LogitsProcessorList([ForceListing()]),
    }
    return options, forced


# -- one width, in its own process --------------------------------------------------------------
def worker(
    width: int, heads: int, layers: int, reps: int, listing: str, device: str, dtype: str
) -> dict[str, Any]:
    import nnsight
    import torch

    from somprobe.capture import capture, digit_token_filter
    from somprobe.capture.tl_backend import build_bridge
    from somprobe.models import build_tiny_llava, load_model

    torch.manual_seed(0)
    folder = build_tiny_llava(
        tempfile.mkdtemp(prefix="bench-capture-"),
        preset="llava-1.5-geometry",
        text_width=width,
        text_heads=heads,
        text_layers=layers,
    )
    sdpa, processor = load_model(folder, dtype=dtype)
    eager, _ = load_model(folder, dtype=dtype, attn_implementation="eager")
    eager_nn, _ = load_model(folder, dtype=dtype, attn_implementation="eager")
    tl_model, _ = load_model(folder, dtype=dtype)
    for model in (sdpa, eager, eager_nn, tl_model):
        model.to(device)
    inputs = bench_inputs(processor, device, sdpa.dtype)
    prompt_length = int(inputs["input_ids"].shape[1])
    tokenizer = processor.tokenizer
    generation, forced = forced_generation(tokenizer, prompt_length, listing, device)
    digits = digit_token_filter(tokenizer)
    bridge = build_bridge(tl_model)  # built once, as a TransformerLens user would
    bridge.tokenizer = tokenizer  # hf_generate reads its EOS id
    nn_model = nnsight.NNsight(eager_nn)
    n_layers = sdpa.config.text_config.num_hidden_layers

    def tensor_bytes(tensors: Any) -> int:
        return sum(t.numel() * t.element_size() for t in tensors)

    def plain() -> tuple[Any, int]:
        with torch.no_grad():
            return sdpa.generate(**inputs, **generation), 0

    def eager_attentions() -> tuple[Any, int]:
        with torch.no_grad():
            out = eager.generate(
                **inputs, **generation, output_attentions=True, return_dict_in_generate=True
            )
        return out.sequences, tensor_bytes(a for step in out.attentions for a in step)

    def tl_cache_all() -> tuple[Any, int]:
        kept: list[torch.Tensor] = []

        def keep(tensor: torch.Tensor, hook: Any) -> None:
            kept.append(tensor.detach())

        hooks = [(f"blocks.{la}.attn.hook_pattern", keep) for la in range(n_layers)]
        hooks += [(f"blocks.{la}.hook_resid_post", keep) for la in range(n_layers)]
        extra = {k: v for k, v in generation.items() if k not in ("max_new_tokens", "do_sample")}
        with torch.no_grad(), bridge.hooks(fwd_hooks=hooks):
            sequences = bridge.hf_generate(
                inputs["input_ids"],
                max_new_tokens=NEW_TOKENS,
                do_sample=False,
                pixel_values=inputs["pixel_values"],
                attention_mask=inputs["attention_mask"],
                return_type="tokens",
                **extra,
            )
        return sequences, tensor_bytes(kept)

    def nnsight_save_all() -> tuple[Any, int]:
        kept: list[torch.Tensor] = []
        result: list[torch.Tensor] = []

        def generate(**kwargs: Any) -> Any:
            result.append(eager_nn.generate(**kwargs))
            return result[-1]

        layer_envoys = nn_model.model.language_model.layers
        with (
            torch.no_grad(),
            nn_model.trace(fn=generate, **inputs, **generation) as tracer,
        ):
            for _ in tracer.iter[:NEW_TOKENS]:
                for la in range(n_layers):
                    kept.append(layer_envoys[la].self_attn.output[1])
                    kept.append(layer_envoys[la].output)
        return result[0], tensor_bytes(kept)

    def somprobe_backend(backend: str, queries: Any) -> Callable[[], tuple[Any, int]]:
        def run() -> tuple[Any, int]:
            result = capture(sdpa, inputs, backend=backend, queries=queries, **generation)  # type: ignore[arg-type]
            return result.sequences, result.trace.nbytes()

        return run

    methods: dict[tuple[str, str], Callable[[], tuple[Any, int]]] = {
        ("all", CAPTURE_ALL[0]): plain,
        ("all", CAPTURE_ALL[1]): eager_attentions,
        ("all", CAPTURE_ALL[2]): tl_cache_all,
        ("all", CAPTURE_ALL[3]): nnsight_save_all,
    }
    for mode, queries in zip(MODES, ("generated", digits), strict=True):
        for name, backend in zip(PER_MODE, ("native", "nnsight", "transformer_lens"), strict=True):
            methods[(mode, name)] = somprobe_backend(backend, queries)

    reference = plain()[0].cpu()
    calls = {
        name: torch_calls(methods[key])
        for name, key in (
            ("plain", ("all", CAPTURE_ALL[0])),
            ("every", (MODES[0], PER_MODE[0])),
            ("tags", (MODES[1], PER_MODE[0])),
        )
    }
    order = list(methods)
    samples: dict[tuple[str, str], list[tuple[float, float]]] = {key: [] for key in order}
    nbytes: dict[tuple[str, str], int] = {}
    for key in order:  # warm-up; every method must write the same tokens
        sequences, nbytes[key] = methods[key]()
        if not torch.equal(sequences.cpu(), reference):
            raise SystemExit(f"{key[1]} generated different tokens")
    for rep in range(reps):
        shift = rep % len(order)
        for key in order[shift:] + order[:shift]:
            _, _, seconds, peak = measure(methods[key], device)
            samples[key].append((seconds, peak))
            print(f"  width {width} rep {rep}: {key[1]} [{key[0]}] {seconds:.2f} s", flush=True)
    fed = forced[: NEW_TOKENS - 1]  # the last generated token is never read
    if device.startswith("cuda"):
        where = f"{torch.cuda.get_device_name(device)}, {dtype}, torch {torch.__version__}"
        peak_what = "rise of the GPU's peak allocated memory over what was allocated before"
    else:
        where = f"CPU, {dtype}, torch threads {torch.get_num_threads()}"
        peak_what = "rise of the process's peak RSS over its RSS before the run"
    return {
        "where": where,
        "peak_what": peak_what,
        "width": width,
        "heads": heads,
        "layers": layers,
        "prompt_tokens": prompt_length,
        "image_tokens": int((inputs["input_ids"] == processor.image_token_id).sum()),
        "tag_rows": sum(digits(t) for t in fed),
        "forced_text": tokenizer.decode(forced),
        "torch_calls": calls,
        "rows": [
            {
                "mode": mode,
                "method": name,
                "seconds": statistics.median(s for s, _ in samples[(mode, name)]),
                "peak_bytes": statistics.median(p for _, p in samples[(mode, name)]),
                "captured_bytes": nbytes[(mode, name)],
                "rep_seconds": [s for s, _ in samples[(mode, name)]],
            }
            for mode, name in order
        ],
    }


# -- the report --------------------------------------------------------------------------------
def _mib(n: float) -> str:
    return "n/a" if n != n else f"{n / 2**20:.1f}"


def tables(results: list[dict[str, Any]]) -> tuple[str, list[str]]:
    lines: list[str] = []
    verdicts: list[str] = []
    for res in results:
        rows = {(r["mode"], r["method"]): r for r in res["rows"]}
        head = (
            f"text width {res['width']} ({res['heads']} heads, {res['layers']} layers), "
            f"{res['prompt_tokens']} prompt tokens of which {res['image_tokens']} image tokens, "
            f"{NEW_TOKENS} new tokens, {res['tag_rows']} tag-token rows in tag mode"
        )
        for mode in MODES:
            lines += ["", f"### {head} — capture at {mode}", ""]
            lines += [
                "| method | time (s) | × plain | peak memory (MiB) | × plain | captured (MiB) "
                "| ÷ output_attentions |",
                "|---|---:|---:|---:|---:|---:|---:|",
            ]

            def row(name: str, mode: str = mode, rows: dict[Any, Any] = rows) -> dict[str, Any]:
                return rows[("all", name)] if name in CAPTURE_ALL else rows[(mode, name)]

            base = row(CAPTURE_ALL[0])
            attn = row(CAPTURE_ALL[1])
            for name in (CAPTURE_ALL[0], PER_MODE[0], *PEERS):
                r = row(name)
                share = r["captured_bytes"] / attn["captured_bytes"]
                lines.append(
                    f"| {name} | {r['seconds']:.2f} | {r['seconds'] / base['seconds']:.2f} "
                    f"| {_mib(r['peak_bytes'])} | {r['peak_bytes'] / base['peak_bytes']:.2f} "
                    f"| {r['captured_bytes'] / 2**20:.2f} "
                    f"| {'—' if not r['captured_bytes'] else f'1/{1 / share:.0f}'} |"
                )
            rec = row(PER_MODE[0])
            for name in PEERS:
                peer = row(name)
                faster = rec["seconds"] < peer["seconds"]
                smaller = rec["peak_bytes"] < peer["peak_bytes"]
                pairs = list(zip(rec["rep_seconds"], peer["rep_seconds"], strict=True))
                wins = sum(a < b for a, b in pairs)
                verdicts.append(
                    f"width {res['width']}, {mode}: Recorder vs {name}: "
                    f"{'faster' if faster else 'NOT faster'} "
                    f"({rec['seconds']:.2f} vs {peer['seconds']:.2f} s; faster in {wins} of "
                    f"{len(pairs)} repetitions), "
                    f"{'smaller' if smaller else 'NOT smaller'} peak "
                    f"({_mib(rec['peak_bytes'])} vs {_mib(peer['peak_bytes'])} MiB), captured "
                    f"{rec['captured_bytes'] / 2**20:.2f} vs {peer['captured_bytes'] / 2**20:.2f} MiB"
                )
            plain_calls = res["torch_calls"]["plain"]
            rec_calls = res["torch_calls"]["every" if mode == MODES[0] else "tags"]
            verdicts.append(
                f"width {res['width']}, {mode}: torch operator calls per run (host side, "
                f"top level): plain {plain_calls}, Recorder {rec_calls} "
                f"({rec_calls / plain_calls - 1:+.0%})"
            )
            if res["width"] >= 1024:
                ratio = rec["seconds"] / base["seconds"]
                verdicts.append(
                    f"width {res['width']}, {mode}: Recorder time {ratio:.2f}× plain SDPA "
                    f"generate (target ≤ 1.15×): {'met' if ratio <= 1.15 else 'MISSED'}"
                )
            limit = 20 if mode == MODES[0] else 100
            share = rec["captured_bytes"] / attn["captured_bytes"]
            verdicts.append(
                f"width {res['width']}, {mode}: Recorder captured bytes 1/{1 / share:.1f} of "
                f"output_attentions (target ≤ 1/{limit}): {'met' if share <= 1 / limit else 'MISSED'}"
            )
    return "\n".join(lines), verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--listing", choices=sorted(LISTINGS), default="described")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bench_capture.md"))
    parser.add_argument("--device", default="cpu", help='"cpu" (default) or "cuda"')
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        heads = 8 if args.worker <= 256 else args.worker // 64
        result = worker(
            args.worker, heads, args.layers, args.reps, args.listing, args.device, args.dtype
        )
        args.json.write_text(json.dumps(result))
        return
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for width in args.widths:  # one process per width: models and memory start clean
            out = Path(tmp) / f"{width}.json"
            command = [sys.executable, __file__, "--worker", str(width), "--json", str(out)]
            command += ["--layers", str(args.layers), "--reps", str(args.reps)]
            command += ["--listing", args.listing, "--device", args.device, "--dtype", args.dtype]
            subprocess.run(command, check=True)
            results.append(json.loads(out.read_text()))
    body, verdicts = tables(results)
    forced = results[0]["forced_text"].replace("\n", "\\n")
    report = "\n".join(
        [
            "## Capture cost (benchmarks/bench_capture.py)",
            "",
            f"Forced answer ({NEW_TOKENS} tokens): `{forced}`. Medians of {args.reps} "
            f"interleaved repetitions; {results[0]['where']}. Peak memory: "
            f"{results[0]['peak_what']}. The capture-all methods do the "
            "same work in both modes and are measured once.",
            body,
            "",
            "### Targets",
            "",
            *[f"- {v}" for v in verdicts],
            "",
        ]
    )
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".md.tmp")
    tmp_out.write_text(report)
    os.replace(tmp_out, args.out)


if __name__ == "__main__":
    main()
