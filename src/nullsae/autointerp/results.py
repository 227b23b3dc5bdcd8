"""Auto-interpretability results: AUROC per latent and pooled per SAE with bootstrap intervals over
latents, balanced accuracy, ROC curves as data, and the per-latent Parquet store.

The store writes one small Parquet file per latent (temp file + rename) as soon as it is scored, so
a killed run loses nothing finished and a rerun skips the latents already there; `finalize` gathers
them into `latents.parquet`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from nullsae.autointerp.scorers import ScoreResult
from nullsae.io_utils import write_parquet
from nullsae.metrics.verdict import Terms, VerdictMetric, has_columns
from nullsae.stats import BootstrapCI, bootstrap

THRESHOLDED = {"detection", "fuzzing", "tokens"}  # scorers whose scores are probabilities or 0/1


def _ranked_auroc(rank: np.ndarray, pos: np.ndarray, weight: np.ndarray, n_ranks: int) -> float:
    """Weighted Mann–Whitney AUROC from dense score ranks (ties count half): the one AUROC formula."""
    wp = np.bincount(rank[pos], weights=weight[pos], minlength=n_ranks)
    wn = np.bincount(rank[~pos], weights=weight[~pos], minlength=n_ranks)
    den = wp.sum() * wn.sum()
    if den == 0:
        return math.nan
    below = np.cumsum(wn) - wn
    return float((wp * (below + 0.5 * wn)).sum() / den)


def auroc(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Area under the ROC curve (ties count half, items optionally weighted), NaN items dropped;
    NaN without both classes."""
    scores = np.asarray(scores, dtype=float)
    ok = ~np.isnan(scores)
    _, rank = np.unique(scores[ok], return_inverse=True)
    w = np.ones(int(ok.sum())) if weights is None else np.asarray(weights, dtype=float)[ok]
    return _ranked_auroc(rank, np.asarray(labels)[ok].astype(bool), w, int(rank.max()) + 1 if rank.size else 0)


class PooledAUROC:
    """Pooled AUROC of an SAE's scored examples with its latents resampled (each latent brings its
    examples): `auroc` with per-example weight = how often its latent was drawn, ranks computed once."""

    def __init__(self, latent: np.ndarray, label: np.ndarray, score: np.ndarray):
        score = np.asarray(score, dtype=float)
        ok = ~np.isnan(score)
        lat_ids, self.lat = np.unique(np.asarray(latent)[ok], return_inverse=True)
        self.n_latents = lat_ids.size
        _, self.rank = np.unique(score[ok], return_inverse=True)
        self.n_ranks = int(self.rank.max()) + 1 if self.rank.size else 0
        self.pos = np.asarray(label)[ok].astype(bool)

    def __call__(self, latent_idx: np.ndarray) -> float:
        w = np.bincount(latent_idx, minlength=self.n_latents)[self.lat].astype(float)
        return _ranked_auroc(self.rank, self.pos, w, self.n_ranks)


def _auroc_terms(df: pd.DataFrame) -> Terms | None:
    if not has_columns(df, "latent", "label", "score"):
        return None
    f = PooledAUROC(df["latent"].to_numpy(), df["label"].to_numpy(), df["score"].to_numpy(float))
    return (f.n_latents, f) if f.n_latents else None


def auroc_metric(scorer: str) -> VerdictMetric:
    """The pooled AUROC of one scorer as a verdict metric: latents (with their test examples) are the
    unit, each SAE's own; chance 0.5; default δ 0.02."""
    return VerdictMetric(
        f"auroc_{scorer}",
        f"AUROC ({scorer} scorer, pooled)",
        +1,
        "latent",
        "scores",
        _auroc_terms,
        tolerance=0.02,
        chance=0.5,
        select=(("scorer", scorer),),
    )


def balanced_accuracy(scores: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> float:
    """Mean of the true-positive and true-negative rates of `score > threshold`."""
    ok = ~np.isnan(scores)
    s, y = scores[ok], labels[ok].astype(bool)
    if y.all() or not y.any():
        return math.nan
    pred = s > threshold
    return float(((pred & y).sum() / y.sum() + (~pred & ~y).sum() / (~y).sum()) / 2)


def roc_curve(scores: np.ndarray, labels: np.ndarray, max_points: int = 200) -> dict[str, list[float]]:
    """ROC curve points (fpr, tpr, threshold), thinned to at most `max_points`."""
    from sklearn.metrics import roc_curve as _roc

    ok = ~np.isnan(scores)
    if len(set(labels[ok].tolist())) < 2:
        return {"fpr": [], "tpr": [], "threshold": []}
    fpr, tpr, thr = _roc(labels[ok], scores[ok])
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), max_points)).round().astype(int))
    thr = np.where(np.isinf(thr), np.nan, thr)
    return {"fpr": fpr[keep].tolist(), "tpr": tpr[keep].tolist(), "threshold": thr[keep].tolist()}


