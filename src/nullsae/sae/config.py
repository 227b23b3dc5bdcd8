"""Typed configuration of one SAE (docs/spec.md#architectures, #baselines): one config class per architecture.

`SAEConfig` holds what every architecture shares (size, baseline, initialisation, seed); each
architecture's subclass adds only its own fields, `arch` being the discriminator of the union
`AnySAEConfig`. `SAEConfig(arch=..., **fields)` builds the registered class of `arch` (as
`pathlib.Path` builds a `PosixPath`) and drops fields that only other architectures read, so one
mapping of shared settings (the run config's `sae` section, an older flat cfg.json) builds any of
them. This module does not import torch: the SAE classes live in `nullsae.sae.archs.<arch>`.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator
from pydantic.fields import FieldInfo

from nullsae.errors import UserError

Baseline = Literal["none", "frozen-decoder", "soft-frozen-decoder", "frozen-encoder"]
BASELINES: tuple[str, ...] = ("none", "frozen-decoder", "soft-frozen-decoder", "frozen-encoder")
# Null dictionaries built from a trained SAE without training (docs/spec.md#free-nulls, sae/free_nulls.py).
FREE_NULLS: tuple[str, ...] = ("random", "shuffled-decoder", "pca", "identity")
Init = Literal["iso", "cov"]
FREE_NULLS: tuple[str, ...] = ("random", "shuffled-decoder", "pca", "identity")  # docs/spec.md#free-nulls: built without training

# Korznikov et al.: the initialisation each baseline works best with.
DEFAULT_INIT: dict[str, str] = {
    "none": "iso",
    "frozen-decoder": "cov",
    "soft-frozen-decoder": "iso",
    "frozen-encoder": "iso",
}


class SAEConfig(BaseModel):
    """What every SAE has: input width, dictionary size, random-baseline setting, initialisation and seed."""

    model_config = ConfigDict(extra="forbid")

    unit_norm_default: ClassVar[bool] = True  # unit-norm decoder rows unless normalize_decoder says otherwise

    arch: str
    d_in: int = Field(gt=0, description="input width d")
    n_latents: int = Field(gt=0, description="dictionary size m = R·d")
    dead_tokens: int = Field(default=10_000_000, gt=0, description="a latent is dead after this many tokens without firing")
    normalize_decoder: bool | None = Field(default=None, description="unit-norm decoder rows; default: all but relu")
    baseline: Baseline = "none"
    init: Init | None = Field(default=None, description="iso | cov; default per baseline (docs/spec.md#baselines)")
    tau: float = Field(default=0.8, gt=-1, lt=1, description="soft-frozen decoder cone: cos(W_dec,j, W_dec,j⁽⁰⁾) ≥ τ")
    seed: int = 0

    def __new__(cls, *args: Any, **data: Any) -> SAEConfig:
        target = config_class(str(data.get("arch"))) if cls is SAEConfig else cls
        return object.__new__(target)

    def __init__(self, **data: Any) -> None:
        """Any architecture's fields: those only other architectures read are dropped (see the module docstring)."""
        super().__init__(**data)

    @model_validator(mode="before")
    @classmethod
    def _drop_other_architectures_fields(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if k in cls.model_fields or k not in _arch_fields()}
        return data

    def key_fields(self) -> dict:
        """The fields that decide what this SAE trains into (its architecture's and baseline's only)."""
        out = self.model_dump(mode="json")
        if self.baseline != "soft-frozen-decoder":
            out.pop("tau", None)
        out["init"] = self.init_kind
        return out

    @property
    def init_kind(self) -> str:
        return self.init or DEFAULT_INIT[self.baseline]

    @property
    def unit_norm_decoder(self) -> bool:
        return self.unit_norm_default if self.normalize_decoder is None else self.normalize_decoder

    @property
    def name(self) -> str:
        return self.arch if self.baseline == "none" else f"{self.arch}/{self.baseline}"

    def _check_k(self, k: int) -> None:
        if k >= self.n_latents:
            raise UserError(
                f"{self.arch}: k = {k} must be smaller than the number of latents m = {self.n_latents}; lower k or raise the number of latents"
            )


