"""The grid of a run: one cell per SAE, keyed by a hash of everything that determines it.

Cells are grouped into tasks, one per (model, variant): one forward pass per data split feeds every
layer, and one activation stream per layer feeds the trained SAEs and their random baselines
together (same initialisation, same batches). Each metric family's result of a cell is keyed too, by
what the family's `settings` say determines it, so changing e.g. the auto-interp settings recomputes
only that family. Finished results are never recomputed: their files are the resume markers (`RunStore`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nullsae.config import METRICS, RunConfig
from nullsae.errors import UserError
from nullsae.families import FAMILIES, split_settings
from nullsae.sae.config import FREE_NULLS, SAEConfig


def digest(obj: Any) -> str:
    """Stable 16-hex-digit hash of a JSON-able object (keys sorted)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ModelShape:
    """What the plan needs to know of a model before any compute: depth and width."""

    n_layers: int
    d_model: int


@dataclass(frozen=True)
class Cell:
    """One SAE of the grid: the transformer setting it reads and the SAE trained on it."""

    model: str
    variant: str
    layer: int
    arch: str
    baseline: str  # "none" for the fully trained SAE, else a random baseline of docs/spec.md#baselines or a free null
    # (docs/spec.md#free-nulls; its `sae_config` is the trained SAE's it is built from)
    sae_config: SAEConfig
    key: str
    part_keys: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    seed: int = 0  # the SAE seed (initialisation and batch order), shared by an SAE and its baselines

    @property
    def label(self) -> str:
        tail = self.arch if self.baseline == "none" else f"{self.arch}/{self.baseline}"
        return f"{self.model}/{self.variant}/L{self.layer}/{tail}/seed{self.seed}"

    def info(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "variant": self.variant,
            "layer": self.layer,
            "arch": self.arch,
            "baseline": self.baseline,
            "seed": self.seed,
            "key": self.key,
            "sae_config": self.sae_config.model_dump(mode="json"),
        }


@dataclass(frozen=True)
class VariantTask:
    """All cells of one (model, variant): the unit an executor runs."""

    model: str
    variant: str
    cells: tuple[Cell, ...]

    @property
    def layers(self) -> list[int]:
        return sorted({c.layer for c in self.cells})

    @property
    def label(self) -> str:
        return f"{self.model}/{self.variant}"


@dataclass(frozen=True)
class Plan:
    config: RunConfig
    shapes: dict[str, ModelShape]
    tasks: tuple[VariantTask, ...]

    @property
    def cells(self) -> list[Cell]:
        return [c for t in self.tasks for c in t.cells]


def variant_settings(cfg: RunConfig, variant: str) -> dict[str, Any]:
    """The variant settings that change its weights or inputs (only those enter the keys)."""
    v = cfg.variant
    if variant in ("rerandomized", "rerandomized-excl-emb"):
        return {"seed": v.seed, "keep_norms": v.keep_norms}
    if variant == "step0":
        return {"seed": v.seed}
    if variant == "control":
        return {"sigma": v.control_sigma, "noise": v.control_noise, "seed": v.seed}
    return {}


def make_sae_config(cfg: RunConfig, arch: str, baseline: str, d_model: int, seed: int) -> SAEConfig:
    shared = cfg.sae.model_dump(exclude={"archs", "expansion", "n_latents"})
    m = cfg.sae.n_latents or cfg.sae.expansion * d_model
    return SAEConfig(arch=arch, d_in=d_model, n_latents=m, baseline=baseline, tau=cfg.baselines.tau, seed=seed, **shared)


def train_settings(cfg: RunConfig, seed: int) -> dict[str, Any]:
    """What of the training settings determines one SAE: the shared ones and its own seed."""
    return {**cfg.train.model_dump(mode="json", exclude={"checkpoint_every", "log_every", "seeds"}), "seed": seed}


def wants(cfg: RunConfig, part: str, cell: Cell) -> bool:
    """Whether the run computes this family's result for this cell (the family is listed, and at the cell's layer)."""
    if part not in cfg.metrics:
        return False
    return not FAMILIES[part].baseline_layers_only(cfg) or cell.layer in cfg.baseline_layers()


def plan(cfg: RunConfig, shape_of: Callable[[str], ModelShape]) -> Plan:
    """Expand a config into tasks and cells; every check against the models happens here, before compute."""
    shapes: dict[str, ModelShape] = {}
    for model in cfg.models:
        shape = shapes[model] = shape_of(model)
        bad = [layer for layer in cfg.layers if layer >= shape.n_layers]
        if bad:
            raise UserError(
                f"layer {bad[0]} is out of range for {model}, which has layers 0..{shape.n_layers - 1} (the output of each block); pick layers in that range"
            )
    tasks = []
    for model in cfg.models:
        d = shapes[model].d_model
        for variant in cfg.variants:
            cells = []
            for layer in cfg.layers:
                for arch in cfg.sae.archs:
                    baselines = ["none"]
                    if variant in cfg.baselines.variants and layer in cfg.baseline_layers():
                        baselines += cfg.baselines.kinds
                    for seed in cfg.train.seeds:
                        for baseline in baselines:
                            free = baseline in FREE_NULLS  # built from this seed's trained SAE: its config, no training
                            sc = make_sae_config(cfg, arch, "none" if free else baseline, d, seed)
                            ident = {
                                "model": model,
                                "variant": variant,
                                "variant_settings": variant_settings(cfg, variant),
                                "layer": layer,
                                "data": split_settings(cfg, "train"),
                                "model_batch": cfg.tokens.model_batch,
                                "train": train_settings(cfg, seed),
                                "sae": sc.key_fields(),
                            }
                            if free:  # fitted on the train split, its L0 matched on the evaluation split
                                ident |= {"free_null": baseline, "eval": split_settings(cfg, "eval")}
                            key = digest(ident)
                            parts = {p: digest({"cell": key, p: FAMILIES[p].settings(cfg)}) for p in METRICS}
                            cells.append(Cell(model, variant, layer, arch, baseline, sc, key, parts, seed=seed))
            tasks.append(VariantTask(model, variant, tuple(cells)))
    return Plan(cfg, shapes, tuple(tasks))