class ScorerSummary(BaseModel):
    """One SAE × explainer × scorer: the AUROC distribution, pooled AUROC and balanced accuracy."""

    sae: str
    explainer: str
    scorer: str
    prompt_version: str
    n_latents: int
    n_latents_scored: int  # latents with both activating and non-activating scored windows (a defined AUROC)
    n_items: int
    n_failed_items: int
    failures: dict[str, int]
    auroc_per_latent: list[float]  # NaN where a latent had no scorable items of one class
    auroc_mean: BootstrapCI
    auroc_median: float
    auroc_pooled: BootstrapCI
    balanced_accuracy: BootstrapCI | None  # None for scorers without a natural threshold (embedding)
    roc: dict[str, list[float]]


def summarize(df: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> list[ScorerSummary]:
    """Per (sae, explainer, scorer) group of per-latent rows: intervals resample latents."""
    return [
        _summary(str(sae), str(explainer), str(scorer), g, n_boot, seed)
        for (sae, explainer, scorer), g in df.groupby(["sae", "explainer", "scorer"], sort=True)
    ]


def _summary(sae: str, explainer: str, scorer: str, g: pd.DataFrame, n_boot: int, seed: int) -> ScorerSummary:
    scores = [np.asarray(s, dtype=float) for s in g["scores"]]
    labels = [np.asarray(y, dtype=int) for y in g["labels"]]
    per = np.array([auroc(s, y) for s, y in zip(scores, labels)])
    valid = per[~np.isnan(per)]
    nan_ci = BootstrapCI(estimate=math.nan, low=math.nan, high=math.nan)
    mean_ci = bootstrap(lambda i: float(valid[i].mean()), valid.size, n_boot=n_boot, seed=seed) if valid.size else nan_ci

    def pooled(stat, i):
        return stat(np.concatenate([scores[j] for j in i]), np.concatenate([labels[j] for j in i]))

    pooled_ci = bootstrap(lambda i: pooled(auroc, i), len(scores), n_boot=n_boot, seed=seed)
    bacc = bootstrap(lambda i: pooled(balanced_accuracy, i), len(scores), n_boot=n_boot, seed=seed) if scorer in THRESHOLDED else None
    all_s, all_y = np.concatenate(scores), np.concatenate(labels)
    failures: dict[str, int] = {}
    for f in g["failures"]:
        for k, v in json.loads(f).items():
            failures[k] = failures.get(k, 0) + v
    return ScorerSummary(
        sae=sae,
        explainer=explainer,
        scorer=scorer,
        prompt_version=str(g["prompt_version"].iloc[0]),
        n_latents=len(g),
        n_latents_scored=int(valid.size),
        n_items=int(all_s.size),
        n_failed_items=int(np.isnan(all_s).sum()),
        failures=failures,
        auroc_per_latent=per.tolist(),
        auroc_mean=mean_ci,
        auroc_median=float(np.median(valid)) if valid.size else math.nan,
        auroc_pooled=pooled_ci,
        balanced_accuracy=bacc,
        roc=roc_curve(all_s, all_y),
    )


def result_row(r: ScoreResult, **fields: Any) -> dict[str, Any]:
    """One Parquet row: the latent's scores under one scorer plus the run's identifying fields."""
    s, y = np.asarray(r.scores, dtype=float), np.asarray(r.labels, dtype=int)
    return {
        **fields,
        "latent": r.latent,
        "scorer": r.scorer,
        "n_pos": int(y.sum()),
        "n_neg": int((1 - y).sum()),
        "n_failed": r.n_failed,
        "failures": json.dumps(r.failures, sort_keys=True),
        "auroc": auroc(s, y),
        "balanced_accuracy": balanced_accuracy(s, y) if r.scorer in THRESHOLDED else math.nan,
        "scores": r.scores,
        "labels": r.labels,
        "quantiles": r.quantiles,
    }


class ResultStore:
    """Per-latent Parquet parts under `folder/parts/`, gathered into `folder/latents.parquet`."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.parts = self.folder / "parts"
        self.parts.mkdir(parents=True, exist_ok=True)

    def done(self) -> set[int]:
        """Latents with a finished part (resume skips them)."""
        return {int(p.stem.split("_")[1]) for p in self.parts.glob("latent_*.parquet")}

    def write_latent(self, latent: int, rows: list[dict[str, Any]]) -> None:
        write_parquet(self.parts / f"latent_{latent:07d}.parquet", pd.DataFrame(rows))

    def load(self) -> pd.DataFrame:
        files = sorted(self.parts.glob("latent_*.parquet"))
        return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True) if files else pd.DataFrame()

    def finalize(self) -> Path:
        """Write every part into one `latents.parquet` (atomically) and return its path."""
        path = self.folder / "latents.parquet"
        write_parquet(path, self.load())
        return path
