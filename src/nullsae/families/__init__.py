"""The metric families of a run, each one module with the same small interface (docs/architecture.md).

A family says what it needs (in words), computes per SAE cell one versioned pydantic result plus the
tables it keeps (`compute(ctx, cells)`: batched, so one pass of a model or one encode feeds several
SAEs), and offers verdict metrics (docs/spec.md#verdicts) on one of those tables. The runner loops
over `FAMILIES` and stores what they return; the report asks them which metrics to judge. A result's
`columns()` are its SAE's columns of the metrics table, so nothing is renamed between the runner and
the report. A new family is one module here plus its entry in `FAMILIES`.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import pandas as pd
from pydantic import BaseModel

from nullsae.config import RunConfig
from nullsae.metrics.verdict import VerdictMetric


class FamilyResult(BaseModel):
    """A family's result for one SAE. `version` changes when its fields change: results stored under
    another version are computed again. `columns()` are the SAE's metrics-table columns (default: every field)."""

    version: ClassVar[int] = 1

    def columns(self) -> dict[str, Any]:
        return self.model_dump()


@dataclass
class FamilyOutput:
    """What a family returns for one SAE: its result, tables stored as Parquet and documents stored as JSON (by name)."""

    result: FamilyResult
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    documents: dict[str, Any] = field(default_factory=dict)


class FamilyCell(Protocol):
    """The part of a grid cell a family reads."""

    key: str
    layer: int
    seed: int
    label: str
    sae_config: Any
    part_keys: dict[str, str]


class FamilyContext(Protocol):
    """What the runner gives a family for the cells of one (model, variant) task; every model, token
    window and variant comes from the run's cache, built once per run."""

    config: RunConfig
    progress: bool
    label: str  # the task, e.g. "smollm2/trained"

    @property
    def device(self) -> Any: ...

    @property
    def tokenizer(self) -> Any: ...

    def split_activations(self, split: str, layers: list[int]) -> Path: ...

    def windows(self, split: str) -> Any: ...

    def variant(self) -> Any: ...

    def load_sae(self, cell: FamilyCell) -> Any: ...

    def seed(self, stage: str, extra: str = "") -> None: ...

    def work_dir(self, cell: FamilyCell, name: str) -> Path: ...

    def llm_cache(self) -> Path: ...

    def probing_tasks(self) -> Any: ...

    def sparse_codes(self, cell: FamilyCell) -> Any: ...


Compute = Callable[[FamilyContext, list[Any]], Iterator[tuple[Any, FamilyOutput]]]


@dataclass(frozen=True)
class Family:
    """One metric family (see the module docstring)."""

    name: str
    needs: str  # in words: which data and models it reads
    result: type[FamilyResult]
    compute: Compute
    table: str  # the ResultTables field its per-unit rows feed (what its verdict metrics resample)
    stored: str  # which of its output tables that is
    offers: Callable[[pd.DataFrame], list[VerdictMetric]]
    settings: Callable[[RunConfig], dict[str, Any]]  # what of the run config determines its result (beyond the SAE): hashed into its key
    baseline_layers_only: Callable[[RunConfig], bool] = lambda cfg: False  # computed only at the layers with SAE baselines

    def verdict_metrics(self, units: pd.DataFrame) -> list[VerdictMetric]:
        return self.offers(units) if len(units) else []


def split_settings(cfg: RunConfig, split: str) -> dict[str, Any]:
    """What determines one data split of the run (its text, windows and size)."""
    t = cfg.tokens
    n = {"train": t.train, "eval": t.eval, "interp": t.interp}[split]
    return {"source": t.source, "context": t.context, "skip_bos": t.skip_bos, "seed": t.seed, "split": split, "tokens": n}


def eval_settings(cfg: RunConfig) -> dict[str, Any]:
    """What determines a result on the evaluation split (reconstruction, downstream)."""
    return {"data": split_settings(cfg, "eval"), "model_batch": cfg.tokens.model_batch}


def interp_settings(cfg: RunConfig) -> dict[str, Any]:
    """What determines the interpretation split's example windows (latent statistics, auto-interp)."""
    return {"data": split_settings(cfg, "interp"), "window": cfg.tokens.interp_window}


def quiet_bars(progress: bool) -> contextlib.AbstractContextManager:
    """Without progress, the progress bars the probing and editing libraries draw on stderr are dropped."""
    return contextlib.nullcontext() if progress else contextlib.redirect_stderr(io.StringIO())


def _registry() -> dict[str, Family]:
    from nullsae.families import downstream, editing, interp, probing, reconstruction

    return {
        f.name: f for f in (reconstruction.FAMILY, downstream.FAMILY, interp.LATENTS, interp.AUTOINTERP, probing.FAMILY, editing.FAMILY)
    }


FAMILIES: dict[str, Family] = _registry()


def chance_levels(units: Callable[[str], pd.DataFrame]) -> dict[str, float]:
    """Metric column → chance level, for every verdict metric the per-unit tables (by name) allow."""
    return {m.name: m.chance for f in FAMILIES.values() for m in f.verdict_metrics(units(f.table)) if m.chance is not None}
