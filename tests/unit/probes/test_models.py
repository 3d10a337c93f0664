"""Batched logistic and ridge probes against scikit-learn, one layer at a time."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.preprocessing import StandardScaler

from somprobe.errors import ProbeError
from somprobe.probes import fit_logistic, fit_ridge, fit_standardizer, predict_logits


def _data(L=3, n=150, d=6, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % c
    X = torch.randn(L, n, d, generator=g, dtype=torch.float64) * 3 + 5
    X[:, :, 0] += 1.5 * y  # some signal in every layer
    return X, y


def test_standardizer_matches_sklearn_on_train_rows() -> None:
    X, _ = _data()
    w = torch.zeros(2, 150, dtype=torch.float64)
    w[0, :100], w[1, 50:] = 1, 1
    st = fit_standardizer(X, w)
    for p, rows in enumerate([slice(0, 100), slice(50, 150)]):
        sc = StandardScaler().fit(X[1, rows].numpy())
        np.testing.assert_allclose(st.mean[1, p].numpy(), sc.mean_, rtol=1e-10)
        np.testing.assert_allclose(st.scale[1, p].numpy(), sc.scale_, rtol=1e-10)


def test_logistic_matches_sklearn_per_layer_and_weights_drop_rows() -> None:
    X, y = _data()
    lam = torch.tensor([[1e-2, 1e-1], [1e-2, 1e-1], [3e-3, 1e-1]], dtype=torch.float64)
    w = torch.ones(2, 150, dtype=torch.float64)
    w[1, 100:] = 0  # problem 1 trains on the first 100 rows only
    fit = fit_logistic(X, y.expand(2, -1), w, lam, 3, max_iter=500, tol=1e-9)
    proba = torch.softmax(predict_logits(fit, X), -1)
    for layer in range(3):
        for p, rows in enumerate([slice(0, 150), slice(0, 100)]):
            sc = StandardScaler().fit(X[layer, rows].numpy())
            n = rows.stop - rows.start
            ref = LogisticRegression(C=1 / (float(lam[layer, p]) * n), tol=1e-10, max_iter=2000)
            ref.fit(sc.transform(X[layer, rows].numpy()), y[rows].numpy())
            np.testing.assert_allclose(fit.coef[layer, p].numpy(), ref.coef_.T, atol=2e-4)
            expect = ref.predict_proba(sc.transform(X[layer].numpy()))
            np.testing.assert_allclose(proba[layer, p].numpy(), expect, atol=5e-4)


def test_rank_limited_probe() -> None:
    g = torch.Generator().manual_seed(1)
    angle = torch.arange(8) * (2 * torch.pi / 8)
    centres = 3 * torch.stack([angle.cos(), angle.sin()], 1)  # 8 classes on a circle
    y = torch.arange(800) % 8
    X = (centres[y] + 0.4 * torch.randn(800, 2, generator=g))[None]
    X = torch.cat([X, torch.randn(1, 800, 3, generator=g)], -1)  # 5 dims, 2 informative
    ones, lam = torch.ones(1, 800), torch.full((1, 1), 1e-4)

    def acc(rank):
        fit = fit_logistic(X, y[None], ones, lam, 8, rank=rank, max_iter=300)
        return float((predict_logits(fit, X).argmax(-1) == y).float().mean())

    full, r1, r2 = acc(None), acc(1), acc(2)
    assert full > 0.9 and r2 > full - 0.03  # two directions suffice for a circle
    assert r1 < full - 0.2  # one direction squeezes eight classes onto a line
    with pytest.raises(ProbeError, match="rank"):
        acc(0)


@pytest.mark.parametrize("n", [40, 8])  # primal (n >= d) and dual (n < d)
def test_ridge_matches_sklearn(n) -> None:
    g = torch.Generator().manual_seed(2)
    X = torch.randn(2, n, 10, generator=g, dtype=torch.float64) * 2 + 1
    Y = torch.randn(n, 3, generator=g, dtype=torch.float64)
    lams = torch.tensor([1e-2, 1.0], dtype=torch.float64)
    fit = fit_ridge(X, Y, lams)
    pred = fit.predict(X)
    for layer in range(2):
        xs = StandardScaler().fit_transform(X[layer].numpy())
        for k, lam in enumerate(lams.tolist()):
            ref = Ridge(alpha=lam * n).fit(xs, Y.numpy())
            np.testing.assert_allclose(fit.coef[layer, k].numpy(), ref.coef_.T, atol=1e-8)
            np.testing.assert_allclose(pred[layer, k].numpy(), ref.predict(xs), atol=1e-8)
