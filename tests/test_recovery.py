"""Ground-truth recovery metrics (docs/spec.md#ground-truth) against brute force."""

import itertools

import numpy as np
import pytest
import torch

from nullsae.metrics.recovery import mcc, mmcs, recovered_fraction


def test_permuted_scaled_dictionary_is_perfectly_recovered():
    f = torch.randn(20, 8, dtype=torch.float64)
    w = f[torch.randperm(20)] * torch.rand(20, 1, dtype=torch.float64).add(0.5)
    assert mmcs(f, w) == pytest.approx(1.0)
    assert mcc(f, w) == pytest.approx(1.0)
    assert recovered_fraction(f, w) == 1.0


def test_metrics_match_brute_force():
    rng = np.random.default_rng(0)
    f, w = rng.normal(size=(5, 6)), rng.normal(size=(6, 6))
    fn = f / np.linalg.norm(f, axis=1, keepdims=True)
    wn = w / np.linalg.norm(w, axis=1, keepdims=True)
    cos = fn @ wn.T
    best_match = max(np.mean([abs(cos[i, p[i]]) for i in range(5)]) for p in itertools.permutations(range(6), 5))
    tf, tw = torch.tensor(f), torch.tensor(w)
    assert mmcs(tf, tw) == pytest.approx(cos.max(1).mean())
    assert mcc(tf, tw) == pytest.approx(best_match)
    assert recovered_fraction(tf, tw, threshold=0.5) == pytest.approx(np.mean(cos.max(1) > 0.5))
