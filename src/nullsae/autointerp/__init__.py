"""Auto-interpretability (docs/spec.md#autointerp): latent examples, explainers, scorers, AUROC with bootstrap intervals.

Flow: `examples` (streamed from sparse activations) → `explainers` (tokens | hf: | openai:, through
`llm` clients and versioned `prompts`) → `scorers` (detection, fuzzing, embedding, tokens) →
`results` (per-latent Parquet, summaries); `run.run_autointerp` chains them for one SAE.
"""

from nullsae.autointerp.examples import (
    ActivationSource,
    ExampleConfig,
    LatentExamples,
    SparseActs,
    collect_examples,
    count_firing,
    sae_encoder,
    select_latents,
)
from nullsae.autointerp.run import AutointerpConfig, AutointerpResult, run_autointerp

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
