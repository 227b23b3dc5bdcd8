"""The two families of the interpretation split: latent statistics (docs/spec.md#latent-statistics: firing
density, token entropy, example windows) and auto-interpretability (docs/spec.md#autointerp: explain and
score sampled latents). Both read an SAE's sparse codes of the split (`SparseCodes`, from the context,
which encodes each SAE once for both)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel
from torch import Tensor

from nullsae.families import Family, FamilyContext, FamilyOutput, FamilyResult, interp_settings
from nullsae.metrics import latents
from nullsae.progress import progress_bar


class SparseCodes:
    """An SAE's nonzero activations over the interpretation split, computed once and looked up by window.

    The split's (N, context) windows are viewed as (N·context/w, w) example windows of docs/spec.md#autointerp.
    """

    def __init__(self, sae: Any, cache: Any, window: int, skip_bos: bool, device: torch.device):
        from nullsae.autointerp.examples import SparseActs

        flat = cache.tokens.reshape(-1)
        self.tokens = flat.view(-1, window)
        self.n_latents = sae.cfg.n_latents
        win, pos, lat, val = [], [], [], []
        with torch.no_grad():
            for start in range(0, flat.numel(), 4096):
                idx = torch.arange(start, min(start + 4096, flat.numel()))
                z = sae.encode(cache.rows(idx).to(device)).cpu()
                if skip_bos and cache.bos_id is not None:
                    z[flat[idx] == cache.bos_id] = 0
                r, j = z.nonzero(as_tuple=True)
                g = idx[r]
                win.append(g // window)
                pos.append(g % window)
                lat.append(j)
                val.append(z[r, j].float())
        self.acts = SparseActs(torch.cat(win), torch.cat(pos), torch.cat(lat), torch.cat(val))
        self.starts = torch.searchsorted(self.acts.window, torch.arange(self.tokens.shape[0] + 1))

    @property
    def size(self) -> int:
        """Number of stored nonzero activations."""
        return int(self.acts.value.numel())

    def encode(self, window_ids: Tensor) -> Any:
        from nullsae.autointerp.examples import SparseActs

        pieces = [torch.arange(int(self.starts[w]), int(self.starts[w + 1])) for w in window_ids.tolist()]
        sel = torch.cat(pieces) if pieces else torch.zeros(0, dtype=torch.long)
        a = self.acts
        return SparseActs(a.window[sel], a.pos[sel], a.latent[sel], a.value[sel])


def _source(ctx: FamilyContext, c: Any) -> Any:
    from nullsae.autointerp.examples import ActivationSource

    codes = ctx.sparse_codes(c)
    return ActivationSource(codes.tokens, codes.encode, codes.n_latents, batch_windows=256, progress=ctx.progress)


class LatentStats(FamilyResult):
    """Token entropy and single-token share of the sampled latents; how many latents were eligible."""

    version = 1
    entropy: float
    entropy_raw: float
    single_token_fraction: float
    n_latents_sampled: int
    n_latents_eligible: int
    n_latents_removed: int
    n_dead_interp: int


def compute_latents(ctx: FamilyContext, cells: list[Any]) -> Iterator[tuple[Any, FamilyOutput]]:
    from nullsae.autointerp.examples import collect_examples, count_firing, select_latents
    from nullsae.metrics.latents import is_single_token, mean_entropy, single_token_fraction, token_entropy
    from nullsae.text_spans import token_pieces

    cfg = ctx.config
    ecfg = cfg.autointerp.examples  # its seed is auto-interp's: latent statistics sample the latents auto-interp explains
    tokenizer = ctx.tokenizer
    ctx.split_activations("interp", sorted({c.layer for c in cells}))
    for c in progress_bar(cells, desc=f"latent statistics {ctx.label}", disable=not ctx.progress, leave=False):
        source = _source(ctx, c)
        counts = count_firing(source)
        selection = select_latents(counts, ecfg)  # the same latents auto-interp samples (same config and seed)
        examples = collect_examples(source, selection.latents, ecfg)
        stats = {
            lat: token_entropy(torch.stack([e.tokens for e in ex.explain]), torch.stack([e.acts for e in ex.explain]))
            for lat, ex in examples.items()
            if ex.explain
        }
        df = pd.DataFrame(
            {
                "latent": np.arange(len(counts.tokens)),
                "density": (counts.tokens.double() / counts.n_tokens).numpy(),
                "fire_windows": counts.windows.numpy(),
            }
        )
        df["entropy"] = df.latent.map({k: s.normalized for k, s in stats.items()}).astype(float)
        df["entropy_raw"] = df.latent.map({k: s.entropy for k, s in stats.items()}).astype(float)
        df["single_token"] = df.latent.map({k: float(is_single_token(s)) for k, s in stats.items()}).astype(float)
        sampled = df.dropna(subset=["entropy"])
        result = LatentStats(
            entropy=mean_entropy(sampled.entropy.to_numpy()),
            entropy_raw=float(sampled.entropy_raw.mean()) if len(sampled) else math.nan,
            single_token_fraction=single_token_fraction(list(stats.values())),
            n_latents_sampled=len(selection.latents),
            n_latents_eligible=selection.n_eligible,
            n_latents_removed=selection.n_removed,
            n_dead_interp=selection.n_dead,
        )
        shown = []
        for lat in selection.latents[: cfg.report.example_latents]:
            top = sorted(examples[lat].explain, key=lambda e: -e.max_act)[:4]
            shown.append(
                {
                    "latent": lat,
                    "entropy": stats[lat].normalized if lat in stats else None,
                    "windows": [
                        {"tokens": token_pieces(tokenizer, e.tokens.tolist()), "acts": [round(float(a), 4) for a in e.acts.tolist()]}
                        for e in top
                    ],
                }
            )
        yield c, FamilyOutput(result, tables={"per-latent": df}, documents={"examples": shown})


class ScorerAUROC(BaseModel):
    """One scorer's pooled AUROC over the interpreted latents (with its interval), the per-latent mean and balanced accuracy."""

    auroc: float
    low: float
    high: float
    mean: float
    balanced_accuracy: float | None = None


