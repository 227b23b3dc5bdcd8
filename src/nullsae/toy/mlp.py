"""The random MLP of Heap et al. §4 (docs/spec.md#toy-models): Linear(d, 4d) → ReLU → Linear(4d, d), PyTorch default
init, never trained; it stands in for a transformer's feed-forward block at initialisation."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def random_mlp(d: int, seed: int = 0, hidden_factor: int = 4) -> nn.Sequential:
    """A fresh MLP with PyTorch's default Linear init drawn under `seed` (the global RNG is left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mlp = nn.Sequential(nn.Linear(d, hidden_factor * d), nn.ReLU(), nn.Linear(hidden_factor * d, d))
    mlp.requires_grad_(False)
    return mlp


@torch.no_grad()
def apply_mlp(mlp: nn.Module, x: Tensor, chunk: int = 65_536) -> Tensor:
    """MLP outputs for rows of x, in chunks to bound memory."""
    return torch.cat([mlp(x[i : i + chunk]) for i in range(0, x.shape[0], chunk)])
