"""Reconstruction metrics of docs/spec.md#reconstruction, accumulated over an evaluation set in streaming batches.

FVU is a ratio of sums with x̄ the mean over the whole evaluation set, so the accumulator keeps
Σx, Σ‖x‖² and the error sums (Σ‖x − x̄‖² = Σ‖x‖² − N‖x̄‖²) instead of per-batch ratios.
The legacy per-token EV needs x̄ first, so it takes a second pass or a known mean (`mean`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from nullsae.metrics.ev_conventions import LibraryEV, LibraryEVAccumulator


class ReconstructionMetrics(LibraryEV):
    """Typed result: one SAE on one evaluation set, with each peer library's EV figure beside nullsae's."""

    n_tokens: int
    fvu: float
    ev: float
    ev_per_token: float | None  # legacy figure: mean_i (1 − ‖x_i − x̂_i‖² / ‖x_i − x̄‖²)
    cosine: float
    l0: float
    l1: float
    l2_ratio: float  # mean_i ‖x̂_i‖ / ‖x_i‖
    relative_reconstruction_bias: float  # γ = Σ‖x̂‖² / Σ⟨x̂, x⟩ (1 = unbiased, < 1 = shrinkage)
    dead_fraction_eval: float


class ReconstructionAccumulator:
    """Feed (x, x̂, z) batches; `result()` gives the metrics over everything fed.

    `mean` is x̄ if known in advance (then `ev_per_token` is exact); without it the legacy
    per-token EV is not reported.
    """

    def __init__(self, n_latents: int, mean: Tensor | None = None):
        self.mean = None if mean is None else mean.double()
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
        self.l1 += float(z.abs().sum())
        self.l2_ratio += float((recon.norm(dim=1) / x.norm(dim=1).clamp_min(1e-12)).sum())
        self.xhat_dot_x += float((recon * x).sum())
        self.xhat_sq += float(recon.pow(2).sum())
        if self.mean is not None:
            dev = (x - self.mean.to(x.device)).pow(2).sum(1)
            self.ev_tok += float((1 - err / dev.clamp_min(1e-12)).sum())
        self.fired |= (z != 0).any(0).cpu()
        self.library.update(x, recon)

    def result(self) -> ReconstructionMetrics:
        if self.n == 0 or self.sum_x is None:
            raise ValueError("no tokens were fed to the reconstruction metrics")
        n = self.n
        total = self.sum_sq_x - float(self.sum_x.pow(2).sum()) / n
        fvu = self.sse / max(total, 1e-300)
        return ReconstructionMetrics(
            n_tokens=n,
            fvu=fvu,
            ev=1 - fvu,
            ev_per_token=self.ev_tok / n if self.mean is not None else None,
            cosine=self.cos / n,
            l0=self.l0 / n,
            l1=self.l1 / n,
            l2_ratio=self.l2_ratio / n,
            relative_reconstruction_bias=self.xhat_sq / max(self.xhat_dot_x, 1e-300),
            dead_fraction_eval=float((~self.fired).float().mean()),
            **self.library.result().model_dump(),
        )


def reconstruction_metrics(x: Tensor, recon: Tensor, z: Tensor) -> ReconstructionMetrics:
    """All reconstruction metrics of one in-memory evaluation set (x̄ taken over that set)."""
    acc = ReconstructionAccumulator(z.shape[1], mean=x.double().mean(0))
    acc.update(x, recon, z)
    return acc.result()
