"""docs/spec.md#verdicts verdicts: for every metric and every null, does the trained setting beat it?

The trained setting is the fully trained SAE on the trained transformer; a null is another
transformer variant (same layer and architecture) or a random SAE baseline (same layer, trained
transformer). Each verdict is the difference trained − null with a percentile bootstrap interval
(`nullsae.stats.bootstrap`): reconstruction metrics resample evaluation tokens and CE / KL scores
evaluation windows, paired (both SAEs read the same text); latent-level metrics resample latents of each SAE independently; pooled AUROC
resamples latents with their test examples. "distinguishes" only when the interval excludes 0 in
the expected direction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
from pydantic import BaseModel

from nullsae.report.tables import ResultTables, auroc_columns
from nullsae.stats import bootstrap


@dataclass(frozen=True)
class VerdictMetric:
    """A metric a verdict is given on: its column, label, expected direction and resampling unit."""

    name: str
    label: str
    direction: int  # +1: trained expected higher; -1: lower; 0: no expected direction
    unit: str  # "token" | "chunk" (evaluation window) | "latent" | "example"


TOKEN_METRICS = (
    VerdictMetric("ev", "explained variance", +1, "token"),
    VerdictMetric("cosine", "cosine similarity", +1, "token"),
    VerdictMetric("l1", "L1 norm of latents", 0, "token"),
    VerdictMetric("ce_score", "CE loss score", +1, "chunk"),
    VerdictMetric("kl_score", "KL score", +1, "chunk"),
)
LATENT_METRICS = (VerdictMetric("entropy", "token-distribution entropy", +1, "latent"),)


def auroc_metric(scorer: str) -> VerdictMetric:
    return VerdictMetric(f"auroc_{scorer}", f"AUROC ({scorer} scorer, pooled)", +1, "example")


class Verdict(BaseModel):
    """One comparison: trained vs one null on one metric, at one (model, layer, architecture)."""

    model: str
    layer: int
    arch: str
    metric: str
    metric_label: str
    null: str  # variant name, or the SAE baseline name
    null_kind: str  # "variant" | "sae-baseline"
    trained: float
    null_value: float
    diff: float
    low: float
    high: float
    direction: int
    verdict: str  # "distinguishes" | "does not distinguish" | "differs" | "no expected direction" | "n/a"
    warning: str = ""


def _token_stat(name: str, a: pd.DataFrame, b: pd.DataFrame) -> Callable[[np.ndarray], float] | None:
    """Paired statistic metric(a[idx]) − metric(b[idx]) over aligned token rows, or None if not available."""
    def cols(*names: str) -> bool:
        return all(n in a and n in b and a[n].notna().all() and b[n].notna().all() for n in names)

    if name == "ev" and cols("sq_err", "sq_dev"):
        ae, ad, be, bd = (df[c].to_numpy(float) for df in (a, b) for c in ("sq_err", "sq_dev"))
        return lambda i: (1 - ae[i].sum() / ad[i].sum()) - (1 - be[i].sum() / bd[i].sum())
    if name in ("cosine", "l1") and cols("cos" if name == "cosine" else "l1"):
        c = "cos" if name == "cosine" else "l1"
        av, bv = a[c].to_numpy(float), b[c].to_numpy(float)
        return lambda i: av[i].mean() - bv[i].mean()
    if name == "ce_score" and cols("ce_clean", "ce_sae", "ce_zero"):
        def score(df: pd.DataFrame) -> Callable[[np.ndarray], float]:
            clean, sae, zero = (df[c].to_numpy(float) for c in ("ce_clean", "ce_sae", "ce_zero"))
            return lambda i: (zero[i].sum() - sae[i].sum()) / (zero[i].sum() - clean[i].sum())
        sa, sb = score(a), score(b)
        return lambda i: sa(i) - sb(i)
    if name == "kl_score" and cols("kl_sae", "kl_zero"):
        def score_kl(df: pd.DataFrame) -> Callable[[np.ndarray], float]:
            ks, kz = df["kl_sae"].to_numpy(float), df["kl_zero"].to_numpy(float)
            return lambda i: (kz[i].sum() - ks[i].sum()) / kz[i].sum()
        sa, sb = score_kl(a), score_kl(b)
        return lambda i: sa(i) - sb(i)
    return None


class PooledAUROC:
    """Pooled AUROC of an SAE's test examples with latents resampled (each latent brings its examples).

    Rank form of the Mann–Whitney statistic with per-example weights = how often its latent was
    drawn (ties count one half); O(examples) per resample.
    """

    def __init__(self, latent: np.ndarray, label: np.ndarray, score: np.ndarray):
        lat_ids, self.lat = np.unique(latent, return_inverse=True)
        self.n_latents = lat_ids.size
        _, self.rank = np.unique(score, return_inverse=True)
        self.n_ranks = int(self.rank.max()) + 1 if self.rank.size else 0
        self.pos = label.astype(bool)

    def __call__(self, latent_idx: np.ndarray) -> float:
        w = np.bincount(latent_idx, minlength=self.n_latents)[self.lat].astype(float)
        wp = np.bincount(self.rank[self.pos], weights=w[self.pos], minlength=self.n_ranks)
        wn = np.bincount(self.rank[~self.pos], weights=w[~self.pos], minlength=self.n_ranks)
        den = wp.sum() * wn.sum()
        if den == 0:
            return math.nan
        below = np.cumsum(wn) - wn
        return float((wp * (below + 0.5 * wn)).sum() / den)


def pooled_auroc(df: pd.DataFrame) -> float:
    """Pooled AUROC of one SAE's scored examples (columns latent, label, score)."""
    if df.empty:
        return math.nan
    f = PooledAUROC(df["latent"].to_numpy(), df["label"].to_numpy(), df["score"].to_numpy(float))
    return f(np.arange(f.n_latents))


