"""The metric families of a run and the verdict metrics each offers (docs/spec.md#verdicts).

A family is one module that computes one kind of result per SAE cell; here each is registered with
what it reads, the per-unit table its results leave for the verdicts (`ResultTables` field) and the
verdict metrics it offers on that table. The report asks this registry which metrics to judge, so a
new family adds its entry here and touches neither the verdict code nor the other families.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from nullsae.autointerp.results import auroc_metric
from nullsae.metrics import downstream, latents, reconstruction
from nullsae.metrics.verdict import Terms, VerdictMetric, has_columns
from nullsae.probing import probing_metric


@dataclass(frozen=True)
class Family:
    """One metric family: what it needs, its per-unit table and the verdict metrics it offers on it."""

    name: str
    needs: str  # in words: which data and models it reads
    units: str  # the ResultTables field holding its per-unit rows
    offers: Callable[[pd.DataFrame], list[VerdictMetric]]

    def verdict_metrics(self, units: pd.DataFrame) -> list[VerdictMetric]:
        return self.offers(units) if len(units) else []


def attribute_mean(values: np.ndarray) -> float:
    """An SAE's RAVEL cause, isolation or score: the mean over its scored attributes (NaN ones left out)."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else float("nan")


def _attribute_terms(column: str) -> Callable[[pd.DataFrame], Terms | None]:
    def terms(df: pd.DataFrame) -> Terms | None:
        if not has_columns(df, "attribute") or column not in df:
            return None
        v = df[column].to_numpy(float)
        return len(v), lambda i: attribute_mean(v[i])

    return terms


# Attributes are the unit, each SAE's own (a variant's model knows other facts). Chance: the scores of
# making no change (cause 0, isolation 1, score 0.5). Default δ 0.05: few attributes, coarse scores.
EDITING_METRICS = [
    VerdictMetric("ravel_cause", "RAVEL cause", +1, "attribute", "editing", _attribute_terms("cause"), tolerance=0.05, chance=0.0),
    VerdictMetric(
        "ravel_isolation", "RAVEL isolation", +1, "attribute", "editing", _attribute_terms("isolation"), tolerance=0.05, chance=1.0
    ),
    VerdictMetric("ravel_score", "RAVEL score", +1, "attribute", "editing", _attribute_terms("score"), tolerance=0.05, chance=0.5),
]

FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("reconstruction", "the evaluation split's activations", "tokens", lambda u: list(reconstruction.VERDICT_METRICS)),
        Family("downstream", "the model variant and the evaluation split", "chunks", lambda u: list(downstream.VERDICT_METRICS)),
        Family("latents", "the interpretation split's activations", "latents", lambda u: list(latents.VERDICT_METRICS)),
        Family(
            "autointerp",
            "the interpretation split's activations and an explainer / scorer",
            "scores",
            lambda u: [auroc_metric(s) for s in sorted(u.scorer.unique())],
        ),
        Family(
            "probing", "the model variant and labelled texts", "probing", lambda u: [probing_metric(int(k)) for k in sorted(u.k.unique())]
        ),
        Family("editing", "the model variant and the facts it answers right", "editing", lambda u: list(EDITING_METRICS)),
    )
}


def chance_levels(units: Callable[[str], pd.DataFrame]) -> dict[str, float]:
    """Metric column → chance level, for every verdict metric the per-unit tables (by name) allow."""
    return {m.name: m.chance for f in FAMILIES.values() for m in f.verdict_metrics(units(f.units)) if m.chance is not None}
