"""Free nulls of docs/spec.md#free-nulls: null dictionaries built without training, for any SAE (e.g. a published one).

`random` (a fresh initialisation with the audited SAE's mean L0), `shuffled-decoder` (its decoder rows
permuted against the encoder), `pca` (the top principal directions, TopK on |code| at its L0) and
`identity` (the residual basis at its L0; at L0 = d it reconstructs exactly, EV 1). Signed codes (PCA, identity) are
written as ± pairs of latents, [U; −U], so every null is an ordinary nullsae SAE whose L0 counts one
latent per nonzero code.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from pydantic import BaseModel
from torch import Tensor

from nullsae.sae.architectures import SAE
from nullsae.sae.config import FREE_NULLS as FREE_NULLS  # the names, where the torch-free configs read them
from nullsae.sae.config import SAEConfig
from nullsae.stats import BootstrapCI, bootstrap

BATCH = 2048


@torch.no_grad()
def mean_l0(sae: SAE, x: Tensor) -> float:
    """Mean number of nonzero latents per token."""
    return float(sum(float((sae.encode(xb) != 0).sum()) for xb in x.split(BATCH)) / x.shape[0])


@torch.no_grad()
def match_l0(sae: SAE, x: Tensor, target: float, iters: int = 40) -> SAE:
    """Set k (topk) or the firing bar (the others) so the SAE's mean L0 on `x` is `target`."""
    if sae.cfg.arch == "topk":
        k = int(min(max(1, round(target)), sae.cfg.n_latents - 1))
        sae.cfg = sae.cfg.model_copy(update={"k": k})
        return sae
    lo, hi = 0.0, 1.0
    sae.set_firing_bar(hi)
    while mean_l0(sae, x) > target and hi < 1e6:
        lo, hi = hi, hi * 4
        sae.set_firing_bar(hi)
    for _ in range(iters):  # mean L0 falls as the bar rises
        mid = (lo + hi) / 2
        sae.set_firing_bar(mid)
        lo, hi = (mid, hi) if mean_l0(sae, x) > target else (lo, mid)
    sae.set_firing_bar((lo + hi) / 2)
    return sae


@torch.no_grad()
def _fit_gain(sae: SAE, x: Tensor) -> None:
    """Scale the code (and every bar with it, so the same latents fire) to the least-squares fit of x − b_dec."""
    num = den = 0.0
    for xb in x.split(BATCH):
        r = sae.encode(xb) @ sae.W_dec
        num += float((r * (xb - sae.b_dec)).sum())
        den += float(r.pow(2).sum())
    gain = num / den if den > 0 else 1.0
    if not np.isfinite(gain) or gain <= 0:
        return
    sae.scale_code(torch.tensor(gain))


def random_null(sae: SAE, x: Tensor, seed: int = 0) -> SAE:
    """A fresh initialisation of the same architecture and size (decoder rows uniform on the sphere,
    encoder = decoderᵀ, b_dec the geometric median of x), its L0 on `x` matched to the SAE's."""
    cfg = sae.cfg.model_copy(update={"seed": seed, "baseline": "none", "init": "iso"})
    null = SAE(cfg).to(x.device)
    null.initialize(x[:BATCH])
    null.eval()
    match_l0(null, x, mean_l0(sae, x))
    _fit_gain(null, x)
    return null


@torch.no_grad()
def shuffled_decoder_null(sae: SAE, seed: int = 0) -> SAE:
    """The SAE with its decoder rows permuted by a seeded permutation: each latent reads one direction and writes another."""
    null = copy.deepcopy(sae)
    perm = torch.randperm(sae.cfg.n_latents, generator=torch.Generator().manual_seed(seed)).to(sae.W_dec.device)
    null.W_dec.copy_(sae.W_dec[perm])
    return null.eval()