def _classify(diff: float, low: float, high: float, direction: int) -> str:
    if any(math.isnan(v) for v in (diff, low, high)):
        return "n/a"
    excludes = low > 0 or high < 0
    if direction == 0:
        return "differs" if excludes else "no expected direction"
    if direction > 0:
        return "distinguishes" if low > 0 else "does not distinguish"
    return "distinguishes" if high < 0 else "does not distinguish"


class _ByKey:
    """A results table split by SAE key once (the verdict loop looks each SAE up many times)."""

    def __init__(self, df: pd.DataFrame):
        self.groups = {k: g for k, g in df.groupby("key", sort=False)} if len(df) and "key" in df else {}

    def get(self, key: str) -> pd.DataFrame:
        return self.groups.get(key, pd.DataFrame())


def _compare(t: ResultTables, by: dict[str, _ByKey], metric: VerdictMetric, ref: pd.Series, other: pd.Series, n_boot: int, seed: int, level: float):
    """(trained value, null value, BootstrapCI of the difference) or None when the data is missing."""
    if metric.unit in ("token", "chunk"):
        index = "token" if metric.unit == "token" else "unit"
        a, b = by[metric.unit].get(ref.key), by[metric.unit].get(other.key)
        if a.empty or b.empty:
            return None
        a, b = a.set_index(index), b.set_index(index)
        common = a.index.intersection(b.index)
        if common.empty:
            return None
        a, b = a.loc[common].reset_index(), b.loc[common].reset_index()
        stat = _token_stat(metric.name, a, b)
        if stat is None:
            return None
        ci = bootstrap(stat, len(common), n_boot=n_boot, seed=seed, level=level)
    elif metric.unit == "latent":
        la, lb = by["latent"].get(ref.key), by["latent"].get(other.key)
        if metric.name not in la or metric.name not in lb:
            return None
        a = la[metric.name].dropna().to_numpy(float)
        b = lb[metric.name].dropna().to_numpy(float)
        if a.size == 0 or b.size == 0:
            return None
        ci = bootstrap(lambda i, j: a[i].mean() - b[j].mean(), [a.size, b.size], n_boot=n_boot, seed=seed, level=level)
    else:
        scorer = metric.name.removeprefix("auroc_")
        sa, sb = by["example"].get(ref.key), by["example"].get(other.key)
        if sa.empty or sb.empty:
            return None
        a, b = sa[sa.scorer == scorer], sb[sb.scorer == scorer]
        if a.empty or b.empty:
            return None
        fa = PooledAUROC(a.latent.to_numpy(), a.label.to_numpy(), a.score.to_numpy(float))
        fb = PooledAUROC(b.latent.to_numpy(), b.label.to_numpy(), b.score.to_numpy(float))
        ci = bootstrap(lambda i, j: fa(i) - fb(j), [fa.n_latents, fb.n_latents], n_boot=n_boot, seed=seed, level=level)
    ref_val = float(ref[metric.name]) if metric.name in ref and pd.notna(ref[metric.name]) else math.nan
    null_val = float(other[metric.name]) if metric.name in other and pd.notna(other[metric.name]) else math.nan
    return ref_val, null_val, ci


