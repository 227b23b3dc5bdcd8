"""The one bootstrap function: seeded, covers the truth at about its level, handles groups and NaN."""

import math

import numpy as np
import pytest

from nullsae.stats import bootstrap, bootstrap_mean


def test_seeded_and_reproducible():
    x = np.random.default_rng(0).normal(size=50)
    a = bootstrap_mean(x, seed=3)
    b = bootstrap_mean(x, seed=3)
    c = bootstrap_mean(x, seed=4)
    assert a == b
    assert (a.low, a.high) != (c.low, c.high)
    assert a.estimate == pytest.approx(x.mean())
    assert a.low < a.estimate < a.high


def test_coverage_of_the_mean_is_near_95_percent():
    rng = np.random.default_rng(1)
    hits = 0
    for i in range(200):
        x = rng.exponential(size=60)
        ci = bootstrap_mean(x, n_boot=400, seed=i)
        hits += ci.low <= 1.0 <= ci.high
    assert 0.88 <= hits / 200 <= 0.99


def test_two_groups_difference():
    rng = np.random.default_rng(2)
    a, b = rng.normal(1.0, 1, 80), rng.normal(0.0, 1, 70)
    ci = bootstrap(lambda i, j: a[i].mean() - b[j].mean(), [a.size, b.size], seed=0)
    assert ci.estimate == pytest.approx(a.mean() - b.mean())
    assert ci.low > 0
    same = bootstrap(lambda i, j: a[i].mean() - a[j].mean(), [a.size, a.size], seed=0)
    assert same.low <= 0.0 <= same.high


def test_nan_resamples_are_dropped_and_counted():
    y = np.array([1, 0, 0, 0, 0, 0])  # most resamples lose the single positive

    def stat(i):
        return math.nan if y[i].sum() == 0 else float(y[i].mean())

    ci = bootstrap(stat, y.size, n_boot=300, seed=0)
    assert 0 < ci.n_failed < 300
    assert ci.low > 0


def test_bad_sizes_raise():
    with pytest.raises(ValueError):
        bootstrap(lambda i: 0.0, 0)
