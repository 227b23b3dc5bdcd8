"""The random MLP: shape, PyTorch default init, seeded, global RNG left alone."""

from __future__ import annotations

import math

import torch
from torch import nn

from nullsae.toy.mlp import apply_mlp, random_mlp


def test_random_mlp_shape_init_and_seed():
    mlp = random_mlp(16, seed=3)
    first, last = mlp[0], mlp[2]
    assert isinstance(first, nn.Linear) and isinstance(last, nn.Linear)
    assert first.weight.shape == (64, 16) and last.weight.shape == (16, 64)
    assert float(first.weight.abs().max()) <= 1 / math.sqrt(16)  # nn.Linear default: U(±1/√fan_in)
    assert float(last.weight.abs().max()) <= 1 / math.sqrt(64)
    again, other = random_mlp(16, seed=3)[0], random_mlp(16, seed=4)[0]
    assert isinstance(again, nn.Linear) and isinstance(other, nn.Linear)
    assert torch.equal(again.weight, first.weight)
    assert not torch.equal(other.weight, first.weight)
    assert not any(p.requires_grad for p in mlp.parameters())


def test_global_rng_untouched_and_chunked_apply():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    mlp = random_mlp(8, seed=1)
    assert torch.equal(torch.rand(3), expected)
    x = torch.randn(50, 8)
    assert torch.allclose(apply_mlp(mlp, x, chunk=7), mlp(x), atol=1e-6)
