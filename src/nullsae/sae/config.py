"""Typed configuration of one SAE: architecture, size, sparsity and random-baseline options (docs/spec.md#architectures, #baselines)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from nullsae.errors import UserError

Arch = Literal["relu", "topk", "batchtopk", "jumprelu", "matryoshka"]
ARCHS: tuple[str, ...] = ("relu", "topk", "batchtopk", "jumprelu", "matryoshka")
Baseline = Literal["none", "frozen-decoder", "soft-frozen-decoder", "frozen-encoder"]
BASELINES: tuple[str, ...] = ("none", "frozen-decoder", "soft-frozen-decoder", "frozen-encoder")
# Null dictionaries built from a trained SAE without training (docs/spec.md#free-nulls, sae/free_nulls.py).
FREE_NULLS: tuple[str, ...] = ("random", "shuffled-decoder", "pca", "identity")
Init = Literal["iso", "cov"]

# Korznikov et al.: the initialisation each baseline works best with.
DEFAULT_INIT: dict[str, str] = {
    "none": "iso",
    "frozen-decoder": "cov",
    "soft-frozen-decoder": "iso",
    "frozen-encoder": "iso",
}


# Fields that only some architectures read: they do not tell two SAEs of another architecture apart.
_ARCH_ONLY = {
    "l1_coef": {"relu"},
    "l0_coef": {"jumprelu"},
    "jumprelu_bandwidth": {"jumprelu"},
    "target_l0": {"relu", "jumprelu"},
    "target_l0_rate": {"relu"},
    "matryoshka_groups": {"matryoshka"},
    "threshold_momentum": {"batchtopk", "matryoshka"},
    "k": {"topk", "batchtopk", "matryoshka", "jumprelu"},  # jumprelu: its θ starts at the k/m quantile
    "auxk": {"topk", "batchtopk", "matryoshka"},
    "auxk_coef": {"topk", "batchtopk", "matryoshka"},
}


class SAEConfig(BaseModel):
    """Everything that determines an SAE's shape and training objective."""

    model_config = ConfigDict(extra="forbid")

    arch: Arch = "topk"
    d_in: int = Field(gt=0, description="input width d")
    n_latents: int = Field(gt=0, description="dictionary size m = R·d")
    k: int = Field(32, gt=0, description="active latents per token (topk, batchtopk, matryoshka)")
    auxk: bool = Field(True, description="AuxK loss on dead latents (topk, batchtopk, matryoshka)")
    auxk_coef: float = Field(1 / 32, ge=0, description="AuxK weight α")
    dead_tokens: int = Field(10_000_000, gt=0, description="a latent is dead after this many tokens without firing")
    l1_coef: float = Field(5.0, ge=0, description="λ of the relu SAE's weighted L1 penalty")
    l0_coef: float | None = Field(None, ge=0, description="λ of the jumprelu SAE's L0 penalty; default 1e-3, or 1.0 with target_l0")
    target_l0: float | None = Field(
        None, gt=0, description="relu: adapt λ during training to reach this L0; jumprelu: penalise λ·(L0/target − 1)² instead of λ·L0"
    )
    target_l0_rate: float = Field(0.01, gt=0, description="per-step log-rate of the relu SAE's λ controller")
    jumprelu_bandwidth: float = Field(1e-3, gt=0, description="straight-through bandwidth ε, as a fraction of the inputs' RMS norm")
    threshold_momentum: float = Field(0.99, ge=0, lt=1, description="batchtopk inference-threshold EMA momentum")
    matryoshka_groups: list[float] = Field(default_factory=lambda: [0.5, 0.3, 0.2], description="nested group fractions")
    normalize_decoder: bool | None = Field(None, description="unit-norm decoder rows; default: all but relu")
    baseline: Baseline = "none"
    init: Init | None = Field(None, description="iso | cov; default per baseline (docs/spec.md#baselines)")
    tau: float = Field(0.8, gt=-1, lt=1, description="soft-frozen decoder cone: cos(W_dec,j, W_dec,j⁽⁰⁾) ≥ τ")
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> SAEConfig:
        if (
            self.arch in ("topk", "batchtopk", "matryoshka", "jumprelu") and self.k >= self.n_latents
        ):  # jumprelu: θ starts at the k/m quantile
            raise UserError(
                f"{self.arch}: k = {self.k} must be smaller than the number of latents m = {self.n_latents}; lower k or raise the number of latents"
            )
        if self.arch == "matryoshka":
            if any(g <= 0 for g in self.matryoshka_groups) or abs(sum(self.matryoshka_groups) - 1) > 1e-6:
                raise UserError(f"matryoshka group fractions must be positive and sum to 1, got {self.matryoshka_groups}")
        return self

    def key_fields(self) -> dict:
        """The fields that decide what this SAE trains into (its architecture's and baseline's only)."""
        out = self.model_dump(mode="json")
        for name, archs in _ARCH_ONLY.items():
            if self.arch not in archs:
                out.pop(name, None)
        if self.baseline != "soft-frozen-decoder":
            out.pop("tau", None)
        out["init"] = self.init_kind
        return out

    @property
    def l0_penalty_coef(self) -> float:
        """The jumprelu λ: given, or the default of its penalty form (linear 1e-3, target-L0 quadratic 1.0)."""
        if self.l0_coef is not None:
            return self.l0_coef
        return 1.0 if self.target_l0 is not None else 1e-3

    @property
    def init_kind(self) -> str:
        return self.init or DEFAULT_INIT[self.baseline]

    @property
    def unit_norm_decoder(self) -> bool:
        return self.arch != "relu" if self.normalize_decoder is None else self.normalize_decoder

    @property
    def aux_k(self) -> int:
        """k_aux = d/2 (Gao et al.), capped by the dictionary size."""
        return max(1, min(self.d_in // 2, self.n_latents))

    @property
    def name(self) -> str:
        return self.arch if self.baseline == "none" else f"{self.arch}/{self.baseline}"


def check_arch(arch: str) -> str:
    """Validate an architecture name given by a user."""
    if arch not in ARCHS:
        raise UserError(f"unknown SAE architecture '{arch}'; choose one of {', '.join(ARCHS)}")
    return arch


def check_baseline(baseline: str) -> str:
    if baseline not in BASELINES:
        raise UserError(f"unknown SAE baseline '{baseline}'; choose one of {', '.join(BASELINES)}")
    return baseline
