"""The experiment runner: plan the grid of a run config (`plan_run`) and compute its cells on an
executor (`compute`), resuming from what the run folder holds. `nullsae.pipeline.execute` adds the report.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nullsae.config import RunConfig
from nullsae.experiment.grid import ModelShape, Plan, plan
from nullsae.experiment.store import RunStore

__all__ = ["RESULT_SCHEMA", "compute", "plan_run", "same_weights", "schema_notes"]


def plan_run(cfg: RunConfig, shape_of: Callable[[str], ModelShape] | None = None, cache: Any = None) -> Plan:
    """Validate the config against its models (layers in range, k < m) and expand it into cells; the
    models' shapes come from `shape_of`, else from the models loaded into `cache` (a `RunCache`)."""
    if shape_of is None:
        from nullsae.experiment.runner import RunCache

        run_cache: RunCache = cache if cache is not None else RunCache()
        shape_of = run_cache.model_shape
    return plan(cfg, shape_of)


# Version of what a run directory holds: 2 added SAE seeds (cells and the metrics' `seed` column), the
# probing and editing families and the per-unit tables every verdict resamples; 3 stores each family's
# result as versioned JSON (`nullsae.families`) instead of a one-row Parquet file.
RESULT_SCHEMA = 3


def schema_notes(manifest: dict[str, Any]) -> list[str]:
    """What the report must say about a run directory written under another result schema (one clear error if newer)."""
    from nullsae.errors import UserError

    schema = int(manifest.get("result_schema", 1))
    if schema > RESULT_SCHEMA:
        raise UserError(
            f"this run directory was written by a newer nullsae (result schema {schema}, this one reads {RESULT_SCHEMA}); update nullsae to read it"
        )
    if schema < RESULT_SCHEMA:
        return [
            f"this run directory was written by an older nullsae (result schema {schema}, now {RESULT_SCHEMA}): its trained SAEs are "
            "reused (as seed 0 before schema 2), but its metric results are not read; rerun the same command to compute them again"
        ]
    return []


def same_weights(store: RunStore, a: str, b: str) -> bool:
    """Whether two cells' SAEs hold numerically the same parameters (a null that never left its initial state)."""
    import torch

    from nullsae.sae.io import load_sae

    sa, sb = load_sae(store.sae_dir(a)).state_dict(), load_sae(store.sae_dir(b)).state_dict()
    return sa.keys() == sb.keys() and all(
        sa[k].shape == sb[k].shape and torch.allclose(sa[k].float(), sb[k].float(), rtol=1e-4, atol=1e-6) for k in sa
    )


def compute(cfg: RunConfig, p: Plan, ex: Any, store: RunStore, progress: bool, cache: Any) -> list[Any]:
    """Write the run's manifest and config, then run every task of the plan on the executor (each trains
    its missing SAEs and computes its missing family results); the tasks' outcomes in plan order.
    Local tasks share `cache` (a `RunCache`); each Ray task builds its own (a loaded model is not shipped)."""
    from functools import partial

    from nullsae.config import dump_yaml
    from nullsae.experiment.runner import Job, run_task
    from nullsae.io_utils import write_text

    store.write_manifest(
        cfg.model_dump(mode="json"),
        seeds={
            "variant": cfg.variant.seed,
            "sae": cfg.train.seeds,
            "data": cfg.tokens.seed,
            "autointerp": cfg.autointerp.seed,
            "bootstrap": cfg.report.seed,
        },
        extra={
            "shapes": {m: {"n_layers": s.n_layers, "d_model": s.d_model} for m, s in p.shapes.items()},
            "executor": ex.name,
            "result_schema": RESULT_SCHEMA,
        },
    )
    write_text(store.root / "config.yaml", dump_yaml(cfg))
    jobs = [Job(task=t, config=cfg, run_dir=str(store.root.resolve()), progress=progress and ex.name == "local") for t in p.tasks]
    task_fn = partial(run_task, cache=cache) if ex.name == "local" else run_task
    return ex.map(task_fn, jobs, [t.label for t in p.tasks], progress)
