"""RAVEL-style editing (`nullsae.editing`) on the facts the variant's model answers
right; attributes it knows too few entities of are skipped with the reason; per-attribute scores kept."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd

from nullsae.families import Family, FamilyContext, FamilyOutput, FamilyResult, quiet_bars
from nullsae.metrics.verdict import Terms, VerdictMetric, has_columns


class EditingScores(FamilyResult):
    """Mean RAVEL cause, isolation and score over the scored attributes; how many facts the model got right; what was skipped."""

    version = 1
    ravel_cause: float
    ravel_isolation: float
    ravel_score: float
    ravel_full_cause: float
    editing_attributes: int
    editing_facts_correct: int
    editing_facts: int
    editing_skipped: str


UNIT_COLUMNS = ["attribute", "n_latents", "cause", "isolation", "score", "full_cause", "full_isolation"]


def _nan(x: float | None) -> float:
    return math.nan if x is None else float(x)


def compute(ctx: FamilyContext, cells: list[Any]) -> Iterator[tuple[Any, FamilyOutput]]:
    from nullsae.editing import prepare_facts, run_editing

    cfg = ctx.config
    for layer in sorted({c.layer for c in cells}):
        variant = ctx.variant()
        ctx.seed("editing", str(layer))
        with quiet_bars(ctx.progress):
            prep = prepare_facts(variant, layer, cfg.editing)
        for c in [c for c in cells if c.layer == layer]:
            with quiet_bars(ctx.progress):
                r = run_editing(ctx.load_sae(c), variant, layer, cfg.editing, prepared=prep)
            units = pd.DataFrame([a.model_dump(include=set(UNIT_COLUMNS)) for a in r.attributes], columns=UNIT_COLUMNS)
            counts = r.counts
            skipped = "; ".join(f"{k}: {why}" for k, why in r.skipped.items())
            scores = EditingScores(
                ravel_cause=_nan(r.cause),
                ravel_isolation=_nan(r.isolation),
                ravel_score=_nan(r.score),
                ravel_full_cause=_nan(r.full_cause),
                editing_attributes=len(r.attributes),
                editing_facts_correct=counts.n_facts_correct,
                editing_facts=counts.n_facts,
                editing_skipped=f"{counts.n_facts_correct}/{counts.n_facts} facts answered right; skipped {skipped}" if skipped else "",
            )
            yield c, FamilyOutput(scores, tables={"units": units}, documents={"result": r.model_dump(mode="json")})


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
VERDICT_METRICS = (
    VerdictMetric("ravel_cause", "RAVEL cause", +1, "attribute", "editing", _attribute_terms("cause"), tolerance=0.05, chance=0.0),
    VerdictMetric(
        "ravel_isolation", "RAVEL isolation", +1, "attribute", "editing", _attribute_terms("isolation"), tolerance=0.05, chance=1.0
    ),
    VerdictMetric("ravel_score", "RAVEL score", +1, "attribute", "editing", _attribute_terms("score"), tolerance=0.05, chance=0.5),
)

FAMILY = Family(
    "editing",
    "the model variant and the facts it answers right",
    EditingScores,
    compute,
    table="editing",
    stored="units",
    offers=lambda u: list(VERDICT_METRICS),
    settings=lambda cfg: {"editing": cfg.editing.model_dump(mode="json", exclude={"baseline_layers_only"})},
    baseline_layers_only=lambda cfg: cfg.editing.baseline_layers_only,
)
