"""Settings of the toy-model experiments (Heap et al. §4, App. C.2), importable without torch."""

from __future__ import annotations

import math
import typing
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from nullsae.config import POSITIONAL, check_variants
from nullsae.errors import UserError

Experiment = Literal["superposition", "glove", "embeddings", "lomax"]
Dataset = Literal["inputs", "gaussian", "mlp-inputs", "mlp-gaussian"]
DATASETS: tuple[Dataset, ...] = typing.get_args(Dataset)


def default_coefs() -> list[float]:
    """c ∈ logspace(−3, 2, 21)."""
    return [float(c) for c in np.logspace(-3, 2, 21)]


def check_latents(v: list[int]) -> list[int]:
    if not v or any(m < 1 for m in v):
        raise UserError(f"latents must be a non-empty list of integers ≥ 1, got {v}; e.g. --latents 512 1024")
    return v


class SweepConfig(BaseModel):
    """Hyperparameters of one sweep (defaults: Heap et al. App. C.2)."""

    model_config = ConfigDict(extra="forbid")

    latents: list[int] = Field(default_factory=lambda: [1024], description="dictionary sizes m")
    coefs: list[float] = Field(default_factory=default_coefs, description="L1 coefficients c (default: logspace(-3, 2, 21))")
    epochs: int = Field(default=100, gt=0, description="training epochs per SAE")
    batch_size: int = Field(default=256, gt=0, description="samples per training step")
    lr: float = Field(default=1e-3, gt=0, description="Adam learning rate")
    eval_fraction: float = Field(default=0.1, gt=0, lt=1, description="held-out fraction of each dataset")
    max_stack: int | None = Field(
        default=None, gt=0, description="most SAEs trained together in one batched model (default: as many as fit in memory-gb)"
    )
    memory_gb: float = Field(default=4.0, gt=0, description="memory budget of one batched model when max-stack is not given")
    mcc: bool = Field(default=True, description="also compute Hungarian-matched MCC where ground truth exists")
    device: str = Field(default="cpu", description="where the stacked models train (cpu, cuda, cuda:1, ...)")

    @field_validator("latents")
    @classmethod
    def _latents(cls, v: list[int]) -> list[int]:
        return check_latents(v)

    @field_validator("coefs")
    @classmethod
    def _coefs(cls, v: list[float]) -> list[float]:
        if not v:
            raise UserError("the coefficient list is empty; pass at least one L1 coefficient, e.g. --coefs 0.01 0.1")
        if any(not math.isfinite(c) or c < 0 for c in v):
            raise UserError(f"L1 coefficients must be finite and ≥ 0, got {v}")
        return v


class ToyConfig(BaseModel):
    """One toy experiment: which data, seeds and samples, the sweep's hyperparameters, where it trains."""

    model_config = ConfigDict(extra="forbid")

    experiment: Experiment = Field(
        description="superposition (Figs. 5, 6, 13-16), glove / embeddings (Fig. 7), lomax (Fig. 4)", json_schema_extra=POSITIONAL
    )
    latents: list[int] | None = Field(
        default=None, description="dictionary sizes (default: 1024 for superposition, 4d and 16d for vectors)"
    )
    seeds: list[int] | None = Field(default=None, description="seeds (default: 0-9 for superposition, 0 for vectors)")
    samples: int = Field(
        default=10_000,
        gt=0,
        description="samples (superposition) or most vectors used (glove: the first, most frequent; embeddings: a seeded random subset)",
    )
    data: list[Dataset] = Field(default_factory=lambda: list(DATASETS), description="which datasets to sweep")
    vectors: str | None = Field(
        default=None, description="glove: a .npy (n, d) array or a GloVe text file instead of the bundled GloVe 6B 50-d"
    )
    model: str = Field(default="smollm2", description="embeddings: model spec (smollm2, a folder, a .gguf or a hub id)")
    variants: list[str] = Field(
        default_factory=lambda: ["trained", "rerandomized"], description="embeddings: variants whose embedding matrix is swept"
    )
    frontier_ev: list[float] = Field(
        default_factory=lambda: [0.8, 0.9],
        description="EV levels at which each curve's L1/√L2 is read off (JSON frontier_at_ev; after the random MLP, SPEC's c grid reaches 0.8 but not 0.9)",
    )
    device: str = Field(default="auto", description="auto (CUDA when present) | cpu | cuda | cuda:N")
    sweep: SweepConfig = Field(default_factory=SweepConfig)

    @field_validator("latents")
    @classmethod
    def _latents(cls, v: list[int] | None) -> list[int] | None:
        return v if v is None else check_latents(v)

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and len(set(v)) != len(v):
            raise ValueError(f"a seed is listed twice: {v}")
        return v

    @field_validator("variants")
    @classmethod
    def _variants(cls, v: list[str]) -> list[str]:
        return check_variants(v)

    @field_validator("frontier_ev")
    @classmethod
    def _levels(cls, v: list[float]) -> list[float]:
        if any(not 0 < ev < 1 for ev in v):
            raise ValueError(f"levels must lie strictly between 0 and 1, got {v}")
        return v

    def seed_list(self) -> list[int]:
        return self.seeds or (list(range(10)) if self.experiment == "superposition" else [0])