class L1Config(SAEConfig):
    """Fields of the architectures trained with a decoder-norm-weighted L1 penalty, its coefficient steered to a target L0."""

    target_l0: float | None = Field(
        default=None,
        gt=0,
        description="relu, gated: adapt λ during training to reach this L0; jumprelu: penalise λ·(L0/target − 1)² instead of λ·L0",
    )
    target_l0_rate: float = Field(default=0.01, gt=0, description="per-step log-rate of the L1 coefficient's controller (relu, gated)")

    @property
    def penalty_coef(self) -> float:
        """λ at the start of training (each architecture names its own field)."""
        raise NotImplementedError


class ReLUConfig(L1Config):
    """ReLU SAE: f = ReLU, loss FVU + λ Σ_j |z_j| ‖W_dec,j‖."""

    unit_norm_default: ClassVar[bool] = False
    arch: Literal["relu"] = "relu"
    l1_coef: float = Field(default=5.0, ge=0, description="λ of the relu SAE's weighted L1 penalty")

    @property
    def penalty_coef(self) -> float:
        return self.l1_coef


class TopKConfig(SAEConfig):
    """TopK SAE (Gao et al.): the k largest pre-activations per token, AuxK on dead latents."""

    arch: Literal["topk"] = "topk"
    k: int = Field(
        default=32, gt=0, description="active latents per token (topk, batchtopk, matryoshka); jumprelu: θ starts at the k/m quantile"
    )
    auxk: bool = Field(default=True, description="AuxK loss on dead latents (topk, batchtopk, matryoshka)")
    auxk_coef: float = Field(default=1 / 32, ge=0, description="AuxK weight α")

    @model_validator(mode="after")
    def _k_below_m(self) -> TopKConfig:
        self._check_k(self.k)
        return self

    @property
    def aux_k(self) -> int:
        """k_aux = d/2 (Gao et al.), capped by the dictionary size."""
        return max(1, min(self.d_in // 2, self.n_latents))


class BatchTopKConfig(TopKConfig):
    """BatchTopK SAE (Bussmann et al.): k·B winners over the batch, a learned threshold at inference."""

    arch: Literal["batchtopk"] = "batchtopk"
    threshold_momentum: float = Field(default=0.99, ge=0, lt=1, description="batchtopk inference-threshold EMA momentum")


class MatryoshkaConfig(BatchTopKConfig):
    """Matryoshka BatchTopK SAE: the loss averages the FVUs of nested dictionary prefixes."""

    arch: Literal["matryoshka"] = "matryoshka"
    matryoshka_groups: list[float] = Field(default_factory=lambda: [0.5, 0.3, 0.2], description="nested group fractions")

    @model_validator(mode="after")
    def _groups(self) -> MatryoshkaConfig:
        if any(g <= 0 for g in self.matryoshka_groups) or abs(sum(self.matryoshka_groups) - 1) > 1e-6:
            raise UserError(f"matryoshka group fractions must be positive and sum to 1, got {self.matryoshka_groups}")
        return self


class JumpReLUConfig(SAEConfig):
    """JumpReLU SAE (Rajamanoharan et al.): z = pre·H(pre − θ), straight-through θ, L0 penalty."""

    arch: Literal["jumprelu"] = "jumprelu"
    k: int = Field(
        default=32, gt=0, description="active latents per token (topk, batchtopk, matryoshka); jumprelu: θ starts at the k/m quantile"
    )
    l0_coef: float | None = Field(default=None, ge=0, description="λ of the jumprelu SAE's L0 penalty; default 1e-3, or 1.0 with target_l0")
    target_l0: float | None = Field(
        default=None,
        gt=0,
        description="relu, gated: adapt λ during training to reach this L0; jumprelu: penalise λ·(L0/target − 1)² instead of λ·L0",
    )
    jumprelu_bandwidth: float = Field(default=1e-3, gt=0, description="straight-through bandwidth ε, as a fraction of the inputs' RMS norm")

    @model_validator(mode="after")
    def _k_below_m(self) -> JumpReLUConfig:
        self._check_k(self.k)
        return self

    @property
    def l0_penalty_coef(self) -> float:
        """λ: given, or the default of its penalty form (linear 1e-3, target-L0 quadratic 1.0)."""
        if self.l0_coef is not None:
            return self.l0_coef
        return 1.0 if self.target_l0 is not None else 1e-3


class GatedConfig(L1Config):
    """Gated SAE (Rajamanoharan et al. 2024a): a gate path picks the firing latents, a magnitude path sharing its directions sizes them."""

    unit_norm_default: ClassVar[bool] = False
    arch: Literal["gated"] = "gated"
    gate_l1_coef: float = Field(default=0.05, ge=0, description="λ of the gated SAE's L1 penalty on its gate pre-activations")

    @property
    def penalty_coef(self) -> float:
        return self.gate_l1_coef


# ----- the registry: one config class per architecture; its SAE class is nullsae.sae.archs.<arch> -----
AnySAEConfig = Annotated[
    ReLUConfig | TopKConfig | BatchTopKConfig | JumpReLUConfig | MatryoshkaConfig | GatedConfig, Field(discriminator="arch")
]
ARCH_CONFIGS: tuple[type[SAEConfig], ...] = get_args(get_args(AnySAEConfig)[0])
ARCHS: tuple[str, ...] = tuple(c.model_fields["arch"].default for c in ARCH_CONFIGS)
_ADAPTER: TypeAdapter[AnySAEConfig] = TypeAdapter(AnySAEConfig)


def _arch_fields() -> set[str]:
    """Fields some architecture declares beyond the shared ones."""
    return {name for c in ARCH_CONFIGS for name in c.model_fields} - set(SAEConfig.model_fields)


def config_class(arch: str) -> type[SAEConfig]:
    """The config class registered for `arch`, or one UserError line naming the choices."""
    for c in ARCH_CONFIGS:
        if c.model_fields["arch"].default == arch:
            return c
    raise UserError(f"unknown SAE architecture '{arch}'; choose one of {', '.join(ARCHS)}")


def parse_sae_config(data: dict | str) -> SAEConfig:
    """A config mapping (or its JSON) → the architecture's config class, through the discriminated union."""
    try:
        return _ADAPTER.validate_json(data) if isinstance(data, str) else _ADAPTER.validate_python(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        if err["type"] == "union_tag_invalid":
            raise UserError(f"unknown SAE architecture {(err.get('ctx') or {}).get('tag')!r}; choose one of {', '.join(ARCHS)}") from None
        raise


def settings_fields() -> dict[str, Any]:
    """Every architecture's own fields (first declaration wins), for the run config's `sae` section."""
    out: dict[str, Any] = {}
    for c in ARCH_CONFIGS:
        for name, f in c.model_fields.items():
            out.setdefault(name, f)
    return out


def check_arch(arch: str) -> str:
    """Validate an architecture name given by a user."""
    config_class(arch)
    return arch


# ----- training ------------------------------------------------------------------------------------
class TrainConfig(BaseModel):
    """Optimisation of the SAEs trained on one stream: the trainer's config, the base of the run config's
    `train` section and of `synth`'s config. Defaults as docs/spec.md#architectures states (Heap et al.)."""

    model_config = ConfigDict(extra="forbid")

    steps: int | None = Field(default=None, gt=0, description="optimiser steps (default: one pass over the training activations)")
    lr: float | None = Field(default=None, gt=0, description="Adam learning rate (default 2e-4 / sqrt(m / 2^14))")
    warmup_steps: int = Field(default=1000, ge=0, description="linear learning-rate warm-up steps (at most the run's steps)")
    decay_fraction: float = Field(default=0.0, ge=0, le=1, description="linear decay to 0 over this final fraction of steps")
    lr_drop_step: int | None = Field(
        default=None, ge=1, description="from this step on the learning rate is multiplied by lr_drop_factor (default: no drop)"
    )
    lr_drop_factor: float = Field(default=1 / 3, gt=0, le=1, description="the learning-rate drop's factor")
    betas: tuple[float, float] = Field(default=(0.9, 0.999), description="Adam's β1, β2")
    checkpoint_every: int = Field(default=100, gt=0, description="steps between trainer checkpoints (an interrupted run resumes there)")
    log_every: int = Field(default=50, gt=0, description="steps between training-history records")
    skip_nonfinite: bool = Field(default=True, description="skip and count batches with NaN/inf (else stop with an error)")


def with_default(model: type[BaseModel], name: str, default: Any, description: str | None = None) -> Any:
    """Field `name` of `model` with another default (its bounds kept; its description unless one is given), for a config derived from it."""
    return FieldInfo.merge_field_infos(model.model_fields[name], default=default, **({"description": description} if description else {}))