class AutointerpScores(FamilyResult):
    """Per scorer the pooled AUROC; how many latents were interpreted and how many explanations failed."""

    version = 1
    n_latents_interpreted: int
    n_explain_failed: int
    scorers: dict[str, ScorerAUROC]

    def columns(self) -> dict[str, Any]:
        out: dict[str, Any] = {"n_latents_interpreted": self.n_latents_interpreted, "n_explain_failed": self.n_explain_failed}
        for name, s in self.scorers.items():
            out |= {f"auroc_{name}": s.auroc, f"auroc_{name}_low": s.low, f"auroc_{name}_high": s.high, f"auroc_{name}_mean": s.mean}
            if s.balanced_accuracy is not None:
                out[f"bacc_{name}"] = s.balanced_accuracy
        return out


def compute_autointerp(ctx: FamilyContext, cells: list[Any]) -> Iterator[tuple[Any, FamilyOutput]]:
    from nullsae.autointerp.run import run_autointerp

    acfg = ctx.config.autointerp
    if acfg.llm_cache is None:
        acfg = acfg.model_copy(update={"llm_cache": str(ctx.llm_cache())})
    tokenizer = ctx.tokenizer
    ctx.split_activations("interp", sorted({c.layer for c in cells}))
    for c in progress_bar(cells, desc=f"auto-interp {ctx.label}", disable=not ctx.progress, leave=False):
        source = _source(ctx, c)
        ctx.seed("autointerp", c.key)
        res = run_autointerp(source, tokenizer, acfg, ctx.work_dir(c, "autointerp"), c.label, progress=ctx.progress)
        result = AutointerpScores(
            n_latents_interpreted=len(res.selection.latents),
            n_explain_failed=res.n_explain_failed,
            scorers={
                s.scorer: ScorerAUROC(
                    auroc=s.auroc_pooled.estimate,
                    low=s.auroc_pooled.low,
                    high=s.auroc_pooled.high,
                    mean=s.auroc_mean.estimate,
                    balanced_accuracy=None if s.balanced_accuracy is None else s.balanced_accuracy.estimate,
                )
                for s in res.summaries
            },
        )
        per = pd.read_parquet(res.latents_path)
        if not res.selection.latents:  # no latent fires in min_examples windows: a warning and empty tables, not a crash
            warnings.warn(
                f"{c.label}: no latent fires in at least {acfg.examples.min_examples} interpretation windows, so none is interpreted; "
                "lower --autointerp.examples.min-examples or raise --tokens.interp"
            )
            per = pd.DataFrame(
                {
                    "latent": pd.Series(dtype=int),
                    "scorer": pd.Series(dtype=str),
                    "auroc": pd.Series(dtype=float),
                    "explanation": pd.Series(dtype=str),
                    "scores": pd.Series(dtype=object),
                    "labels": pd.Series(dtype=object),
                }
            )
        per = per[per.latent.isin(res.selection.latents)]
        scores = (
            per[["latent", "scorer", "scores", "labels"]]
            .explode(["scores", "labels"])
            .rename(columns={"scores": "score", "labels": "label"})  # one row per scored example
        )
        scores = scores.dropna(subset=["score"]).astype({"score": float, "label": int})
        tables = {
            "scores": scores.reset_index(drop=True),
            "latents": per[["latent", "scorer", "auroc", "explanation"]].reset_index(drop=True),
        }
        yield c, FamilyOutput(result, tables=tables)


def _auroc_metrics(units: pd.DataFrame) -> list:
    from nullsae.autointerp.results import auroc_metric

    return [auroc_metric(s) for s in sorted(units.scorer.unique())]


LATENTS = Family(
    "latents",
    "the interpretation split's activations",
    LatentStats,
    compute_latents,
    table="latents",
    stored="per-latent",
    offers=lambda u: list(latents.VERDICT_METRICS),
    settings=lambda cfg: {
        **interp_settings(cfg),
        "examples": cfg.autointerp.examples.model_dump(mode="json"),
        "seed": cfg.autointerp.seed,
        "example_latents": cfg.report.example_latents,
    },
)
AUTOINTERP = Family(
    "autointerp",
    "the interpretation split's activations and an explainer / scorer",
    AutointerpScores,
    compute_autointerp,
    table="scores",
    stored="scores",
    offers=_auroc_metrics,
    settings=lambda cfg: {**interp_settings(cfg), **cfg.autointerp.model_dump(mode="json", exclude={"llm_cache", "n_boot"})},
)
