"""Explained variance as each peer library computes it (docs/spec.md#reconstruction, last bullet), beside nullsae's EV.

Users compare nullsae's numbers with the ones SAELens, SAEBench, sparsify and dictionary_learning
print; the libraries disagree on what is centred and what is averaged, so each figure is computed
here exactly as that library does, from the same (x, x̂) evaluation batches, and named after it.
Read from the installed sources (the versions below); `tests/test_ev_conventions.py` checks each
against the library's own code where it installs. Definitions and a worked example:
docs/guide/ev-definitions.md.

- SAELens 6.54.12, sae_lens/evals.py `ExplainedVarianceCalculator`: 1 − Σ‖x−x̂‖² / Σ‖x−x̄‖² over all
  batches (x̄ the mean over all of them, sums in float64): nullsae's own EV.
- SAELens, same file, `get_sparsity_and_variance_metrics` (`explained_variance_legacy`): the mean over
  tokens of 1 − ‖x−x̂‖² / ‖x−x̄_b‖², x̄_b the mean of the token's own batch.
- SAEBench 0.6.0, sae_bench/evals/core/main.py `get_sparsity_and_variance_metrics`:
  `explained_variance` = 1 − mean_b E_b‖x−x̂‖² / (mean_b E_b‖x‖² − (mean_{b,d} E_b[x_d²])²), the
  total variance taken about zero and its "mean" term the mean of squares over dimensions;
  `explained_variance_legacy` as SAELens's legacy figure.
- sparsify 1.3.3 (eai-sparsify), sparsify/sparse_coder.py `SparseCoder.forward`: FVU per batch,
  Σ‖x−x̂‖² / Σ‖x−x̄_b‖²; the trainer logs its mean over batches (sparsify/trainer.py `avg_fvu`).
- dictionary_learning 0.1.0, dictionary_learning/evaluation.py `evaluate`:
  `frac_variance_explained` = 1 − Σ_d Var_b(x−x̂)_d / Σ_d Var_b(x)_d per batch (the error's own mean
  removed), averaged over batches.
"""

from __future__ import annotations

import math

import torch
from pydantic import BaseModel
from torch import Tensor


class LibraryEV(BaseModel):
    """The EV (or FVU) each peer library would print for the same SAE and evaluation batches."""

    saelens_explained_variance: float
    saelens_explained_variance_legacy: float
    saebench_explained_variance: float
    saebench_explained_variance_legacy: float
    sparsify_fvu: float
    dictionary_learning_frac_variance_explained: float


# Figures that depend on how the tokens are split into batches (each library's own batching).
BATCH_DEPENDENT: tuple[str, ...] = (
    "saelens_explained_variance_legacy",
    "saebench_explained_variance",
    "saebench_explained_variance_legacy",
    "sparsify_fvu",
    "dictionary_learning_frac_variance_explained",
)


class LibraryEVAccumulator:
    """Feed the evaluation batches (x, x̂) in order; `result()` gives every library's figure.

    Batch-dependent figures (the legacy per-token EVs, sparsify's FVU, dictionary_learning's EV) use
    the batches exactly as fed, as each library uses its own evaluation batches.
    """

    def __init__(self) -> None:
        self.n = 0
        self.sum_x: Tensor | None = None
        self.sum_sq = 0.0
        self.sse = 0.0
        self.legacy_sum = 0.0
        self.batch_sq_norm: list[float] = []  # SAEBench: E_b‖x‖² per batch
        self.batch_sq_dim: list[Tensor] = []  # SAEBench: E_b[x_d²] per batch
        self.batch_sse: list[float] = []  # SAEBench: E_b‖x − x̂‖² per batch
        self.fvu_batches: list[float] = []
        self.dl_batches: list[float] = []

    @torch.no_grad()
    def update(self, x: Tensor, recon: Tensor) -> None:
        x, recon = x.double(), recon.double()
        err = (x - recon).pow(2).sum(1)
        dev = (x - x.mean(0)).pow(2).sum(1)
        self.n += x.shape[0]
        self.sum_x = x.sum(0) if self.sum_x is None else self.sum_x + x.sum(0)
        self.sum_sq += float(x.pow(2).sum())
        self.sse += float(err.sum())
        self.legacy_sum += float((1 - err / dev).sum())
        self.batch_sq_norm.append(float(x.pow(2).sum(1).mean()))
        self.batch_sq_dim.append(x.pow(2).mean(0).cpu())
        self.batch_sse.append(float(err.mean()))
        self.fvu_batches.append(float(err.sum() / dev.sum()))
        self.dl_batches.append(float(1 - torch.var(x - recon, dim=0).sum() / torch.var(x, dim=0).sum()))

    def result(self) -> LibraryEV:
        if self.n == 0 or self.sum_x is None:
            raise ValueError("no tokens were fed to the library EV figures")
        n = self.n
        total = self.sum_sq / n - float((self.sum_x / n).pow(2).sum())
        nb = len(self.batch_sse)
        saebench_total = sum(self.batch_sq_norm) / nb - float(torch.cat(self.batch_sq_dim).mean()) ** 2
        legacy = self.legacy_sum / n
        return LibraryEV(
            saelens_explained_variance=1 - _ratio(self.sse / n, total),
            saelens_explained_variance_legacy=legacy,
            saebench_explained_variance=1 - _ratio(sum(self.batch_sse) / nb, saebench_total),
            saebench_explained_variance_legacy=legacy,
            sparsify_fvu=sum(self.fvu_batches) / nb,
            dictionary_learning_frac_variance_explained=sum(self.dl_batches) / nb,
        )


def _ratio(num: float, den: float) -> float:
    """num / den, NaN when the denominator is 0 (the libraries' 0/0 is undefined, not EV 1)."""
    return num / den if den != 0 else math.nan


def library_ev(batches: list[tuple[Tensor, Tensor]]) -> LibraryEV:
    """Every library's figure over in-memory evaluation batches [(x, x̂), ...]."""
    acc = LibraryEVAccumulator()
    for x, recon in batches:
        acc.update(x, recon)
    return acc.result()
