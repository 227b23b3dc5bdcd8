"""Sparse autoencoders: architectures, random baselines, the one-stream trainer, on-disk formats."""

from nullsae.sae.architectures import SAE, SAEConfig, SAEOutput

__all__ = ["SAE", "SAEConfig", "SAEOutput"]
