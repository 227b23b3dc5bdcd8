"""The tables a report is drawn from: the contract between the runner that computes and the report.

- `metrics`: one row per SAE (cell): identity columns + every scalar metric (reconstruction,
  training, downstream, latent statistics, auto-interp summaries).
- `tokens`: one row per (SAE, evaluation token): sq_err, sq_dev, cos, l1, aligned by `token` index
  across the SAEs of one model (same evaluation text), for paired bootstraps of reconstruction metrics.
- `chunks`: one row per (SAE, evaluation window): sums of ce_clean, ce_sae, ce_zero, kl_sae, kl_zero
  over the window's predicted tokens (`unit` = window index), for paired bootstraps of CE / KL scores.
- `latents`: one row per (SAE, latent): firing density for every latent; entropy, explanation and
  per-latent scores for the interpreted ones.
- `scores`: one row per (SAE, scorer, latent, test example): label (1 activating, 0 not) and score.
- `probing`: one row per (SAE, k, task, test text): whether the k-latent probe labelled it right.
- `editing`: one row per (SAE, scored attribute): RAVEL cause, isolation and score.
- `examples`: per SAE, a few interpreted latents with their explanation, score and example windows.
The metrics table carries `seed` (the SAE seed) and `same_weights` (a null whose weights equal
the trained SAE's of the same seed), and the per-unit tables are what the verdicts resample.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd


@dataclass
class ResultTables:
    metrics: pd.DataFrame
    tokens: pd.DataFrame = field(default_factory=pd.DataFrame)
    chunks: pd.DataFrame = field(default_factory=pd.DataFrame)
    latents: pd.DataFrame = field(default_factory=pd.DataFrame)
    scores: pd.DataFrame = field(default_factory=pd.DataFrame)
    probing: pd.DataFrame = field(default_factory=pd.DataFrame)
    editing: pd.DataFrame = field(default_factory=pd.DataFrame)
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)

    def units(self, name: str) -> pd.DataFrame:
        """A per-unit table by name (tokens, chunks, latents, scores, probing, editing)."""
        return getattr(self, name)


def auroc_columns(df: pd.DataFrame) -> list[str]:
    """The pooled-AUROC columns of a metrics table (`auroc_<scorer>`), not their intervals or means."""
    return sorted(c for c in df.columns if c.startswith("auroc_") and not c.endswith(("_mean", "_low", "_high")))
