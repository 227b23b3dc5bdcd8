"""Latent statistics of docs/spec.md#latent-statistics on hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from nullsae.metrics.latents import is_single_token, single_token_fraction, token_distribution, token_entropy


def test_single_token_latent_has_zero_entropy():
    ids = torch.tensor([[5, 7, 5], [9, 5, 7]])
    acts = torch.tensor([[2.0, 0.0, 1.0], [0.0, 3.0, 0.0]])
    s = token_entropy(ids, acts)
    assert s.entropy == 0 and s.normalized == 0 and s.n_distinct == 1
    assert s.top_token == 5 and s.top_mass == 1.0 and is_single_token(s)


def test_uniform_latent_is_normalised_to_one():
    ids = torch.tensor([1, 2, 3, 4, 1, 2, 3, 4])
    acts = torch.ones(8)
    s = token_entropy(ids, acts)
    assert s.entropy == pytest.approx(math.log(4))
    assert s.normalized == pytest.approx(1.0)
    assert not is_single_token(s)


def test_distribution_weights_by_activation_and_distinct_option():
    ids = torch.tensor([1, 1, 2, 3])
    acts = torch.tensor([1.0, 2.0, 1.0, 0.0])  # token 3 never fires
    uniq, q = token_distribution(ids, acts)
    assert uniq.tolist() == [1, 2] and q.tolist() == pytest.approx([0.75, 0.25])
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert token_entropy(ids, acts).normalized == pytest.approx(h / math.log(2))
    assert token_entropy(ids, acts, distinct="all").normalized == pytest.approx(h / math.log(3))


def test_single_token_fraction_threshold():
    dominant = token_entropy(torch.tensor([1, 2]), torch.tensor([9.5, 0.5]))  # 95 % on one id
    spread = token_entropy(torch.tensor([1, 2]), torch.tensor([8.5, 1.5]))  # 85 %
    dead = token_entropy(torch.tensor([1, 2]), torch.zeros(2))
    assert single_token_fraction([dominant, spread, dead]) == pytest.approx(0.5)
    assert dead.top_token == -1