def _signed_dictionary(U: Tensor, b_dec: Tensor, arch: str, k: int) -> SAE:
    """An SAE whose dictionary is [U; −U] (rows of U orthonormal): codes are the projections on U, split by sign."""
    p, d = U.shape
    cfg = SAEConfig(arch=arch, d_in=d, n_latents=2 * p, k=min(max(1, k), p), normalize_decoder=False)
    null = SAE(cfg).to(U.device)
    with torch.no_grad():
        both = torch.cat([U, -U])
        null.W_enc.copy_(both)
        null.W_dec.copy_(both)
        null.W_dec_init.copy_(both)
        null.b_enc.zero_()
        null.b_dec.copy_(b_dec)
        null.initialized.fill_(True)
    return null.eval()


@torch.no_grad()
def pca_null(sae: SAE, x_fit: Tensor, x_eval: Tensor) -> SAE:
    """The top-min(m, d) principal directions of `x_fit` as the dictionary, TopK on |code| at the SAE's L0 on `x_eval`."""
    mean = x_fit.double().mean(0)
    xc = x_fit.double() - mean
    _, _, vh = torch.linalg.svd(xc, full_matrices=False)
    p = min(sae.cfg.n_latents, x_fit.shape[1], vh.shape[0])
    return _signed_dictionary(vh[:p].float(), mean.float(), "topk", round(mean_l0(sae, x_eval)))


def identity_null(mean: Tensor, k: int) -> SAE:
    """The d residual-basis directions as the dictionary, TopK on |x − x̄| per coordinate; at full width
    (k = d) it reconstructs exactly: EV 1, the upper anchor."""
    d = mean.shape[0]
    return _signed_dictionary(torch.eye(d, device=mean.device), mean.float(), "topk", k)


def free_nulls(sae: SAE, x_eval: Tensor, x_fit: Tensor, seed: int = 0) -> dict[str, SAE]:
    """All four free nulls of `sae`: L0 matched on `x_eval`; PCA and the identity's centre fitted on `x_fit` (training activations)."""
    sae = sae.eval()
    return {
        "random": random_null(sae, x_eval, seed),
        "shuffled-decoder": shuffled_decoder_null(sae, seed),
        "pca": pca_null(sae, x_fit, x_eval),
        "identity": identity_null(x_fit.double().mean(0), round(mean_l0(sae, x_eval))),
    }


class FreeNullVerdict(BaseModel):
    """The audited SAE against one free null on the same evaluation tokens (docs/spec.md#verdicts: EV, paired over tokens)."""

    null: str
    ev_sae: float
    ev_null: float
    l0_sae: float
    l0_null: float
    ev_difference: BootstrapCI  # EV(SAE) − EV(null)
    sae_beats_null: bool  # the interval lies above 0


@torch.no_grad()
def _per_token_sq_err(sae: SAE, x: Tensor) -> np.ndarray:
    return torch.cat([(xb.double() - sae.decode(sae.encode(xb)).double()).pow(2).sum(1).cpu() for xb in x.split(BATCH)]).numpy()


def compare_with_free_nulls(sae: SAE, x_eval: Tensor, x_fit: Tensor, seed: int = 0, n_boot: int = 1000) -> list[FreeNullVerdict]:
    """EV and L0 of the SAE and each free null on `x_eval`, with a paired bootstrap over tokens of the EV gap."""
    dev = (x_eval.double() - x_eval.double().mean(0)).pow(2).sum(1).cpu().numpy()
    err_sae = _per_token_sq_err(sae, x_eval)
    l0_sae = mean_l0(sae, x_eval)
    out = []
    for name, null in free_nulls(sae, x_eval, x_fit, seed).items():
        err_null = _per_token_sq_err(null, x_eval)

        def gap(i: np.ndarray, err_null: np.ndarray = err_null) -> float:
            return float((err_null[i].sum() - err_sae[i].sum()) / dev[i].sum())

        ci = bootstrap(gap, len(dev), n_boot=n_boot, seed=seed)
        out.append(
            FreeNullVerdict(
                null=name,
                ev_sae=1 - err_sae.sum() / dev.sum(),
                ev_null=1 - err_null.sum() / dev.sum(),
                l0_sae=l0_sae,
                l0_null=mean_l0(null, x_eval),
                ev_difference=ci,
                sae_beats_null=ci.low > 0,
            )
        )
    return out
