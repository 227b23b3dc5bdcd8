"""Sparse probing (`nullsae.probing`): k-latent probes on labelled texts read by the
model variant, every SAE of a layer on one pass; per-text correctness kept for the verdicts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from nullsae.families import Family, FamilyContext, FamilyOutput, FamilyResult, quiet_bars


class ProbingScores(FamilyResult):
    """Mean test accuracy over the tasks of the SAE's k-latent probes, of a probe on the raw residual and of k random latents."""

    version = 1
    accuracy: dict[int, float]
    raw: float
    random: dict[int, float]
    tasks: int

    def columns(self) -> dict[str, Any]:
        return {
            **{f"probe_acc_k{k}": v for k, v in self.accuracy.items()},
            "probe_raw": self.raw,
            **{f"probe_random_k{k}": v for k, v in self.random.items()},
            "probe_tasks": self.tasks,
        }


def compute(ctx: FamilyContext, cells: list[Any]) -> Iterator[tuple[Any, FamilyOutput]]:
    from nullsae.probing import ProbingConfig, run_probing_many, unit_table

    cfg = ctx.config
    tasks = ctx.probing_tasks()
    pcfg = ProbingConfig(**cfg.probing.model_dump(include=set(ProbingConfig.model_fields)))
    for layer in sorted({c.layer for c in cells}):
        group = [c for c in cells if c.layer == layer]
        variant = ctx.variant()  # control: fresh, its noise restarts from its seed
        ctx.seed("probing", str(layer))
        with quiet_bars(ctx.progress):
            results = run_probing_many({c.key: ctx.load_sae(c) for c in group}, variant, layer, tasks.tasks, pcfg)
        for c in group:
            r = results[c.key]
            scores = ProbingScores(accuracy=dict(r.mean_sae), raw=r.mean_raw, random=dict(r.mean_random), tasks=len(r.tasks))
            yield c, FamilyOutput(scores, tables={"units": unit_table(r)}, documents={"result": r.model_dump(mode="json")})


def _offers(units: Any) -> list:
    from nullsae.probing import probing_metric

    return [probing_metric(int(k)) for k in sorted(units.k.unique())]


FAMILY = Family(
    "probing",
    "the model variant and labelled texts",
    ProbingScores,
    compute,
    table="probing",
    stored="units",
    offers=_offers,
    settings=lambda cfg: {"probing": cfg.probing.model_dump(mode="json", exclude={"baseline_layers_only"})},
    baseline_layers_only=lambda cfg: cfg.probing.baseline_layers_only,
)
