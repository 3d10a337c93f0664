"""Region scoring and tag-mention finding, measured side by side in one run.

1. ``score_maps`` on one mention at LLaVA-1.5-7B size (32 layers × 32 heads × 24×24
   patches) against a straightforward loop over (layer, head) that computes the same
   shares, top-k and pointing with numpy and the AUROC with
   ``sklearn.metrics.roc_auc_score``. Both give the same numbers (checked).
2. ``decode_with_offsets`` (windowed decoding) against the exact prefix-by-prefix decoding
   it falls back to, on a listing of ``--tokens`` tokens from a LLaMA-like tokenizer
   trained on the spot (no downloads).

Repetitions are interleaved and medians reported.

Run: ``python benchmarks/bench_align.py`` (about 30 seconds on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
from sklearn.metrics import roc_auc_score
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from somprobe.measure import mentions
from somprobe.measure.align import RegionMaps, score_maps


def loop_reference(att: np.ndarray, maps: RegionMaps, k: int, thr: float) -> dict[str, np.ndarray]:
    cover = maps.stack()
    target = cover[0] >= thr
    n_layer, n_head = att.shape[:2]
    out = {
        n: np.empty((n_layer, n_head))
        for n in ("image_share_object", "topk_hit", "pointing", "auroc")
    }
    for layer in range(n_layer):
        for head in range(n_head):
            a = att[layer, head].ravel()
            p = a / a.sum()
            out["image_share_object"][layer, head] = float(p @ cover[0])
            top = np.argsort(-a, kind="stable")[:k]
            out["topk_hit"][layer, head] = target[top].mean()
            out["pointing"][layer, head] = float(target[np.argmax(a)])
            out["auroc"][layer, head] = roc_auc_score(target, a)
    return out


def timeit(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_scores(reps: int) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    att = rng.dirichlet(np.ones(576), size=(32, 32)).reshape(32, 32, 24, 24)
    obj = np.zeros((24, 24))
    obj[5:12, 8:15] = 1.0
    obj[4, 8:15] = 0.4
    maps = RegionMaps.from_parts(object=obj, mark=np.zeros((24, 24)))
    fast = score_maps(att, maps, k=5, target="object")
    slow = loop_reference(att, maps, 5, 0.5)
    for name, ref in slow.items():
        np.testing.assert_allclose(fast[name], ref, rtol=1e-9, atol=1e-12)
    t_fast, t_slow = [], []
    for _ in range(reps):
        t_fast.append(timeit(lambda: score_maps(att, maps, k=5, target="object")))
        t_slow.append(timeit(lambda: loop_reference(att, maps, 5, 0.5)))
    return statistics.median(t_fast), statistics.median(t_slow)


def llama_like(corpus: list[str]) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Metaspace(), pre_tokenizers.Digits(individual_digits=True)]
    )
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>"]))
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")


def bench_decode(n_tokens: int, reps: int) -> tuple[float, float, int]:
    words = ["person", "red car", "dog on the grass", "table", "a small cup"]
    lines = [f"{i}. {words[i % len(words)]}" for i in range(1, 400)]
    tok = llama_like(lines)
    ids = tok.encode("\n".join(lines), add_special_tokens=False)[:n_tokens]
    full = mentions._decode(tok, ids)
    assert "".join(p for p, _, _ in mentions._pieces_windowed(tok, ids)) == full
    t_win, t_pre = [], []
    for _ in range(reps):
        t_win.append(timeit(lambda: mentions._pieces_windowed(tok, ids)))
        t_pre.append(timeit(lambda: mentions._pieces_prefix(tok, ids, full)))
    return statistics.median(t_win), statistics.median(t_pre), len(ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=2000)
    args = parser.parse_args()

    fast, slow = bench_scores(args.reps)
    win, pre, n = bench_decode(args.tokens, args.reps)
    print(f"{'task':<52} {'somprobe (s)':>12} {'reference (s)':>14} {'speed-up':>9}")
    print(
        f"{'score_maps 32x32 heads x 576 patches vs loop+sklearn':<52} "
        f"{fast:>12.4f} {slow:>14.4f} {slow / fast:>8.1f}x"
    )
    print(
        f"{f'char->token map, {n} tokens: windowed vs prefix':<52} "
        f"{win:>12.4f} {pre:>14.4f} {pre / win:>8.1f}x"
    )


if __name__ == "__main__":
    main()