def verdict_metrics(t: ResultTables) -> list[VerdictMetric]:
    scorers = sorted(t.scores.scorer.unique()) if not t.scores.empty else []
    return [*TOKEN_METRICS, *(auroc_metric(s) for s in scorers), *LATENT_METRICS]


def compute_verdicts(t: ResultTables, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> list[Verdict]:
    """Every (model, layer, arch) × null × metric comparison the tables allow."""
    m = t.metrics
    out: list[Verdict] = []
    if m.empty:
        return out
    refs = m[(m.variant == "trained") & (m.baseline == "none")]
    metrics = verdict_metrics(t)
    by = {"token": _ByKey(t.tokens), "chunk": _ByKey(t.chunks), "latent": _ByKey(t.latents), "example": _ByKey(t.scores)}
    for _, ref in refs.sort_values(["model", "arch", "layer"]).iterrows():
        same = m[(m.model == ref.model) & (m.layer == ref.layer) & (m.arch == ref.arch)]
        nulls = [(r, r.variant, "variant") for _, r in same[(same.baseline == "none") & (same.variant != "trained")].iterrows()]
        nulls += [(r, r.baseline, "sae-baseline") for _, r in same[(same.variant == "trained") & (same.baseline != "none")].iterrows()]
        for other, null_name, kind in nulls:
            for metric in metrics:
                res = _compare(t, by, metric, ref, other, n_boot, seed, level)
                if res is None:
                    continue
                ref_val, null_val, ci = res
                warning = ""
                if metric.name in ("ce_score", "kl_score"):
                    bad = [n for n, row in (("trained", ref), (null_name, other)) if bool(row.get("ce_ill_conditioned", False))]
                    if bad:
                        warning = f"ill-conditioned (CE_zero − CE_clean < 0.1 nats) for {', '.join(bad)}"
                out.append(Verdict(
                    model=ref.model, layer=int(ref.layer), arch=ref.arch, metric=metric.name, metric_label=metric.label,
                    null=null_name, null_kind=kind, trained=ref_val, null_value=null_val, diff=ci.estimate,
                    low=ci.low, high=ci.high, direction=metric.direction,
                    verdict=_classify(ci.estimate, ci.low, ci.high, metric.direction), warning=warning,
                ))
    return out


def summarize(verdicts: list[Verdict]) -> pd.DataFrame:
    """One row per (metric, null): at how many layers the trained setting is distinguished, mean difference."""
    if not verdicts:
        return pd.DataFrame(columns=["metric", "null", "layers", "distinguishes", "mean_diff", "verdict"])
    df = pd.DataFrame([v.model_dump() for v in verdicts])
    rows = []
    for (metric, label, null, kind), g in df.groupby(["metric", "metric_label", "null", "null_kind"], sort=False):
        n, k = len(g), int((g.verdict.isin(["distinguishes", "differs"])).sum())
        if (g.verdict == "n/a").all():
            word = "n/a"
        elif g.direction.iloc[0] == 0:
            word = f"differs at {k}/{n}"
        elif k == n:
            word = "distinguishes"
        elif k == 0:
            word = "does not distinguish"
        else:
            word = f"distinguishes at {k}/{n}"
        rows.append({"metric": label, "null": null, "null_kind": kind, "layers": ", ".join(str(x) for x in g.layer),
                     "distinguishes": k, "comparisons": n, "mean_diff": float(g["diff"].mean()), "verdict": word,
                     "warning": "; ".join(sorted({w for w in g.warning if w}))})
    return pd.DataFrame(rows)


class Finding(BaseModel):
    """A qualitative finding of Heap et al. checked on this run."""

    claim: str
    holds: bool | None  # None: the run has not the data to check it
    evidence: str


def _by_layer(m: pd.DataFrame, variant: str, col: str) -> pd.Series:
    sel = m[(m.variant == variant) & (m.baseline == "none")]
    if col not in sel:
        return pd.Series(dtype=float)
    return sel.groupby("layer")[col].mean().dropna()


def paper_findings(t: ResultTables, close_ev: float = 0.1, close_auroc: float = 0.1) -> list[Finding]:
    """The paper's qualitative findings, each stated as holding or not on this run (with numbers)."""
    m = t.metrics
    out: list[Finding] = []
    if m.empty:
        return out
    tr_ev = _by_layer(m, "trained", "ev")
    ct_ev = _by_layer(m, "control", "ev")
    layers = tr_ev.index.intersection(ct_ev.index)
    if len(layers):
        gap = tr_ev[layers] - ct_ev[layers]
        holds = bool((gap > close_ev).all())
        out.append(Finding(claim="Control EV is well below trained EV",
                           holds=holds, evidence="trained − control EV by layer: " + ", ".join(f"L{k}: {v:+.3f}" for k, v in gap.items())))
    else:
        out.append(Finding(claim="Control EV is well below trained EV", holds=None, evidence="no control or trained EV in this run"))
    auroc_cols = auroc_columns(m)
    for v in ("rerandomized", "rerandomized-excl-emb"):
        for col, tol, what in [("ev", close_ev, "EV")] + [(c, close_auroc, f"AUROC ({c.removeprefix('auroc_')})") for c in auroc_cols]:
            a, b = _by_layer(m, "trained", col), _by_layer(m, v, col)
            layers = a.index.intersection(b.index)
            claim = f"{v} is close to trained on {what} (|diff| < {tol})"
            if not len(layers):
                continue
            gap = b[layers] - a[layers]
            out.append(Finding(claim=claim, holds=bool((gap.abs() < tol).all()),
                               evidence=f"{v} − trained by layer: " + ", ".join(f"L{k}: {x:+.3f}" for k, x in gap.items())))
    ent = {v: _by_layer(m, v, "entropy") for v in m.variant.unique()}
    tr = ent.get("trained", pd.Series(dtype=float))
    if len(tr) >= 2:
        def slope(s: pd.Series) -> float:
            return float(np.polyfit(s.index.to_numpy(float), s.to_numpy(float), 1)[0]) if len(s) >= 2 else math.nan
        others = {v: slope(s) for v, s in ent.items() if v not in ("trained", "control") and len(s) >= 2}
        tr_slope = slope(tr)
        rising = tr_slope > 0 and bool((tr.diff().dropna() > 0).all())
        flat_others = all(s < tr_slope / 2 for s in others.values())
        ev = f"entropy slope per layer: trained {tr_slope:+.4f} ({', '.join(f'L{k}: {x:.3f}' for k, x in tr.items())})"
        ev += "".join(f"; {v} {s:+.4f}" for v, s in others.items())
        out.append(Finding(claim="Token entropy rises with depth for the trained model only", holds=rising and flat_others, evidence=ev))
    else:
        out.append(Finding(claim="Token entropy rises with depth for the trained model only", holds=None, evidence="needs the latent statistics at ≥ 2 layers"))
    return out
