"""compare_scores holds its family-wise error rate under the null, and the check can fail.

1,000 null data sets, each two models' per-mention scores on the same mentions: 20
scenes of 1–6 mentions, 4 layers × 3 metrics = a family of 12 rows. The paired
difference is zero-mean and symmetric, with a scene effect shared by all of a scene's
mentions (part of it common to every layer and metric, so the 12 rows are correlated)
plus mention noise. Each data set goes through the public ``compare_scores`` with
``cluster="batch"`` and 999 scene sign flips (p-values in steps of 1/1000; p <= 0.05
means at most 49 flips as extreme as the data), and we count the data sets where
*any* row is called significant at alpha 0.05:

* maxT (the default) and Holm over the family: at most alpha plus binomial noise (the
  upper end of the 99 % binomial range of 1,000 draws at 0.05, i.e. 0.067);
* no correction: well above that bound (the test could fail);
* mention-level resampling (``cluster=None``) with maxT, on a subset: also well above,
  since it takes a scene's correlated mentions for independent evidence.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from somprobe.measure.stats import compare_scores, holm

N_DATASETS = 1000
N_NAIVE = 100  # data sets also run with cluster=None
ALPHA = 0.05
LAYERS = 4
METRICS = ["lift_object", "pointing", "share_object"]
N_SCENES = 20


def _null_tables(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    sizes = rng.integers(1, 7, N_SCENES)
    scene = np.repeat(np.arange(N_SCENES), sizes)
    mention = np.concatenate([np.arange(n) for n in sizes])
    n = scene.size
    common = rng.normal(size=N_SCENES)  # shared by every layer and metric
    keys = pd.DataFrame(
        {
            "batch": np.tile(scene, LAYERS),
            "mention": np.tile(mention, LAYERS),
            "layer": np.repeat(np.arange(LAYERS), n),
        }
    )
    a, b = keys.copy(), keys.copy()
    for m in METRICS:
        own = rng.normal(size=(LAYERS, N_SCENES))  # this metric's scene effect per layer
        effect = 0.6 * common[None, :] + 0.8 * own
        diff = effect[:, scene] + 0.3 * rng.normal(size=(LAYERS, n))
        base = rng.random((LAYERS, n))
        a[m] = base.ravel()
        b[m] = (base + diff).ravel()
    return a, b


@pytest.mark.slow
def test_family_wise_error_is_controlled_across_layers_and_metrics() -> None:
    started = time.perf_counter()
    hits = {"maxT": 0, "holm": 0, "none": 0, "naive_maxT": 0}
    row_hits = np.zeros(LAYERS * len(METRICS))
    for i in range(N_DATASETS):
        a, b = _null_tables(np.random.default_rng(10_000 + i))
        opts = {"pair_on": ["batch", "mention"], "n_permutations": 999, "n_resamples": 19,
                "seed": i}  # fmt: skip
        out = compare_scores(a, b, METRICS, cluster="batch", **opts)
        assert len(out) == LAYERS * len(METRICS) and out["p_value"].notna().all()
        p = out["p_value"].to_numpy()
        hits["maxT"] += bool(out["significant"].any())
        hits["holm"] += bool((holm(p) <= ALPHA).any())
        hits["none"] += bool((p <= ALPHA).any())
        row_hits += p <= ALPHA
        if i < N_NAIVE:
            naive = compare_scores(a, b, METRICS, cluster=None, **opts)
            hits["naive_maxT"] += bool(naive["significant"].any())
    seconds = time.perf_counter() - started
    rate = {k: v / (N_NAIVE if k.startswith("naive") else N_DATASETS) for k, v in hits.items()}
    bound = sps.binom.ppf(0.99, N_DATASETS, ALPHA) / N_DATASETS
    print(f"\nfamily-wise rejection rates over {N_DATASETS} null data sets: {rate}; "
          f"99% bound {bound:.3f}; per-row rates {np.round(row_hits / N_DATASETS, 3)}; "
          f"{seconds:.1f} s")  # fmt: skip
    assert rate["maxT"] <= bound
    assert rate["holm"] <= bound
    # each row alone is a valid level-alpha test ...
    assert (row_hits / N_DATASETS <= bound).all()
    # ... but twelve of them, uncorrected, are not: the check above can fail
    assert rate["none"] > 2 * bound
    # and resampling mentions instead of scenes breaks even maxT
    naive_bound = sps.binom.ppf(0.99, N_NAIVE, ALPHA) / N_NAIVE
    assert rate["naive_maxT"] > 2 * naive_bound
