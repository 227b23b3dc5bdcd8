"""Transformers and their null models: loading (load), variants of docs/spec.md#variants (variants), residual hooks (hooks)."""

from nullsae.models.hooks import capture_residuals, check_layers, decoder_blocks, patch_residual
from nullsae.models.load import LoadedModel, load_model
from nullsae.models.variants import VARIANTS, VariantManifest, make_variant

__all__ = [
    "VARIANTS",
    "LoadedModel",
    "VariantManifest",
    "capture_residuals",
    "check_layers",
    "decoder_blocks",
    "load_model",
    "make_variant",
    "patch_residual",
]
