"""The experiment runner: plan the grid of a run config, compute its cells on an executor, gather the
results into tables and write the report. `execute` is what `nullsae run` and `nullsae demo` call.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from nullsae.config import RunConfig
from nullsae.experiment.grid import ModelShape, Plan, plan
from nullsae.experiment.store import RunStore

__all__ = ["RunResult", "execute", "load_tables", "plan_run", "report_for"]


def plan_run(cfg: RunConfig, shape_of: Callable[[str], ModelShape] | None = None) -> Plan:
    """Validate the config against its models (layers in range, k < m) and expand it into cells."""
    from nullsae.experiment.runner import model_shape

    return plan(cfg, shape_of or model_shape)


@dataclass
class RunResult:
    run_dir: Path
    report_path: Path
    plan: Plan
    outcomes: list[Any]
    verdicts: list[Any]
    findings: list[Any]
    seconds: float
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The JSON summary `--json` prints: where things are, what was computed, verdicts, findings."""
        from nullsae.report.verdicts import summarize

        return {
            "run_dir": str(self.run_dir),
            "report": str(self.report_path),
            "cells": len(self.plan.cells),
            "trained": sum(o.trained for o in self.outcomes),
            "computed_parts": sum(o.computed for o in self.outcomes),
            "skipped_parts": sum(o.skipped for o in self.outcomes),
            "seconds": round(self.seconds, 1),
            "stage_seconds": {o.task: o.stage_seconds for o in self.outcomes},
            "verdicts": summarize(self.verdicts).to_dict(orient="records"),
            "findings": [f.model_dump() for f in self.findings],
        }

    def text_lines(self) -> list[str]:
        lines = [
            f"{len(self.plan.cells)} SAE cells: {sum(o.trained for o in self.outcomes)} trained now, "
            f"{sum(o.computed for o in self.outcomes)} result parts computed, {sum(o.skipped for o in self.outcomes)} already done "
            f"({self.seconds:.0f} s)"
        ]
        for f in self.findings:
            word = "holds" if f.holds else ("not checked" if f.holds is None else "DOES NOT HOLD")
            lines.append(f"  {f.claim}: {word} — {f.evidence}")
        return lines


def _frame(store: RunStore, key: str, part: str, part_hash: str) -> pd.DataFrame:
    return store.read_part(key, part, part_hash) if store.has_part(key, part, part_hash) else pd.DataFrame()


# Version of what a run directory holds: 2 added SAE seeds (cells and the metrics' `seed` column), the
# probing and editing families and the per-unit tables every verdict resamples.
RESULT_SCHEMA = 2


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
            f"this run directory was written by an older nullsae (result schema {schema}, now {RESULT_SCHEMA}): its SAEs are read as seed 0 "
            "and families it did not compute are absent; rerun the same command to compute what is missing"
        ]
    return []


SUMMARY_PARTS = ("reconstruction", "downstream", "latents", "autointerp", "probing", "editing")
UNIT_PARTS = {
    "tokens": ("reconstruction-tokens", "reconstruction"),
    "chunks": ("downstream-units", "downstream"),
    "scores": ("autointerp-scores", "autointerp"),
    "probing": ("probing-units", "probing"),
    "editing": ("editing-units", "editing"),
}


def _merge(row: dict[str, Any], part: str, values: dict[str, Any]) -> None:
    """Add one result part's scalars to an SAE's row; a column two parts both write is an error, never an overwrite."""
    clash = sorted(set(row) & set(values))
    if clash:
        raise ValueError(f"result part '{part}' writes column(s) {', '.join(clash)} that another part already wrote")
    row.update(values)


def same_weights(store: RunStore, a: str, b: str) -> bool:
    """Whether two cells' SAEs hold numerically the same parameters (a null that never left its initial state)."""
    import torch

    from nullsae.sae.io import load_sae

    sa, sb = load_sae(store.sae_dir(a)).state_dict(), load_sae(store.sae_dir(b)).state_dict()
    return sa.keys() == sb.keys() and all(
        sa[k].shape == sb[k].shape and torch.allclose(sa[k].float(), sb[k].float(), rtol=1e-4, atol=1e-6) for k in sa
    )


