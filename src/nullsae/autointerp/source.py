"""Where one SAE's latent activations come from for auto-interp on its own (`nullsae autointerp`): windows of
an activation cache written by `nullsae activations`, or a live pass of a model variant over the bundled
corpus's interpretation split; either way encoded by the SAE window by window."""

from __future__ import annotations

from pathlib import Path

import torch

from nullsae.autointerp.examples import ActivationSource, sae_encoder
from nullsae.errors import UserError
from nullsae.models import LoadedModel, capture_residuals, make_variant
from nullsae.sae import SAE


def cached_source(sae: SAE, cache_dir: str | Path, layer: int, window: int) -> ActivationSource:
    """The cache's token windows cut into `window`-token examples, their activations at `layer` encoded by `sae`."""
    from nullsae.activations import CachedActivations

    cache = CachedActivations(cache_dir, layer)
    if cache.d_in != sae.W_dec.shape[1]:
        raise UserError(
            f"the cache holds d = {cache.d_in} activations but the SAE reads d = {sae.W_dec.shape[1]}; give the cache of its model and layer"
        )
    if cache.window % window:
        raise UserError(
            f"the cache's windows of {cache.window} tokens do not split into --window {window}; pick a divisor of {cache.window}"
        )
    tokens = cache.tokens.reshape(-1, window)

    def residuals(ids: torch.Tensor) -> torch.Tensor:
        rows = (ids[:, None] * window + torch.arange(window)).reshape(-1)
        return cache.rows(rows).view(len(ids), window, -1)

    return ActivationSource(tokens, sae_encoder(sae, residuals), n_latents=int(sae.W_dec.shape[0]))


def live_source(sae: SAE, loaded: LoadedModel, variant: str, layer: int, window: int, n_tokens: int, seed: int) -> ActivationSource:
    """`n_tokens` (whole windows) of the bundled corpus's interpretation split through `variant` of the model."""
    from nullsae.data import token_windows

    tokens = token_windows(loaded.tokenizer, loaded.bos_id, window, -(-n_tokens // window), split="interp", seed=seed)
    model = make_variant(loaded, variant)[0].model

    def residuals(ids: torch.Tensor) -> torch.Tensor:
        return capture_residuals(model, tokens[ids], [layer])[layer].float()

    return ActivationSource(tokens, sae_encoder(sae, residuals), n_latents=int(sae.W_dec.shape[0]))
