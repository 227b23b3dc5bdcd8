"""Sparse autoencoders: one class and one config per architecture, random baselines, the one-stream trainer, on-disk formats.

The SAE classes import torch; they load on first use, so that reading configs stays light.
"""

from typing import TYPE_CHECKING, Any

from nullsae.sae.config import SAEConfig

if TYPE_CHECKING:
    from nullsae.sae.architectures import SAE, SAEOutput

__all__ = ["SAE", "SAEConfig", "SAEOutput"]


def __getattr__(name: str) -> Any:
    if name in ("SAE", "SAEOutput"):
        from nullsae.sae import architectures

        return getattr(architectures, name)
    raise AttributeError(f"module 'nullsae.sae' has no attribute {name!r}")
