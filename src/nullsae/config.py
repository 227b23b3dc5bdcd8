"""Typed configs of every command, importable without torch: the run config of the experiment grid
(YAML in and out), the probing, editing and synthetic-benchmark settings, and one CLI flag per field.

A run is models × variants × layers × architectures (+ random SAE baselines at chosen layers),
evaluated with the listed metric families. Field descriptions double as the CLI help. Checks that
need no model happen here (unknown key, variant, architecture, metric); checks against the model
(layer range, k < m) happen in `nullsae.experiment.grid.plan` — both before any compute starts.
"""

from __future__ import annotations

import argparse
import contextlib
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator
from pydantic.fields import FieldInfo

from nullsae.autointerp.config import AutointerpConfig
from nullsae.errors import UserError
from nullsae.sae.config import ARCHS, BASELINES, FREE_NULLS, TrainConfig, check_arch, settings_fields, with_default

M = TypeVar("M", bound=BaseModel)

VARIANTS: tuple[str, ...] = ("trained", "rerandomized", "rerandomized-excl-emb", "step0", "control")
METRICS: tuple[str, ...] = ("reconstruction", "downstream", "latents", "autointerp", "probing", "editing")
RANDOM_BASELINES: tuple[str, ...] = tuple(b for b in BASELINES if b != "none")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# ----- method settings (the run config's sections and the commands share them) -----------------


class ProbingConfig(BaseModel):
    """Sizes of the sparse probes, pooling, and the logistic regression's settings."""

    model_config = ConfigDict(extra="forbid")

    ks: list[int] = Field(default_factory=lambda: [1, 2, 5, 10, 20], description="numbers of latents per probe")
    pooling: Literal["mean", "max"] = Field(default="mean", description="how token activations become one vector per text")
    max_tokens: int = Field(default=128, ge=2, description="tokens per text (BOS included); longer texts are cut")
    batch_size: int = Field(default=16, gt=0, description="texts per forward pass")
    C: float = Field(default=1.0, gt=0, description="inverse L2 strength of the logistic regression (features standardised)")
    max_iter: int = Field(default=1000, gt=0, description="iterations of the logistic regression's solver at most")
    seed: int = Field(default=0, description="seed of the random projections (floor)")

    @field_validator("ks")
    @classmethod
    def _ks(cls, v: list[int]) -> list[int]:
        if not v or min(v) < 1:
            raise ValueError(f"give positive latent counts, got {v}")
        return v


class EditingConfig(BaseModel):
    """Data, split and search settings of the RAVEL-style evaluation."""

    model_config = ConfigDict(extra="forbid")

    facts: str | None = Field(
        default=None, description="facts JSON shaped like nullsae/assets/ravel_facts.json (default: the bundled countries and cities)"
    )
    train_fraction: float = Field(default=0.5, gt=0, lt=1, description="fraction of entities used to select latents (the rest are scored)")
    n_latents_grid: list[int] = Field(
        default_factory=lambda: [1, 4, 16, 64, 256, 1024, 4096], description="latent-set sizes tried on the training entities (capped at m)"
    )
    min_facts: int = Field(
        default=5, ge=2, description="an attribute needs this many correctly answered entities in each split, else it is skipped"
    )
    max_pairs: int = Field(default=48, gt=0, description="base/source pairs per attribute and split")
    batch_size: int = Field(default=32, gt=0, description="prompts per forward pass")
    selection: Literal["eta2", "mask"] = Field(
        default="eta2", description="eta2: top-n latents by η² (n by training score); mask: SAEBench's learned binary mask"
    )
    mask_epochs: int = Field(default=8, gt=0, description="mask: passes over the training items")
    mask_lr: float = Field(default=1e-2, gt=0, description="mask: Adam learning rate of the mask logits")
    mask_batch_size: int = Field(default=16, gt=0, description="mask: items per gradient step")
    keep_error: bool = Field(
        default=True,
        description="the edit keeps the SAE's reconstruction error (x' = x + Δ); False decodes the edited code alone (x' = x̂ + Δ), as SAEBench does",
    )
    seed: int = Field(default=0, description="seed of the entity split and the pairs")

    @field_validator("n_latents_grid")
    @classmethod
    def _grid(cls, v: list[int]) -> list[int]:
        if not v or min(v) < 1:
            raise ValueError(f"give positive latent-set sizes, got {v}")
        return v


