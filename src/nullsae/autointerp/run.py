"""One auto-interpretability run of one SAE: examples → explanations → scores → Parquet + summary.

Latents are processed in small chunks; each latent's rows are written as soon as it is scored, and a
rerun into the same folder skips finished latents (it refuses a folder holding a different setup).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from nullsae.autointerp import prompts
from nullsae.autointerp.config import AutointerpConfig
from nullsae.autointerp.examples import (
    ActivationSource,
    LatentExamples,
    LatentSelection,
    collect_examples,
    count_firing,
    select_latents,
)
from nullsae.autointerp.explainers import TokenText, make_explainer
from nullsae.autointerp.llm import LLMClient, make_client
from nullsae.autointerp.results import ResultStore, ScorerSummary, result_row, summarize
from nullsae.autointerp.scorers import make_scorer
from nullsae.errors import UserError
from nullsae.io_utils import atomic_write_text
from nullsae.progress import progress_bar


class AutointerpResult(BaseModel):
    """The run's outcome: latent selection (with the filter count), summaries, where rows are."""

    sae: str
    selection: LatentSelection
    summaries: list[ScorerSummary]
    latents_path: str
    n_explain_failed: int


def _write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=str))


def _entropy(ex: LatentExamples) -> tuple[float, float]:
    """docs/spec.md#latent-statistics token-distribution entropy (normalised, raw) over the explainer's examples."""
    import torch

    from nullsae.metrics.latents import token_entropy

    tokens = torch.stack([e.tokens for e in ex.explain])
    acts = torch.stack([e.acts for e in ex.explain])
    res = token_entropy(tokens, acts)
    return res.normalized, res.entropy


def run_autointerp(
    source: ActivationSource,
    tokenizer: Any,
    cfg: AutointerpConfig,
    out_dir: str | Path,
    sae_name: str,
    client: LLMClient | None = None,
    progress: bool = True,
) -> AutointerpResult:
    """Run (or resume) auto-interpretability of one SAE and write `latents.parquet` and `summary.json`.

    `client` serves both explainer and scorers when given (e.g. one already-loaded HF model).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest = cfg.manifest(sae_name)
    mpath = out / "run.json"
    if mpath.exists() and json.loads(mpath.read_text(encoding="utf-8")) != json.loads(json.dumps(manifest, default=str)):
        raise UserError(f"{out} holds results of a different setup (SAE, explainer, scorers, prompts or examples); use a new output folder")
    _write_json(mpath, manifest)

    text = TokenText(tokenizer)
    ecfg = cfg.examples
    threshold = ecfg.mark_threshold
    opts = {"cache_dir": cfg.llm_cache, **cfg.openai.model_dump()}
    exp_client = client if client is not None and cfg.explainer != "tokens" else None
    explainer = make_explainer(cfg.explainer, text, threshold=threshold, client=exp_client, **opts)
    needs_llm = any(s in ("detection", "fuzzing") for s in cfg.scorers)
    scorer_client = None
    if needs_llm:
        spec = cfg.scorer_llm or (cfg.explainer if cfg.explainer != "tokens" else None)
        if client is not None:
            scorer_client = client
        elif spec == cfg.explainer and (own := getattr(explainer, "client", None)) is not None:
            scorer_client = own
        elif spec:
            scorer_client = make_client(spec, **opts)
    for llm in (getattr(explainer, "client", None), scorer_client):
        if llm is not None:
            llm.progress = progress
    scorers = [make_scorer(s, text, client=scorer_client, threshold=threshold, seed=cfg.seed) for s in cfg.scorers]

    counts = count_firing(source)
    selection = select_latents(counts, ecfg)
    store = ResultStore(out)
    done = store.done()
    todo = [lat for lat in selection.latents if lat not in done]
    if todo:
        examples = collect_examples(source, todo, ecfg)
        fields = {
            "sae": sae_name,
            "explainer": cfg.explainer,
            "prompt_version": prompts.PROMPT_VERSION,
            "prompt_hash": prompts.prompt_hash(),
        }
        for start in progress_bar(
            range(0, len(todo), cfg.chunk), desc="explaining and scoring latents", unit="chunk", disable=not progress
        ):
            chunk = [examples[lat] for lat in todo[start : start + cfg.chunk]]
            explanations = explainer.explain(chunk)
            pairs = list(zip(chunk, explanations))
            per_scorer = [sc.score(pairs) for sc in scorers]
            for i, (ex, expl) in enumerate(pairs):
                ent, ent_raw = _entropy(ex)
                extra = {
                    **fields,
                    "n_active_windows": ex.n_active_windows,
                    "explanation": expl.text,
                    "explanation_error": expl.error,
                    "entropy": ent,
                    "entropy_raw": ent_raw,
                }
                store.write_latent(ex.latent, [result_row(res[i], **extra) for res in per_scorer])
    path = store.finalize()
    df = store.load()
    df = df.loc[df["latent"].isin(selection.latents)] if len(df) else df
    summaries = summarize(df, n_boot=cfg.n_boot, seed=cfg.seed) if len(df) else []
    n_explain_failed = int(df.groupby("latent")["explanation"].first().isna().to_numpy().sum()) if len(df) else 0
    result = AutointerpResult(
        sae=sae_name, selection=selection, summaries=summaries, latents_path=str(path), n_explain_failed=n_explain_failed
    )
    _write_json(out / "summary.json", result.model_dump(mode="json"))
    return result
