"""Linear probes on hidden states at tag tokens: what does each layer know about the tagged object?

Build a dataset from a capture and the TagSets (:func:`build_probe_dataset`), probe every
layer at once (:func:`run_probes` / :func:`probe_layers`), and read the tidy scores, plot
them (:func:`plot_probe_curves`) or compare two models (:func:`compare_probes`).

Controls that can fail at a tag token (:mod:`somprobe.probes.controls`, ``run_probes``'
``controls=``): a Hewitt & Liang control keyed on the object category (``control``), the
old one keyed on the tag number (``control_number``), the label of another object of the
same image (``binding``) and the tag number alone as features (``number_baseline``). The
number, "." and first attribute-word token of each listing line
(:mod:`somprobe.probes.positions`): :func:`listing_positions`, :func:`build_probe_datasets`.

Example:
    >>> import numpy as np, torch
    >>> y = np.tile(["red", "blue"], 30)
    >>> X = torch.randn(3, 60, 8); X[2, :, 0] += torch.tensor((y == "red") * 4.0)
    >>> res = probe_layers(X, {"colour": y}, np.repeat(np.arange(20), 3), n_boot=20)
    >>> sorted(res.scores.columns)[:4]
    ['chance', 'ci_high', 'ci_low', 'lam']
"""

from somprobe.probes.compare import compare_probes
from somprobe.probes.controls import (
    CONTROLS,
    binding_partners,
    control_labels,
    listing_order,
    majority_class,
    number_features,
)
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
from somprobe.probes.positions import POSITIONS, build_probe_datasets, listing_positions
from somprobe.probes.solver import Preconditioner, spectral_preconditioner
from somprobe.probes.splits import group_folds, holdout_mask

__all__ = [
    "CONTROLS",
    "POSITIONS",
    "REGION_TARGETS",
    "LogisticFit",
    "Preconditioner",
    "ProbeDataset",
    "ProbeResult",
    "RidgeFit",
    "TraceLike",
    "binding_partners",
    "build_probe_dataset",
    "build_probe_datasets",
    "compare_probes",
    "control_labels",
    "fit_logistic",
    "fit_ridge",
    "fit_standardizer",
    "group_folds",
    "holdout_mask",
    "listing_order",
    "listing_positions",
    "majority_class",
    "number_features",
    "plot_probe_curves",
    "predict_logits",
    "probe_layers",
    "region_targets",
    "run_probes",
    "spectral_preconditioner",
]
