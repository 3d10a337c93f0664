"""Linear probes on hidden states at tag tokens: what does each layer know about the tagged object?

Build a dataset from a capture and the TagSets (:func:`build_probe_dataset`), probe every
layer at once (:func:`run_probes` / :func:`probe_layers`), and read the tidy scores, plot
them (:func:`plot_probe_curves`) or compare two models (:func:`compare_probes`).

Example:
    >>> import numpy as np, torch
    >>> y = np.tile(["red", "blue"], 30)
    >>> X = torch.randn(3, 60, 8); X[2, :, 0] += torch.tensor((y == "red") * 4.0)
    >>> res = probe_layers(X, {"colour": y}, np.repeat(np.arange(20), 3), n_boot=20)
    >>> sorted(res.scores.columns)[:3]
    ['ci_high', 'ci_low', 'lam']
"""

from somprobe.probes.compare import compare_probes
from somprobe.probes.controls import control_labels, majority_class
from somprobe.probes.dataset import (
    REGION_TARGETS,
    ProbeDataset,
    TraceLike,
    build_probe_dataset,
    region_targets,
)
from somprobe.probes.evaluate import ProbeResult, probe_layers, run_probes
from somprobe.probes.models import (
    LogisticFit,
    RidgeFit,
    fit_logistic,
    fit_ridge,
    fit_standardizer,
    predict_logits,
)
from somprobe.probes.plots import plot_probe_curves
from somprobe.probes.solver import Preconditioner, spectral_preconditioner
from somprobe.probes.splits import group_folds, holdout_mask

__all__ = [
    "REGION_TARGETS",
    "LogisticFit",
    "Preconditioner",
    "ProbeDataset",
    "ProbeResult",
    "RidgeFit",
    "TraceLike",
    "build_probe_dataset",
    "compare_probes",
    "control_labels",
    "fit_logistic",
    "fit_ridge",
    "fit_standardizer",
    "group_folds",
    "holdout_mask",
    "majority_class",
    "plot_probe_curves",
    "predict_logits",
    "probe_layers",
    "region_targets",
    "run_probes",
    "spectral_preconditioner",
]
