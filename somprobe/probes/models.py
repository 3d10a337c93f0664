"""Batched linear probes: multinomial logistic regression and ridge, all layers at once.

Features are shared per layer (``[layer, sample, dim]``) while each *problem* (a fold, a
target variant, a regularisation strength) has its own training rows (sample weights),
labels, standardisation and weights. Standardisation is fitted on each problem's training
rows only and folded into the weights, so the raw features are never copied per problem.

Objective of one logistic problem (the same scaling scikit-learn uses, so
``C = 1 / (lam * n_train)``)::

    mean over training rows of cross-entropy  +  lam / 2 * ||W||^2     (bias unpenalised)

Full-rank logistic probes are fitted by :func:`somprobe.probes.solver.solve_logistic`
(L-BFGS preconditioned with each layer's covariance spectrum, exact intercepts; a handful
of passes over the features), rank-limited ones by plain batched L-BFGS.

Example:
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> y = torch.arange(60) % 3
    >>> X = torch.randn(2, 60, 5, generator=g); X[1, :, 0] += 4.0 * y  # signal in layer 1
    >>> fit = fit_logistic(X, y[None], torch.ones(1, 60), torch.full((2, 1), 1e-3), 3)
    >>> acc = (predict_logits(fit, X).argmax(-1) == y).float().mean(-1)
    >>> bool(acc[1, 0] > acc[0, 0])
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from somprobe.errors import ProbeError
from somprobe.probes.lbfgs import lbfgs
from somprobe.probes.solver import Preconditioner, solve_logistic
from somprobe.probes.validate import (
    check_count,
    check_features_shape,
    check_problem_weights,
)


@dataclass
class Standardizer:
    """Per layer and problem mean and scale of the training rows (scale 1 where constant)."""

    mean: Float[Tensor, "layer problem dim"]
    scale: Float[Tensor, "layer problem dim"]


def fit_standardizer(
    X: Float[Tensor, "layer sample dim"], weights: Float[Tensor, "problem sample"]
) -> Standardizer:
    """Weighted mean and standard deviation per layer and problem (float64 for float64
    features, float32 otherwise).

    Computed around the pooled mean (no cancellation in the variance) in float64 for
    float64 features and float32 otherwise, a block of rows at a time (no full-size
    temporaries).

    Raises:
        ProbeError: ``X`` is not ``[layer, sample, dim]``, or ``weights`` is not
            ``[problem, sample]`` of finite non-negative values with a training row
            (a positive weight) in every problem.
    """
    check_problem_weights(X, weights)
    dt = torch.float64 if X.dtype == torch.float64 else torch.float32
    wn = (weights / weights.sum(-1, keepdim=True)).to(dt)
    pooled = wn.mean(0, keepdim=True)
    L, n, d = X.shape
    block = max(1, min(n, 2**20 // max(d, 1)))
    buf = torch.empty(block, d, dtype=dt)
    means, scales = [], []
    for layer in range(L):
        x = X[layer]
        ref = sum(pooled[:, s : s + block] @ x[s : s + block].to(dt) for s in range(0, n, block))
        m1 = wn.new_zeros(wn.shape[0], d)
        m2 = wn.new_zeros(wn.shape[0], d)
        for s in range(0, n, block):
            xb = buf[: min(block, n - s)]
            torch.sub(x[s : s + block].to(dt), ref, out=xb)
            m1 += wn[:, s : s + block] @ xb
            m2 += wn[:, s : s + block] @ xb.square_()
        mu = ref + m1
        sd = (m2 - m1 * m1).clamp_min(0.0).sqrt()
        sd = torch.where(sd > 1e-12 * (1.0 + mu.abs()), sd, torch.ones_like(sd))
        means.append(mu)
        scales.append(sd)
    return Standardizer(torch.stack(means), torch.stack(scales))


@dataclass
class LogisticFit:
    """Fitted batched logistic probes.

    ``coef`` is ``[layer, problem, dim, class]`` in standardised units (or the factors
    ``(U, V)`` of a rank-limited probe), ``intercept`` is ``[layer, problem, class]``.
    """

    coef: Tensor | tuple[Tensor, Tensor]
    intercept: Float[Tensor, "layer problem cls"]
    standardizer: Standardizer
    n_iter: Int[Tensor, "layer problem"]
    converged: Tensor

    def flat(self) -> Tensor:
        """Parameters as ``[layer * problem, param]`` (a warm start for another fit)."""
        parts = list(self.coef) if isinstance(self.coef, tuple) else [self.coef]
        n_lp = self.intercept.shape[0] * self.intercept.shape[1]
        return torch.cat([p.reshape(n_lp, -1) for p in [*parts, self.intercept]], dim=1)


class _Logistic:
    """Objective and prediction of batched (optionally rank-limited) logistic probes."""

    def __init__(self, dim: int, n_classes: int, n_layers: int, n_problems: int, rank: int | None):
        self.d, self.c, self.L, self.P, self.rank = dim, n_classes, n_layers, n_problems, rank

    @property
    def n_param(self) -> int:
        d, c, r = self.d, self.c, self.rank
        return (d * c if r is None else d * r + r * c) + c

    def unpack(self, theta: Tensor) -> tuple[Tensor | tuple[Tensor, Tensor], Tensor]:
        L, P, d, c, r = self.L, self.P, self.d, self.c, self.rank
        t = theta.view(L, P, -1)
        if r is None:
            return t[..., : d * c].reshape(L, P, d, c), t[..., d * c :]
        U = t[..., : d * r].reshape(L, P, d, r)
        V = t[..., d * r : d * r + r * c].reshape(L, P, r, c)
        return (U, V), t[..., d * r + r * c :]

    def logits(
        self, theta: Tensor, X: Float[Tensor, "layer sample dim"], st: Standardizer
    ) -> Float[Tensor, "layer sample problem cls"]:
        coef, b = self.unpack(theta)
        inv = 1.0 / st.scale
        shift = st.mean * inv
        L, n = X.shape[0], X.shape[1]
        if isinstance(coef, tuple):
            U, V = coef
            ueff = (U * inv[..., None]).permute(0, 2, 1, 3).reshape(L, self.d, -1)
            h = torch.bmm(X, ueff).view(L, n, self.P, -1)
            z = torch.einsum("lnpr,lprc->lnpc", h, V)
            beff = b - torch.einsum("lpr,lprc->lpc", torch.einsum("lpd,lpdr->lpr", shift, U), V)
        else:
            weff = (coef * inv[..., None]).permute(0, 2, 1, 3).reshape(L, self.d, -1)
            z = torch.bmm(X, weff).view(L, n, self.P, self.c)
            beff = b - torch.einsum("lpd,lpdc->lpc", shift, coef)
        return z + beff[:, None]

    def penalty(self, theta: Tensor) -> Tensor:
        coef, _ = self.unpack(theta)
        parts = coef if isinstance(coef, tuple) else (coef,)
        return sum(p.square().sum((-2, -1)) for p in parts)  # type: ignore[return-value]


def fit_logistic(
    X: Float[Tensor, "layer sample dim"],
    y: Int[Tensor, "problem sample"],
    weights: Float[Tensor, "problem sample"],
    lam: Float[Tensor, "layer problem"],
    n_classes: int,
    *,
    rank: int | None = None,
    init: Tensor | None = None,
    standardizer: Standardizer | None = None,
    preconditioner: Preconditioner | None = None,
    low_precision: bool = True,
    max_iter: int = 100,
    tol: float = 1e-4,
    seed: int = 0,
) -> LogisticFit:
    """Fit ``layer × problem`` L2-regularised multinomial logistic probes in one go.

    Args:
        X: features, shared by all problems of a layer; float16 and bfloat16 are fitted in
            float32 (without a float32 copy for full-rank probes).
        y: class index (0..n_classes-1) of each sample for each problem.
        weights: 1 for a problem's training rows, 0 elsewhere (any non-negative weights).
        lam: L2 strength per layer and problem (``1 / (C * n_train)`` in scikit-learn terms).
        n_classes: number of classes.
        rank: fit ``W = U V`` with ``U`` of ``rank`` columns (a rank-limited probe; the
            penalty is then on ``U`` and ``V``). ``None`` fits a full-rank ``W``.
        init: warm start, ``[layer * problem, param]`` as :meth:`LogisticFit.flat` gives.
        standardizer: reuse precomputed train-only statistics.
        preconditioner: reuse a :func:`spectral_preconditioner` of ``X`` (full rank only;
            computed here when ``None``).
        low_precision: let float32 fits take their first iterations in bfloat16 (full
            rank only; the result is still judged and finished in float32).
        max_iter, tol: L-BFGS limits (``tol`` bounds the largest gradient entry, as
            scikit-learn's ``tol`` does for its lbfgs solver).

    Full-rank probes use :func:`somprobe.probes.solver.solve_logistic` (preconditioned
    L-BFGS with exact intercepts); rank-limited ones plain batched L-BFGS.

    Raises:
        ProbeError: shapes that do not fit (``y`` and ``weights`` ``[problem, sample]``,
            ``lam`` ``[layer, problem]``), a class index outside ``0..n_classes-1``,
            fewer than two classes, a negative or non-finite ``lam``, a problem without
            training rows, or ``max_iter`` / ``rank`` below 1.
    """
    L, n, d = check_problem_weights(X, weights)
    P = weights.shape[0]
    if rank is not None and (isinstance(rank, bool) or rank < 1):
        raise ProbeError(f"rank must be a positive integer or None; got {rank}")
    check_count(n_classes, "n_classes", 2)
    check_count(max_iter, "max_iter", 1)
    if not tol >= 0:
        raise ProbeError(f"tol must be ≥ 0; got {tol!r}")
    if not isinstance(y, Tensor) or tuple(y.shape) != (P, n):
        shape = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
        raise ProbeError(f"y must be [problem={P}, sample={n}] class indices; got {shape}")
    if y.is_floating_point() or y.is_complex():
        raise ProbeError(f"y must hold integer class indices; got dtype {y.dtype}")
    if n and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise ProbeError(
            f"y holds class {int(y.min()) if int(y.min()) < 0 else int(y.max())}; class indices "
            f"must lie in 0..{n_classes - 1} (n_classes={n_classes})"
        )
    if not isinstance(lam, Tensor) or tuple(lam.shape) != (L, P):
        shape = tuple(lam.shape) if isinstance(lam, Tensor) else type(lam).__name__
        raise ProbeError(f"lam must be [layer={L}, problem={P}]; got {shape}")
    if not bool(torch.isfinite(lam).all()) or bool((lam < 0).any()):
        raise ProbeError("lam must be finite and ≥ 0 (an L2 strength)")
    st = standardizer if standardizer is not None else fit_standardizer(X, weights)
    model = _Logistic(d, n_classes, L, P, rank)
    if rank is None:
        W0 = b0 = None
        if init is not None:
            flat = init.to(st.mean.dtype).view(L, P, -1)
            W0, b0 = (
                flat[..., : d * n_classes].reshape(L, P, d, n_classes),
                flat[..., d * n_classes :],
            )
        res = solve_logistic(
            X,
            y,
            weights,
            lam,
            n_classes,
            st,
            preconditioner,
            coef=W0,
            intercept=b0,
            max_iter=max_iter,
            tol=tol,
            low_precision=low_precision,
            seed=seed,
        )
        return LogisticFit(
            coef=res.coef,
            intercept=res.intercept,
            standardizer=st,
            n_iter=res.n_iter,
            converged=res.converged,
        )
    X = X.to(st.mean.dtype)  # float16 / bfloat16 features: float32
    wn = (weights / weights.sum(-1, keepdim=True)).to(X.dtype).T[None]  # [1, n, P]
    idx = y.T[None, :, :, None].expand(L, n, P, 1)
    lam_flat = lam.to(X.dtype).reshape(L, P)

    def fun(theta: Tensor, need_grad: bool) -> tuple[Tensor, Tensor | None]:
        with torch.set_grad_enabled(need_grad):
            th = theta.detach().requires_grad_(need_grad)
            z = model.logits(th, X, st)
            nll = torch.logsumexp(z, -1) - z.gather(-1, idx).squeeze(-1)
            loss = (nll * wn).sum(1) + 0.5 * lam_flat * model.penalty(th)
            loss = loss.reshape(-1)
            grad = torch.autograd.grad(loss.sum(), th)[0] if need_grad else None
        return loss.detach(), grad

    if init is None:
        theta0 = X.new_zeros(L * P, model.n_param)
        if rank is not None:
            g = torch.Generator().manual_seed(seed)
            k = d * rank + rank * n_classes
            theta0[:, :k] = torch.randn(L * P, k, generator=g).to(X.dtype) / math.sqrt(d)
    else:
        theta0 = init.to(X.dtype)
    out = lbfgs(fun, theta0, max_iter=max_iter, tol=tol)
    coef, b = model.unpack(out.theta)
    return LogisticFit(
        coef=coef,
        intercept=b,
        standardizer=st,
        n_iter=out.n_iter.view(L, P),
        converged=out.converged.view(L, P),
    )


def predict_logits(
    fit: LogisticFit, X: Float[Tensor, "layer sample dim"]
) -> Float[Tensor, "layer problem sample cls"]:
    """Logits of every problem's probe on new samples.

    Raises:
        ProbeError: ``X`` is not ``[layer, sample, dim]`` with the fit's layers and dim.
    """
    L, P, c = fit.intercept.shape
    width = fit.standardizer.mean.shape[-1]
    if not isinstance(X, Tensor) or X.ndim != 3 or X.shape[0] != L or X.shape[-1] != width:
        shape = tuple(X.shape) if isinstance(X, Tensor) else type(X).__name__
        raise ProbeError(f"X must be [layer={L}, sample, dim={width}] as fitted; got {shape}")
    d = X.shape[-1]
    rank = fit.coef[0].shape[-1] if isinstance(fit.coef, tuple) else None
    model = _Logistic(d, c, L, P, rank)
    with torch.no_grad():
        X = X.to(fit.intercept.dtype)
        return model.logits(fit.flat(), X, fit.standardizer).permute(0, 2, 1, 3)


@dataclass
class RidgeFit:
    """Ridge probes for a grid of strengths: ``coef [layer, lam, dim, target]``."""

    coef: Float[Tensor, "layer lam dim target"]
    intercept: Float[Tensor, "layer target"]
    standardizer: Standardizer

    def predict(
        self, X: Float[Tensor, "layer sample dim"]
    ) -> Float[Tensor, "layer lam sample target"]:
        st = self.standardizer
        xs = (X - st.mean) / st.scale  # mean/scale are [layer, 1, dim]
        return torch.einsum("lnd,lkdt->lknt", xs, self.coef) + self.intercept[:, None, None]


def fit_ridge(
    X: Float[Tensor, "layer sample dim"],
    Y: Float[Tensor, "sample target"],
    lambdas: Float[Tensor, " lam"],
) -> RidgeFit:
    """Closed-form ridge for every layer and every ``lam`` by batched Cholesky solves.

    Minimises ``mean((y - x_s w - b)^2) + lam * ||w||^2`` on standardised ``x_s`` (scikit-learn's
    ``Ridge(alpha=lam * n)`` on standardised features); works in the dual when there are
    fewer samples than dimensions. Factorisations run in float64.

    Raises:
        ProbeError: ``Y`` is not ``[sample, target]`` of finite values for ``X``'s
            samples, ``lambdas`` is empty or holds a negative or non-finite strength, or
            a system is not positive definite (``lam`` 0 on collinear features).
    """
    L, n, d = check_features_shape(X)
    if n == 0:
        raise ProbeError("X has no samples: there is nothing to fit")
    if not isinstance(Y, Tensor) or Y.ndim != 2 or Y.shape[0] != n:
        shape = tuple(Y.shape) if isinstance(Y, Tensor) else type(Y).__name__
        rows = f" ({Y.shape[0]} rows)" if isinstance(Y, Tensor) and Y.ndim else ""
        raise ProbeError(f"Y must be [sample={n}, target]; got {shape}{rows}")
    if not bool(torch.isfinite(Y).all()):
        raise ProbeError("Y holds NaN or infinite targets; drop those samples first")
    grid = torch.as_tensor(lambdas, dtype=torch.float64).reshape(-1)
    if grid.numel() == 0 or not bool(torch.isfinite(grid).all()) or bool((grid < 0).any()):
        raise ProbeError(
            f"lambdas must be a non-empty grid of finite values ≥ 0; got {grid.tolist()}"
        )
    st = fit_standardizer(X, X.new_ones(1, n))
    xs = (X - st.mean) / st.scale
    y_mean = Y.mean(0)
    yc = (Y - y_mean).to(torch.float64)
    primal = d <= n
    gram = (xs.transpose(1, 2) @ xs if primal else xs @ xs.transpose(1, 2)).double()
    eye = torch.eye(gram.shape[-1], dtype=torch.float64)
    coefs = []
    for lam in lambdas.tolist():
        chol, info = torch.linalg.cholesky_ex(gram + n * lam * eye)
        if bool((info != 0).any()):
            raise ProbeError(
                f"ridge system is not positive definite at lam={lam}; use larger lambdas"
            )
        if primal:
            rhs = xs.transpose(1, 2).double() @ yc
            coefs.append(torch.cholesky_solve(rhs, chol))
        else:
            alpha = torch.cholesky_solve(yc.expand(L, n, -1).contiguous(), chol)
            coefs.append(xs.transpose(1, 2).double() @ alpha)
    coef = torch.stack(coefs, 1).to(X.dtype)
    return RidgeFit(coef=coef, intercept=y_mean.to(X.dtype).expand(L, -1).clone(), standardizer=st)