Setting = Literal["constant", "variable"]


class PaperSetting(BaseModel):
    """What `nullsae synth --paper` trains with: the length and lr schedule at which recovery plateaued,
    per architecture (docs/results/synthetic.md has each one's curve)."""

    steps: int = 40_000
    lr: float = 3e-3
    decay_fraction: float = 0.2
    lr_drop_step: int | None = None
    dead_tokens: int = 2_000_000


# BatchTopK needs the lr drop to keep recovering, and a dead window short enough for AuxK to reach
# latents that fire once every few hundred thousand samples; relu and matryoshka keep the generic setting.
PAPER_SETTINGS: dict[str, PaperSetting] = {
    "topk": PaperSetting(steps=11_000, decay_fraction=0.0),
    "jumprelu": PaperSetting(steps=20_000, decay_fraction=0.0),
    "batchtopk": PaperSetting(steps=16_000, lr_drop_step=7_000, dead_tokens=200_000),
}


def paper_setting(arch: str) -> PaperSetting:
    return PAPER_SETTINGS.get(arch, PaperSetting())


class SynthConfig(TrainConfig):
    """One synthetic-benchmark run (docs/spec.md#synthetic): data setting, SAE architecture and the trainer's settings."""

    setting: Setting = Field(default="variable", description="feature probabilities: variable or constant")
    arch: str = Field(default="batchtopk", description=f"SAE architecture: {', '.join(ARCHS)}")
    baselines: bool = Field(default=False, description="also train the frozen-decoder, soft-frozen-decoder and frozen-encoder baselines")
    steps: int = with_default(TrainConfig, "steps", 2_000, "training batches")
    lr: float = with_default(TrainConfig, "lr", 2e-3, "Adam learning rate")
    warmup_steps: int = with_default(TrainConfig, "warmup_steps", 100)
    decay_fraction: float = with_default(TrainConfig, "decay_fraction", 0.2)
    batch_size: int = Field(default=4096, gt=0, description="samples per training batch")
    n_latents: int = Field(default=3200, gt=0, description="dictionary size m")
    l0: int = Field(default=20, gt=0, description="active latents per sample (k, or the L0 target)")
    dead_tokens: int = Field(
        default=2_000_000, gt=0, description="samples without firing after which a latent counts as dead and AuxK trains it"
    )
    auxk_coef: float = Field(default=1 / 32, ge=0, description="AuxK weight α for topk/batchtopk/matryoshka (0: no AuxK)")
    eval_size: int = Field(default=8192, gt=0, description="held-out samples of the evaluation")
    curve_points: int = Field(default=10, gt=0, description="recovery evaluations along training")
    seed: int = Field(default=0, description="seed of the synthetic features, data and SAE initialisation")
    device: str = Field(default="cpu", description="where the SAEs train; data are drawn on the CPU either way")

    @field_validator("arch")
    @classmethod
    def _arch(cls, v: str) -> str:
        return check_arch(v)

    @classmethod
    def with_paper(cls, given: dict[str, Any], paper: bool) -> SynthConfig:
        """The given values first, then (with `paper`) the architecture's plateau setting, then the defaults."""
        arch = check_arch(given.get("arch", cls.model_fields["arch"].default))
        base = paper_setting(arch).model_dump() if paper else {}
        return cls.model_validate({**base, **given})


class VariantSettings(_Section):
    """How the null models of the transformer are built (docs/spec.md#variants)."""

    seed: int = Field(default=42, description="seed of the re-randomised variants and of step0's initialiser")
    keep_norms: bool = Field(default=False, description="keep layer-norm weights at their trained values")
    control_sigma: float = Field(default=1.0, gt=0, description="std of the control variant's embedding noise")
    control_noise: Literal["fresh", "per-token"] = Field(
        default="fresh", description="control noise: fresh every pass, or fixed per token id"
    )


