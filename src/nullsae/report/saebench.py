"""SAEBench `core` evaluation output for one SAE (the schema of sae_bench/evals/core/eval_output.py,
sae-bench 0.6.0), so SAEBench's plotting code and Neuronpedia's uploader read nullsae's numbers.

Reconstruction, shrinkage, sparsity and the misc (density and weight) metrics are computed here from
the evaluation activations as SAEBench's core evaluation computes them; CE and KL scores come from
nullsae's downstream results (docs/spec.md#downstream, the same definitions), −1 where not computed (SAEBench's own
marker for a missing number).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import torch
from pydantic import BaseModel
from torch import Tensor

from nullsae.metrics.ev_conventions import LibraryEVAccumulator
from nullsae.sae import SAE

BATCH = 1024
MISSING = -1.0


class DownstreamNumbers(BaseModel):
    """The downstream figures SAEBench's core output holds (docs/spec.md#downstream), when nullsae computed them."""

    ce_loss_score: float = MISSING
    ce_loss_with_ablation: float = MISSING
    ce_loss_with_sae: float = MISSING
    ce_loss_without_sae: float = MISSING
    kl_div_score: float = MISSING
    kl_div_with_ablation: float = MISSING
    kl_div_with_sae: float = MISSING


def _max_cosine(W: Tensor) -> Tensor:
    """Per row: the largest cosine similarity with any other row (SAEBench `calculate_max_cosine_sim`)."""
    unit = torch.nn.functional.normalize(W.double(), dim=1)
    out = torch.empty(W.shape[0], dtype=torch.float64)
    for start in range(0, W.shape[0], 1024):
        sims = unit[start : start + 1024] @ unit.T
        idx = torch.arange(start, min(start + 1024, W.shape[0]))
        sims[idx - start, idx] = float("-inf")
        out[start : start + 1024] = sims.max(1).values
    return out


@torch.no_grad()
def core_metrics(sae: SAE, x: Tensor, downstream: DownstreamNumbers | None = None) -> dict[str, dict[str, float]]:
    """SAEBench's `eval_result_metrics` for `sae` on evaluation activations `x` (one row per token)."""
    ev = LibraryEVAccumulator()
    sums = {"sq_err": 0.0, "cos": 0.0, "norm_in": 0.0, "norm_out": 0.0, "ratio": 0.0, "xhat_sq": 0.0, "dot": 0.0, "l0": 0.0, "l1": 0.0}
    fired = torch.zeros(sae.cfg.n_latents, dtype=torch.float64)
    for xb in x.split(BATCH):
        z = sae.encode(xb)
        r = sae.decode(z)
        ev.update(xb, r)
        xd, rd = xb.double(), r.double()
        sums["sq_err"] += float((xd - rd).pow(2).sum())
        sums["cos"] += float(torch.nn.functional.cosine_similarity(xd, rd, dim=1).sum())
        n_in, n_out = xd.norm(dim=1), rd.norm(dim=1)
        sums["norm_in"] += float(n_in.sum())
        sums["norm_out"] += float(n_out.sum())
        sums["ratio"] += float((n_out / torch.where(n_in.abs() < 1e-4, torch.ones_like(n_in), n_in)).sum())
        sums["xhat_sq"] += float(rd.pow(2).sum())
        sums["dot"] += float((xd * rd).sum())
        sums["l0"] += float((z != 0).sum())
        sums["l1"] += float(z.double().sum())
        fired += (z != 0).double().sum(0).cpu()
    n = x.shape[0]
    lib = ev.result()
    density = fired / n
    total = float(density.sum())
    d = downstream or DownstreamNumbers()
    return {
        "model_behavior_preservation": {
            "kl_div_score": d.kl_div_score,
            "kl_div_with_ablation": d.kl_div_with_ablation,
            "kl_div_with_sae": d.kl_div_with_sae,
        },
        "model_performance_preservation": {
            "ce_loss_score": d.ce_loss_score,
            "ce_loss_with_ablation": d.ce_loss_with_ablation,
            "ce_loss_with_sae": d.ce_loss_with_sae,
            "ce_loss_without_sae": d.ce_loss_without_sae,
        },
        "reconstruction_quality": {
            "explained_variance": lib.saebench_explained_variance,
            "explained_variance_legacy": lib.saebench_explained_variance_legacy,
            "mse": sums["sq_err"] / n,
            "cossim": sums["cos"] / n,
        },
        "shrinkage": {
            "l2_norm_in": sums["norm_in"] / n,
            "l2_norm_out": sums["norm_out"] / n,
            "l2_ratio": sums["ratio"] / n,
            "relative_reconstruction_bias": sums["xhat_sq"] / sums["dot"],
        },
        "sparsity": {"l0": sums["l0"] / n, "l1": sums["l1"] / n},
        "token_stats": {"total_tokens_eval_reconstruction": n, "total_tokens_eval_sparsity_variance": n},
        "misc_metrics": {
            "freq_over_1_percent": float((density > 0.01).double().mean()),
            "freq_over_10_percent": float((density > 0.1).double().mean()),
            "normalized_freq_over_1_percent": float(density[density > 0.01].sum()) / total if total > 0 else 0.0,
            "normalized_freq_over_10_percent": float(density[density > 0.1].sum()) / total if total > 0 else 0.0,
            "average_max_encoder_cosine_sim": float(_max_cosine(sae.W_enc.cpu()).mean()),
            "average_max_decoder_cosine_sim": float(_max_cosine(sae.W_dec.cpu()).mean()),
            "frac_alive": float((density > 0).double().mean()),
        },
    }


def core_eval_output(
    sae: SAE,
    x: Tensor,
    *,
    model_name: str,
    dataset: str,
    context_size: int,
    hook_name: str,
    downstream: DownstreamNumbers | None = None,
    release: str = "nullsae",
    sae_id: str = "",
) -> dict[str, Any]:
    """One SAEBench core eval output (a JSON-ready dict) for `sae` on activations `x`."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        saelens_version = version("sae-lens")
    except PackageNotFoundError:
        saelens_version = "not installed"
    computed = downstream is not None
    cfg = sae.cfg
    return {
        "eval_type_id": "core",
        "eval_config": {
            "model_name": model_name,
            "llm_dtype": "float32",
            "batch_size_prompts": 0,
            "n_eval_reconstruction_batches": 0,
            "n_eval_sparsity_variance_batches": -(-x.shape[0] // BATCH),
            "dataset": dataset,
            "context_size": context_size,
            "compute_kl": computed,
            "compute_ce_loss": computed,
            "compute_l2_norms": True,
            "compute_sparsity_metrics": True,
            "compute_variance_metrics": True,
            "compute_featurewise_density_statistics": False,
            "compute_featurewise_weight_based_metrics": False,
            "exclude_special_tokens_from_reconstruction": False,
            "verbose": False,
        },
        "eval_id": str(uuid.uuid4()),
        "datetime_epoch_millis": int(time.time() * 1000),
        "eval_result_metrics": core_metrics(sae, x, downstream),
        "eval_result_details": [],
        "sae_bench_commit_hash": "nullsae",
        "sae_lens_id": sae_id,
        "sae_lens_release_id": release,
        "sae_lens_version": saelens_version,
        "sae_cfg_dict": {
            "architecture": cfg.arch,
            "d_in": cfg.d_in,
            "d_sae": cfg.n_latents,
            "k": getattr(cfg, "k", None),  # architectures without a k write null
            "hook_name": hook_name,
            "model_name": model_name,
            "baseline": cfg.baseline,
        },
        "eval_result_unstructured": None,
    }
