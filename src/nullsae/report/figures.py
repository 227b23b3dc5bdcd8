"""Paper-style figures from the result tables, written as PNG files.

- `fig3`: Heap et al. Fig. 3 — EV, cosine, L1, AUROC, CE score, token entropy against layer, one
  line per variant (columns: models).
- `roc_<scorer>`: ROC curves per layer, one curve per variant (Heap et al. Figs. 1–2).
- `baselines`: trained SAE vs random SAE baselines (Korznikov et al. Table 2 style), grouped bars.
- `density`: firing-density histograms (log10 firing frequency) per SAE.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from nullsae.autointerp.results import roc_curve  # noqa: E402
from nullsae.io_utils import save_figure  # noqa: E402
from nullsae.report.tables import ResultTables, auroc_columns  # noqa: E402

# Heap et al. Fig. 3 colours: trained grey, re-randomised blue/orange, step 0 green, control black.
VARIANT_STYLE = {
    "trained": ("#7f7f7f", "Trained"),
    "rerandomized-excl-emb": ("#1f77b4", "Randomized excl emb"),
    "control": ("#000000", "Control"),
    "step0": ("#2ca02c", "Step 0"),
    "rerandomized": ("#ff7f0e", "Randomized incl emb"),
}
BASELINE_STYLE = {
    "none": ("#7f7f7f", "Trained SAE"),
    "frozen-decoder": ("#d62728", "Frozen decoder"),
    "soft-frozen-decoder": ("#9467bd", "Soft-frozen decoder"),
    "frozen-encoder": ("#8c564b", "Frozen encoder"),
    "random": ("#17becf", "Random (free null)"),
    "shuffled-decoder": ("#bcbd22", "Shuffled decoder (free null)"),
    "pca": ("#e377c2", "PCA (free null)"),
    "identity": ("#c49c94", "Identity (free null)"),
}
FIG3_ROWS = [
    ("ev", "Explained variance"),
    ("cosine", "Cosine similarity"),
    ("l1", "L1 norm"),
    ("auroc", "AUROC"),
    ("ce_score", "CE loss score"),
    ("entropy", "Token entropy"),
]


def _save(fig: Figure, path: Path) -> Path:
    save_figure(fig, path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path


def _auroc_column(m: pd.DataFrame) -> str | None:
    cols = auroc_columns(m)
    for preferred in ("auroc_fuzzing", "auroc_detection", "auroc_embedding", "auroc_tokens"):
        if preferred in cols:
            return preferred
    return cols[0] if cols else None


def fig3(t: ResultTables, path: Path, chance: dict[str, float] | None = None) -> Path:
    """Metrics against layer, one line per variant (mean over SAE seeds), for the fully trained SAEs
    (first architecture); a dotted line marks a metric's chance level.

    One model: a 2 × 3 grid of panels; several: one row per metric, one column per model (as the paper).
    """
    chance = chance or {}
    m = t.metrics[t.metrics.baseline == "none"]
    models = list(dict.fromkeys(m.model))
    auroc = _auroc_column(m)
    if len(models) == 1:
        fig, grid = plt.subplots(2, 3, figsize=(12, 6.2), squeeze=False)
        panels = [[grid[i // 3][i % 3]] for i in range(len(FIG3_ROWS))]
    else:
        fig, grid = plt.subplots(len(FIG3_ROWS), len(models), figsize=(4.2 * len(models), 2.1 * len(FIG3_ROWS)), squeeze=False)
        panels = [list(row) for row in grid]
    for j, model in enumerate(models):
        mm = m[(m.model == model) & (m.arch == m[m.model == model].arch.iloc[0])]
        for i, (col, title) in enumerate(FIG3_ROWS):
            ax = panels[i][j]
            col = auroc if col == "auroc" else col
            for variant, (color, name) in VARIANT_STYLE.items():
                sel = mm[mm.variant == variant]
                if col is None or col not in sel or sel[col].isna().all():
                    continue
                by_layer = sel.groupby("layer")[col].mean()
                ax.plot(by_layer.index, by_layer.to_numpy(), marker="o", ms=3, color=color, label=name)
            if col in chance:
                ax.axhline(chance[col], color="#999999", lw=0.8, ls=":")
            label = f"AUROC ({col.removeprefix('auroc_')})" if title == "AUROC" and col else title
            ax.set_ylabel(label, fontsize=8)
            ax.set_xlabel("Layer", fontsize=8)
            ax.set_xticks(sorted(mm.layer.unique()))
            ax.grid(alpha=0.3)
            if len(models) > 1 and i == 0:
                ax.set_title(model, fontsize=9)
    handles, labels = panels[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=len(handles), fontsize=8, bbox_to_anchor=(0.5, -0.01))
    if len(models) == 1:
        fig.suptitle(models[0], fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return _save(fig, path)


def roc(t: ResultTables, scorer: str, path: Path) -> Path:
    """ROC curves per layer, one per variant (and one per SAE baseline, dashed)."""
    sc = t.scores[t.scores.scorer == scorer]
    m = t.metrics.set_index("key")
    keys = sc.key.unique()
    info = m.loc[[k for k in keys if k in m.index]]
    layers = sorted(info.layer.unique())
    n = max(len(layers), 1)
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    for idx, layer in enumerate(layers):
        ax = axes[idx // cols][idx % cols]
        here = info[info.layer == layer]
        if "seed" in here:
            here = here[here.seed == here.seed.min()]
        for key, row in here.iterrows():
            cell = sc[sc.key == key]
            curve = roc_curve(cell.score.to_numpy(float), cell.label.to_numpy(int), max_points=10_000)
            fpr, tpr = curve["fpr"], curve["tpr"]
            if row.baseline == "none":
                color, name = VARIANT_STYLE.get(row.variant, ("#333333", row.variant))
                ax.plot(fpr, tpr, color=color, label=name, lw=1.2)
            else:
                color, name = BASELINE_STYLE.get(row.baseline, ("#333333", row.baseline))
                ax.plot(fpr, tpr, color=color, label=name, lw=1.0, ls="--")
        ax.plot([0, 1], [0, 1], color="#bbbbbb", lw=0.8, ls=":")
        ax.set_title(f"layer {layer}", fontsize=9)
        ax.set_xlabel("false positive rate", fontsize=8)
        ax.set_ylabel("true positive rate", fontsize=8)
        ax.legend(fontsize=6, loc="lower right")
    for idx in range(len(layers), rows * cols):
        axes[idx // cols][idx % cols].axis("off")
    fig.suptitle(f"ROC curves, {scorer} scorer (pooled over sampled latents; first SAE seed; dotted: chance)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


BASELINE_COLUMNS = [("ev", "EV"), ("cosine", "cosine"), ("ce_score", "CE score"), ("entropy", "entropy")]


def baseline_table(t: ResultTables) -> pd.DataFrame:
    """Trained SAE beside its random baselines (trained transformer), one row per SAE setting (mean over seeds)."""
    m = t.metrics
    sel = m[(m.variant == "trained")]
    layers = sel[sel.baseline != "none"].layer.unique()
    sel = sel[sel.layer.isin(layers)]
    cols = (
        [c for c, _ in BASELINE_COLUMNS]
        + auroc_columns(m)
        + sorted(c for c in m.columns.astype(str) if c.startswith("probe_acc_k"))
        + ["ravel_score", "l0", "dead_fraction_eval"]
    )
    cols = [c for c in cols if c in sel]
    order = {b: i for i, b in enumerate(BASELINE_STYLE)}
    sel = sel.groupby(["model", "layer", "arch", "baseline"], as_index=False, sort=False)[cols].mean()
    sel = sel.assign(_o=sel.baseline.map(order)).sort_values(["model", "layer", "arch", "_o"])
    return sel[["model", "layer", "arch", "baseline", *cols]].reset_index(drop=True)


def baselines(t: ResultTables, path: Path) -> Path | None:
    """Grouped bars: each metric, the trained SAE and each random baseline (per model/layer/arch)."""
    tab = baseline_table(t)
    if tab.empty or (tab.baseline == "none").all():
        return None
    # bounded metrics only: the CE score of a weak SAE can be far outside [0, 1] and would flatten the rest
    metrics = [
        c
        for c in tab.columns
        if c not in ("model", "layer", "arch", "baseline", "l0", "dead_fraction_eval", "ce_score") and tab[c].notna().any()
    ]
    groups = list(tab.groupby(["model", "layer", "arch"], sort=False))
    fig, axes = plt.subplots(len(groups), 1, figsize=(max(6, 1.4 * len(metrics) + 2), 2.8 * len(groups)), squeeze=False)
    for ax, ((model, layer, arch), g) in zip(axes[:, 0], groups):
        width = 0.8 / len(g)
        for i, (_, row) in enumerate(g.iterrows()):
            color, name = BASELINE_STYLE.get(row.baseline, ("#333333", row.baseline))
            vals = [row[c] for c in metrics]
            ax.bar(np.arange(len(metrics)) + i * width, vals, width, color=color, label=name)
        ax.set_xticks(np.arange(len(metrics)) + 0.4 - width / 2, [c.replace("auroc_", "AUROC ") for c in metrics], fontsize=8)
        ax.set_title(f"{model}, layer {layer}, {arch}: trained SAE vs random baselines and free nulls", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, ncol=4)
    fig.tight_layout()
    return _save(fig, path)


def density(t: ResultTables, path: Path) -> Path | None:
    """Histograms of log10 firing frequency per SAE: one panel per variant (+ baselines), one line per layer."""
    lat = t.latents
    if lat.empty or "density" not in lat:
        return None
    m = t.metrics.set_index("key")
    lat = lat[lat.key.isin(m.index)]
    panels = [(v, "none") for v in VARIANT_STYLE if ((m.variant == v) & (m.baseline == "none")).any()]
    panels += [("trained", b) for b in BASELINE_STYLE if b != "none" and (m.baseline == b).any()]
    cols = min(len(panels), 3)
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.7 * rows), squeeze=False, sharex=True)
    bins = np.linspace(-7, 0, 36)
    cmap = plt.get_cmap("viridis")
    all_layers = sorted(m.layer.unique())
    for idx, (variant, baseline) in enumerate(panels):
        ax = axes[idx // cols][idx % cols]
        keys = m[(m.variant == variant) & (m.baseline == baseline)]
        for key, row in keys.iterrows():
            d = lat[lat.key == key].density.to_numpy(float)
            dead = int((d <= 0).sum())
            logd = np.log10(d[d > 0])
            color = cmap(all_layers.index(row.layer) / max(len(all_layers) - 1, 1))
            ax.hist(logd, bins=bins, histtype="step", color=color, label=f"L{row.layer} ({dead} dead)")
        title = VARIANT_STYLE[variant][1] if baseline == "none" else BASELINE_STYLE[baseline][1]
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("log10 firing frequency", fontsize=8)
        ax.legend(fontsize=6)
    for idx in range(len(panels), rows * cols):
        axes[idx // cols][idx % cols].axis("off")
    fig.tight_layout()
    return _save(fig, path)


def make_figures(t: ResultTables, out_dir: Path, chance: dict[str, float] | None = None) -> dict[str, Path]:
    """Every figure the tables allow, as {name: PNG path}, in report order."""
    out_dir = Path(out_dir)
    figs: dict[str, Path] = {}
    if t.metrics.empty:
        return figs
    figs["fig3"] = fig3(t, out_dir / "fig3_metrics_by_layer.png", chance)
    if not t.scores.empty:
        for scorer in sorted(t.scores.scorer.unique()):
            figs[f"roc_{scorer}"] = roc(t, scorer, out_dir / f"roc_{scorer}.png")
    p = baselines(t, out_dir / "random_baselines.png")
    if p is not None:
        figs["baselines"] = p
    p = density(t, out_dir / "firing_density.png")
    if p is not None:
        figs["density"] = p
    return figs