class TokenSettings(_Section):
    """Which text, how much of it, and in what windows (disjoint train / eval / interpretation splits)."""

    source: str = Field(default="bundled", description="bundled | hf:DATASET[:SPLIT] | a local .txt/.jsonl/.parquet path")
    context: int = Field(default=64, ge=2, description="tokens per window fed to the model (BOS included)")
    train: int = Field(default=2_000_000, gt=0, description="activations used to train each SAE")
    eval: int = Field(default=16_384, gt=0, description="tokens of the evaluation split (reconstruction, downstream)")
    interp: int = Field(default=200_000, gt=0, description="tokens of the interpretation split (latent examples, auto-interp)")
    model_batch: int = Field(default=32, gt=0, description="windows per forward pass of the transformer")
    interp_window: int = Field(
        default=32, ge=2, description="tokens per auto-interp example window (docs/spec.md#autointerp); divides context"
    )
    skip_bos: bool = Field(
        default=True, description="leave BOS out of SAE training and evaluation; downstream patches keep its clean residual"
    )
    seed: int = Field(default=0, description="seed of the disjoint train / eval / interp document split")

    @model_validator(mode="after")
    def _windows(self) -> TokenSettings:
        if self.context % self.interp_window:
            raise ValueError(f"interp_window {self.interp_window} must divide context {self.context}")
        return self


class _SAESettingsBase(_Section):
    """SAE architectures and the hyper-parameters they share (docs/spec.md#architectures); the rest are the architectures' config fields."""

    archs: list[str] = Field(default_factory=lambda: ["topk"], description=f"architectures: {', '.join(ARCHS)}")
    expansion: int = Field(default=64, gt=0, description="expansion factor R (m = R·d)")
    n_latents: int | None = Field(default=None, gt=0, description="dictionary size m; overrides expansion")

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
_SHARED_FIELDS: dict[str, Any] = {name: (f.annotation, f) for name, f in settings_fields().items() if name not in _PER_CELL}
if TYPE_CHECKING:  # the architectures' fields are added at run time; code reads them through model_dump / model_fields
    SAESettings = _SAESettingsBase
else:
    SAESettings = create_model("SAESettings", __base__=_SAESettingsBase, **_SHARED_FIELDS)


class BaselineSettings(_Section):
    """Random SAE baselines of Korznikov et al. (docs/spec.md#baselines), trained beside the SAE they mirror."""

    kinds: list[str] = Field(
        default_factory=lambda: list(RANDOM_BASELINES),
        description=f"baselines: trained {', '.join(RANDOM_BASELINES)}; free nulls (no training) {', '.join(FREE_NULLS)} (empty: none)",
    )
    layers: list[int] | None = Field(default=None, description="layers that get baselines (default: every layer)")
    variants: list[str] = Field(default_factory=lambda: ["trained"], description="variants that get baselines")
    tau: float = Field(default=0.8, gt=-1, lt=1, description="soft-frozen decoder cone cos ≥ τ")

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
        return check_variants(v)


class TrainSettings(TrainConfig, _Section):
    """SAE optimisation: the trainer's settings (docs/spec.md#architectures defaults) and the stream of batches that feeds every SAE of a layer."""

    batch_size: int = Field(default=4096, gt=0, description="activations per optimiser step (one pass: tokens.train // batch_size steps)")
    stream: Literal["cache", "live"] = Field(
        default="cache",
        description="cache: train split's activations on disk (one model pass for all layers); live: computed per layer through a shuffle buffer (no disk)",
    )
    buffer_tokens: int = Field(default=262_144, gt=0, description="live stream: activations held in the shuffle buffer")
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
    n_train: int = Field(default=100, gt=0, description="training texts per class")
    n_test: int = Field(default=50, gt=0, description="test texts per class")
    baseline_layers_only: bool = Field(
        default=False, description="probe only the SAEs at the layers that get SAE baselines (baselines.layers)"
    )


