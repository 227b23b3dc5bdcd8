"""Ground-truth recovery metrics (docs/spec.md#ground-truth): how well a dictionary's directions match known features."""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor


def cosine_matrix(features: Tensor, dictionary: Tensor) -> Tensor:
    """(n_features, n_latents) cosine similarities between ground-truth features and dictionary rows."""
    f = torch.nn.functional.normalize(features.detach().double(), dim=1)
    w = torch.nn.functional.normalize(dictionary.detach().to(f.device).double(), dim=1)
    return f @ w.T


def mmcs(features: Tensor, dictionary: Tensor) -> float:
    """Mean over ground-truth features f of max_j cos(f, W_dec,j)."""
    return float(cosine_matrix(features, dictionary).max(1).values.mean())


def recovered_fraction(features: Tensor, dictionary: Tensor, threshold: float = 0.8) -> float:
    """Fraction of features with max_j cos(f_i, W_dec,j) > threshold (Korznikov et al.: 0.8)."""
    return float((cosine_matrix(features, dictionary).max(1).values > threshold).double().mean())


def mcc(features: Tensor, dictionary: Tensor) -> float:
    """Hungarian-matched mean correlation: mean |cos| over a one-to-one feature↔latent matching."""
    sim = cosine_matrix(features, dictionary).abs().cpu().numpy()
    rows, cols = linear_sum_assignment(-sim)
    return float(np.mean(sim[rows, cols]))


def max_cosines(features: Tensor, dictionary: Tensor) -> np.ndarray:
    """Per-feature best cosine (for recovery-vs-threshold curves)."""
    return cosine_matrix(features, dictionary).max(1).values.cpu().numpy()
