"""Sparsity of latent codes (docs/spec.md#reconstruction, #ground-truth): L0, L1, L1/√L2 and Hoyer sparseness, one definition each.

Every function takes codes z of shape (..., N, m) and reduces over the N samples, so a stack of
models (R, N, m) gives one value per model. L1/√L2 and Hoyer are ratios of the set means (as in
Heap et al.'s code), which keeps them defined when single codes are all zero.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def l0(z: Tensor) -> Tensor:
    """mean_i #{j : z_ij ≠ 0}."""
    return (z != 0).sum(-1).double().mean(-1)


def l1(z: Tensor) -> Tensor:
    """mean_i Σ_j |z_ij|."""
    return z.double().abs().sum(-1).mean(-1)


def l2(z: Tensor) -> Tensor:
    """mean_i ‖z_i‖₂."""
    return torch.linalg.vector_norm(z.double(), dim=-1).mean(-1)


def l1_over_sqrt_l2(z: Tensor) -> Tensor:
    """L1 / √L2 (Heap et al. Fig. 6); 0 when every code is zero."""
    norm = l2(z)
    return torch.where(norm > 0, l1(z) / norm.clamp_min(1e-300).sqrt(), torch.zeros_like(norm))


def hoyer(z: Tensor) -> Tensor:
    """Hoyer sparseness (√m − L1/L2) / (√m − 1) in [0, 1]; 1 (maximally sparse) when every code is zero."""
    m = z.shape[-1]
    if m < 2:
        raise ValueError("Hoyer sparseness needs at least 2 latents")
    norm = l2(z)
    ratio = l1(z) / norm.clamp_min(1e-300)
    root = math.sqrt(m)
    return torch.where(norm > 0, (root - ratio) / (root - 1), torch.ones_like(norm))
