"""Reconstruction metrics of docs/spec.md#reconstruction, accumulated over an evaluation set in streaming batches.

FVU is a ratio of sums with x̄ the mean over the whole evaluation set, so the accumulator keeps
Σx, Σ‖x‖² and the error sums (Σ‖x − x̄‖² = Σ‖x‖² − N‖x̄‖²) instead of per-batch ratios.
The legacy per-token EV needs x̄ first, so it takes a second pass or a known mean (`mean`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from nullsae.metrics.ev_conventions import LibraryEV, LibraryEVAccumulator
from nullsae.metrics.verdict import Terms, VerdictMetric, has_columns


def fvu_from_sums(sq_err: float, sq_dev: float) -> float:
    """FVU = Σ‖x − x̂‖² / Σ‖x − x̄‖² (docs/spec.md#reconstruction), from the two sums; NaN when the
    data has no variance (0/0 is undefined, never a perfect EV)."""
    return sq_err / sq_dev if sq_dev > 0 else math.nan


def explained_variance(sq_err: np.ndarray, sq_dev: np.ndarray) -> float:
    """EV = 1 − FVU over tokens with per-token ‖x − x̂‖² and ‖x − x̄‖² (x̄ the evaluation-set mean)."""
    return 1 - fvu_from_sums(float(np.sum(sq_err)), float(np.sum(sq_dev)))


def token_mean(values: np.ndarray) -> float:
    """Mean over tokens of a per-token metric (cosine similarity, L1, L0)."""
    return float(np.mean(values))


def standardized_sq_terms(x: Tensor, recon: Tensor, mean: Tensor, std: Tensor) -> tuple[Tensor, Tensor]:
    """Per-token Σ_d (x_d − x̂_d)²/σ_d² and Σ_d (x_d − x̄_d)²/σ_d² with σ_d the evaluation set's std of
    dimension d (dimensions with σ_d = 0 left out): EV from these weighs every dimension equally, so a few
    massive dimensions cannot make it easy (docs/results/ev-ordering.md)."""
    w = torch.where(std > 0, 1 / std.double().pow(2), torch.zeros_like(std, dtype=torch.float64))
    xd = x.double()
    return ((xd - recon.double()).pow(2) * w).sum(1), ((xd - mean.double()).pow(2) * w).sum(1)


def _ev_terms(err_col: str, dev_col: str):
    def terms(df: pd.DataFrame) -> Terms | None:
        if not has_columns(df, err_col, dev_col):
            return None
        err, dev = df[err_col].to_numpy(float), df[dev_col].to_numpy(float)
        return len(err), lambda i: explained_variance(err[i], dev[i])

    return terms


def _mean_terms(column: str):
    def terms(df: pd.DataFrame) -> Terms | None:
        if not has_columns(df, column):
            return None
        v = df[column].to_numpy(float)
        return len(v), lambda i: token_mean(v[i])

    return terms


# Evaluation tokens are the unit (paired: both SAEs read the same text). Default δ: 0.01 of EV or
# cosine, well above float error and below the gaps the papers discuss (≥ 0.03).
def _token_metric(name: str, label: str, direction: int, terms, tolerance: float, chance: float | None = 0.0) -> VerdictMetric:
    """A metric resampled over evaluation tokens, paired (both SAEs read the same tokens)."""
    return VerdictMetric(name, label, direction, "token", "tokens", terms, tolerance=tolerance, chance=chance, paired=True, ids=("token",))


VERDICT_METRICS = (
    _token_metric("ev", "explained variance", +1, _ev_terms("sq_err", "sq_dev"), 0.01),
    _token_metric("ev_standardized", "explained variance, dimensions standardised", +1, _ev_terms("sq_err_std", "sq_dev_std"), 0.01),
    _token_metric("cosine", "cosine similarity", +1, _mean_terms("cos"), 0.01),
    _token_metric("l1", "L1 norm of latents", 0, _mean_terms("l1"), 0.0, chance=None),
)


class ReconstructionMetrics(LibraryEV):
    """Typed result: one SAE on one evaluation set, with each peer library's EV figure beside nullsae's."""

    n_tokens: int
    fvu: float
    ev: float
    ev_per_token: float | None  # legacy figure: mean_i (1 − ‖x_i − x̂_i‖² / ‖x_i − x̄‖²)
    ev_standardized: float | None = None  # EV with every dimension divided by its std (standardized_sq_terms)
    cosine: float
    l0: float
    l1: float
    l2_ratio: float  # mean_i ‖x̂_i‖ / ‖x_i‖
    relative_reconstruction_bias: float  # γ = Σ‖x̂‖² / Σ⟨x̂, x⟩ (1 = unbiased, < 1 = shrinkage)
    dead_fraction_eval: float


class ReconstructionAccumulator:
    """Feed (x, x̂, z) batches; `result()` gives the metrics over everything fed.

    `mean` is x̄ if known in advance (then `ev_per_token` is exact); without it the legacy
    per-token EV is not reported. With `std` too (each dimension's std over the evaluation set),
    `ev_standardized` is reported.
    """

    def __init__(self, n_latents: int, mean: Tensor | None = None, std: Tensor | None = None):
        self.mean = None if mean is None else mean.double()
        self.std = None if std is None or mean is None else std.double()
        self.sse_std = 0.0
        self.sst_std = 0.0
        self.n = 0
        self.sum_x = None
        self.sum_sq_x = 0.0
        self.sse = 0.0
        self.cos = 0.0
        self.l0 = 0.0
        self.l1 = 0.0
        self.l2_ratio = 0.0
        self.xhat_dot_x = 0.0
        self.xhat_sq = 0.0
        self.ev_tok = 0.0
        self.fired = torch.zeros(n_latents, dtype=torch.bool)
        self.library = LibraryEVAccumulator()

    @torch.no_grad()
    def update(self, x: Tensor, recon: Tensor, z: Tensor) -> None:
        x, recon = x.double(), recon.double()
        self.n += x.shape[0]
        self.sum_x = x.sum(0) if self.sum_x is None else self.sum_x + x.sum(0)
        self.sum_sq_x += float(x.pow(2).sum())
        err = (x - recon).pow(2).sum(1)
        self.sse += float(err.sum())
        self.cos += float(torch.nn.functional.cosine_similarity(x, recon, dim=1).sum())
        self.l0 += float((z != 0).sum())
        self.l1 += float(z.double().abs().sum())
        self.l2_ratio += float((recon.norm(dim=1) / x.norm(dim=1).clamp_min(1e-12)).sum())
        self.xhat_dot_x += float((recon * x).sum())
        self.xhat_sq += float(recon.pow(2).sum())
        if self.mean is not None:
            dev = (x - self.mean.to(x.device)).pow(2).sum(1)
            self.ev_tok += float((1 - err / dev.clamp_min(1e-12)).sum())
        if self.mean is not None and self.std is not None:
            err_std, dev_std = standardized_sq_terms(x, recon, self.mean.to(x.device), self.std.to(x.device))
            self.sse_std += float(err_std.sum())
            self.sst_std += float(dev_std.sum())
        self.fired |= (z != 0).any(0).cpu()
        self.library.update(x, recon)

    def result(self) -> ReconstructionMetrics:
        if self.n == 0 or self.sum_x is None:
            raise ValueError("no tokens were fed to the reconstruction metrics")
        n = self.n
        total = self.sum_sq_x - float(self.sum_x.pow(2).sum()) / n
        fvu = fvu_from_sums(self.sse, total)
        return ReconstructionMetrics(
            n_tokens=n,
            fvu=fvu,
            ev=1 - fvu,
            ev_per_token=self.ev_tok / n if self.mean is not None else None,
            ev_standardized=1 - fvu_from_sums(self.sse_std, self.sst_std) if self.std is not None else None,
            cosine=self.cos / n,
            l0=self.l0 / n,
            l1=self.l1 / n,
            l2_ratio=self.l2_ratio / n,
            relative_reconstruction_bias=self.xhat_sq / max(self.xhat_dot_x, 1e-300),
            dead_fraction_eval=float((~self.fired).float().mean()),
            **self.library.result().model_dump(),
        )


def reconstruction_metrics(x: Tensor, recon: Tensor, z: Tensor) -> ReconstructionMetrics:
    """All reconstruction metrics of one in-memory evaluation set (x̄ and each dimension's std taken over that set)."""
    acc = ReconstructionAccumulator(z.shape[1], mean=x.double().mean(0), std=x.double().std(0))
    acc.update(x, recon, z)
    return acc.result()