def load_tables(store: RunStore, p: Plan):
    """Gather every finished result part of the plan's cells into the report's tables (and run-level Parquet)."""
    import json

    from nullsae.experiment.runner import TRAIN_INFO
    from nullsae.report.tables import ResultTables

    rows, latents, latent_scores, examples = [], [], [], {}
    units: dict[str, list[pd.DataFrame]] = {name: [] for name in UNIT_PARTS}
    trained = {(c.model, c.layer, c.arch, c.seed): c.key for c in p.cells if c.variant == "trained" and c.baseline == "none"}
    for c in p.cells:
        row: dict[str, Any] = {
            "key": c.key,
            "model": c.model,
            "variant": c.variant,
            "layer": c.layer,
            "arch": c.arch,
            "baseline": c.baseline,
            "seed": c.seed,
            "n_latents": c.sae_config.n_latents,
        }
        info = store.sae_dir(c.key) / TRAIN_INFO
        if not info.exists():
            continue
        tr = json.loads(info.read_text(encoding="utf-8"))
        _merge(
            row,
            "train",
            {
                "train_steps": tr["steps"],
                "train_tokens": tr["tokens"],
                "train_fvu": tr["fvu"],
                "train_l0": tr["l0"],
                "dead_fraction_train": tr["dead_fraction"],
                "decoder_drift": tr["decoder_drift"],
            },
        )
        ref = trained.get((c.model, c.layer, c.arch, c.seed))
        row["same_weights"] = ref is not None and ref != c.key and store.has_sae(ref) and same_weights(store, ref, c.key)
        pk = c.part_keys
        for part in SUMMARY_PARTS:
            df = _frame(store, c.key, part, pk[part])
            if len(df):
                _merge(row, part, df.iloc[0].to_dict())
        rows.append(row)
        for sink, (name, part) in UNIT_PARTS.items():
            df = _frame(store, c.key, name, pk[part])
            if len(df):
                units[sink].append(df.assign(key=c.key))
        lat = _frame(store, c.key, "latents-per-latent", pk["latents"])
        ai = _frame(store, c.key, "autointerp-latents", pk["autointerp"])
        if len(lat):
            latents.append(lat.assign(key=c.key))
        if len(ai):
            latent_scores.append(ai.assign(key=c.key))
        if store.has_part(c.key, "latents-examples", pk["latents"], "json"):
            shown = store.read_json_part(c.key, "latents-examples", pk["latents"])
            for ex in shown:
                sel = ai[ai.latent == ex["latent"]] if len(ai) else ai
                if len(sel):
                    ex["explanation"] = next((e for e in sel.explanation if isinstance(e, str)), "(no explanation)")
                    ex["scores"] = {r.scorer: float(r.auroc) for r in sel.itertuples()}
            examples[c.key] = shown
    metrics = store.gather("metrics", [pd.DataFrame(rows)])
    latents_df = store.gather("latents", latents)
    store.gather("latent_scores", latent_scores)
    tables = {name: pd.concat(frames, ignore_index=True) if frames else pd.DataFrame() for name, frames in units.items()}
    return ResultTables(metrics=metrics, latents=latents_df, examples=examples, manifest=store.manifest(), **tables)


def skipped_notes(metrics: pd.DataFrame) -> list[str]:
    """Report lines for results a family left out and why (editing on a variant that knows too few facts)."""
    if "editing_skipped" not in metrics:
        return []
    out = []
    sel = metrics[metrics.editing_skipped.fillna("") != ""].drop_duplicates(["model", "variant", "layer"])
    for r in sel.itertuples():
        scored = "not scored" if r.editing_attributes == 0 else f"{r.editing_attributes} attribute(s) scored"
        out.append(f"editing, {r.model} {r.variant} layer {r.layer}: {scored}; {r.editing_skipped}")
    return out


def report_for(store: RunStore, p: Plan):
    """Tables → verdicts, findings, figures and report.html in the run directory."""
    from nullsae.report import build_report

    cfg = p.config
    tables = load_tables(store, p)
    notes = []
    missing = len(p.cells) - len(tables.metrics)
    if missing:
        notes.append(f"{missing} of {len(p.cells)} SAE cells have no results yet; rerun the same command to finish them")
    notes += schema_notes(tables.manifest) + skipped_notes(tables.metrics)
    r = cfg.report
    return build_report(
        tables,
        store.root,
        title=f"nullsae report: {cfg.name}",
        n_boot=r.n_bootstrap,
        seed=r.seed,
        level=r.confidence,
        examples_per_variant=r.example_latents,
        notes=notes,
    )


def execute(cfg: RunConfig, run_dir: str | Path, executor: str = "local", address: str | None = None, progress: bool = True) -> RunResult:
    """Plan (all checks before compute), write the manifest, compute missing cells, write the report."""
    from nullsae.experiment.executors import make_executor
    from nullsae.locks import folder_lock
    from nullsae.resources import check_plan_disk, check_plan_memory

    t0 = time.time()
    p = plan_run(cfg)
    ex = make_executor(executor, address)
    store = RunStore(run_dir)
    check_plan_memory(p)  # refuse what cannot fit before anything is allocated or written
    check_plan_disk(p, store.root)
    with folder_lock(store.root, "run folder"):  # one process per run folder; released by the kernel if it dies
        return _execute_locked(cfg, p, ex, store, progress, t0)


def _execute_locked(cfg: RunConfig, p: Plan, ex: Any, store: RunStore, progress: bool, t0: float) -> RunResult:
    from nullsae.config import dump_yaml
    from nullsae.experiment.runner import Job, run_task
    from nullsae.experiment.store import write_text

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
    outcomes = ex.map(run_task, jobs, [t.label for t in p.tasks], progress)
    rep = report_for(store, p)
    return RunResult(
        run_dir=store.root,
        report_path=rep.path,
        plan=p,
        outcomes=outcomes,
        verdicts=rep.verdicts,
        findings=rep.findings,
        seconds=time.time() - t0,
    )
