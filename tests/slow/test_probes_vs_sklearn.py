"""Batched probes vs scikit-learn LogisticRegression on the same grouped splits.

A synthetic dataset has a linear class signal planted in some layers only. The batched
probe (all layers at once, lam chosen by grouped CV) must find the planted layers and
agree with scikit-learn (StandardScaler + LogisticRegression, C chosen by GridSearchCV
over the same grid and the same folds, log-loss) within 2 accuracy points at every layer.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, PredefinedSplit
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from somprobe.probes import group_folds, holdout_mask, probe_layers

PLANTED = {1: 1.2, 4: 0.6, 5: 1.0}  # layer -> signal strength; layers 0, 2, 3 have none


def _data():
    rng = np.random.default_rng(0)
    n_img, per_img, d, c = 150, 6, 24, 5
    n = n_img * per_img
    groups = np.repeat(np.arange(n_img), per_img)
    y = rng.integers(0, c, n)
    means = rng.normal(size=(c, d))
    X = rng.normal(size=(6, n, d)) * rng.uniform(0.5, 3, d) + rng.normal(size=d) * 5
    for layer, s in PLANTED.items():
        X[layer] += s * means[y]
    return torch.as_tensor(X, dtype=torch.float32), y.astype(str), groups


@pytest.mark.slow
def test_matches_sklearn_and_finds_planted_layers() -> None:
    X, y, groups = _data()
    lambdas = [1e-3, 1e-2, 1e-1, 1.0]
    res = probe_layers(
        X, {"cls": y}, groups, lambdas=lambdas, n_folds=4, n_boot=0, tol=1e-6, max_iter=300
    )
    ours = res.scores.query("probe == 'task'").set_index("layer")
    baseline = res.scores.query("probe == 'baseline'")["value"].iloc[0]

    test = holdout_mask(groups, 0.2, 0)
    folds = group_folds(groups[~test], 4)
    ntr = int((~test).sum())
    n_fit = ntr - np.bincount(folds)  # training rows of each CV fold
    ref_acc = {}
    for layer in range(X.shape[0]):
        Xl = X[layer].double().numpy()
        # same strengths: C = 1/(lam * n_train); fold sizes differ slightly, so use the mean
        grid = {"logisticregression__C": [1.0 / (lam * n_fit.mean()) for lam in lambdas]}
        search = GridSearchCV(
            make_pipeline(StandardScaler(), LogisticRegression(tol=1e-6, max_iter=1000)),
            grid,
            cv=PredefinedSplit(folds),
            scoring="neg_log_loss",
            refit=False,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            search.fit(Xl[~test], y[~test])
        best_c = search.best_params_["logisticregression__C"]
        lam = lambdas[grid["logisticregression__C"].index(best_c)]
        final = make_pipeline(
            StandardScaler(), LogisticRegression(C=1.0 / (lam * ntr), tol=1e-6, max_iter=1000)
        )
        final.fit(Xl[~test], y[~test])
        ref_acc[layer] = final.score(Xl[test], y[test])
        assert abs(ours.loc[layer, "value"] - ref_acc[layer]) <= 0.02, (
            layer,
            ours.loc[layer],
            ref_acc,
        )
    for layer in range(X.shape[0]):
        if layer in PLANTED:
            assert ours.loc[layer, "value"] > baseline + 0.3
        else:
            assert ours.loc[layer, "value"] < baseline + 0.1