class EditingSettings(EditingConfig):
    """RAVEL-style editing as a metric family (`metrics: [..., editing]`), on the facts each variant's model answers right."""

    baseline_layers_only: bool = Field(
        default=False, description="edit only with the SAEs at the layers that get SAE baselines (baselines.layers)"
    )


class ReportSettings(_Section):
    """Verdicts (docs/spec.md#verdicts) and report contents."""

    n_bootstrap: int = Field(default=1000, ge=100, description="bootstrap resamples per verdict")
    confidence: float = Field(default=0.95, gt=0, lt=1, description="interval level")
    seed: int = Field(default=0, description="bootstrap seed")
    example_latents: int = Field(default=4, ge=0, description="latents shown with example windows per variant")


class RunConfig(_Section):
    """One experiment: every SAE of the grid and every metric to compute on it."""

    name: str = Field(default="run", description="run name (the default output folder is runs/NAME)")
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
    device: str = Field(default="auto", description="auto | cpu | cuda | cuda:N")
    threads: int | None = Field(default=None, gt=0, description="torch CPU threads per task (default: torch's choice; 1 suits tiny models)")

    @field_validator("variants")
    @classmethod
    def _variants(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("give at least one variant")
        return check_variants(v)

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


def check_variants(v: list[str]) -> list[str]:
    """The variants without repeats; ValueError naming an unknown one."""
    for name in v:
        if name not in VARIANTS:
            raise ValueError(f"unknown variant '{name}'; choose from {', '.join(VARIANTS)}")
    return list(dict.fromkeys(v))


class ActivationsConfig(BaseModel):
    """What `nullsae activations` caches: model variant, layers, how many tokens of which split, stored how and where."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(default="smollm2", description="'smollm2' (bundled), a hub id, a local folder or a .gguf file")
    revision: str | None = Field(default=None, description="hub revision of --model")
    trust_remote_code: bool = Field(default=False, description="allow a hub model to run its own code")
    variant: str = Field(default="trained", description=f"model variant: {' | '.join(VARIANTS)}")
    null: VariantSettings = Field(default_factory=VariantSettings)
    layers: list[int] = Field(description="layers, e.g. 2,6 or 2 6 (layer ℓ = output of block ℓ)")
    tokens: int = Field(gt=0, description="number of tokens to cache (rounded up to whole windows)")
    window: int = Field(default=128, ge=2, description="tokens per window, BOS included")
    data: str = Field(default="bundled", description="bundled | hf:DATASET[:SPLIT] | a .txt/.jsonl/.parquet file")
    text_field: str = Field(default="text", description="text field of a jsonl/parquet/HF source")
    split: Literal["train", "eval", "interp"] = Field(default="train", description="which disjoint split of the documents")
    data_seed: int = Field(default=0, description="seed of the train/eval/interp split")
    batch_size: int = Field(default=16, gt=0, description="windows per forward pass")
    dtype: Literal["float32", "float16", "bfloat16"] = Field(default="float32", description="storage dtype of the activations")
    cache_dir: str | None = Field(default=None, description="cache root (default: $NULLSAE_CACHE or ~/.cache/nullsae)")
    device: str | None = Field(default=None, description="torch device (default: cuda if available, else cpu)")

    @field_validator("variant")
    @classmethod
    def _variant(cls, v: str) -> str:
        return check_variants([v])[0]

    @field_validator("layers")
    @classmethod
    def _layers(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("give at least one layer")
        return sorted(set(v))


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
        if field is None or field.exclude:
            raise UserError(f"unknown config key '{prefix}{key}'; check its spelling (`nullsae run --help` lists every key)")
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            _check_keys(value, ann, f"{prefix}{key}.")


def _upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """Older configs read as today's: `train.seed: S` as `train.seeds: [S]`, `autointerp.examples.n_latents`
    as `n_latents_sampled`, and the examples' own seed (always the autointerp seed) dropped."""
    train = data.get("train")
    if isinstance(train, dict) and "seed" in train and "seeds" not in train:
        train = {k: v for k, v in train.items() if k != "seed"} | {"seeds": [train["seed"]]}
        data = {**data, "train": train}
    auto = data.get("autointerp")
    if not isinstance(auto, dict):
        return data
    examples = auto.get("examples")
    if isinstance(examples, dict) and ("seed" in examples or "n_latents" in examples):
        examples = {("n_latents_sampled" if k == "n_latents" else k): v for k, v in examples.items() if k != "seed"}
        data = {**data, "autointerp": {**auto, "examples": examples}}
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


def _fields(model: type[BaseModel], prefix: str = "") -> list[tuple[str, FieldInfo]]:
    """(dotted path, field) of every scalar or list field that is a key of its own, sections flattened."""
    out = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if field.exclude:
            continue
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out.extend(_fields(ann, f"{prefix}{name}."))
        else:
            out.append((f"{prefix}{name}", field))
    return out


def _leaves(model: type[BaseModel], prefix: str = "") -> list[tuple[str, Any, str]]:
    """(dotted path, annotation, description) of every scalar or list field, sections flattened."""
    return [(path, f.annotation, f.description or "") for path, f in _fields(model, prefix)]


def _parse_scalar(kind: Any, text: str) -> Any:
    if kind is bool:
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected true or false, got '{text}'")
    try:
        if kind is int:
            return int(text.replace("_", ""))
        if kind is float:
            return float(text)
    except ValueError:
        raise ValueError(f"expected {'an integer' if kind is int else 'a number'}, got '{text}'") from None
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
        try:
            return [_parse_value(args[0], part.strip()) for part in text.split(",")]
        except ValueError:
            kind = {int: "integers", float: "numbers"}.get(args[0], "values")
            raise ValueError(f"expected comma-separated {kind}, got '{text}'") from None
    if origin is Literal:
        return text
    if origin is dict or ann is dict or origin is tuple:
        return yaml.safe_load(text)
    return _parse_scalar(ann, text)


def _choices(ann: Any) -> tuple[str, ...] | None:
    """The values a Literal field (or a list or optional of one) allows."""
    origin = typing.get_origin(ann)
    if origin is Literal:
        return tuple(str(a) for a in typing.get_args(ann))
    if origin in (list, typing.Union, types.UnionType):
        inner = [_choices(a) for a in typing.get_args(ann) if a is not type(None)]
        return inner[0] if len(inner) == 1 else None
    return None


def _shown(value: Any) -> str | None:
    """A default as help text shows it; None for off, none, empty and whole sections."""
    if value is None or value is False or isinstance(value, BaseModel) or value in ([], {}):
        return None
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def _help(field: FieldInfo, default: Any, preset: bool = False) -> str:
    """The field's description with its default (a preset's value always; the field's own unless the
    description already says what it is)."""
    text = field.description or ""
    shown = _shown(default)
    return f"{text} (default: {shown})" if shown is not None and (preset or "default" not in text) else text


def _is_list(ann: Any) -> bool:
    return typing.get_origin(ann) is list or any(typing.get_origin(a) is list for a in typing.get_args(ann))


def _nested(data: dict[str, Any], path: str) -> Any:
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


POSITIONAL: dict[str, Any] = {"positional": True}  # json_schema_extra of a command-config field given as a positional argument


def add_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    model: type[BaseModel],
    *,
    names: dict[str, str] | None = None,
    skip: tuple[str, ...] = (),
) -> dict[str, str]:
    """One option per field of a command's config: `--name` from the field's own name (a nested
    section's fields too, unprefixed; `names` renames a path), help from its description with its
    default, lists as one or more values (each may be comma-separated), a bool that is off by default
    as a switch. Values are checked by the config, not by argparse. Returns dotted path → flag."""
    flags: dict[str, str] = {}
    for path, field in _fields(model):
        if path in skip:
            continue
        name = (names or {}).get(path, path.rsplit(".", 1)[-1]).replace("_", "-")
        default = None if field.is_required() else field.get_default(call_default_factory=True)
        ann, choices = field.annotation, _choices(field.annotation)
        metavar = "{" + ",".join(choices) + "}" if choices else name.upper().replace("-", "_")
        kwargs: dict[str, Any] = {"help": _help(field, default), "default": argparse.SUPPRESS}
        if (field.json_schema_extra or {}) == POSITIONAL:
            parser.add_argument(f"arg:{path}", metavar=metavar, **kwargs)
            flags[path] = name
            continue
        flag = f"--{name}"
        if flag in flags.values():
            raise ValueError(f"two config fields would both be {flag}; rename one in `names`")
        if ann is bool and default is False:
            kwargs |= {"action": "store_const", "const": "true"}
        else:
            kwargs |= {"metavar": metavar, "nargs": "*" if _is_list(ann) else None, "required": field.is_required()}
        parser.add_argument(flag, dest=f"arg:{path}", **kwargs)
        flags[path] = flag
    return flags


