"""Random SAE baselines of Korznikov et al. (docs/spec.md#baselines): what each one freezes, constrains or initialises.

The same functions serve every architecture: the base SAE class calls them at construction, at
the data-dependent initialisation and after each optimiser step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def freeze(baseline: str, W_enc: nn.Parameter, W_dec: nn.Parameter) -> None:
    """frozen-decoder keeps W_dec and frozen-encoder keeps W_enc at their random initialisation."""
    W_dec.requires_grad_(baseline != "frozen-decoder")
    W_enc.requires_grad_(baseline != "frozen-encoder")


@torch.no_grad()
def cov_directions(x: Tensor, n: int, seed: int) -> Tensor:
    """`cov` init: n Gaussian directions with the activations' covariance, normalised to unit rows."""
    xc = x - x.mean(0)
    cov = xc.T @ xc / max(1, x.shape[0] - 1)
    evals, evecs = torch.linalg.eigh(cov.double())
    sqrt_cov = (evecs * evals.clamp_min(0).sqrt()) @ evecs.T
    gen = torch.Generator().manual_seed(seed)
    g = torch.randn(n, x.shape[1], generator=gen, dtype=torch.float64).to(x.device) @ sqrt_cov.T
    return F.normalize(g.to(x.dtype), dim=1)


@torch.no_grad()
def project_into_cone(W: Tensor, W0: Tensor, tau: float) -> Tensor:
    """Soft-frozen decoder: unit rows of W, each moved back onto the cone cos(w, w⁽⁰⁾) ≥ τ where it left it."""
    w = F.normalize(W, dim=1)
    w0 = F.normalize(W0, dim=1)
    cos = (w * w0).sum(1, keepdim=True)
    ortho = F.normalize(w - cos * w0, dim=1)
    projected = tau * w0 + (1 - tau**2) ** 0.5 * ortho
    return torch.where(cos < tau, projected, w)
