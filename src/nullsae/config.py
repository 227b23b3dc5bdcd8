"""Run configuration of the experiment grid: typed sections, YAML in and out, one CLI flag per field.

A run is models × variants × layers × architectures (+ random SAE baselines at chosen layers),
evaluated with the listed metric families. Field descriptions double as the CLI help. Checks that
need no model happen here (unknown key, variant, architecture, metric); checks against the model
(layer range, k < m) happen in `nullsae.experiment.grid.plan` — both before any compute starts.
"""

from __future__ import annotations

import argparse
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from nullsae.autointerp.run import AutointerpConfig
from nullsae.editing import EditingConfig
from nullsae.errors import UserError
from nullsae.probing import ProbingConfig
from nullsae.sae.config import ARCHS, BASELINES, FREE_NULLS, SAEConfig

VARIANTS: tuple[str, ...] = ("trained", "rerandomized", "rerandomized-excl-emb", "step0", "control")
METRICS: tuple[str, ...] = ("reconstruction", "downstream", "latents", "autointerp", "probing", "editing")
RANDOM_BASELINES: tuple[str, ...] = tuple(b for b in BASELINES if b != "none")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class VariantSettings(_Section):
    """How the null models of the transformer are built (docs/spec.md#variants)."""

    seed: int = Field(42, description="seed of the re-randomised variants and of step0's initialiser")
    keep_norms: bool = Field(False, description="keep layer-norm weights at their trained values")
    control_sigma: float = Field(1.0, gt=0, description="std of the control variant's embedding noise")
    control_noise: Literal["fresh", "per-token"] = Field("fresh", description="control noise: fresh every pass, or fixed per token id")


class TokenSettings(_Section):
    """Which text, how much of it, and in what windows (disjoint train / eval / interpretation splits)."""

    source: str = Field("bundled", description="bundled | hf:DATASET[:SPLIT] | a local .txt/.jsonl/.parquet path")
    context: int = Field(64, ge=2, description="tokens per window fed to the model (BOS included)")
    train: int = Field(2_000_000, gt=0, description="activations used to train each SAE")
    eval: int = Field(16_384, gt=0, description="tokens of the evaluation split (reconstruction, downstream)")
    interp: int = Field(200_000, gt=0, description="tokens of the interpretation split (latent examples, auto-interp)")
    model_batch: int = Field(32, gt=0, description="windows per forward pass of the transformer")
    interp_window: int = Field(32, ge=2, description="tokens per auto-interp example window (docs/spec.md#autointerp); divides context")
    skip_bos: bool = Field(True, description="leave BOS out of SAE training and evaluation; downstream patches keep its clean residual")
    seed: int = Field(0, description="seed of the disjoint train / eval / interp document split")

    @model_validator(mode="after")
    def _windows(self) -> TokenSettings:
        if self.context % self.interp_window:
            raise ValueError(f"interp_window {self.interp_window} must divide context {self.context}")
        return self


class _SAESettingsBase(_Section):
    """SAE architectures and the hyper-parameters they share (docs/spec.md#architectures); the rest are SAEConfig's fields."""

    archs: list[str] = Field(default_factory=lambda: ["topk"], description=f"architectures: {', '.join(ARCHS)}")
    expansion: int = Field(64, gt=0, description="expansion factor R (m = R·d)")
    n_latents: int | None = Field(None, gt=0, description="dictionary size m; overrides expansion")

    @field_validator("archs")
    @classmethod
    def _archs(cls, v: list[str]) -> list[str]:
        for a in v:
            if a not in ARCHS:
                raise ValueError(f"unknown SAE architecture '{a}'; choose from {', '.join(ARCHS)}")
        if not v:
            raise ValueError("give at least one architecture")
        return list(dict.fromkeys(v))


# Fields set per cell (or in the `baselines` section), not shared hyper-parameters.
_PER_CELL = {"arch", "d_in", "n_latents", "baseline", "init", "seed", "tau"}  # n_latents: set from expansion
SAESettings = create_model(
    "SAESettings",
    __base__=_SAESettingsBase,
    **{name: (f.annotation, f) for name, f in SAEConfig.model_fields.items() if name not in _PER_CELL},
)


