"""docs/spec.md#verdicts verdicts: for every metric and every null, does the trained setting beat it?

The trained setting is the fully trained SAE on the trained transformer; a null is another
transformer variant (same layer and architecture), a random SAE baseline (same layer, trained
transformer), each trained once per SAE seed, or a free null built from the trained SAE of that seed. Each verdict is the difference trained − null with a
percentile bootstrap interval: with one seed over the metric's own units, with S ≥ 2 seeds two-level
(seeds resampled paired, seed s of trained with seed s of the null, then the units within each seed;
`nullsae.stats.seed_bootstrap`). Which metrics there are, their units, chance levels and default
tolerances come from the metric families (`nullsae.families`); the statistic resampled is
the family's own function of the per-unit terms, so no metric formula lives here.

Words (docs/spec.md#verdicts), with δ the across-seed standard deviation of the trained setting (S ≥ 2) or the
metric's documented default: distinguishes (interval excludes 0 in the expected direction and
|Δ| ≥ δ), null is better (excludes 0 the other way, |Δ| ≥ δ), equal within tolerance (interval inside
(−δ, δ)), does not distinguish (otherwise). A null whose weights equal the trained SAE's is not scored.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from nullsae.families import FAMILIES
from nullsae.metrics.verdict import Terms, VerdictMetric
from nullsae.report.tables import ResultTables, auroc_columns
from nullsae.sae.config import FREE_NULLS
from nullsae.stats import Replicate, resolvable_difference, seed_bootstrap

WORDS = ("distinguishes", "null is better", "equal within tolerance", "does not distinguish")


class Verdict(BaseModel):
    """One comparison: trained vs one null on one metric, at one (model, layer, architecture), over seeds."""

    model: str
    layer: int
    arch: str
    metric: str
    metric_label: str
    null: str  # variant name, or the SAE baseline name
    null_kind: str  # "variant" | "sae-baseline" (trained) | "free-null" (built without training)
    trained: float  # the metric of the trained SAE (mean over seeds)
    null_value: float
    diff: float
    low: float
    high: float
    direction: int
    verdict: str  # one of WORDS, or "differs" / "no expected direction" (no direction), "not scored", "n/a"
    chance: float | None = None
    unit: str = ""
    n_seeds: int = 1
    tolerance: float = 0.0  # δ
    tolerance_source: str = "default"  # "seed noise" | "default"
    seed_sd: float = math.nan  # standard deviation of the trained setting across seeds (NaN with one seed)
    resolvable: float = math.nan  # smallest difference its seed noise resolves (NaN with one seed)
    warning: str = ""


def classify(diff: float, low: float, high: float, direction: int, tolerance: float) -> str:
    """The docs/spec.md#verdicts word for a difference, its interval, the expected direction and the tolerance δ."""
    if any(math.isnan(v) for v in (diff, low, high)):
        return "n/a"
    if -tolerance < low and high < tolerance:
        return "equal within tolerance"
    big = abs(diff) >= tolerance
    if direction == 0:
        return "differs" if (low > 0 or high < 0) and big else "no expected direction"
    if big and (low > 0 if direction > 0 else high < 0):
        return "distinguishes"
    if big and (high < 0 if direction > 0 else low > 0):
        return "null is better"
    return "does not distinguish"


def verdict_metrics(t: ResultTables) -> list[VerdictMetric]:
    """Every verdict metric the families offer on this run's per-unit tables."""
    return [m for f in FAMILIES.values() for m in f.verdict_metrics(t.units(f.table))]


class _Units:
    """Per-unit tables split by SAE key once, and each SAE's terms per metric built once."""

    def __init__(self, t: ResultTables):
        self.groups = {
            f.table: ({k: g for k, g in t.units(f.table).groupby("key", sort=False)} if len(t.units(f.table)) else {})
            for f in FAMILIES.values()
        }
        self.cache: dict[tuple[str, str], Terms | None] = {}

    def rows(self, metric: VerdictMetric, key: str) -> pd.DataFrame:
        return metric.rows(self.groups[metric.table].get(key, pd.DataFrame()))

    def terms(self, metric: VerdictMetric, key: str) -> Terms | None:
        if (metric.name, key) not in self.cache:
            self.cache[metric.name, key] = metric.terms(self.rows(metric, key))
        return self.cache[metric.name, key]

    def value(self, metric: VerdictMetric, key: str) -> float:
        """The metric of one SAE on all of its units (the family's function on the identity indices)."""
        terms = self.terms(metric, key)
        return math.nan if terms is None else float(terms[1](np.arange(terms[0])))

    def replicate(self, metric: VerdictMetric, ref: str, other: str) -> Replicate | None:
        """One seed's trained − null statistic: paired on the shared units, or each side's own units."""
        if not metric.paired:
            a, b = self.terms(metric, ref), self.terms(metric, other)
            if a is None or b is None:
                return None
            fa, fb = a[1], b[1]
            return Replicate(lambda i, j: fa(i) - fb(j), (a[0], b[0]))
        ra, rb = self.rows(metric, ref), self.rows(metric, other)
        if ra.empty or rb.empty or not all(c in ra and c in rb for c in metric.ids):
            return None
        ra, rb = ra.set_index(list(metric.ids)), rb.set_index(list(metric.ids))
        common = ra.index.intersection(rb.index)
        if common.empty:
            return None
        a, b = metric.terms(ra.loc[common].reset_index()), metric.terms(rb.loc[common].reset_index())
        if a is None or b is None:
            return None
        fa, fb = a[1], b[1]
        return Replicate(lambda i: fa(i) - fb(i), (a[0],))


