"""Downstream (docs/spec.md#downstream): CE and KL of the model variant with the residual patched by the
SAE's reconstruction, zero and mean ablation, on the evaluation split; per-window sums kept."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd
from torch import Tensor

from nullsae.families import Family, FamilyContext, FamilyOutput, FamilyResult, eval_settings
from nullsae.metrics import downstream
from nullsae.progress import progress_bar


class DownstreamScores(FamilyResult):
    """One SAE's downstream figures (sums over the evaluation windows' predicted tokens)."""

    version = 1
    ce_clean: float
    ce_sae: float
    ce_zero: float
    ce_mean: float
    kl_sae: float
    kl_zero: float
    kl_mean: float
    delta_ce: float  # CE_sae − CE_clean
    ce_score: float
    kl_score: float
    ce_ill_conditioned: bool  # CE_zero − CE_clean < 0.1 nats
    downstream_tokens: int


def compute(ctx: FamilyContext, cells: list[Any]) -> Iterator[tuple[Any, FamilyOutput]]:
    from nullsae.metrics.downstream import downstream_metrics, mean_activation

    cfg = ctx.config
    windows = ctx.windows("eval")
    for c in progress_bar(cells, desc=f"downstream {ctx.label}", disable=not ctx.progress, leave=False):
        sae = ctx.load_sae(c)
        variant = ctx.variant()  # control: fresh, its noise restarts from its seed
        ctx.seed("downstream", c.key)

        def reconstruct(x: Tensor) -> Tensor:
            return sae.decode(sae.encode(x))

        mean = mean_activation(variant.model, windows, c.layer, batch_size=cfg.tokens.model_batch)
        per_window = downstream_metrics(
            variant.model,
            windows,
            c.layer,
            reconstruct,
            mean=mean,
            skip_bos=cfg.tokens.skip_bos,
            batch_size=cfg.tokens.model_batch,
            progress=ctx.progress,
        )
        units = pd.DataFrame({"unit": range(windows.shape[0]), **{k: v.numpy() for k, v in per_window.sums.items()}})
        r = per_window.summary()
        result = DownstreamScores(
            **r.model_dump(include={"ce_clean", "ce_sae", "ce_zero", "ce_mean", "kl_sae", "kl_zero", "kl_mean", "delta_ce", "kl_score"}),
            ce_score=r.ce_loss_score,
            ce_ill_conditioned=r.ill_conditioned,
            downstream_tokens=r.n_tokens,
        )
        del variant
        yield c, FamilyOutput(result, tables={"units": units})


FAMILY = Family(
    "downstream",
    "the model variant and the evaluation split",
    DownstreamScores,
    compute,
    table="chunks",
    stored="units",
    offers=lambda u: list(downstream.VERDICT_METRICS),
    settings=eval_settings,
)
