"""Batched L-BFGS against scipy's L-BFGS-B on independent problems."""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import minimize, rosen, rosen_der

from somprobe.probes.lbfgs import lbfgs


def test_matches_scipy_on_rosenbrock_batch() -> None:
    starts = torch.tensor(
        [[-1.2, 1.0, 0.5], [0.0, 0.0, 0.0], [2.0, -1.0, 1.5]], dtype=torch.float64
    )

    def fun(theta, need_grad):
        x = theta.numpy()
        loss = torch.tensor([rosen(r) for r in x])
        grad = torch.tensor(np.stack([rosen_der(r) for r in x])) if need_grad else None
        return loss, grad

    out = lbfgs(fun, starts, max_iter=500, tol=1e-8, ftol=0.0)
    for i, x0 in enumerate(starts.numpy()):
        ref = minimize(rosen, x0, jac=rosen_der, method="L-BFGS-B", options={"gtol": 1e-8})
        np.testing.assert_allclose(out.theta[i].numpy(), ref.x, atol=1e-4)
    assert out.converged.all()


def test_problems_stop_independently() -> None:
    scales = torch.tensor([1.0, 1000.0], dtype=torch.float64)
    target = torch.ones(2, 4, dtype=torch.float64)

    def fun(theta, need_grad):
        r = theta - target
        loss = 0.5 * (scales[:, None] * r * r).sum(-1)
        return loss, (scales[:, None] * r if need_grad else None)

    out = lbfgs(fun, torch.zeros(2, 4, dtype=torch.float64), tol=1e-9)
    torch.testing.assert_close(out.theta, target)
    assert out.n_iter.tolist()[0] >= 1
