"""Auto-interpretability (docs/spec.md#autointerp): latent examples, explainers, scorers, AUROC with bootstrap intervals.

Flow: `examples` (streamed from sparse activations) → `explainers` (tokens | hf: | openai:, through
`llm` clients and versioned `prompts`) → `scorers` (detection, fuzzing, embedding, tokens) →
`results` (per-latent Parquet, summaries); `run.run_autointerp` chains them for one SAE. The names
below load on first use, so `nullsae.autointerp.config` imports without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nullsae.autointerp.config import AutointerpConfig, ExampleConfig
    from nullsae.autointerp.examples import (
        ActivationSource,
        LatentExamples,
        SparseActs,
        collect_examples,
        count_firing,
        sae_encoder,
        select_latents,
    )
    from nullsae.autointerp.run import AutointerpResult, run_autointerp

_WHERE = {
    "ActivationSource": "examples",
    "LatentExamples": "examples",
    "SparseActs": "examples",
    "collect_examples": "examples",
    "count_firing": "examples",
    "sae_encoder": "examples",
    "select_latents": "examples",
    "AutointerpConfig": "config",
    "ExampleConfig": "config",
    "AutointerpResult": "run",
    "run_autointerp": "run",
}

__all__ = [
    "ActivationSource",
    "AutointerpConfig",
    "AutointerpResult",
    "ExampleConfig",
    "LatentExamples",
    "SparseActs",
    "collect_examples",
    "count_firing",
    "run_autointerp",
    "sae_encoder",
    "select_latents",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'nullsae.autointerp' has no attribute '{name}'")
    return getattr(importlib.import_module(f"nullsae.autointerp.{_WHERE[name]}"), name)
