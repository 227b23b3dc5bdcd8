"""Latent statistics of docs/spec.md#latent-statistics, as pure functions of (token ids, activations) of a latent's top examples.

q_j(t) ∝ Σ activation of latent j on tokens with id t, over its top-activating examples (the windows
the explainer sees). Entropy H(q_j) in nats, normalised by log(#distinct token ids); "distinct" counts
the ids that carry activation by default (the support of q; 1 id → 0), or every id present in the
examples with `distinct="all"`. A latent is single-token when one id holds ≥ 90 % of its mass.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel
from torch import Tensor

from nullsae.metrics.verdict import Terms, VerdictMetric

SINGLE_TOKEN_MASS = 0.9


class TokenEntropy(BaseModel):
    """Token-distribution entropy of one latent over its top examples."""

    entropy: float  # nats
    normalized: float  # entropy / log(n_distinct), in [0, 1]; 0 when n_distinct ≤ 1
    n_distinct: int
    top_token: int  # id with the most activation mass (-1 when the latent never fires)
    top_mass: float  # its share of the mass


def token_distribution(token_ids: Tensor, acts: Tensor) -> tuple[Tensor, Tensor]:
    """(ids, q): the token ids with positive activation mass and q(t) ∝ Σ activation on id t (sums to 1)."""
    ids = token_ids.reshape(-1).long()
    a = acts.reshape(-1).double().clamp_min(0)
    if ids.shape != a.shape:
        raise ValueError(f"token ids {tuple(token_ids.shape)} and activations {tuple(acts.shape)} differ in size")
    uniq, inverse = torch.unique(ids, return_inverse=True)
    mass = torch.zeros(len(uniq), dtype=torch.float64).index_add_(0, inverse, a)
    keep = mass > 0
    uniq, mass = uniq[keep], mass[keep]
    total = mass.sum()
    return uniq, mass / total if total > 0 else mass


def token_entropy(token_ids: Tensor, acts: Tensor, distinct: Literal["active", "all"] = "active") -> TokenEntropy:
    """docs/spec.md#latent-statistics token-distribution entropy of one latent (raw and normalised) and its dominant token."""
    uniq, q = token_distribution(token_ids, acts)
    if len(q) == 0:
        return TokenEntropy(entropy=0.0, normalized=0.0, n_distinct=0, top_token=-1, top_mass=0.0)
    h = float(-(q * q.log()).sum())
    n = len(q) if distinct == "active" else int(torch.unique(token_ids).numel())
    top = int(q.argmax())
    return TokenEntropy(
        entropy=h, normalized=h / math.log(n) if n > 1 else 0.0, n_distinct=n, top_token=int(uniq[top]), top_mass=float(q[top])
    )


def is_single_token(stats: TokenEntropy, threshold: float = SINGLE_TOKEN_MASS) -> bool:
    """Whether one token id holds at least `threshold` of the latent's activation mass."""
    return stats.n_distinct > 0 and stats.top_mass >= threshold


def single_token_fraction(stats: list[TokenEntropy], threshold: float = SINGLE_TOKEN_MASS) -> float:
    """Fraction of latents that are single-token (over latents that fired at all)."""
    fired = [s for s in stats if s.n_distinct > 0]
    return sum(is_single_token(s, threshold) for s in fired) / len(fired) if fired else float("nan")


def mean_entropy(normalized: np.ndarray) -> float:
    """An SAE's token entropy: the mean normalised entropy over its sampled latents (NaN if none)."""
    v = np.asarray(normalized, dtype=float)
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else math.nan


def _entropy_terms(df: pd.DataFrame) -> Terms | None:
    if "entropy" not in df:
        return None
    v = df["entropy"].dropna().to_numpy(float)
    return (v.size, lambda i: mean_entropy(v[i])) if v.size else None


# Sampled latents are the unit (each SAE's own, resampled independently); trained is expected higher.
# Default δ 0.02 of normalised entropy; no chance level.
VERDICT_METRICS = (VerdictMetric("entropy", "token-distribution entropy", +1, "latent", "latents", _entropy_terms, tolerance=0.02),)
