"""Batched per-layer logistic probes vs scikit-learn, side by side in one run.

Synthetic hidden states (default 33 layers × 10,000 samples × 4096 dims, 80 classes,
stored as float16: 2.7 GB) with a linear class signal that rises and falls over the
layers, a shared low-rank component and Gaussian noise. Both sides get the same float16
features, the same 80/20 split and the same L2 strength (``C = 1 / (lam * n_train)``),
and both include standardisation and the dtype conversion in their time.

* batched: :func:`somprobe.probes.fit_logistic` for all layers, ``--chunk`` layers per
  batched fit (float32, full-batch L-BFGS).
* scikit-learn: ``StandardScaler`` + ``LogisticRegression`` (lbfgs, float64), one layer at
  a time, on the ``--sk-layers`` subset (timing all 33 takes too long on a small machine).

Runs are interleaved (each batched chunk, then scikit-learn on that chunk's layers) and
medians over ``--reps`` reported;
peak memory is the largest resident-set increase seen during each side's run.

Run: ``python benchmarks/bench_probes.py`` (about 15 minutes on 2 cores) or e.g.
``python benchmarks/bench_probes.py --layers 4 --dim 1024 --samples 4000 --sk-layers 1,3``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
import warnings
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import psutil
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from somprobe.probes import fit_logistic, predict_logits


def make_features(
    layers: int, n: int, d: int, classes: int, seed: int
) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """float16 features [layer, n, d], labels, and the per-layer signal strength."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    means = torch.randn(classes, d, generator=g)
    shared = torch.randn(n, 16, generator=g)
    phase = np.linspace(0.0, 1.0, layers)
    signal = np.where(phase < 0.15, 0.0, 0.12 * np.sin(np.pi * phase))  # none in early layers
    feats = torch.empty(layers, n, d, dtype=torch.float16)
    for layer in range(layers):
        mix = torch.randn(16, d, generator=g)
        x = torch.randn(n, d, generator=g)
        x += shared @ mix
        x += float(signal[layer]) * means[y]
        feats[layer] = x.to(torch.float16)
    return feats, y.numpy(), signal


class PeakRss:
    """Largest resident-set size increase (bytes) while the block runs."""

    def __init__(self) -> None:
        self.proc = psutil.Process(os.getpid())
        self.peak = 0

    def __enter__(self) -> PeakRss:
        self.base = self.proc.memory_info().rss
        self.stop = False
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()
        return self

    def _poll(self) -> None:
        while not self.stop:
            self.peak = max(self.peak, self.proc.memory_info().rss - self.base)
            time.sleep(0.005)

    def __exit__(self, *exc: Any) -> None:
        self.stop = True
        self.thread.join()


def timed(fn: Callable[[], Any]) -> tuple[float, int, Any]:
    with PeakRss() as mem:
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
    return dt, mem.peak, out


def batched(
    feats: torch.Tensor,
    y: np.ndarray,
    ntr: int,
    lam: float,
    classes: int,
    chunk: int,
    max_iter: int,
):
    acc, iters = [], []
    ytr = torch.as_tensor(y[:ntr])[None]
    for start in range(0, feats.shape[0], chunk):
        x = feats[start : start + chunk].float()
        L = x.shape[0]
        fit = fit_logistic(
            x[:, :ntr], ytr, torch.ones(1, ntr), torch.full((L, 1), lam), classes, max_iter=max_iter
        )
        pred = predict_logits(fit, x[:, ntr:]).argmax(-1)[:, 0].numpy()
        acc += list((pred == y[None, ntr:]).mean(1))
        iters += fit.n_iter[:, 0].tolist()
        accs = " ".join(f"{v:.4f}" for v in acc[-L:])
        print(
            f"  batched layers {start}-{start + L - 1}: acc {accs}, iters {iters[-L:]}", flush=True
        )
        del x, fit
    return np.array(acc), np.array(iters)


