"""Sparsity metrics (L0, L1, L1/√L2, Hoyer) and the stacked EV: pinned to hand values and to docs/spec.md#reconstruction."""

from __future__ import annotations

import math

import pytest
import torch

from nullsae.metrics import sparsity
from nullsae.metrics.reconstruction import reconstruction_metrics
from nullsae.metrics.stacked import explained_variance


def _codes(shape, seed=0):
    gen = torch.Generator().manual_seed(seed)
    z = torch.relu(torch.randn(shape, generator=gen))
    return z * (torch.rand(shape, generator=gen) < 0.3)


def test_l0_l1_match_reconstruction_metrics():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(200, 8, generator=gen)
    z = _codes((200, 32))
    ref = reconstruction_metrics(x, x * 0.5, z)
    assert float(sparsity.l1(z)) == pytest.approx(ref.l1, rel=1e-6)
    assert float(sparsity.l0(z)) == pytest.approx(ref.l0, rel=1e-9)


def test_hand_values():
    z = torch.tensor([[3.0, 4.0, 0.0, 0.0], [0.0, 0.0, 0.0, 2.0]])
    # L1 = (7 + 2)/2 = 4.5, L2 = (5 + 2)/2 = 3.5
    assert float(sparsity.l1(z)) == pytest.approx(4.5)
    assert float(sparsity.l2(z)) == pytest.approx(3.5)
    assert float(sparsity.l1_over_sqrt_l2(z)) == pytest.approx(4.5 / math.sqrt(3.5))
    assert float(sparsity.hoyer(z)) == pytest.approx((2 - 4.5 / 3.5) / (2 - 1))


def test_hoyer_extremes_and_zero_codes():
    m = 16
    one_hot = torch.zeros(5, m)
    one_hot[:, 3] = 2.0
    assert float(sparsity.hoyer(one_hot)) == pytest.approx(1.0)
    assert float(sparsity.hoyer(torch.ones(5, m))) == pytest.approx(0.0, abs=1e-12)
    zero = torch.zeros(4, m)
    assert float(sparsity.hoyer(zero)) == 1.0
    assert float(sparsity.l1_over_sqrt_l2(zero)) == 0.0
    with pytest.raises(ValueError):
        sparsity.hoyer(torch.ones(3, 1))


def test_l1_over_sqrt_l2_scales_with_root_of_scale():
    z = _codes((100, 20))
    assert float(sparsity.l1_over_sqrt_l2(4 * z)) == pytest.approx(2 * float(sparsity.l1_over_sqrt_l2(z)))
    assert float(sparsity.hoyer(4 * z)) == pytest.approx(float(sparsity.hoyer(z)))


def test_stacked_metrics_equal_one_at_a_time():
    z = _codes((3, 50, 12))
    for fn in (sparsity.l0, sparsity.l1, sparsity.l1_over_sqrt_l2, sparsity.hoyer):
        stacked = fn(z)
        assert stacked.shape == (3,)
        for r in range(3):
            assert float(stacked[r]) == pytest.approx(float(fn(z[r])))


def test_stacked_ev_is_spec_ev():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(4, 300, 10, generator=gen) + 5.0  # a large mean: zero-centred EV would be inflated
    recon = x + 0.7 * torch.randn(x.shape, generator=gen) * torch.arange(1, 5).view(4, 1, 1)
    z = _codes((300, 6))
    ev = explained_variance(x, recon)
    for r in range(4):
        assert float(ev[r]) == pytest.approx(reconstruction_metrics(x[r], recon[r], z).ev, rel=1e-9)
    zero_centred = 1 - (x - recon).pow(2).sum((1, 2)) / x.pow(2).sum((1, 2))
    assert (zero_centred > ev + 0.1).all()
