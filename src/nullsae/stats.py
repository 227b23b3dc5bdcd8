"""Seeded bootstrap confidence intervals: one function for every interval the project reports.

Autointerp resamples latents; the report's verdicts (docs/spec.md#verdicts) resample the units of two groups.
Each group is resampled independently with replacement; `statistic` receives one index array per
group and returns a number, so paired, unpaired and pooled statistics all fit the same call.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from pydantic import BaseModel


class BootstrapCI(BaseModel):
    """A point estimate with its percentile bootstrap interval."""

    estimate: float
    low: float
    high: float
    level: float = 0.95
    n_boot: int = 0
    n_failed: int = 0  # resamples whose statistic was undefined (NaN), left out of the interval

    def excludes(self, value: float = 0.0) -> bool:
        """True when the interval lies entirely on one side of `value`."""
        return self.low > value or self.high < value


def bootstrap(
    statistic: Callable[..., float],
    sizes: int | Sequence[int],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> BootstrapCI:
    """Percentile bootstrap of `statistic(*index_arrays)` over groups of `sizes` units.

    The estimate is the statistic on the original data (identity indices). Resamples where the
    statistic is NaN (e.g. an AUROC with one class) are dropped and counted in `n_failed`.
    """
    sizes = [sizes] if isinstance(sizes, int) else list(sizes)
    if not sizes or min(sizes) < 1:
        raise ValueError(f"bootstrap needs at least one unit per group, got sizes {sizes}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    estimate = float(statistic(*[np.arange(n) for n in sizes]))
    rng = np.random.default_rng(seed)
    draws = np.empty(n_boot)
    for b in range(n_boot):
        draws[b] = statistic(*[rng.integers(0, n, size=n) for n in sizes])
    ok = draws[~np.isnan(draws)]
    if ok.size == 0:
        return BootstrapCI(estimate=estimate, low=math.nan, high=math.nan, level=level, n_boot=n_boot, n_failed=n_boot)
    tail = (1 - level) / 2
    low, high = np.quantile(ok, [tail, 1 - tail])
    return BootstrapCI(estimate=estimate, low=float(low), high=float(high), level=level, n_boot=n_boot, n_failed=int(n_boot - ok.size))


def bootstrap_mean(values: Sequence[float] | np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> BootstrapCI:
    """Interval of the mean of `values` (NaNs ignored), resampling the values."""
    arr = np.asarray(values, dtype=float)
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        return BootstrapCI(estimate=math.nan, low=math.nan, high=math.nan, level=level, n_boot=0)
    return bootstrap(lambda idx: float(arr[idx].mean()), arr.size, n_boot=n_boot, seed=seed, level=level)
