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

Repetitions are interleaved (batched, then each scikit-learn layer) and medians reported;
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
    p.add_argument("--reps", type=int, default=2)
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

    t_b, t_s, mem_b, mem_s = [], {k: [] for k in sk_layers}, [], []
    acc_b = iters_b = None
    acc_s, iters_s = {}, {}
    for rep in range(a.reps):
        dt, mem, (acc_b, iters_b) = timed(
            lambda: batched(feats, y, ntr, a.lam, a.classes, a.chunk, a.max_iter)
        )
        t_b.append(dt)
        mem_b.append(mem)
        print(f"rep {rep}: batched {a.layers} layers {dt:.1f} s", flush=True)
        for k in sk_layers:
            dt, mem, (acc, it) = timed(partial(sklearn_layer, feats, k, y, ntr, a.lam, a.max_iter))
            t_s[k].append(dt)
            mem_s.append(mem)
            acc_s[k], iters_s[k] = acc, it
            print(f"rep {rep}: scikit-learn layer {k} {dt:.1f} s", flush=True)

    per_layer_b = statistics.median(t_b) / a.layers
    print()
    print(
        f"batched, all {a.layers} layers: median {statistics.median(t_b):.1f} s "
        f"({per_layer_b:.2f} s/layer), peak extra RSS {max(mem_b) / 2**30:.2f} GiB"
    )
    print(f"scikit-learn, per layer: peak extra RSS {max(mem_s) / 2**30:.2f} GiB")
    print()
    print(
        "| layer | signal | sklearn s | batched s/layer | speed-up | sklearn acc | batched acc | Δacc | sklearn iters | batched iters |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    ratios = []
    for k in sk_layers:
        ts = statistics.median(t_s[k])
        ratios.append(ts / per_layer_b)
        print(
            f"| {k} | {signal[k]:.3f} | {ts:.1f} | {per_layer_b:.2f} | {ts / per_layer_b:.1f}× | "
            f"{acc_s[k]:.4f} | {acc_b[k]:.4f} | {acc_b[k] - acc_s[k]:+.4f} | {iters_s[k]} | {iters_b[k]} |"
        )
    est = statistics.median([statistics.median(v) for v in t_s.values()]) * a.layers
    print()
    print(
        f"median speed-up {statistics.median(ratios):.1f}× per layer; scikit-learn for all "
        f"{a.layers} layers would take ≈ {est:.0f} s vs {statistics.median(t_b):.0f} s batched"
    )
    print("batched accuracy by layer:", " ".join(f"{v:.2f}" for v in acc_b))


if __name__ == "__main__":
    main()
