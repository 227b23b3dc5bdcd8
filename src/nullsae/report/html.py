"""One self-contained `report.html`: verdict table first, then findings, figures (embedded as base64
PNG), the random-baseline table, example windows per variant, and the detailed tables.

No external resource is referenced, so the file opens offline. Every string that comes from the
corpus, the model, an explainer or the config passes through `html.escape`.
"""

from __future__ import annotations

import base64
import math
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd

from nullsae.families import chance_levels
from nullsae.report.figures import VARIANT_STYLE, baseline_table
from nullsae.report.tables import ResultTables
from nullsae.report.verdicts import Finding, Verdict, verdict_summary

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1200px;color:#222;line-height:1.4}
h1{font-size:1.6em;margin-bottom:0} h2{border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:2em}
table{border-collapse:collapse;font-size:13px;margin:8px 0;display:block;overflow-x:auto} th,td{border:1px solid #ccc;padding:3px 7px;text-align:left}
th{background:#f0f0f0} td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.yes td.v,td.yes{background:#c7ecc7} tr.no td.v,td.no{background:#f6d0d0} tr.part td.v,td.part{background:#fbedc0} tr.na td.v,td.na{background:#eee}
tr.eq td.v,td.eq{background:#d6e4f5} tr.rev td.v,td.rev{background:#f3b27a}
.muted{color:#666;font-size:13px} img{max-width:100%;border:1px solid #ddd;margin:8px 0}
.win{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;margin:2px 0;white-space:pre-wrap;word-break:break-word}
.latent{border:1px solid #ddd;border-radius:4px;padding:6px 10px;margin:8px 0}
.ok{color:#1a7f1a;font-weight:600} .bad{color:#b00;font-weight:600} .unk{color:#777;font-weight:600}
"""


NULL_KINDS = {"variant": "variant", "sae-baseline": "SAE baseline", "free-null": "free null"}


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return ""
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, (int,)) and not isinstance(x, bool):
        return str(x)
    if isinstance(x, float):
        if math.isnan(x):
            return "–"
        return f"{x:.{digits}f}" if abs(x) >= 10**-digits or x == 0 else f"{x:.2e}"
    return escape(str(x))


def _table(df: pd.DataFrame, table_id: str = "", row_class: list[str] | None = None, verdict_col: str | None = None) -> str:
    head = "".join(f"<th>{escape(str(c))}</th>" for c in df.columns)
    rows = []
    for i, (_, r) in enumerate(df.iterrows()):
        cells = []
        for c in df.columns:
            v = r[c]
            cls = ' class="num"' if isinstance(v, (int, float)) and not isinstance(v, bool) else ""
            if c == verdict_col:
                cls = ' class="v"'
            cells.append(f"<td{cls}>{_fmt(v)}</td>")
        rc = f' class="{row_class[i]}"' if row_class else ""
        rows.append(f"<tr{rc}>{''.join(cells)}</tr>")
    ident = f' id="{escape(table_id)}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _verdict_class(word: str) -> str:
    """CSS class of a verdict: yes (distinguishes), no, eq (equal within tolerance), rev (null is
    better), part (different words at different layers), na (n/a, not scored, no direction)."""
    if " at " in word:
        return "part"
    return {
        "distinguishes": "yes",
        "differs": "yes",
        "does not distinguish": "no",
        "equal within tolerance": "eq",
        "null is better": "rev",
    }.get(word, "na")


def _chance(x: Any) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{float(x):g}"


def _seed_note(verdicts: list[Verdict]) -> str:
    """Whether seed noise was measured: how many seeds, and where δ comes from."""
    n = min((v.n_seeds for v in verdicts), default=1)
    if n < 2:
        return (
            "<p class='muted'><b>Seed noise was not measured</b>: every SAE was trained with one seed, so each interval resamples "
            "the metric's units of one SAE per setting and δ is each metric's documented default (“δ default”). "
            "Train several seeds (<code>--train.seeds 0,1,2</code>) to measure it.</p>"
        )
    return (
        f"<p class='muted'>Seed noise measured over {n} SAE seeds: intervals are two-level bootstraps (seeds resampled paired, "
        "then each seed's units), and δ is the standard deviation of the trained setting across seeds (“δ from seed noise”).</p>"
    )


def _seed_table(verdicts: list[Verdict]) -> str:
    """Per metric: chance level, δ and its source, spread of the trained setting across seeds, smallest resolvable difference."""
    if not verdicts:
        return ""
    df = pd.DataFrame([v.model_dump() for v in verdicts]).drop_duplicates(["metric", "model", "layer", "arch"])
    rows = []
    for label, g in df.groupby("metric_label", sort=False):
        rows.append(
            {
                "metric": label,
                "unit resampled": g.unit.iloc[0],
                "chance": _chance(g.chance.iloc[0]),
                "seeds": int(g.n_seeds.min()),
                "δ": ", ".join(f"L{r.layer}: {_fmt(r.tolerance)}" for r in g.itertuples()),
                "δ from": "seed noise" if g.tolerance_source.iloc[0] == "seed noise" else "δ default",
                "across-seed sd (trained)": ", ".join(f"L{r.layer}: {_fmt(r.seed_sd)}" for r in g.itertuples())
                if g.n_seeds.min() >= 2
                else "not measured",
                "smallest resolvable difference": ", ".join(f"L{r.layer}: {_fmt(r.resolvable)}" for r in g.itertuples())
                if g.n_seeds.min() >= 2
                else "not measured",
            }
        )
    return _table(pd.DataFrame(rows), "seed-noise")


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{data}">'


def _window_html(tokens: list[str], acts: list[float]) -> str:
    """One example window: every token escaped, shaded by its activation relative to the window max."""
    top = max((a for a in acts), default=0.0) or 1.0
    parts = []
    for tok, a in zip(tokens, acts):
        text = escape(tok)
        if a > 0:
            alpha = 0.15 + 0.75 * min(1.0, a / top)
            parts.append(f'<span style="background:rgba(255,140,0,{alpha:.2f})" title="{a:.3g}">{text}</span>')
        else:
            parts.append(text)
    return f'<div class="win">{"".join(parts)}</div>'


def _examples_html(t: ResultTables, per_variant: int) -> str:
    m = t.metrics
    out = []
    for variant in [v for v in VARIANT_STYLE if v in set(m.variant)]:
        cells = m[(m.variant == variant) & (m.baseline == "none")].sort_values(["model", "layer"])
        shown = []
        for _, row in cells.iterrows():
            for lat in t.examples.get(row.key, [])[:per_variant]:
                shown.append((row, lat))
        if not shown:
            continue
        out.append(f"<h3>{escape(VARIANT_STYLE[variant][1])} ({escape(variant)})</h3>")
        for row, lat in shown:
            scores = ", ".join(f"{escape(str(k))} AUROC {_fmt(v)}" for k, v in sorted(lat.get("scores", {}).items()))
            ent = lat.get("entropy")
            head = (
                f"<b>{escape(str(row.model))} layer {int(row.layer)}, latent {int(lat['latent'])}</b> — "
                f"explanation: <i>{escape(str(lat.get('explanation', '')))}</i>"
                f"<div class='muted'>{scores}{'; entropy ' + _fmt(ent) if ent is not None else ''}</div>"
            )
            wins = "".join(_window_html(w["tokens"], w["acts"]) for w in lat.get("windows", []))
            out.append(f'<div class="latent">{head}{wins}</div>')
    if not out:
        return "<p class='muted'>No example windows in this run (auto-interp or latent statistics were not computed).</p>"
    return "".join(out)


def _findings_html(findings: list[Finding]) -> str:
    if not findings:
        return "<p class='muted'>No findings could be checked.</p>"
    items = []
    for f in findings:
        mark = (
            "<span class='ok'>holds</span>"
            if f.holds
            else ("<span class='unk'>not checked</span>" if f.holds is None else "<span class='bad'>does not hold</span>")
        )
        items.append(f"<li>{escape(f.claim)}: {mark}. <span class='muted'>{escape(f.evidence)}</span></li>")
    return f"<ul>{''.join(items)}</ul>"


def _verdict_matrix(verdicts: list[Verdict]) -> str:
    """The first table: one row per metric, one column per null, each cell the verdict over layers."""
    summary = verdict_summary(verdicts)
    if summary.empty:
        return "<p id='verdicts'>No comparisons: the run has no trained reference or no nulls.</p>"
    nulls = list(dict.fromkeys(summary.null))
    kinds = dict(zip(summary.null, summary.null_kind))
    head = "<th>metric</th>" + "".join(
        f"<th>{escape(n)}<br><span class='muted'>{NULL_KINDS.get(kinds[n], kinds[n])}</span></th>" for n in nulls
    )
    rows = []
    for metric, g in summary.groupby("metric", sort=False):
        first = g.iloc[0]
        delta = f"δ {_fmt(first.tolerance)} ({'seed noise' if first.tolerance_source == 'seed noise' else 'default'})"
        cells = [f"<td>{escape(str(metric))}<br><span class='muted'>chance {_chance(first.chance)}; {escape(delta)}</span></td>"]
        by_null = {str(r.null): r for r in g.itertuples()}
        for n in nulls:
            r = by_null.get(n)
            if r is None:
                cells.append("<td class='na'>–</td>")
                continue
            warn = f"<br><span class='muted'>⚠ {escape(str(r.warning))}</span>" if r.warning else ""
            cells.append(
                f"<td class='{_verdict_class(str(r.verdict))}'><b>{escape(str(r.verdict))}</b><br>"
                f"<span class='muted'>Δ {_fmt(r.mean_diff)} (layers {escape(str(r.layers))})</span>{warn}</td>"
            )
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table id='verdicts'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def render(
    t: ResultTables,
    verdicts: list[Verdict],
    findings: list[Finding],
    figures: dict[str, Path],
    title: str,
    notes: list[str] | None = None,
    examples_per_variant: int = 4,
    saes: list[dict[str, Any]] | None = None,
) -> str:
    """The report as one HTML string."""
    cfg = t.manifest.get("config", {})
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f"<p class='muted'>models: {escape(', '.join(map(str, cfg.get('models', []))))}; variants: {escape(', '.join(map(str, cfg.get('variants', []))))}; "
        f"layers: {escape(', '.join(map(str, cfg.get('layers', []))))}; SAE: {escape(', '.join(map(str, cfg.get('sae', {}).get('archs', []))))}; "
        f"created {escape(str(t.manifest.get('created', '')))}; commit {escape(str(t.manifest.get('git_commit', '')))}</p>",
        "<h2>Verdicts: does the trained setting beat each null?</h2>",
        "<p class='muted'>Difference trained − null with a bootstrap interval (docs/spec.md#verdicts): <b>distinguishes</b> when the interval excludes 0 in the "
        "expected direction and |Δ| ≥ δ; <b>null is better</b> when it excludes 0 the other way and |Δ| ≥ δ; <b>equal within tolerance</b> when it "
        "lies inside (−δ, δ); <b>does not distinguish</b> otherwise. Higher is better for every metric except L1, which has no expected direction. "
        "A null whose weights equal the trained SAE's is <b>not scored</b>. Each metric shows its chance level. Per-layer intervals are in the detailed table below.</p>",
        _seed_note(verdicts),
        _verdict_matrix(verdicts),
        "<h3>Seed noise and tolerance per metric</h3>",
        _seed_table(verdicts),
        "<h2>The paper's qualitative findings on this run</h2>",
        _findings_html(findings),
    ]
    if notes:
        parts.append("<ul>" + "".join(f"<li class='muted'>{escape(n)}</li>" for n in notes) + "</ul>")
    parts.append("<h2>Figures</h2>")
    captions = {
        "fig3": "Metrics against layer, one line per variant (Heap et al. Fig. 3)",
        "baselines": "Trained SAE vs random SAE baselines (Korznikov et al.)",
        "density": "Firing-density histograms (log10 firing frequency per latent)",
    }
    for name, path in figures.items():
        cap = captions.get(name, f"ROC curves, {name.removeprefix('roc_')} scorer (Heap et al. Figs. 1–2)")
        parts.append(f"<figure id='fig-{escape(name)}'>{_img(path, cap)}<figcaption class='muted'>{escape(cap)}</figcaption></figure>")
    chance = chance_levels(t.units)
    with_chance = {c: f"{c} (chance {v:g})" for c, v in chance.items()}
    tab = baseline_table(t)
    if len(tab) and (tab.baseline != "none").any():
        parts += ["<h2>Random SAE baselines and free nulls</h2>", _table(tab.rename(columns=with_chance), "baselines")]
    parts += ["<h2>Example windows of sampled latents</h2>", _examples_html(t, examples_per_variant)]
    if verdicts:
        vd = pd.DataFrame([v.model_dump() for v in verdicts])
        vd = vd[
            [
                "model",
                "layer",
                "arch",
                "metric",
                "null",
                "chance",
                "trained",
                "null_value",
                "diff",
                "low",
                "high",
                "tolerance",
                "n_seeds",
                "verdict",
                "warning",
            ]
        ]
        parts += ["<h2>All verdicts</h2>", _table(vd, "verdicts-detail", [_verdict_class(w) for w in vd.verdict], "verdict")]
    m = t.metrics.drop(columns=[c for c in ("key",) if c in t.metrics]).rename(columns=with_chance)
    parts += ["<h2>All metrics</h2>", _table(m, "metrics")]
    if saes:
        parts += [
            "<h2>The SAEs of this run</h2>",
            "<p class='muted'>Folders relative to the run folder; pass one to <code>--sae</code> of audit, probe, edit or autointerp "
            "(<code>nullsae ls RUN_DIR</code> lists them too).</p>",
            _table(pd.DataFrame(saes), "saes"),
        ]
    pk = t.manifest.get("packages", {})
    parts.append(f"<p class='muted'>packages: {escape(', '.join(f'{k} {v}' for k, v in pk.items()))}</p>")
    parts.append("</body></html>")
    return "".join(parts)