def add_config_flags(parser: argparse.ArgumentParser, base: dict[str, Any] | None = None) -> None:
    """One `--section.field VALUE` flag per run-config field (lists comma-separated), help from the field
    with its default (`base`'s value where it sets one: a preset's)."""
    group = parser.add_argument_group("config overrides (each replaces the config file's value)")
    for path, field in _fields(RunConfig):
        given = _nested(base, path) if base else None
        default = given if given is not None else field.get_default(call_default_factory=True)
        flag = "--" + path.replace("_", "-")
        group.add_argument(flag, dest=f"cfg:{path}", metavar="V", default=argparse.SUPPRESS, help=_help(field, default, given is not None))


def overrides_from_args(args: argparse.Namespace) -> dict[str, str]:
    """The run-config flags given on the command line: dotted path → text."""
    return {k.removeprefix("cfg:"): v for k, v in vars(args).items() if k.startswith("cfg:")}


def apply_overrides(
    data: dict[str, Any], overrides: dict[str, str], model: type[BaseModel] = RunConfig, flags: dict[str, str] | None = None
) -> dict[str, Any]:
    """Set dotted keys from flag text (parsed by the field's type) in a copy of a config mapping."""
    kinds = {path: ann for path, ann, _ in _leaves(model)}
    out = yaml.safe_load(yaml.safe_dump(data)) or {}
    for path, text in overrides.items():
        if path not in kinds:
            raise UserError(f"unknown config key '{path}'")
        try:
            value = _parse_value(kinds[path], text)
        except ValueError as exc:
            raise UserError(f"{(flags or {}).get(path, '--' + path.replace('_', '-'))}: {exc}") from None
        node = out
        parts = path.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"config key '{part}' must be a mapping")
        node[parts[-1]] = value
    return out


