"""Fast batched multinomial logistic regression: preconditioned L-BFGS, exact intercepts.

Minimises, for every layer and problem at once, the objective of
:mod:`somprobe.probes.models` (mean cross-entropy of standardised features plus
``lam / 2 * ||W||^2``). Three things make it converge in a handful of passes over the
data where plain L-BFGS needs dozens, and a fourth makes most passes cheaper:

* **Spectral preconditioner.** Hidden states are badly conditioned: a few directions carry
  most of the variance. A randomised Nyström approximation of each layer's standardised
  covariance ``S`` (top ``rank`` eigenpairs) gives the curvature model
  ``M = a * S + lam`` (``a``: the mean softmax curvature at the current point), which
  L-BFGS uses as its initial inverse Hessian.
* **Intercepts solved exactly.** After every step the unpenalised intercepts get a few
  Newton steps of their own (a ``class × class`` system, no pass over the features), so
  L-BFGS works on the weights of the reduced objective only.
* **Line search in logit space.** Logits are linear in the weights, so one product
  ``X @ direction`` per iteration prices every trial step; a safeguarded 1-D Newton
  search finds a near-exact step. Each iteration costs two matrix products with ``X``.
* **bfloat16 first, float32 last.** Wide float32 fits take their first iterations with a
  standardised bfloat16 copy of ``X`` (about 2.5× faster products on CPUs with bfloat16
  units) and finish in float32, where alone the stopping rule is judged.

Stopping rule as scikit-learn's lbfgs: the largest gradient entry is at most ``tol``
(or the relative decrease of the objective falls below ``ftol``, or no step decreases it).

Example:
    >>> import torch
    >>> from somprobe.probes.models import fit_standardizer
    >>> g = torch.Generator().manual_seed(0)
    >>> y = torch.arange(90) % 3
    >>> X = torch.randn(1, 90, 4, generator=g); X[0, :, 0] += 2.0 * y
    >>> w = torch.ones(1, 90)
    >>> st = fit_standardizer(X, w)
    >>> pre = spectral_preconditioner(X, w, st)
    >>> out = solve_logistic(X, y[None], w, torch.full((1, 1), 1e-2), 3, st, pre)
    >>> bool(out.converged.all()), out.coef.shape
    (True, torch.Size([1, 1, 4, 3]))
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from somprobe.probes.validate import check_count, check_problem_weights

if TYPE_CHECKING:
    from somprobe.probes.models import Standardizer


RANK = 64  # eigenpairs kept by the preconditioner
MAX_ROWS = 4096  # rows it sketches


@dataclass
class Preconditioner:
    """Top eigenpairs of each layer's standardised covariance.

    ``basis [layer, dim, k]`` is orthonormal, ``eigvals [layer, k]`` are the matching
    eigenvalues and ``rest [layer]`` the level assumed for the orthogonal complement.
    """

    basis: Float[Tensor, "layer dim k"]
    eigvals: Float[Tensor, "layer k"]
    rest: Float[Tensor, " layer"]


def spectral_preconditioner(
    X: Float[Tensor, "layer sample dim"],
    weights: Float[Tensor, "problem sample"],
    standardizer: Standardizer,
    *,
    rank: int = RANK,
    max_rows: int | None = MAX_ROWS,
    seed: int = 0,
) -> Preconditioner:
    """Nyström approximation (exact eigendecomposition when ``dim <= 2 * rank``).

    One preconditioner serves all problems of a layer: it uses the problems' mean weights
    and standardisation, which is close enough to each problem's own, and at most
    ``max_rows`` evenly spaced training rows (``None``: all).

    Raises:
        ProbeError: ``weights`` is not ``[problem, sample]`` of ``X``'s samples, finite
            and non-negative with a training row in every problem, or ``rank`` < 1.
    """
    check_problem_weights(X, weights)
    check_count(rank, "rank", 1)
    rows, w = _sample_rows(weights, rank, max_rows)
    work = _work_dtype(X)
    dt = torch.bfloat16 if work == torch.float32 and X.shape[-1] > 2 * rank else work
    Xs = _standardised(X, standardizer, rows, dt)
    return _nystrom(Xs, w.to(work), rank, seed, work)


def _work_dtype(X: Tensor) -> torch.dtype:
    """float64 stays float64; float32, float16 and bfloat16 features are fitted in float32."""
    return torch.float64 if X.dtype == torch.float64 else torch.float32


_BLOCK = 2**20  # elements per row block when features are converted on the fly


def _rows_times(X: Tensor, B: Tensor) -> Tensor:
    """``X @ B`` per layer in ``B``'s dtype, converting ``X`` a block of rows at a time."""
    if X.dtype == B.dtype:
        return torch.bmm(X, B)
    L, n, d = X.shape
    out = torch.empty(L, n, B.shape[-1], dtype=B.dtype)
    step = max(1, _BLOCK // d)
    for layer in range(L):
        for s in range(0, n, step):
            out[layer, s : s + step] = X[layer, s : s + step].to(B.dtype) @ B[layer]
    return out


def _rows_t_times(X: Tensor, R: Tensor) -> Tensor:
    """``X' @ R`` per layer in ``R``'s dtype, converting ``X`` a block of rows at a time."""
    if X.dtype == R.dtype:
        return torch.bmm(X.transpose(1, 2), R)
    L, n, d = X.shape
    out = torch.zeros(L, d, R.shape[-1], dtype=R.dtype)
    step = max(1, _BLOCK // d)
    for layer in range(L):
        for s in range(0, n, step):
            out[layer].addmm_(X[layer, s : s + step].to(R.dtype).T, R[layer, s : s + step])
    return out


def _sample_rows(weights: Tensor, rank: int, max_rows: int | None) -> tuple[Tensor, Tensor]:
    """Evenly spaced rows with weight (at most ``max_rows``) and their pooled weights."""
    wbar = (weights / weights.sum(-1, keepdim=True)).mean(0)
    rows = torch.nonzero(wbar > 0)[:, 0]
    if max_rows is not None and len(rows) > max(max_rows, 4 * rank):
        rows = rows[torch.linspace(0, len(rows) - 1, max(max_rows, 4 * rank)).round().long()]
    return rows, wbar[rows] / wbar[rows].sum()


def _standardised(
    X: Tensor, st: Standardizer, rows: Tensor | None, dtype: torch.dtype
) -> Float[Tensor, "layer row dim"]:
    """Rows of ``X`` standardised with the problems' mean statistics, a block at a time."""
    mu, sd = st.mean.mean(1), st.scale.mean(1)  # [L, d]
    inv, shift = 1.0 / sd, -mu / sd
    L, n, d = X.shape
    m = n if rows is None else len(rows)
    out = torch.empty(L, m, d, dtype=dtype)
    block = max(1, _BLOCK // d)
    for layer in range(L):
        for s in range(0, m, block):
            x = X[layer, s : s + block] if rows is None else X[layer, rows[s : s + block]]
            out[layer, s : s + block] = torch.addcmul(shift[layer], x, inv[layer])
    return out


def _nystrom(Xs: Tensor, w: Tensor, rank: int, seed: int, dtype: torch.dtype) -> Preconditioner:
    """Top eigenpairs of ``Xs' diag(w) Xs`` (standardised rows ``Xs``)."""
    L, _, d = Xs.shape

    def cov_times(V: Tensor) -> Tensor:  # S @ V, per layer, without forming S
        XV = torch.bmm(Xs, V.to(Xs.dtype)).to(dtype) * w[None, :, None]
        return torch.bmm(XV.transpose(1, 2).to(Xs.dtype), Xs).to(dtype).transpose(1, 2)

    if d <= 2 * rank:
        S = cov_times(torch.eye(d, dtype=dtype).expand(L, d, d).contiguous()).double()
        eig, U = torch.linalg.eigh(0.5 * (S + S.transpose(1, 2)))
        eig = eig.clamp_min(0.0)
        return Preconditioner(U.to(dtype), eig.to(dtype), eig.amin(-1).to(dtype))
    g = torch.Generator().manual_seed(seed)
    omega = torch.linalg.qr(torch.randn(L, d, rank, generator=g, dtype=torch.float64))[0]
    Y = cov_times(omega.to(dtype)).double()
    shift = 1e-6 * Y.norm(dim=(1, 2), keepdim=True)
    Y = Y + shift * omega
    chol, _ = torch.linalg.cholesky_ex(omega.transpose(1, 2) @ Y)
    B = torch.linalg.solve_triangular(chol, Y.transpose(1, 2), upper=False).transpose(1, 2)
    U, sv, _ = torch.linalg.svd(B, full_matrices=False)
    eig = (sv.square() - shift[..., 0]).clamp_min(0.0)
    if not bool(torch.isfinite(eig).all()):  # degenerate data: fall back to no preconditioning
        U, eig = torch.zeros_like(U), torch.ones_like(eig)
    return Preconditioner(U.to(dtype), eig.to(dtype), eig[:, -1].to(dtype))


@dataclass
class SolverResult:
    coef: Float[Tensor, "layer problem dim cls"]
    intercept: Float[Tensor, "layer problem cls"]
    loss: Float[Tensor, "layer problem"]
    n_iter: Int[Tensor, "layer problem"]
    converged: Bool[Tensor, "layer problem"]


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum((-2, -1))


class _Objective:
    """Logits, loss, gradient and intercept Newton steps of all layer × problem fits."""

    def __init__(
        self,
        X: Tensor,
        y: Tensor,
        weights: Tensor,
        lam: Tensor,
        n_classes: int,
        st: Standardizer,
        low_precision: bool,
    ) -> None:
        self.X, self.st, self.work = X, st, _work_dtype(X)
        self.L, self.n, self.d = X.shape
        self.P, self.C = y.shape[0], n_classes
        wn = (weights / weights.sum(-1, keepdim=True)).to(self.work)
        self.wn = wn.T[None, :, :, None]  # [1, n, P, 1]
        self.label = y.T.long()[None, :, :, None].expand(self.L, -1, -1, 1)  # [L, n, P, 1]
        # weighted class counts: sum over rows of wn * onehot(label)
        counts = torch.zeros(self.P, n_classes, dtype=self.work)
        self.counts = counts.scatter_add_(1, y.long(), wn)[None]
        self.inv = 1.0 / st.scale
        self.shift = st.mean * self.inv
        self.lam = lam.to(self.work).reshape(self.L, self.P)
        # bfloat16 pays off on wide features only
        self.low = low_precision and self.work == torch.float32 and self.d > 2 * RANK
        if self.low:  # bfloat16 copy, standardised first (raw hidden states have offsets)
            self.Xlp = _standardised(X, st, None, torch.bfloat16)
            sd, mu = st.scale.mean(1), st.mean.mean(1)
            # x standardised for problem p = x_lp * lp_scale + lp_shift
            self.lp_scale = sd[:, None] * self.inv
            self.lp_shift = (mu[:, None] - st.mean) * self.inv

    def logits(self, W: Tensor, b: Tensor | None) -> Tensor:
        """``[layer, sample, problem, cls]`` logits of weights ``W`` (and intercepts ``b``)."""
        L, n, d, P, C = self.L, self.n, self.d, self.P, self.C
        if self.low:
            weff = (W * self.lp_scale[..., None]).permute(0, 2, 1, 3).reshape(L, d, P * C)
            z = torch.bmm(self.Xlp, weff.to(torch.bfloat16)).to(W.dtype).view(L, n, P, C)
            off = torch.einsum("lpd,lpdc->lpc", self.lp_shift, W)
        else:
            weff = (W * self.inv[..., None]).permute(0, 2, 1, 3).reshape(L, d, P * C)
            z = _rows_times(self.X, weff).view(L, n, P, C)
            off = -torch.einsum("lpd,lpdc->lpc", self.shift, W)
        return z + (off if b is None else b + off)[:, None]

    def nll(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Weighted mean cross-entropy ``[layer, problem]`` and probabilities."""
        p = torch.softmax(z, -1)
        # log-sum-exp from the largest probability (>= 1/C, so no underflow)
        lse = z.amax(-1, keepdim=True) - p.amax(-1, keepdim=True).log()
        return ((lse - z.gather(-1, self.label)) * self.wn).sum((1, 3)), p

    def gradient(self, p: Tensor, W: Tensor) -> tuple[Tensor, Tensor]:
        """Gradients of the objective with respect to ``W`` and the intercepts."""
        L, n, d, P, C = self.L, self.n, self.d, self.P, self.C
        R = (p * self.wn).scatter_add_(-1, self.label, -self.wn.expand(L, n, P, 1))
        gb = R.sum(1)
        if self.low:
            Rt = R.reshape(L, n, P * C).transpose(1, 2).to(torch.bfloat16)
            XtR = torch.bmm(Rt, self.Xlp).to(W.dtype).view(L, P, C, d).transpose(-1, -2)
            G = XtR * self.lp_scale[..., None] + self.lp_shift[..., None] * gb[:, :, None]
            return G + self.lam[..., None, None] * W, gb
        XtR = _rows_t_times(self.X, R.reshape(L, n, P * C))
        G = XtR.view(L, d, P, C).permute(0, 2, 1, 3) - self.st.mean[..., None] * gb[:, :, None]
        return G * self.inv[..., None] + self.lam[..., None, None] * W, gb

    def fit_intercepts(
        self, z: Tensor, b: Tensor, steps: int, tol: float
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Up to ``steps`` Newton steps on the intercepts alone (``z`` moves with them).

        The ``class × class`` Hessian of the first step is reused by later ones. ``z`` is
        updated in place. Returns the logits, intercepts, and the cross-entropy and
        probabilities there.
        """
        C = self.C
        H: Tensor | None = None
        for step in range(steps + 1):
            nll, p = self.nll(z)
            pw = p * self.wn
            gb = pw.sum(1) - self.counts
            if step == steps or float(gb.abs().amax()) <= tol:
                break
            if H is None:
                H = torch.diag_embed(pw.sum(1)) - torch.einsum("lnpc,lnpe->lpce", pw, p)
                # the all-ones direction has no curvature (and no gradient): pin it
                pin = H.diagonal(dim1=-2, dim2=-1).mean(-1) + 1e-12
                H = torch.linalg.cholesky_ex((H + pin[..., None, None] / C).double())[0]
            delta = -torch.cholesky_solve(gb.double()[..., None], H)[..., 0]
            delta = delta.clamp(-4.0, 4.0).to(z.dtype)
            z.add_(delta[:, None])
            b = b + delta
        return z, b, nll, p


def _line_search(
    obj: _Objective,
    z: Tensor,
    zd: Tensor,
    W: Tensor,
    D: Tensor,
    f0: Tensor,
    gd: Tensor,
    skip: Tensor,
    max_ls: int,
) -> Tensor:
    """Step ``t`` per problem along ``D``: Armijo and ``|phi'(t)| <= 0.1 |phi'(0)|``.

    ``phi(t)`` is convex, so ``phi'`` is increasing: trials keep a bracket ``[lo, hi]``
    with ``phi'(lo) < 0 <= phi'(hi)``; the next trial is the Newton step while no upper
    end is known and the secant root of ``phi'`` inside the bracket afterwards. Each trial
    costs only element-wise work on the logits.
    """
    lam, wn = obj.lam, obj.wn
    WW, WD, DD = _dot(W, W), _dot(W, D), _dot(D, D)
    zd_y = (zd.gather(-1, obj.label) * wn).sum((1, 3))
    t = torch.ones_like(f0)
    lo, hi = torch.zeros_like(t), torch.full_like(t, float("inf"))
    d_lo, d_hi = gd.clone(), torch.zeros_like(t)
    ok = skip.clone()
    for _ in range(max_ls):
        nll, p = obj.nll(torch.addcmul(z, t[:, None, :, None], zd))
        pzd = p.mul_(zd)
        pz = pzd.sum(-1, keepdim=True)
        ft = nll + 0.5 * lam * (WW + 2 * t * WD + t * t * DD)
        d1 = (pz * wn).sum((1, 3)) - zd_y + lam * (WD + t * DD)
        finite = torch.isfinite(ft) & torch.isfinite(d1)
        good = finite & (ft <= f0 + 1e-4 * t * gd) & (d1.abs() <= 0.1 * gd.abs())
        below = ~ok & finite & (d1 < 0)
        above = ~ok & ~(finite & (d1 < 0))
        lo, d_lo = torch.where(below, t, lo), torch.where(below, d1, d_lo)
        hi = torch.where(above, t, hi)
        d_hi = torch.where(above, torch.where(finite, d1, float("inf")), d_hi)
        ok = ok | good
        if bool(ok.all()):
            break
        d2 = (((pzd.mul_(zd)).sum(-1, keepdim=True) - pz.square()) * wn).sum((1, 3))
        newton = t - d1 / (d2 + lam * DD).clamp_min(1e-30)
        newton = torch.where(torch.isfinite(newton) & (newton > lo), newton, 4.0 * t)
        width = hi - lo
        secant = lo - d_lo * width / (d_hi - d_lo)
        secant = torch.where(torch.isfinite(secant), secant, lo + 0.5 * width)
        secant = secant.clamp(lo + 0.02 * width, hi - 0.02 * width)
        t = torch.where(ok, t, torch.where(torch.isinf(hi), newton, secant))
    # unfinished searches take the last point known to go downhill (0: no progress)
    return torch.where(skip, torch.zeros_like(t), torch.where(ok, t, lo))


def solve_logistic(
    X: Float[Tensor, "layer sample dim"],
    y: Int[Tensor, "problem sample"],
    weights: Float[Tensor, "problem sample"],
    lam: Float[Tensor, "layer problem"],
    n_classes: int,
    standardizer: Standardizer,
    preconditioner: Preconditioner | None = None,
    *,
    coef: Tensor | None = None,
    intercept: Tensor | None = None,
    max_iter: int = 100,
    tol: float = 1e-4,
    ftol: float | None = None,
    history: int = 10,
    max_ls: int = 20,
    low_precision: bool = True,
    seed: int = 0,
) -> SolverResult:
    """Fit every layer × problem logistic probe; ``coef`` / ``intercept`` warm-start it.

    ``preconditioner`` defaults to :func:`spectral_preconditioner` of ``X``. With
    ``low_precision`` (float32 work, ``dim > 2 * RANK``) the first iterations multiply in
    bfloat16; a problem whose gradient there is within ``0.7 * tol`` (or whose progress
    stalls) waits, and once all wait the fit continues in float32: the stopping rule is
    only ever judged on float32 gradients. ``ftol`` (relative decrease of the objective
    that ends a fit) defaults to 1e-7 in float32 and to scikit-learn's ``64 * eps`` in
    float64. ``converged`` is true for fits stopped by either rule.
    """
    obj = _Objective(X, y, weights, lam, n_classes, standardizer, low_precision)
    if ftol is None:
        ftol = 1e-7 if obj.work != torch.float64 else 64 * torch.finfo(torch.float64).eps
    L, P, d, C = obj.L, obj.P, obj.d, n_classes
    if preconditioner is None and obj.low:  # sketch the bfloat16 copy
        rows, w = _sample_rows(weights, RANK, MAX_ROWS)
        preconditioner = _nystrom(obj.Xlp[:, rows], w.to(obj.work), RANK, seed, obj.work)
    elif preconditioner is None:
        preconditioner = spectral_preconditioner(X, weights, standardizer, seed=seed)
    U = preconditioner.basis
    eig, rest = preconditioner.eigvals[:, None, :], preconditioner.rest[:, None]
    lam_ = obj.lam

    def precondition(Q: Tensor, a: Tensor) -> Tensor:  # (a * S + lam)^-1 Q, S as modelled
        base = 1.0 / (a * rest + lam_)  # [L, P]
        top = 1.0 / (a[..., None] * eig + lam_[..., None]) - base[..., None]  # [L, P, k]
        T = torch.einsum("ldk,lpdc->lpkc", U, Q) * top[..., None]
        return Q * base[..., None, None] + torch.einsum("ldk,lpkc->lpdc", U, T)

    zeros = partial(torch.zeros, dtype=obj.work)
    W = zeros(L, P, d, C) if coef is None else coef.to(obj.work).clone()
    b = zeros(L, P, C) if intercept is None else intercept.to(obj.work).clone()

    def evaluate(z: Tensor, b: Tensor, steps: int) -> tuple[Tensor, ...]:
        z, b, nll, p = obj.fit_intercepts(z, b, steps, 0.1 * tol)
        G, gb = obj.gradient(p, W)
        gmax = torch.maximum(G.abs().amax((-2, -1)), gb.abs().amax(-1))
        return z, b, nll + 0.5 * lam_ * W.square().sum((-2, -1)), p, G, gmax

    # zero weights: the logits are the intercepts, no product needed
    z0 = b[:, None].expand(L, obj.n, P, C).contiguous() if coef is None else obj.logits(W, b)
    z, b, f, p, G, gmax = evaluate(z0, b, 6)
    done = torch.zeros_like(gmax, dtype=torch.bool)
    n_iter = torch.zeros(L, P, dtype=torch.long)
    pairs: list[tuple[Tensor, Tensor, Tensor]] = []  # (s, y, 1 / s'y), oldest first
    gamma = torch.ones_like(f)
    parked = torch.zeros_like(done)  # close enough (or stuck) in bfloat16: wait for float32
    for it in range(max_iter + 1):
        if obj.low and (bool(parked.all()) or it >= max_iter - 3):
            obj.low = False  # finish (and judge) in float32
            z, b, f, p, G, gmax = evaluate(obj.logits(W, b), b, 3)
            parked = torch.zeros_like(done)
        if not obj.low:
            done = done | (gmax <= tol)
        if bool(done.all()) or it == max_iter:
            break
        frozen = done | parked
        # mean softmax curvature (1 - sum p^2) / (C - 1): 1/C at uniform probabilities
        a = (((1.0 - p.square().sum(-1)) * obj.wn[..., 0]).sum(1) / max(C - 1, 1)).clamp_min(
            1e-6 / C
        )
        q = G.clone()
        alphas = []
        for s, yv, rho in reversed(pairs):
            al = rho * _dot(s, q)
            q -= al[..., None, None] * yv
            alphas.append(al)
        if pairs:
            s, yv, rho = pairs[-1]
            yhy = _dot(yv, precondition(yv, a))
            gamma = torch.where(rho > 0, 1.0 / (rho * yhy).clamp_min(1e-30), gamma)
        r = precondition(q, a) * gamma[..., None, None]
        for (s, yv, rho), al in zip(pairs, reversed(alphas), strict=True):
            r += (al - rho * _dot(yv, r))[..., None, None] * s
        D = -r
        gd = _dot(G, D)
        uphill = ~(gd < 0)
        if bool(uphill.any()):  # stale history: preconditioned steepest descent
            D = torch.where(uphill[..., None, None], -precondition(G, a), D)
            gd = _dot(G, D)
        D = torch.where(frozen[..., None, None], 0.0, D)
        zd = obj.logits(D, None)
        t = _line_search(obj, z, zd, W, D, f, gd, frozen, max_ls)
        s = t[..., None, None] * D
        W = W + s
        z_new, b_new, f_new, p_new, G_new, gmax_new = evaluate(
            torch.addcmul(z, t[:, None, :, None], zd), b, 3
        )
        keep = frozen[:, None, :, None]
        z, p = torch.where(keep, z, z_new), torch.where(keep, p, p_new)
        b = torch.where(frozen[..., None], b, b_new)
        yv = G_new - G
        sy = _dot(s, yv)
        good = ~frozen & (sy > 1e-10 * _dot(yv, yv).clamp_min(1e-30))
        pairs.append(
            (
                torch.where(good[..., None, None], s, 0.0),
                torch.where(good[..., None, None], yv, 0.0),
                torch.where(good, 1.0 / sy.where(good, torch.ones_like(sy)), 0.0),
            )
        )
        pairs = pairs[-history:]
        rel = (f - f_new) / torch.maximum(f.abs(), f_new.abs()).clamp_min(1.0)
        n_iter += (~frozen).long()
        f = torch.where(frozen, f, f_new)
        G = torch.where(frozen[..., None, None], G, G_new)
        gmax = torch.where(frozen, gmax, gmax_new)
        stuck = ~frozen & ((t <= 0) | (rel.abs() <= ftol))
        if obj.low:  # no verdicts in bfloat16
            parked = parked | stuck | (gmax <= 0.7 * tol)
        else:
            done = done | stuck
    return SolverResult(coef=W, intercept=b, loss=f, n_iter=n_iter, converged=done)
