"""Full-batch L-BFGS for many independent problems at once.

Each row of ``theta`` is its own problem with its own curvature history, step size and
stopping test; one call of ``fun`` evaluates all of them (e.g. one probe per layer and
fold as a single batched matrix product).

Example:
    >>> import torch
    >>> target = torch.tensor([[1.0, -2.0], [3.0, 0.5]])
    >>> def fun(theta, need_grad):
    ...     loss = ((theta - target) ** 2).sum(-1)
    ...     return loss, (2 * (theta - target) if need_grad else None)
    >>> out = lbfgs(fun, torch.zeros(2, 2))
    >>> torch.allclose(out.theta, target, atol=1e-4), out.converged.tolist()
    (True, [True, True])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

#: ``fun(theta, need_grad) -> (loss [batch], grad [batch, param] or None)``.
Objective = Callable[[Tensor, bool], tuple[Tensor, Tensor | None]]


@dataclass
class LbfgsResult:
    theta: Float[Tensor, "batch param"]
    loss: Float[Tensor, " batch"]
    n_iter: Int[Tensor, " batch"]
    converged: Bool[Tensor, " batch"]


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum(-1)


def lbfgs(
    fun: Objective,
    theta0: Float[Tensor, "batch param"],
    *,
    max_iter: int = 100,
    tol: float = 1e-4,
    ftol: float = 1e-7,
    history: int = 10,
    max_ls: int = 25,
) -> LbfgsResult:
    """Minimise ``batch`` independent smooth objectives with L-BFGS and Armijo backtracking.

    A problem stops when its largest gradient entry is at most ``tol`` (scipy's ``gtol``,
    as scikit-learn uses it), when its relative loss decrease falls below ``ftol``, or when
    its line search cannot decrease the loss any more.
    """
    theta = theta0.clone()
    n, m = theta.shape
    loss, grad = fun(theta, True)
    assert grad is not None
    s_hist = theta.new_zeros(history, n, m)
    y_hist = theta.new_zeros(history, n, m)
    rho = theta.new_zeros(history, n)
    gamma = theta.new_ones(n)
    done = grad.abs().amax(-1) <= tol
    n_iter = torch.zeros(n, dtype=torch.long)
    for it in range(max_iter):
        if bool(done.all()):
            break
        # two-loop recursion, batched over problems
        q = grad.clone()
        k = min(it, history)
        slots = [(it - 1 - j) % history for j in range(k)]  # newest first
        alpha = theta.new_zeros(history, n)
        for j in slots:
            alpha[j] = rho[j] * _dot(s_hist[j], q)
            q -= alpha[j, :, None] * y_hist[j]
        if k == 0:
            gamma = 1.0 / grad.abs().sum(-1).clamp_min(1.0)
        r = q * gamma[:, None]
        for j in reversed(slots):
            beta = rho[j] * _dot(y_hist[j], r)
            r += s_hist[j] * (alpha[j] - beta)[:, None]
        direction = -r
        gd = _dot(grad, direction)
        uphill = gd >= 0
        if bool(uphill.any()):  # history went stale: fall back to steepest descent
            direction[uphill] = -grad[uphill] * gamma[uphill, None]
            gd = _dot(grad, direction)
        direction[done] = 0.0
        step = theta.new_ones(n)
        new_loss, new_grad = fun(theta + direction, True)
        assert new_grad is not None
        ok = done | (new_loss <= loss + 1e-4 * step * gd)
        backtracked = ~ok
        for _ in range(max_ls):
            if bool(ok.all()):
                break
            step = torch.where(ok, step, step * 0.5)
            trial, _ = fun(theta + step[:, None] * direction, False)
            ok = ok | (trial <= loss + 1e-4 * step * gd)
        stalled = ~ok
        step = torch.where(stalled, torch.zeros_like(step), step)
        s = step[:, None] * direction
        new_theta = theta + s
        if bool(backtracked.any()):
            new_loss, new_grad = fun(new_theta, True)
            assert new_grad is not None
        y = new_grad - grad
        sy = _dot(s, y)
        slot = it % history
        good = sy > 1e-10 * _dot(y, y).clamp_min(1e-30)
        s_hist[slot] = torch.where(good[:, None], s, 0.0)
        y_hist[slot] = torch.where(good[:, None], y, 0.0)
        rho[slot] = torch.where(good, 1.0 / sy.where(good, torch.ones_like(sy)), 0.0)
        gamma = torch.where(good, sy / _dot(y, y).clamp_min(1e-30), gamma)
        rel = (loss - new_loss) / torch.maximum(loss.abs(), new_loss.abs()).clamp_min(1.0)
        n_iter += (~done).long()
        theta = torch.where(done[:, None], theta, new_theta)
        loss = torch.where(done, loss, new_loss)
        grad = torch.where(done[:, None], grad, new_grad)
        done = done | stalled | (grad.abs().amax(-1) <= tol) | (rel.abs() <= ftol)
    return LbfgsResult(theta=theta, loss=loss, n_iter=n_iter, converged=done)