class BaselineSettings(_Section):
    """Random SAE baselines of Korznikov et al. (docs/spec.md#baselines), trained beside the SAE they mirror."""

    kinds: list[str] = Field(
        default_factory=lambda: list(RANDOM_BASELINES),
        description=f"baselines: trained {', '.join(RANDOM_BASELINES)}; free nulls (no training) {', '.join(FREE_NULLS)} (empty: none)",
    )
    layers: list[int] | None = Field(None, description="layers that get baselines (default: every layer)")
    variants: list[str] = Field(default_factory=lambda: ["trained"], description="variants that get baselines")
    tau: float = Field(0.8, gt=-1, lt=1, description="soft-frozen decoder cone cos ≥ τ")

    @field_validator("kinds")
    @classmethod
    def _kinds(cls, v: list[str]) -> list[str]:
        for b in v:
            if b not in RANDOM_BASELINES + FREE_NULLS:
                raise ValueError(f"unknown SAE baseline '{b}'; choose from {', '.join(RANDOM_BASELINES + FREE_NULLS)}")
        return list(dict.fromkeys(v))

    @field_validator("variants")
    @classmethod
    def _variants(cls, v: list[str]) -> list[str]:
        return _check_variants(v)


class TrainSettings(_Section):
    """SAE optimisation (docs/spec.md#architectures defaults); one stream of batches feeds every SAE of a layer."""

    batch_size: int = Field(4096, gt=0, description="activations per optimiser step (steps = tokens.train // batch_size)")
    lr: float | None = Field(None, gt=0, description="Adam learning rate (default 2e-4 / sqrt(m / 2^14))")
    warmup_steps: int = Field(1000, ge=0, description="linear learning-rate warm-up steps")
    decay_fraction: float = Field(0.0, ge=0, le=1, description="linear decay to 0 over this final fraction of steps")
    checkpoint_every: int = Field(100, gt=0, description="steps between trainer checkpoints (an interrupted run resumes there)")
    stream: Literal["cache", "live"] = Field(
        "cache",
        description="cache: train split's activations on disk (one model pass for all layers); live: computed per layer through a shuffle buffer (no disk)",
    )
    buffer_tokens: int = Field(262_144, gt=0, description="live stream: activations held in the shuffle buffer")
    seeds: list[int] = Field(
        default_factory=lambda: [0],
        description="SAE seeds: every SAE cell, trained and null, is trained once per seed on the same activations (the seed sets its initialisation and batch order; an SAE and its baselines share it)",
    )

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("give at least one seed, e.g. --train.seeds 0,1,2")
        dup = sorted({s for s in v if v.count(s) > 1})
        if dup:
            raise ValueError(f"seed {dup[0]} is listed twice; give each seed once")
        return v


class ProbingSettings(ProbingConfig):
    """Sparse probing as a metric family (`metrics: [..., probing]`): the tasks, their sizes and the probes."""

    tasks: list[str] = Field(
        default_factory=lambda: ["builtin"], description="task names, families, files or hf:DATASET (builtin = every built-in task)"
    )
    n_train: int = Field(100, gt=0, description="training texts per class")
    n_test: int = Field(50, gt=0, description="test texts per class")
    baseline_layers_only: bool = Field(False, description="probe only the SAEs at the layers that get SAE baselines (baselines.layers)")


class EditingSettings(EditingConfig):
    """RAVEL-style editing as a metric family (`metrics: [..., editing]`), on the facts each variant's model answers right."""

    baseline_layers_only: bool = Field(False, description="edit only with the SAEs at the layers that get SAE baselines (baselines.layers)")


class ReportSettings(_Section):
    """Verdicts (docs/spec.md#verdicts) and report contents."""

    n_bootstrap: int = Field(1000, ge=100, description="bootstrap resamples per verdict")
    confidence: float = Field(0.95, gt=0, lt=1, description="interval level")
    seed: int = Field(0, description="bootstrap seed")
    example_latents: int = Field(4, ge=0, description="latents shown with example windows per variant")


