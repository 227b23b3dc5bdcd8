"""Seeded bootstrap confidence intervals: every interval the project reports.

Autointerp resamples latents; the report's verdicts (docs/spec.md#verdicts) resample the units of two groups.
Each group is resampled independently with replacement; `statistic` receives one index array per
group and returns a number, so paired, unpaired and pooled statistics all fit the same call.
With several SAE seeds, `seed_bootstrap` adds the outer level: resample the seeds (paired), then
each drawn seed's own units, and average the seeds' statistics.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

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
    return _percentile_ci(estimate, draws, level)


def _percentile_ci(estimate: float, draws: np.ndarray, level: float) -> BootstrapCI:
    """The percentile interval of the non-NaN draws; NaN draws are counted as failed."""
    ok = draws[~np.isnan(draws)]
    n_boot = draws.size
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


@dataclass(frozen=True)
class Replicate:
    """One seed's statistic over its own units: `statistic(*index_arrays)` on groups of `sizes` units."""

    statistic: Callable[..., float]
    sizes: tuple[int, ...]


def seed_bootstrap(replicates: Sequence[Replicate], n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> BootstrapCI:
    """Two-level percentile bootstrap of the mean over seeds of each seed's statistic (docs/spec.md#verdicts).

    Each resample draws S seeds with replacement, then each drawn seed's units with replacement, and
    averages the drawn seeds' statistics. The estimate is the mean of the statistics on the full data.
    One replicate is the ordinary bootstrap of its units (`bootstrap`), seed noise unmeasured.
    """
    if not replicates:
        raise ValueError("seed_bootstrap needs at least one replicate")
    if len(replicates) == 1:
        return bootstrap(replicates[0].statistic, list(replicates[0].sizes), n_boot=n_boot, seed=seed, level=level)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    for r in replicates:
        if not r.sizes or min(r.sizes) < 1:
            raise ValueError(f"bootstrap needs at least one unit per group, got sizes {list(r.sizes)}")
    estimate = float(np.mean([r.statistic(*[np.arange(n) for n in r.sizes]) for r in replicates]))
    rng = np.random.default_rng(seed)
    n_seeds = len(replicates)
    draws = np.empty(n_boot)
    for b in range(n_boot):
        picked = [replicates[s] for s in rng.integers(0, n_seeds, size=n_seeds)]
        draws[b] = np.mean([r.statistic(*[rng.integers(0, n, size=n) for n in r.sizes]) for r in picked])
    return _percentile_ci(estimate, draws, level)


def resolvable_difference(seed_sd: float, n_seeds: int, z: float = 1.96) -> float:
    """The smallest difference between two settings' means over `n_seeds` seeds that seed noise of
    standard deviation `seed_sd` lets a 95 % interval resolve: z · sd · √(2 / S)."""
    return z * seed_sd * math.sqrt(2 / n_seeds) if n_seeds >= 2 else math.nan
