"""Reconstruction (docs/spec.md#reconstruction): EV, cosine, L0/L1 and each library's EV on the evaluation
split's activations, with the per-token terms the verdicts resample."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from nullsae.families import Family, FamilyContext, FamilyOutput, FamilyResult, eval_settings
from nullsae.metrics import reconstruction
from nullsae.metrics.reconstruction import ReconstructionMetrics
from nullsae.progress import progress_bar


class ReconstructionResult(ReconstructionMetrics, FamilyResult):
    """The metric module's typed result, stored as the family's."""

    version = 1


def kept_rows(cache: Any, skip_bos: bool) -> Tensor:
    """Row indices of a cached split, BOS positions left out when `skip_bos`."""
    flat = cache.tokens.reshape(-1)
    if skip_bos and cache.bos_id is not None:
        return torch.nonzero(flat != cache.bos_id).squeeze(1)
    return torch.arange(flat.numel())


def compute(ctx: FamilyContext, cells: list[Any]) -> Iterator[tuple[Any, FamilyOutput]]:
    from nullsae.activations import CachedActivations
    from nullsae.metrics.reconstruction import ReconstructionAccumulator, standardized_sq_terms

    cfg = ctx.config
    directory = ctx.split_activations("eval", sorted({c.layer for c in cells}))
    dev = ctx.device
    for c in progress_bar(cells, desc=f"reconstruction {ctx.label}", disable=not ctx.progress, leave=False):
        cache = CachedActivations(directory, c.layer)
        rows = kept_rows(cache, cfg.tokens.skip_bos)
        x = cache.rows(rows).to(dev)
        mean, std = x.double().mean(0), x.double().std(0)
        sae = ctx.load_sae(c)
        acc = ReconstructionAccumulator(sae.cfg.n_latents, mean=mean, std=std)  # a free null's own size
        per: dict[str, list[Tensor]] = {"sq_err": [], "sq_dev": [], "sq_err_std": [], "sq_dev_std": [], "cos": [], "l1": []}
        with torch.no_grad():
            for xb in x.split(1024):
                z = sae.encode(xb)
                recon = sae.decode(z)
                acc.update(xb, recon, z)
                xd, rd = xb.double(), recon.double()
                per["sq_err"].append((xd - rd).pow(2).sum(1).cpu())
                per["sq_dev"].append((xd - mean).pow(2).sum(1).cpu())
                err_std, dev_std = standardized_sq_terms(xb, recon, mean, std)
                per["sq_err_std"].append(err_std.cpu())
                per["sq_dev_std"].append(dev_std.cpu())
                per["cos"].append(torch.nn.functional.cosine_similarity(xd, rd, dim=1).cpu())
                per["l1"].append(z.double().abs().sum(1).cpu())
        tokens = pd.DataFrame({"token": rows.numpy(), **{k: torch.cat(v).numpy() for k, v in per.items()}})
        yield c, FamilyOutput(ReconstructionResult(**acc.result().model_dump()), tables={"tokens": tokens})


FAMILY = Family(
    "reconstruction",
    "the evaluation split's activations",
    ReconstructionResult,
    compute,
    table="tokens",
    stored="tokens",
    offers=lambda u: list(reconstruction.VERDICT_METRICS),
    settings=eval_settings,
)
