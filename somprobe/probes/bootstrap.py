"""Cluster bootstrap over images for probe scores (accuracy and R²).

Resampling whole images (with replacement) respects that tags of one image are not
independent. Accuracy and R² are computed from per-image sums, so thousands of
resamples for every layer cost one matrix product.

Example:
    >>> import numpy as np
    >>> groups = np.repeat(np.arange(20), 5)
    >>> correct = np.tile([1, 1, 1, 0, 1], 20)[None].astype(float)
    >>> boot = Resampler(groups, n_boot=200, seed=0)
    >>> point, lo, hi = boot.interval(boot.accuracy(correct))
    >>> float(point[0]), float(lo[0]) <= 0.8 <= float(hi[0])
    (0.8, True)
"""

from __future__ import annotations

import numpy as np


class Resampler:
    """Fixed image resamples; row 0 of every statistic is the full-sample estimate."""

    def __init__(
        self, groups: np.ndarray, n_boot: int = 1000, seed: int = 0, ci: float = 0.95
    ) -> None:
        uniq, self.codes = np.unique(np.asarray(groups).astype(str), return_inverse=True)
        g = uniq.size
        rng = np.random.default_rng(seed)
        draws = rng.multinomial(g, np.full(g, 1.0 / g), size=n_boot).astype(float)
        self.counts = np.vstack([np.ones((1, g)), draws])  # [1 + n_boot, group]
        self.n_groups = g
        self.ci = ci

    def _sums(self, values: np.ndarray) -> np.ndarray:
        values = np.atleast_2d(values)
        out = np.zeros((values.shape[0], self.n_groups))
        for k in range(values.shape[0]):
            out[k] = np.bincount(self.codes, weights=values[k], minlength=self.n_groups)
        return self.counts @ out.T  # [1 + n_boot, k]

    def accuracy(self, correct: np.ndarray) -> np.ndarray:
        """Mean of 0/1 ``correct [k, sample]`` per resample: ``[1 + n_boot, k]``."""
        n = self._sums(np.ones((1, self.codes.size)))
        return self._sums(correct) / n

    def r2(self, sq_err: np.ndarray, y: np.ndarray) -> np.ndarray:
        """R² = 1 − SSE / SST per resample from ``sq_err [k, sample]`` and ``y [k, sample]``."""
        n = self._sums(np.ones((1, self.codes.size)))
        sse, sy, syy = self._sums(sq_err), self._sums(y), self._sums(np.square(y))
        sst = syy - sy * sy / n
        with np.errstate(divide="ignore", invalid="ignore"):
            return 1.0 - sse / sst

    def interval(self, stats: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Point estimate and percentile interval of each column of ``stats``."""
        alpha = (1.0 - self.ci) / 2.0
        boots = stats[1:]
        if boots.shape[0] == 0:
            nan = np.full(stats.shape[1], np.nan)
            return stats[0], nan, nan
        lo, hi = np.nanquantile(boots, [alpha, 1.0 - alpha], axis=0)
        return stats[0], lo, hi