def sklearn_layer(
    feats: torch.Tensor, layer: int, y: np.ndarray, ntr: int, lam: float, max_iter: int
):
    x = feats[layer].numpy().astype(np.float64)
    scaler = StandardScaler().fit(x[:ntr])
    clf = LogisticRegression(C=1.0 / (lam * ntr), max_iter=max_iter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(scaler.transform(x[:ntr]), y[:ntr])
    return float(clf.score(scaler.transform(x[ntr:]), y[ntr:])), int(clf.n_iter_[0])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--layers", type=int, default=33)
    p.add_argument("--samples", type=int, default=10_000)
    p.add_argument("--dim", type=int, default=4096)
    p.add_argument("--classes", type=int, default=80)
    p.add_argument("--sk-layers", default="8,16,24", help="layers timed with scikit-learn")
    p.add_argument("--lam", type=float, default=1e-3, help="L2 strength (C = 1/(lam*n_train))")
    p.add_argument("--max-iter", type=int, default=100, help="both sides (scikit-learn default)")
    p.add_argument("--chunk", type=int, default=4, help="layers per batched fit")
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    torch.manual_seed(a.seed)
    sk_layers = [int(v) for v in a.sk_layers.split(",") if v]
    ntr = int(0.8 * a.samples)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    t0 = time.perf_counter()
    feats, y, signal = make_features(a.layers, a.samples, a.dim, a.classes, a.seed)
    print(
        f"features {tuple(feats.shape)} float16 ({feats.numel() * 2 / 2**30:.2f} GiB), "
        f"generated in {time.perf_counter() - t0:.0f} s; train {ntr}, test {a.samples - ntr}, "
        f"lam {a.lam:g} (C = {1 / (a.lam * ntr):.4g}), max_iter {a.max_iter}"
    )

    # Interleaved at chunk level: each batched chunk is followed at once by scikit-learn on
    # the chunk's --sk-layers, so both sides see the same machine load.
    rows, acc_b, chunk_times, mem_b, mem_s = [], [], [], [], []
    for rep in range(a.reps):
        acc_b = []
        for start in range(0, a.layers, a.chunk):
            part = feats[start : start + a.chunk]
            dt, mem, (acc, iters) = timed(
                partial(batched, part, y, ntr, a.lam, a.classes, a.chunk, a.max_iter)
            )
            chunk_times.append(dt)
            mem_b.append(mem)
            acc_b += list(acc)
            per_layer = dt / part.shape[0]
            for k in [k for k in sk_layers if start <= k < start + part.shape[0]]:
                dts, mems, (acc_s, it_s) = timed(
                    partial(sklearn_layer, feats, k, y, ntr, a.lam, a.max_iter)
                )
                mem_s.append(mems)
                rows.append((rep, k, dts, per_layer, acc_s, acc[k - start], it_s, iters[k - start]))
                print(
                    f"rep {rep} layer {k}: scikit-learn {dts:.1f} s (acc {acc_s:.4f}, "
                    f"{it_s} iters); batched {per_layer:.1f} s/layer",
                    flush=True,
                )
    total_b = sum(chunk_times) / a.reps
    print()
    print(
        f"batched, all {a.layers} layers: {total_b:.1f} s ({total_b / a.layers:.2f} s/layer), "
        f"peak extra RSS {max(mem_b) / 2**30:.2f} GiB (chunks of {a.chunk} layers)"
    )
    print(f"scikit-learn, one layer: peak extra RSS {max(mem_s) / 2**30:.2f} GiB")
    print()
    print(
        "| layer | signal | sklearn s | batched s/layer (same chunk) | speed-up | sklearn acc "
        "| batched acc | Δacc | sklearn iters | batched iters |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    ratios = []
    for k in sk_layers:
        mine = [r for r in rows if r[1] == k]
        ts = statistics.median(r[2] for r in mine)
        tb = statistics.median(r[3] for r in mine)
        _, _, _, _, acc_s, acc_k, it_s, it_b = mine[-1]
        ratios.append(ts / tb)
        print(
            f"| {k} | {signal[k]:.3f} | {ts:.1f} | {tb:.1f} | {ts / tb:.2f}× | {acc_s:.4f} | "
            f"{acc_k:.4f} | {acc_k - acc_s:+.4f} | {it_s} | {it_b} |"
        )
    print()
    print(
        f"median speed-up {statistics.median(ratios):.2f}× per layer (scikit-learn time / "
        "batched time per layer)"
    )
    print("batched accuracy by layer:", " ".join(f"{v:.2f}" for v in acc_b))


if __name__ == "__main__":
    main()
