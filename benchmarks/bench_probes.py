"""Batched per-layer logistic probes vs scikit-learn, side by side in one run.

Synthetic hidden states (default 33 layers × 10,000 samples × 4096 dims, 80 classes,
stored as float16: 2.7 GB) with a linear class signal that rises and falls over the
layers, a shared low-rank component (which makes the standardised features badly
conditioned, as real hidden states are) and Gaussian noise. Both sides get the same
float16 features, the same 80/20 split, the same L2 strength (``C = 1 / (lam * n_train)``)
and the same stopping rule (largest gradient entry ``<= --tol``, at most ``--max-iter``
iterations), and both include standardisation and the dtype conversion in their time.

* batched: :func:`somprobe.probes.fit_logistic` for all layers, ``--chunk`` layers per
  batched fit, straight from the float16 features (see :mod:`somprobe.probes.solver`:
  L-BFGS preconditioned by a rank-64 Nyström approximation of each layer's covariance,
  intercepts solved exactly, a near-exact line search in logit space, bfloat16 products
  for the first iterations and float32 for the last ones and the stopping test).
* scikit-learn: ``StandardScaler`` + ``LogisticRegression`` (lbfgs, float64), one layer at
  a time, on the ``--sk-layers`` subset (timing all 33 takes too long on a small machine).

After an untimed warm-up of both sides, runs are interleaved (each batched chunk, then
scikit-learn on that chunk's layers) and medians over ``--reps`` reported; ``--threads``
sets the thread count of both sides. Peak memory is the largest resident-set increase
seen during each side's run. For the compared layers the table also gives each side's
training objective (mean cross-entropy + L2, evaluated afterwards in float64) and its
relative difference: equal accuracy means the same optimum, not just similar test scores.

Run: ``python benchmarks/bench_probes.py`` (a few minutes on 2 cores) or e.g.
``python benchmarks/bench_probes.py --layers 8 --sk-layers 2,5`` (8 layers × 4096 dims ×
10,000 samples; on a 2-core AMD EPYC with bfloat16 units: 0.7 s/layer batched against
13–15 s/layer for scikit-learn, 17–24× faster, with 2 threads; 12–15× with ``--threads 1``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
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
from threadpoolctl import threadpool_limits

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
    tol: float,
):
    acc, iters, params = [], [], []
    ytr = torch.as_tensor(y[:ntr])[None]
    for start in range(0, feats.shape[0], chunk):
        x = feats[start : start + chunk]  # float16: fit_logistic converts blocks as it goes
        L = x.shape[0]
        fit = fit_logistic(
            x[:, :ntr],
            ytr,
            torch.ones(1, ntr),
            torch.full((L, 1), lam),
            classes,
            max_iter=max_iter,
            tol=tol,
        )
        pred = predict_logits(fit, x[:, ntr:]).argmax(-1)[:, 0].numpy()
        acc += list((pred == y[None, ntr:]).mean(1))
        iters += fit.n_iter[:, 0].tolist()
        params += [(fit.coef[k, 0], fit.intercept[k, 0]) for k in range(L)]  # type: ignore[index]
        accs = " ".join(f"{v:.4f}" for v in acc[-L:])
        print(
            f"  batched layers {start}-{start + L - 1}: acc {accs}, iters {iters[-L:]}", flush=True
        )
        del x, fit
    return np.array(acc), np.array(iters), params


def sklearn_layer(
    feats: torch.Tensor, layer: int, y: np.ndarray, ntr: int, lam: float, max_iter: int, tol: float
):
    x = feats[layer].numpy().astype(np.float64)
    scaler = StandardScaler().fit(x[:ntr])
    clf = LogisticRegression(C=1.0 / (lam * ntr), max_iter=max_iter, tol=tol)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(scaler.transform(x[:ntr]), y[:ntr])
    acc = float(clf.score(scaler.transform(x[ntr:]), y[ntr:]))
    return acc, int(clf.n_iter_[0]), (clf.coef_.T, clf.intercept_)


def objective(
    feats: torch.Tensor, layer: int, y: np.ndarray, ntr: int, lam: float, coef: Any, bias: Any
) -> float:
    """Training objective (mean cross-entropy + lam/2 ||W||^2) of standardised-unit weights."""
    x = feats[layer, :ntr].double()
    xs = (x - x.mean(0)) / x.std(0, unbiased=False)
    W = torch.as_tensor(np.asarray(coef), dtype=torch.float64)
    z = xs @ W + torch.as_tensor(np.asarray(bias), dtype=torch.float64)
    yt = torch.as_tensor(y[:ntr])
    nll = (torch.logsumexp(z, -1) - z.gather(-1, yt[:, None])[:, 0]).mean()
    return float(nll + 0.5 * lam * W.square().sum())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--layers", type=int, default=33)
    p.add_argument("--samples", type=int, default=10_000)
    p.add_argument("--dim", type=int, default=4096)
    p.add_argument("--classes", type=int, default=80)
    p.add_argument("--sk-layers", default="8,16,24", help="layers timed with scikit-learn")
    p.add_argument("--lam", type=float, default=1e-3, help="L2 strength (C = 1/(lam*n_train))")
    p.add_argument("--max-iter", type=int, default=100, help="both sides (scikit-learn default)")
    p.add_argument("--tol", type=float, default=1e-4, help="both sides (scikit-learn default)")
    p.add_argument("--threads", type=int, default=0, help="threads of both sides (0: default)")
    p.add_argument("--chunk", type=int, default=4, help="layers per batched fit")
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    torch.manual_seed(a.seed)
    if a.threads:
        torch.set_num_threads(a.threads)
        threadpool_limits(a.threads)
    sk_layers = [int(v) for v in a.sk_layers.split(",") if v]
    ntr = int(0.8 * a.samples)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    t0 = time.perf_counter()
    feats, y, signal = make_features(a.layers, a.samples, a.dim, a.classes, a.seed)
    print(
        f"features {tuple(feats.shape)} float16 ({feats.numel() * 2 / 2**30:.2f} GiB), "
        f"generated in {time.perf_counter() - t0:.0f} s; train {ntr}, test {a.samples - ntr}, "
        f"lam {a.lam:g} (C = {1 / (a.lam * ntr):.4g}), max_iter {a.max_iter}, tol {a.tol:g}"
    )

    # Warm-up (untimed): a few iterations on layer 0 on each side, so one-time library set-up
    # (oneDNN kernel generation, thread pools, first-touch memory) is not charged to a side.
    with contextlib.redirect_stdout(io.StringIO()):
        batched(feats[:1], y, ntr, a.lam, a.classes, 1, 3, a.tol)
        sklearn_layer(feats, 0, y, ntr, a.lam, 3, a.tol)

    # Interleaved at chunk level: each batched chunk is followed at once by scikit-learn on
    # the chunk's --sk-layers, so both sides see the same machine load.
    rows, acc_b, chunk_times, mem_b, mem_s = [], [], [], [], []
    for rep in range(a.reps):
        acc_b = []
        for start in range(0, a.layers, a.chunk):
            part = feats[start : start + a.chunk]
            dt, mem, (acc, iters, params) = timed(
                partial(batched, part, y, ntr, a.lam, a.classes, a.chunk, a.max_iter, a.tol)
            )
            chunk_times.append(dt)
            mem_b.append(mem)
            acc_b += list(acc)
            per_layer = dt / part.shape[0]
            for k in [k for k in sk_layers if start <= k < start + part.shape[0]]:
                dts, mems, (acc_s, it_s, par_s) = timed(
                    partial(sklearn_layer, feats, k, y, ntr, a.lam, a.max_iter, a.tol)
                )
                mem_s.append(mems)
                obj_s = objective(feats, k, y, ntr, a.lam, *par_s)
                obj_b = objective(feats, k, y, ntr, a.lam, *params[k - start])
                j = k - start
                rows.append((rep, k, dts, per_layer, acc_s, acc[j], it_s, iters[j], obj_s, obj_b))
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
        "| batched acc | Δacc | sklearn iters | batched iters | sklearn objective "
        "| batched objective | rel. diff |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    ratios = []
    for k in sk_layers:
        mine = [r for r in rows if r[1] == k]
        ts = statistics.median(r[2] for r in mine)
        tb = statistics.median(r[3] for r in mine)
        _, _, _, _, acc_s, acc_k, it_s, it_b, obj_s, obj_b = mine[-1]
        ratios.append(ts / tb)
        print(
            f"| {k} | {signal[k]:.3f} | {ts:.1f} | {tb:.1f} | {ts / tb:.2f}× | {acc_s:.4f} | "
            f"{acc_k:.4f} | {acc_k - acc_s:+.4f} | {it_s} | {it_b} | {obj_s:.6f} | {obj_b:.6f} "
            f"| {(obj_b - obj_s) / obj_s:+.1e} |"
        )
    print()
    print(
        f"median speed-up {statistics.median(ratios):.2f}× per layer (scikit-learn time / "
        "batched time per layer)"
    )
    print("batched accuracy by layer:", " ".join(f"{v:.2f}" for v in acc_b))


if __name__ == "__main__":
    main()