class RunConfig(_Section):
    """One experiment: every SAE of the grid and every metric to compute on it."""

    name: str = Field("run", description="run name (the default output folder is runs/NAME)")
    models: list[str] = Field(
        default_factory=lambda: ["smollm2"], description="smollm2 (bundled) | HF hub id[@revision] | local folder | .gguf file"
    )
    variants: list[str] = Field(default_factory=lambda: list(VARIANTS), description=f"null models: {', '.join(VARIANTS)}")
    layers: list[int] = Field(
        default_factory=lambda: [2, 6, 10], description="residual-stream layers: the output of decoder block ℓ, 0-based"
    )
    sae: SAESettings = Field(default_factory=SAESettings)
    baselines: BaselineSettings = Field(default_factory=BaselineSettings)
    tokens: TokenSettings = Field(default_factory=TokenSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)
    metrics: list[str] = Field(default_factory=lambda: list(METRICS), description=f"metric families: {', '.join(METRICS)}")
    autointerp: AutointerpConfig = Field(default_factory=AutointerpConfig)
    probing: ProbingSettings = Field(default_factory=ProbingSettings)
    editing: EditingSettings = Field(default_factory=EditingSettings)
    variant: VariantSettings = Field(default_factory=VariantSettings)
    report: ReportSettings = Field(default_factory=ReportSettings)
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    threads: int | None = Field(None, gt=0, description="torch CPU threads per task (default: torch's choice; 1 suits tiny models)")

    @field_validator("variants")
    @classmethod
    def _variants(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("give at least one variant")
        return _check_variants(v)

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, v: list[str]) -> list[str]:
        for m in v:
            if m not in METRICS:
                raise ValueError(f"unknown metric family '{m}'; choose from {', '.join(METRICS)}")
        return list(dict.fromkeys(v))

    @field_validator("layers")
    @classmethod
    def _layers(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("give at least one layer")
        if any(layer < 0 for layer in v):
            raise ValueError(f"layers must be ≥ 0, got {v}")
        return sorted(set(v))

    @field_validator("models")
    @classmethod
    def _models(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("give at least one model")
        return v

    @model_validator(mode="after")
    def _cross(self) -> RunConfig:
        if self.baselines.layers is not None:
            extra = sorted(set(self.baselines.layers) - set(self.layers))
            if extra:
                raise ValueError(f"baselines.layers {extra} are not among layers {self.layers}")
        missing = [v for v in self.baselines.variants if v not in self.variants]
        if missing and self.baselines.kinds:
            raise ValueError(f"baselines.variants {missing} are not among variants {self.variants}")
        return self

    def baseline_layers(self) -> list[int]:
        return self.layers if self.baselines.layers is None else sorted(self.baselines.layers)


def _check_variants(v: list[str]) -> list[str]:
    for name in v:
        if name not in VARIANTS:
            raise ValueError(f"unknown variant '{name}'; choose from {', '.join(VARIANTS)}")
    return list(dict.fromkeys(v))


# ----- YAML in / out -------------------------------------------------------------------------


def _one_line(exc: ValidationError) -> str:
    """The first validation problem as one line: where it is and what is wrong."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        return f"unknown config key '{where}'; check its spelling (`nullsae run --help` lists every key)"
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"config key '{where}': {msg}" if where else f"config: {msg}"


def _check_keys(data: Any, model: type[BaseModel], prefix: str = "") -> None:
    """Unknown keys at any depth are errors (some nested sections come from other modules' configs)."""
    if not isinstance(data, dict):
        return
    for key, value in data.items():
        field = model.model_fields.get(key)
        if field is None:
            raise UserError(f"unknown config key '{prefix}{key}'; check its spelling (`nullsae run --help` lists every key)")
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            _check_keys(value, ann, f"{prefix}{key}.")


def _upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """A config written before `train.seeds` existed (`train.seed: S`) reads as `train.seeds: [S]`."""
    train = data.get("train")
    if isinstance(train, dict) and "seed" in train and "seeds" not in train:
        train = {k: v for k, v in train.items() if k != "seed"} | {"seeds": [train["seed"]]}
        data = {**data, "train": train}
    return data


def parse_config(data: dict[str, Any]) -> RunConfig:
    """Validate a config mapping; any problem becomes one UserError line."""
    if not isinstance(data, dict):
        raise UserError(f"a run config must be a mapping of keys to values, got {type(data).__name__}")
    data = _upgrade(data)
    _check_keys(data, RunConfig)
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise UserError(_one_line(exc)) from None


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a config file (or the name of a bundled preset) into a plain mapping."""
    p = Path(path)
    if not p.exists():
        preset = preset_path(str(path))
        if preset is None:
            raise UserError(f"config file {path} not found; give a YAML path or a preset ({', '.join(preset_names())})")
        p = preset
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise UserError(f"{p} is not valid YAML ({str(exc).splitlines()[0]}); fix the file") from None
    if data is None:  # an empty file would silently run every default, sized for a GPU
        raise UserError(f"config file {p} is empty; copy a preset such as {preset_path('demo')} and edit it")
    if not isinstance(data, dict):
        raise UserError(f"{p} must hold a mapping of config keys, not a {type(data).__name__}")
    return data


def dump_yaml(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


PRESETS_DIR = Path(__file__).parent / "presets"


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def preset_path(name: str) -> Path | None:
    p = PRESETS_DIR / f"{name}.yaml"
    return p if p.exists() else None


# ----- CLI flags: one per field ---------------------------------------------------------------


def _leaves(model: type[BaseModel], prefix: str = "") -> list[tuple[str, Any, str]]:
    """(dotted path, annotation, description) of every scalar or list field, sections flattened."""
    out = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out.extend(_leaves(ann, f"{prefix}{name}."))
        else:
            out.append((f"{prefix}{name}", ann, field.description or ""))
    return out


def _parse_scalar(kind: Any, text: str) -> Any:
    if kind is bool:
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected true or false, got '{text}'")
    if kind is int:
        return int(text.replace("_", ""))
    if kind is float:
        return float(text)
    return text


def _parse_value(ann: Any, text: str) -> Any:
    """Parse a flag's text by the field's annotation; lists are comma-separated, `none` clears optionals."""
    args = typing.get_args(ann)
    origin = typing.get_origin(ann)
    if origin in (typing.Union, types.UnionType):
        if text.strip().lower() in ("none", "null", ""):
            return None
        inner = [a for a in args if a is not type(None)]
        return _parse_value(inner[0], text)
    if origin is list:
        if text.strip() == "":
            return []
        return [_parse_value(args[0], part.strip()) for part in text.split(",")]
    if origin is Literal:
        return text
    if origin is dict or ann is dict or origin is tuple:
        return yaml.safe_load(text)
    return _parse_scalar(ann, text)


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One `--section.field VALUE` flag per config field (lists comma-separated), help from the field."""
    group = parser.add_argument_group("config overrides (each replaces the config file's value)")
    for path, _ann, desc in _leaves(RunConfig):
        flag = "--" + path.replace("_", "-")
        group.add_argument(flag, dest=f"cfg:{path}", metavar="V", default=argparse.SUPPRESS, help=desc)


def overrides_from_args(args: argparse.Namespace) -> dict[str, str]:
    return {k.removeprefix("cfg:"): v for k, v in vars(args).items() if k.startswith("cfg:")}


def apply_overrides(data: dict[str, Any], overrides: dict[str, str]) -> dict[str, Any]:
    """Set dotted keys from flag text (parsed by the field's type) in a copy of a config mapping."""
    kinds = {path: ann for path, ann, _ in _leaves(RunConfig)}
    out = yaml.safe_load(yaml.safe_dump(data)) or {}
    for path, text in overrides.items():
        if path not in kinds:
            raise UserError(f"unknown config key '{path}'")
        try:
            value = _parse_value(kinds[path], text)
        except ValueError as exc:
            raise UserError(f"--{path.replace('_', '-')}: {exc}") from None
        node = out
        parts = path.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"config key '{part}' must be a mapping")
        node[parts[-1]] = value
    return out


def build_config(path: str | Path | None, overrides: dict[str, str], base: dict[str, Any] | None = None) -> RunConfig:
    """Config file (or `base`) + CLI overrides → a validated RunConfig."""
    data = load_yaml(path) if path is not None else dict(base or {})
    return parse_config(apply_overrides(data, overrides))
