"""Settings of auto-interpretability (docs/spec.md#autointerp), importable without torch: the run config's
`autointerp` section and `nullsae autointerp` read them before anything heavy loads."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from nullsae.autointerp import prompts

SCORERS: tuple[str, ...] = ("detection", "fuzzing", "embedding", "tokens")
LLM_SCORERS: tuple[str, ...] = ("detection", "fuzzing")


class ExampleConfig(BaseModel):
    """docs/spec.md#autointerp defaults for the examples of one latent."""

    model_config = ConfigDict(extra="forbid")

    top_k: int = Field(default=10_000, gt=0, description="windows kept per latent, by max activation; the explainer samples from them")
    n_explain: int = Field(default=40, gt=0, description="windows shown to the explainer, sampled from the top windows")
    mark_threshold: float = Field(default=0.3, description="tokens with activation >= this x the window's max are marked <<tok>>")
    n_bins: int = Field(default=10, gt=0, description="equal-count activation-quantile bins of the activating test windows")
    per_bin: int = Field(default=10, gt=0, description="activating test windows drawn from each bin")
    n_negative: int = Field(default=100, ge=0, description="random windows in which the latent never fires")
    reservoir: int = Field(default=2_000, gt=0, description="uniform sample of activating windows per latent, cut into the quantile bins")
    min_examples: int = Field(default=200, gt=0, description="latents firing in fewer windows are not sampled")
    n_latents_sampled: int = Field(default=100, gt=0, description="latents sampled per SAE among those passing min_examples")
    seed: int = Field(
        default=0, exclude=True, description="seed of latent and example sampling; set from the autointerp seed, not a key of its own"
    )


class OpenAISettings(BaseModel):
    """How an OpenAI-compatible endpoint is called (the model comes from the explainer or scorer LLM spec)."""

    model_config = ConfigDict(extra="forbid")

    base_url: str | None = Field(default=None, description="OpenAI-compatible endpoint URL (default: $OPENAI_BASE_URL, then OpenAI)")
    concurrency: int = Field(default=8, ge=1, description="openai: requests in flight at once")
    max_retries: int = Field(default=3, ge=0, description="openai: retries after a timeout, connection error, 429 or 5xx")
    backoff_s: float = Field(default=1.0, ge=0, description="openai: first retry delay in seconds; doubles each retry, with jitter")
    timeout_s: float = Field(default=60.0, gt=0, description="openai: seconds per request")


def _llm_spec(spec: str | None, what: str) -> str | None:
    if spec is not None:
        kind, _, model = spec.partition(":")
        if kind not in ("hf", "openai") or not model:
            raise ValueError(f"{what} '{spec}' names no LLM; write hf:<model> or openai:<model>")
    return spec


class AutointerpConfig(BaseModel):
    """What to explain and how to score it; a setup that cannot work is refused here, before any model loads."""

    model_config = ConfigDict(extra="forbid")

    explainer: str = Field(default="tokens", description="tokens | hf:<model> (e.g. hf:smollm2) | openai:<model>")
    scorers: list[str] = Field(
        default_factory=lambda: ["tokens", "embedding"],
        description=f"scorers among {', '.join(SCORERS)} (default: tokens,embedding for the tokens explainer, else detection,fuzzing,embedding)",
    )
    scorer_llm: str | None = Field(
        default=None, description="chat model of detection/fuzzing, hf:<model> or openai:<model> (default: the explainer's)"
    )
    examples: ExampleConfig = Field(default_factory=ExampleConfig)
    chunk: int = Field(default=10, gt=0, description="latents explained and scored together before their rows are written")
    n_boot: int = Field(default=1000, gt=0, description="bootstrap resamples of latents for the intervals")
    seed: int = Field(default=0, description="seed of latent and example sampling, scorers and bootstrap")
    llm_cache: str | None = Field(default=None, description="folder of the prompt → response cache (default: <out>/llm-cache)")
    openai: OpenAISettings = Field(default_factory=OpenAISettings)

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        """Scorers not given follow the explainer; the examples' seed is the run's seed."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if data.get("scorers") is None:
            data["scorers"] = (
                ["tokens", "embedding"] if data.get("explainer", "tokens") == "tokens" else ["detection", "fuzzing", "embedding"]
            )
        examples = data.get("examples")
        if isinstance(examples, BaseModel):
            examples = examples.model_dump()
        data["examples"] = {**(examples or {}), "seed": data.get("seed", 0)}
        return data

    @field_validator("explainer")
    @classmethod
    def _explainer(cls, v: str) -> str:
        return v if v == "tokens" else str(_llm_spec(v, "explainer"))

    @field_validator("scorer_llm")
    @classmethod
    def _scorer_llm(cls, v: str | None) -> str | None:
        return _llm_spec(v, "scorer LLM")

    @field_validator("scorers")
    @classmethod
    def _scorers(cls, v: list[str]) -> list[str]:
        unknown = [s for s in v if s not in SCORERS]
        if unknown or not v:
            raise ValueError(f"unknown scorer '{','.join(unknown)}'; choose from {', '.join(SCORERS)}")
        return list(dict.fromkeys(v))

    @model_validator(mode="after")
    def _llm_available(self) -> AutointerpConfig:
        needs = [s for s in self.scorers if s in LLM_SCORERS]
        if needs and self.scorer_llm is None and self.explainer == "tokens":
            raise ValueError(
                f"the {' and '.join(needs)} scorer needs an LLM and the tokens explainer is none; name a scorer LLM "
                "(hf:<model> or openai:<model>) or use the scorers tokens,embedding"
            )
        return self

    def manifest(self, sae: str) -> dict[str, Any]:
        """What a result folder must agree on to be resumed."""
        return {
            "sae": sae,
            "explainer": self.explainer,
            "scorers": sorted(self.scorers),
            "scorer_llm": self.scorer_llm,
            "seed": self.seed,
            "examples": self.examples.model_dump(),
            "prompts": prompts.prompt_texts(),
            "prompt_hash": prompts.prompt_hash(),
        }
