"""A run from config to report: plan the grid, compute its cells (`nullsae.experiment`), gather the
families' results into the report's tables and write the report (`nullsae.report`). `execute` is what
`nullsae run`, `demo` and `audit` call; `report_for` rebuilds the report of a run folder.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from nullsae.config import RunConfig
from nullsae.experiment import compute, plan_run, same_weights, schema_notes
from nullsae.experiment.grid import Plan
from nullsae.experiment.store import RunStore, list_saes
from nullsae.report import Report, build_report
from nullsae.report.tables import ResultTables
from nullsae.report.verdicts import terminal_lines, verdict_summary
from nullsae.sae.config import FREE_NULLS

__all__ = ["ExperimentRun", "execute", "load_tables", "report_for"]


@dataclass
class ExperimentRun:
    """What `execute` returns: the run folder and its report, the plan, each task's outcome, the verdicts and findings."""

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
        return {
            "run_dir": str(self.run_dir),
            "report": str(self.report_path),
            "cells": len(self.plan.cells),
            "trained": sum(o.trained for o in self.outcomes),
            "computed_parts": sum(o.computed for o in self.outcomes),
            "skipped_parts": sum(o.skipped for o in self.outcomes),
            "seconds": round(self.seconds, 1),
            "stage_seconds": {o.task: o.stage_seconds for o in self.outcomes},
            "verdicts": verdict_summary(self.verdicts).to_dict(orient="records"),
            "findings": [f.model_dump() for f in self.findings],
        }

    def text_lines(self) -> list[str]:
        """What `run`/`demo` print: what was computed, then the verdict table and the findings."""
        return [
            f"{len(self.plan.cells)} SAE cells: {sum(o.trained for o in self.outcomes)} trained now, "
            f"{sum(o.computed for o in self.outcomes)} result parts computed, {sum(o.skipped for o in self.outcomes)} already done "
            f"({self.seconds:.0f} s)",
            *terminal_lines(self.verdicts, self.findings),
        ]


def _merge(row: dict[str, Any], part: str, values: dict[str, Any]) -> None:
    """Add one family's columns to an SAE's row; a column two families both write is an error, never an overwrite."""
    clash = sorted(set(row) & set(values))
    if clash:
        raise ValueError(f"result part '{part}' writes column(s) {', '.join(clash)} that another part already wrote")
    row.update(values)


def load_tables(store: RunStore, p: Plan) -> ResultTables:
    """Gather every stored family result of the plan's cells into the report's tables (and run-level Parquet)."""
    from nullsae.experiment.runner import TRAIN_INFO
    from nullsae.families import FAMILIES

    rows, latent_scores, examples = [], [], {}
    units: dict[str, list[pd.DataFrame]] = {f.table: [] for f in FAMILIES.values()}
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
            "n_latents": c.sae_config.n_latents if c.baseline not in FREE_NULLS else _saved_n_latents(store, c.key),
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
        done = set()
        for name, family in FAMILIES.items():
            pk = c.part_keys[name]
            if not store.has_result(c.key, name, pk, family.result.version):
                continue
            done.add(name)
            _merge(row, name, family.result.model_validate(store.read_result(c.key, name, pk)).columns())
            table = store.read_part(c.key, f"{name}-{family.stored}", pk)
            if len(table):
                units[family.table].append(table.assign(key=c.key))
        rows.append(row)
        pk = c.part_keys
        ai = store.read_part(c.key, "autointerp-latents", pk["autointerp"]) if "autointerp" in done else pd.DataFrame()
        if len(ai):
            latent_scores.append(ai.assign(key=c.key))
        if "latents" in done:
            shown = store.read_json_part(c.key, "latents-examples", pk["latents"])
            for ex in shown:
                sel = ai[ai.latent == ex["latent"]] if len(ai) else ai
                if len(sel):
                    ex["explanation"] = next((e for e in sel.explanation if isinstance(e, str)), "(no explanation)")
                    ex["scores"] = {str(scorer): float(auroc) for scorer, auroc in zip(sel["scorer"], sel["auroc"], strict=True)}
            examples[c.key] = shown
    metrics = store.gather("metrics", [pd.DataFrame(rows)])
    tables = {name: store.gather("latents", frames) if name == "latents" else _concat(frames) for name, frames in units.items()}
    store.gather("latent_scores", latent_scores)
    return ResultTables(metrics=metrics, examples=examples, manifest=store.manifest(), **tables)


def _saved_n_latents(store: RunStore, key: str) -> int | None:
    """The dictionary size of a cell's saved SAE (a free null's can differ from the grid's)."""
    from nullsae.sae.io import load_sae

    return load_sae(store.sae_dir(key)).cfg.n_latents if store.has_sae(key) else None


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


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


def report_for(store: RunStore, p: Plan) -> Report:
    """Tables → verdicts, findings, figures and report.html in the run directory."""
    cfg = p.config
    tables = load_tables(store, p)
    notes = []
    missing = len(p.cells) - len(tables.metrics)
    if missing:
        notes.append(f"{missing} of {len(p.cells)} SAE cells have no results yet; rerun the same command to finish them")
    notes += schema_notes(tables.manifest) + skipped_notes(tables.metrics)
    saes = [{**row, "path": Path(row["path"]).relative_to(store.root).as_posix()} for row in list_saes(store.root)]
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
        saes=saes,
    )


def execute(
    cfg: RunConfig, run_dir: str | Path, executor: str = "local", address: str | None = None, progress: bool = True, cache: Any = None
) -> ExperimentRun:
    """Plan (all checks before compute), write the manifest, compute missing cells, write the report.
    `cache`: a `RunCache` whose loaded models the run reuses (and fills); a new one when not given."""
    from nullsae.experiment.executors import make_executor
    from nullsae.experiment.runner import RunCache
    from nullsae.locks import folder_lock
    from nullsae.resources import check_plan_disk, check_plan_memory

    t0 = time.time()
    cache = cache if cache is not None else RunCache()
    p = plan_run(cfg, cache=cache)
    ex = make_executor(executor, address)
    store = RunStore(run_dir)
    check_plan_memory(p)  # refuse what cannot fit before anything is allocated or written
    check_plan_disk(p, store.root)
    with folder_lock(store.root, "run folder"):  # one process per run folder; released by the kernel if it dies
        outcomes = compute(cfg, p, ex, store, progress, cache)
        rep = report_for(store, p)
    return ExperimentRun(
        run_dir=store.root,
        report_path=rep.path,
        plan=p,
        outcomes=outcomes,
        verdicts=rep.verdicts,
        findings=rep.findings,
        seconds=time.time() - t0,
    )