def _by_seed(rows: pd.DataFrame) -> dict[int, pd.Series]:
    return {int(r.seed): r for _, r in rows.sort_values("seed").iterrows()}


def _warning(metric: VerdictMetric, null_name: str, trained: dict[int, pd.Series], null: dict[int, pd.Series]) -> str:
    if metric.name not in ("ce_score", "kl_score"):
        return ""
    bad = [
        n for n, rows in (("trained", trained), (null_name, null)) if any(bool(r.get("ce_ill_conditioned", False)) for r in rows.values())
    ]
    return f"ill-conditioned (CE_zero − CE_clean < 0.1 nats) for {', '.join(bad)}" if bad else ""


def compute_verdicts(t: ResultTables, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> list[Verdict]:
    """Every (model, layer, arch) × null × metric comparison the tables allow, over the seeds both share."""
    m = t.metrics
    out: list[Verdict] = []
    if m.empty:
        return out
    if "seed" not in m:
        m = m.assign(seed=0)
    metrics = verdict_metrics(t)
    units = _Units(t)
    refs = m[(m.variant == "trained") & (m.baseline == "none")]
    for (model, layer, arch), ref_rows in refs.groupby(["model", "layer", "arch"], sort=True):
        assert isinstance(layer, (int, np.integer))  # the layer column holds integers
        trained = _by_seed(ref_rows)
        same = m[(m.model == model) & (m.layer == layer) & (m.arch == arch)]
        nulls = [
            (str(name), "variant", g)
            for name, g in same[(same.baseline == "none") & (same.variant != "trained")].groupby("variant", sort=False)
        ]
        nulls += [
            (str(name), "free-null" if name in FREE_NULLS else "sae-baseline", g)
            for name, g in same[(same.variant == "trained") & (same.baseline != "none")].groupby("baseline", sort=False)
        ]
        for null_name, kind, null_rows in nulls:
            null = _by_seed(null_rows)
            seeds = sorted(set(trained) & set(null))
            flagged = [s for s in seeds if bool(null[s].get("same_weights", False))]
            for metric in metrics:
                reps = [units.replicate(metric, trained[s].key, null[s].key) for s in seeds]
                if not seeds or any(r is None for r in reps):
                    continue
                ref_vals = np.array([units.value(metric, trained[s].key) for s in seeds])
                null_vals = np.array([units.value(metric, null[s].key) for s in seeds])
                n_seeds = len(seeds)
                sd = float(np.std(ref_vals, ddof=1)) if n_seeds >= 2 else math.nan
                tol, source = (sd, "seed noise") if n_seeds >= 2 else (metric.tolerance, "default")
                common: dict[str, Any] = dict(
                    model=model,
                    layer=int(layer),
                    arch=arch,
                    metric=metric.name,
                    metric_label=metric.label,
                    null=null_name,
                    null_kind=kind,
                    trained=float(ref_vals.mean()),
                    null_value=float(null_vals.mean()),
                    direction=metric.direction,
                    chance=metric.chance,
                    unit=metric.unit,
                    n_seeds=n_seeds,
                    tolerance=tol,
                    tolerance_source=source,
                    seed_sd=sd,
                    resolvable=resolvable_difference(sd, n_seeds),
                )
                if flagged:
                    out.append(
                        Verdict(
                            **common,
                            diff=float(ref_vals.mean() - null_vals.mean()),
                            low=math.nan,
                            high=math.nan,
                            verdict="not scored",
                            warning=f"weights equal the trained SAE's (seed {', '.join(map(str, flagged))}): the null is not a different SAE",
                        )
                    )
                    continue
                ci = seed_bootstrap([r for r in reps if r is not None], n_boot=n_boot, seed=seed, level=level)
                warning = _warning(metric, null_name, trained, null)
                # a CE score over a denominator under 0.1 nats is noise divided by noise: shown, never judged
                judged = (
                    "not scored" if warning and metric.name == "ce_score" else classify(ci.estimate, ci.low, ci.high, metric.direction, tol)
                )
                out.append(Verdict(**common, diff=ci.estimate, low=ci.low, high=ci.high, verdict=judged, warning=warning))
    return out


def verdict_summary(verdicts: list[Verdict]) -> pd.DataFrame:
    """One row per (metric, null): the verdict over layers, mean difference, chance level, δ and seed noise."""
    cols = [
        "metric",
        "null",
        "null_kind",
        "layers",
        "distinguishes",
        "comparisons",
        "mean_diff",
        "verdict",
        "chance",
        "tolerance",
        "tolerance_source",
        "n_seeds",
        "seed_sd",
        "resolvable",
        "warning",
    ]
    if not verdicts:
        return pd.DataFrame(columns=cols)
    df = pd.DataFrame([v.model_dump() for v in verdicts])
    rows = []
    for (_metric, label, null, kind), g in df.groupby(["metric", "metric_label", "null", "null_kind"], sort=False):
        n, k = len(g), int((g.verdict.isin(["distinguishes", "differs"])).sum())
        words = list(dict.fromkeys(g.verdict))
        word = words[0] if len(words) == 1 else ", ".join(f"{w} at {int((g.verdict == w).sum())}/{n}" for w in words)
        rows.append(
            {
                "metric": label,
                "null": null,
                "null_kind": kind,
                "layers": ", ".join(str(x) for x in g.layer),
                "distinguishes": k,
                "comparisons": n,
                "mean_diff": float(g["diff"].mean()),
                "verdict": word,
                "chance": g.chance.iloc[0],
                "tolerance": float(g.tolerance.mean()),
                "tolerance_source": g.tolerance_source.iloc[0],
                "n_seeds": int(g.n_seeds.min()),
                "seed_sd": float(g.seed_sd.mean()),
                "resolvable": float(g.resolvable.mean()),
                "warning": "; ".join(sorted({w for w in g.warning if w})),
            }
        )
    return pd.DataFrame(rows, columns=cols)


# The terminal's short form of each verdict word (the report and --json keep the words).
SHORT = {
    "distinguishes": "yes",
    "null is better": "NULL",
    "equal within tolerance": "equal",
    "does not distinguish": "no",
    "differs": "differs",
    "no expected direction": "no",
    "not scored": "-",
    "n/a": "n/a",
}


def verdict_matrix(verdicts: list[Verdict]) -> list[str]:
    """The verdicts as a terminal table: a row per metric, a column per null, one short word per cell
    (over layers: the word when every layer agrees, else "mixed"), with its legend."""
    df = verdict_summary(verdicts)
    if df.empty:
        return []
    nulls = list(dict.fromkeys(df["null"]))
    metrics = list(dict.fromkeys(df["metric"]))
    cell = {(str(r.metric), str(r.null)): SHORT.get(str(r.verdict), "mixed") for r in df.itertuples()}
    rows = [["metric", *nulls], *[[m, *(cell.get((m, n), "-") for n in nulls)] for m in metrics]]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    legend = (
        "does trained beat each null? yes = distinguishes, NULL = null is better, equal = equal within tolerance, "
        "no = does not distinguish, differs = differs (no expected direction), mixed = the layers disagree, - = not scored"
    )
    return [legend, *lines]


class Finding(BaseModel):
    """A qualitative finding of Heap et al. checked on this run."""

    claim: str
    holds: bool | None  # None: the run has not the data to check it
    evidence: str


def terminal_lines(verdicts: list[Verdict], findings: list[Finding]) -> list[str]:
    """What `run`, `demo` and `report` print: the verdict table first, then each finding in one line."""
    words = {True: "holds", None: "not checked", False: "DOES NOT HOLD"}
    return [*verdict_matrix(verdicts), *(f"  {f.claim}: {words[f.holds]} — {f.evidence}" for f in findings)]


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
        out.append(
            Finding(
                claim="Control EV is well below trained EV",
                holds=holds,
                evidence="trained − control EV by layer: " + ", ".join(f"L{k}: {v:+.3f}" for k, v in gap.items()),
            )
        )
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
            out.append(
                Finding(
                    claim=claim,
                    holds=bool((gap.abs() < tol).all()),
                    evidence=f"{v} − trained by layer: " + ", ".join(f"L{k}: {x:+.3f}" for k, x in gap.items()),
                )
            )
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
        out.append(
            Finding(
                claim="Token entropy rises with depth for the trained model only",
                holds=None,
                evidence="needs the latent statistics at ≥ 2 layers",
            )
        )
    return out
