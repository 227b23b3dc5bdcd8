"""Downstream metrics of docs/spec.md#downstream: next-token CE and KL with the residual stream at one layer replaced.

Patches: the reconstruction x̂ of any callable (N, d) -> (N, d) (an SAE, a baseline, the identity),
zeros, and the evaluation-set mean activation. CE loss score = (CE_zero − CE_sae)/(CE_zero − CE_clean);
KL score = (KL_zero − KL_sae)/KL_zero with KL(p_clean ‖ p_patched) summed over the vocabulary and
averaged over the predicted tokens. When CE_zero − CE_clean < 0.1 nats the score is ill-conditioned.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd
import torch
import torch.nn.functional as F
from pydantic import BaseModel
from torch import Tensor

from nullsae.metrics.verdict import Terms, VerdictMetric, has_columns
from nullsae.models.hooks import capture_residuals, patch_residual
from nullsae.progress import progress_bar

if TYPE_CHECKING:
    from transformers import PreTrainedModel

ILL_CONDITIONED_NATS = 0.1


class DownstreamResult(BaseModel):
    """CE and KL under each patch at one layer, the two scores, and the ill-conditioning warning."""

    layer: int
    n_tokens: int
    skip_bos: bool
    ce_clean: float
    ce_sae: float
    ce_zero: float
    ce_mean: float
    delta_ce: float  # CE_sae − CE_clean
    ce_loss_score: float
    kl_sae: float
    kl_zero: float
    kl_mean: float
    kl_score: float
    warning: str | None = None

    @property
    def ill_conditioned(self) -> bool:
        return self.warning is not None


def ce_loss_score(ce_clean: float, ce_sae: float, ce_zero: float) -> float:
    """(CE_zero − CE_sae) / (CE_zero − CE_clean): 1 for a perfect reconstruction, 0 for zero ablation;
    NaN when zero ablation costs nothing (the score is undefined)."""
    gap = ce_zero - ce_clean
    return (ce_zero - ce_sae) / gap if gap != 0 else math.nan


def kl_score(kl_sae: float, kl_zero: float) -> float:
    """(KL_zero − KL_sae) / KL_zero; NaN when zero ablation leaves the distribution unchanged."""
    return (kl_zero - kl_sae) / kl_zero if kl_zero != 0 else math.nan


def _ce_terms(df: pd.DataFrame) -> Terms | None:
    if not has_columns(df, "ce_clean", "ce_sae", "ce_zero"):
        return None
    clean, sae, zero = (df[c].to_numpy(float) for c in ("ce_clean", "ce_sae", "ce_zero"))
    return len(clean), lambda i: ce_loss_score(clean[i].sum(), sae[i].sum(), zero[i].sum())


def _kl_terms(df: pd.DataFrame) -> Terms | None:
    if not has_columns(df, "kl_sae", "kl_zero"):
        return None
    ks, kz = df["kl_sae"].to_numpy(float), df["kl_zero"].to_numpy(float)
    return len(ks), lambda i: kl_score(ks[i].sum(), kz[i].sum())


# Evaluation windows are the unit (paired: the same text under both SAEs); the scores are ratios of
# sums over the drawn windows. Chance 0 is zero ablation; default δ 0.01.
VERDICT_METRICS = (
    VerdictMetric("ce_score", "CE loss score", +1, "window", "chunks", _ce_terms, tolerance=0.01, chance=0.0, paired=True, ids=("unit",)),
    VerdictMetric("kl_score", "KL score", +1, "window", "chunks", _kl_terms, tolerance=0.01, chance=0.0, paired=True, ids=("unit",)),
)


def mean_activation(model: PreTrainedModel, windows: Tensor, layer: int, batch_size: int = 16) -> Tensor:
    """(d,) mean residual at `layer` over every position of `windows` (the evaluation-set mean)."""
    device = next(model.parameters()).device
    total, count = None, 0
    for b in range(0, windows.shape[0], batch_size):
        x = capture_residuals(model, windows[b : b + batch_size].to(device), [layer])[layer].float()
        s = x.reshape(-1, x.shape[-1]).sum(0)
        total = s if total is None else total + s
        count += x.shape[0] * x.shape[1]
    assert total is not None
    return total / count


SUM_KEYS = ("ce_clean", "ce_sae", "ce_zero", "ce_mean", "kl_sae", "kl_zero", "kl_mean")


@dataclass
class WindowSums:
    """Per window (N,) float64: CE summed over its predicted tokens, clean and under each patch, the KL
    sums, and `n_tokens`; the units a bootstrap resamples. `summary()` gives the docs/spec.md#downstream metrics."""

    layer: int
    skip_bos: bool
    sums: dict[str, Tensor]

    def summary(self) -> DownstreamResult:
        """Per-token means, the two scores and the ill-conditioning warning."""
        n_tokens = int(self.sums["n_tokens"].sum())
        m = {k: float(self.sums[k].sum()) / n_tokens for k in SUM_KEYS}
        gap = m["ce_zero"] - m["ce_clean"]
        warning = None
        if gap < ILL_CONDITIONED_NATS:
            warning = f"CE_zero − CE_clean = {gap:.3f} nats < {ILL_CONDITIONED_NATS}: the CE loss score is ill-conditioned (zero-ablation barely hurts this model)"
        return DownstreamResult(
            layer=self.layer,
            n_tokens=n_tokens,
            skip_bos=self.skip_bos,
            **m,
            delta_ce=m["ce_sae"] - m["ce_clean"],
            ce_loss_score=ce_loss_score(m["ce_clean"], m["ce_sae"], m["ce_zero"]),
            kl_score=kl_score(m["kl_sae"], m["kl_zero"]),
            warning=warning,
        )