def given_flags(model: type[BaseModel], args: argparse.Namespace, flags: dict[str, str]) -> dict[str, Any]:
    """The values of the command-config flags given on the command line, parsed by type, as a nested mapping."""
    given = {k.removeprefix("arg:"): ",".join(v) if isinstance(v, list) else v for k, v in vars(args).items() if k.startswith("arg:")}
    return apply_overrides({}, given, model, flags)


@contextlib.contextmanager
def flag_errors(flags: dict[str, str]) -> Iterator[None]:
    """A config validation error inside becomes one UserError line naming the flag."""
    try:
        yield
    except ValidationError as exc:
        err = exc.errors()[0]
        msg = str(err["msg"]).removeprefix("Value error, ")
        path = ".".join(str(p) for p in err["loc"] if not isinstance(p, int))
        where = flags.get(path, path.replace("_", "-"))
        raise UserError(f"{where}: {msg}" if where else msg) from None


def config_from_args(model: type[M], args: argparse.Namespace, flags: dict[str, str]) -> M:
    """A command's config from its flags; a bad value is one line naming its flag."""
    with flag_errors(flags):
        return model.model_validate(given_flags(model, args, flags))


def build_config(path: str | Path | None, overrides: dict[str, str], base: dict[str, Any] | None = None) -> RunConfig:
    """Config file (or `base`) + CLI overrides → a validated RunConfig."""
    data = load_yaml(path) if path is not None else dict(base or {})
    return parse_config(apply_overrides(data, overrides))
