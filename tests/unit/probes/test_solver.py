"""The preconditioned logistic solver on badly conditioned features, against scikit-learn."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from somprobe.probes import fit_logistic, fit_standardizer, predict_logits
from somprobe.probes.solver import spectral_preconditioner

LAM = 1e-3


def _correlated(n=900, d=40, c=4, seed=0):
    """Features that are one shared factor plus 1% noise (pairwise correlation ~0.9999)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % c
    factors = torch.randn(n, 3, generator=g, dtype=torch.float64)
    mix = torch.randn(3, d, generator=g, dtype=torch.float64)
    mix[0] *= 10.0  # one direction dominates every feature
    X = factors @ mix + 0.01 * torch.randn(n, d, generator=g, dtype=torch.float64)
    X += 0.05 * torch.randn(c, d, generator=g, dtype=torch.float64)[y]  # weak class signal
    return (X * 4.0 + 100.0)[None], y  # large offset: standardisation must not lose it


def _objective(X, y, coef, bias):
    xs = StandardScaler().fit_transform(X)
    z = xs @ coef + bias
    z = z - z.max(1, keepdims=True)
    nll = np.log(np.exp(z).sum(1)) - z[np.arange(len(y)), y]
    return float(nll.mean() + 0.5 * LAM * np.square(coef).sum())


def _sklearn(X, y, tol):
    xs = StandardScaler().fit_transform(X)
    ref = LogisticRegression(C=1 / (LAM * len(y)), tol=tol, max_iter=20000).fit(xs, y)
    return ref.coef_.T, ref.intercept_, ref


def test_reaches_sklearn_optimum_on_correlated_features() -> None:
    X, y = _correlated()
    Xn, yn = X[0].numpy(), y.numpy()
    coef, bias, ref = _sklearn(Xn, yn, 1e-10)
    best = _objective(Xn, yn, coef, bias)
    ones, lam = torch.ones(1, len(y), dtype=torch.float64), torch.full((1, 1), LAM)
    for rank in (None, 6):  # exact eigenbasis, and a Nyström basis smaller than dim
        pre = (
            None
            if rank is None
            else spectral_preconditioner(X, ones, fit_standardizer(X, ones), rank=rank)
        )
        fit = fit_logistic(
            X, y[None], ones, lam.double(), 4, tol=1e-9, max_iter=300, preconditioner=pre
        )
        ours = _objective(Xn, yn, fit.coef[0, 0].numpy(), fit.intercept[0, 0].numpy())
        assert abs(ours - best) <= 1e-9 * best, (rank, ours, best)
        assert int(fit.n_iter.max()) <= 60, fit.n_iter  # plain L-BFGS needs hundreds here
        # flat directions (curvature ~ lam) leave the weights less determined than the objective
        np.testing.assert_allclose(fit.coef[0, 0].numpy(), coef, atol=2e-3)

    # float32 at the default tolerance: the optimum of the same objective, same accuracy
    fit = fit_logistic(X.float(), y[None], ones.float(), lam, 4)
    ours = _objective(Xn, yn, fit.coef[0, 0].double().numpy(), fit.intercept[0, 0].double().numpy())
    assert abs(ours - best) <= 1e-4 * best
    acc = (predict_logits(fit, X.float()).argmax(-1)[0, 0] == y).double().mean().item()
    assert abs(acc - ref.score(StandardScaler().fit_transform(Xn), yn)) <= 0.02
    # and scikit-learn at the same tolerance is no closer to the optimum
    c2, b2, _ = _sklearn(Xn, yn, 1e-4)
    assert ours - best <= max(_objective(Xn, yn, c2, b2) - best, 1e-5 * best)


def test_batched_problems_match_one_at_a_time_and_warm_start_is_free() -> None:
    X, y = _correlated(n=600, d=30, c=3, seed=1)
    X = torch.cat([X, X.flip(-1) * 0.5], 0)  # two layers
    w = torch.ones(2, 600, dtype=torch.float64)
    w[1, ::3] = 0.0  # problem 1 drops a third of the rows
    lam = torch.tensor([[1e-3, 1e-2], [1e-2, 1e-3]], dtype=torch.float64)
    fit = fit_logistic(X, y.expand(2, -1), w, lam, 3, tol=1e-9, max_iter=300)
    for layer in range(2):
        for p in range(2):
            one = fit_logistic(
                X[layer : layer + 1],
                y[None],
                w[p : p + 1],
                lam[layer : layer + 1, p : p + 1],
                3,
                tol=1e-9,
                max_iter=300,
            )
            np.testing.assert_allclose(
                fit.coef[layer, p].numpy(), one.coef[0, 0].numpy(), atol=1e-5
            )
    again = fit_logistic(X, y.expand(2, -1), w, lam, 3, tol=1e-8, init=fit.flat())
    assert int(again.n_iter.max()) <= 1


def test_nystrom_finds_the_top_eigenpairs() -> None:
    g = torch.Generator().manual_seed(3)
    X = torch.randn(1, 2000, 300, generator=g, dtype=torch.float64)
    X += (
        3.0
        * torch.randn(2000, 5, generator=g, dtype=torch.float64)
        @ torch.randn(5, 300, generator=g, dtype=torch.float64)
    )
    w = torch.ones(1, 2000, dtype=torch.float64)
    st = fit_standardizer(X, w)
    pre = spectral_preconditioner(X, w, st, rank=32)
    xs = (X[0] - st.mean[0, 0]) / st.scale[0, 0]
    exact = torch.linalg.eigvalsh(xs.T @ xs / 2000).flip(0)
    np.testing.assert_allclose(pre.eigvals[0, :5].numpy(), exact[:5].numpy(), rtol=1e-2)
    assert float(pre.rest[0]) < float(exact[5])  # the complement level sits in the bulk
    gram = pre.basis[0].T @ pre.basis[0]
    np.testing.assert_allclose(gram.numpy(), np.eye(32), atol=1e-8)


def test_float32_standardizer_keeps_precision_under_a_large_offset() -> None:
    g = torch.Generator().manual_seed(4)
    X = 1e4 + torch.randn(2, 500, 6, generator=g, dtype=torch.float64)
    w = torch.ones(2, 500, dtype=torch.float64)
    w[1, 250:] = 0.0
    exact = fit_standardizer(X.float().double(), w)  # float64 statistics of the same values
    fast = fit_standardizer(X.float(), w.float())
    np.testing.assert_allclose(fast.mean.double().numpy(), exact.mean.numpy(), rtol=1e-6)
    # E[x^2] - E[x]^2 in float32 would lose every digit here (x^2 ~ 1e8, variance ~ 1)
    np.testing.assert_allclose(fast.scale.double().numpy(), exact.scale.numpy(), rtol=1e-4)


def test_half_precision_features_fit_like_their_float32_copy() -> None:
    X, y = _correlated(n=600, d=200, c=3, seed=5)  # dim > 2 * rank: Nyström and bfloat16
    Xh = ((X - 100.0) / 4.0).half()
    ones, lam = torch.ones(1, 600), torch.full((1, 1), 1e-2)
    half = fit_logistic(Xh, y[None], ones, lam, 3, tol=1e-6, max_iter=300)
    full = fit_logistic(Xh.float(), y[None], ones, lam, 3, tol=1e-6, max_iter=300)
    assert half.coef.dtype == torch.float32 and bool(half.converged.all())
    np.testing.assert_allclose(half.coef.numpy(), full.coef.numpy(), atol=1e-3)
    np.testing.assert_allclose(
        predict_logits(half, Xh).numpy(), predict_logits(full, Xh.float()).numpy(), atol=1e-2
    )