def downstream_metrics(
    model: PreTrainedModel,
    windows: Tensor,
    layer: int,
    reconstruct: Callable[[Tensor], Tensor],
    mean: Tensor | None = None,
    skip_bos: bool = False,
    batch_size: int = 8,
    progress: bool = False,
) -> WindowSums:
    """docs/spec.md#downstream at `layer` over `windows` (N, T) for the reconstruction callable (N, d) -> (N, d), as
    per-window sums computed `batch_size` windows at a time.

    With `skip_bos` the first position keeps its clean residual under every patch. `mean` defaults to
    the mean activation over these windows. The patched passes reuse the clean pass's embedding output.
    """
    if mean is None:
        mean = mean_activation(model, windows, layer, batch_size)
    device = next(model.parameters()).device
    mean = mean.to(device)
    sums: dict[str, list[Tensor]] = {k: [] for k in (*SUM_KEYS, "n_tokens")}

    def patched(fn: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
        def apply(h: Tensor) -> Tensor:
            new = fn(h)
            if skip_bos:
                new = torch.cat([h[:, :1], new[:, 1:]], dim=1)
            return new

        return apply

    def recon(h: Tensor) -> Tensor:
        flat = h.reshape(-1, h.shape[-1]).float()
        return reconstruct(flat).reshape(h.shape).to(h.dtype)

    def ce(logp: Tensor, targets: Tensor) -> Tensor:
        return -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1).double().sum(1).cpu()

    patches = {
        "sae": patched(recon),
        "zero": patched(torch.zeros_like),
        "mean": patched(lambda h: mean.to(h.dtype).expand_as(h)),
    }
    embedding = model.get_input_embeddings()
    seen: dict[str, Tensor] = {}
    with torch.inference_mode():
        for b in progress_bar(range(0, windows.shape[0], batch_size), desc=f"downstream layer {layer}", disable=not progress, leave=False):
            ids = windows[b : b + batch_size].to(device)
            targets = ids[:, 1:]

            # record the clean pass's embedding output and replay it in the patched passes, so that a
            # stochastic embedding (the control variant's fresh noise) is the same in all of them
            def record(_module: object, _inputs: object, out: Tensor) -> None:
                seen["emb"] = out

            handle = embedding.register_forward_hook(record)
            try:
                clean_logp = F.log_softmax(model(input_ids=ids, use_cache=False).logits[:, :-1].float(), dim=-1)
            finally:
                handle.remove()
            sums["ce_clean"].append(ce(clean_logp, targets))
            p_clean = clean_logp.exp()
            for name, fn in patches.items():
                handle = embedding.register_forward_hook(lambda _m, _i, _out: seen["emb"])
                try:
                    with patch_residual(model, layer, fn):
                        logp = F.log_softmax(model(input_ids=ids, use_cache=False).logits[:, :-1].float(), dim=-1)
                finally:
                    handle.remove()
                sums[f"ce_{name}"].append(ce(logp, targets))
                sums[f"kl_{name}"].append((p_clean * (clean_logp - logp)).sum(-1).double().sum(1).cpu())
            sums["n_tokens"].append(torch.full((ids.shape[0],), targets.shape[1], dtype=torch.float64))
    return WindowSums(layer=layer, skip_bos=skip_bos, sums={k: torch.cat(v) for k, v in sums.items()})
