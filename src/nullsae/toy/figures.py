"""Paper-style PNG figures of the toy lab: Heap et al. Figs. 4 (Lomax), 5 (MMCS against c), 6/13–16
(Pareto frontiers of EV against L1/√L2, L0, L1, Hoyer) and 7 (word vectors)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from mpl_toolkits.mplot3d import Axes3D  # noqa: E402

from nullsae.io_utils import save_figure  # noqa: E402
from nullsae.toy.data import LomaxExample  # noqa: E402
from nullsae.toy.sweep import SweepPoint  # noqa: E402

SPARSITY_LABELS = {
    "l0": "L0 norm",
    "l1": "L1 norm",
    "l1_sqrt_l2": "L1 norm over √L2 norm",
    "hoyer": "Hoyer sparseness",
}
COLORS = {"inputs": "tab:cyan", "gaussian": "tab:green", "mlp-inputs": "tab:blue", "mlp-gaussian": "tab:olive"}


def _save(fig: Figure, path: Path) -> Path:
    """Write through the one write path (temp file, then rename) and close the figure."""
    try:
        save_figure(fig, path, dpi=150, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def _color(name: str, order: list[str]) -> str:
    base = name.rsplit("/", 1)[-1]
    if base in COLORS and "/" not in name:
        return COLORS[base]
    return f"C{order.index(name) % 10}"


def _sem(p: SweepPoint, key: str) -> float:
    v = p.sem.get(key)
    return 0.0 if v is None or not math.isfinite(v) else v


def lomax_figure(ex: LomaxExample, path: Path) -> Path:
    """Fig. 4: sparse inputs (3-D), dense inputs (2-D), dense MLP outputs (2-D), sparse outputs (3-D)."""
    fig = plt.figure(figsize=(12.5, 3))
    panels = [
        ("(a) sparse inputs z", ex.sparse_inputs, True),
        ("(b) superposed inputs x = Dz", ex.dense_inputs, False),
        ("(c) MLP outputs y", ex.dense_outputs, False),
        ("(d) sparse outputs D⁺y", ex.sparse_outputs, True),
    ]
    lim = 25.0
    for i, (title, pts, three_d) in enumerate(panels, 1):
        pts = pts.detach().numpy()
        if three_d:
            ax3 = fig.add_subplot(1, 4, i, projection="3d")
            assert isinstance(ax3, Axes3D)
            # mplot3d is untyped: pyright reads zs and s as int from their defaults (zs=0, s=20)
            ax3.scatter(pts[:, 0], pts[:, 1], pts[:, 2], s=0.5, alpha=0.5)  # pyright: ignore[reportArgumentType]
            ax3.set_zlim(-lim, lim)
            ax = ax3
        else:
            ax = fig.add_subplot(1, 4, i)
            ax.scatter(pts[:, 0], pts[:, 1], s=0.3, alpha=0.5)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=7)
    return _save(fig, path)


def mmcs_figure(points: Sequence[SweepPoint], path: Path) -> Path:
    """Fig. 5: MMCS against the L1 coefficient, one line per (data, latents) with ground truth."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    keys = sorted({(p.data, p.latents) for p in points if p.mmcs is not None}, key=lambda k: (k[0], k[1]))
    for data, m in keys:
        ps = sorted((p for p in points if p.data == data and p.latents == m and p.mmcs is not None), key=lambda p: p.coef)
        ax.errorbar(
            [p.coef for p in ps],
            np.array([p.mmcs for p in ps], dtype=float),
            yerr=[_sem(p, "mmcs") for p in ps],
            marker="o",
            ms=3,
            capsize=2,
            label=f"{data}, {m} latents",
        )
    ax.set_xscale("log")
    ax.set_xlabel("L1 penalty coefficient c")
    ax.set_ylabel("MMCS")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def pareto_figure(
    points: Sequence[SweepPoint], metrics: Sequence[str], path: Path, latents: Sequence[int] | None = None, title: str = ""
) -> Path:
    """Pareto frontiers: EV (y) against each sparsity metric (columns), one row per latents count,
    one line per dataset; points are coefficients, error bars the s.e.m. over seeds."""
    sizes = sorted({p.latents for p in points}) if latents is None else list(latents)
    datas = list(dict.fromkeys(p.data for p in points))
    fig, axes = plt.subplots(len(sizes), len(metrics), figsize=(4 * len(metrics), 3 * len(sizes)), squeeze=False)
    for i, m in enumerate(sizes):
        for j, key in enumerate(metrics):
            ax = axes[i][j]
            for data in datas:
                ps = sorted((p for p in points if p.data == data and p.latents == m), key=lambda p: p.coef)
                if not ps:
                    continue
                ax.errorbar(
                    [getattr(p, key) for p in ps],
                    [p.ev for p in ps],
                    xerr=[_sem(p, key) for p in ps],
                    yerr=[_sem(p, "ev") for p in ps],
                    marker="o",
                    ms=3,
                    capsize=2,
                    color=_color(data, datas),
                    label=data,
                )
            hidden = sum(p.ev < -0.05 for p in points if p.latents == m)
            if hidden:
                ax.text(0.98, 0.02, f"{hidden} points with EV < 0 off-scale", transform=ax.transAxes, ha="right", fontsize=6)
            ax.set_xlabel(SPARSITY_LABELS[key])
            ax.set_ylabel(f"explained variance ({m} latents)")
            ax.set_ylim(-0.05, 1.05)
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def sweep_figures(experiment: str, points: Sequence[SweepPoint], out: Path) -> list[Path]:
    """All figures of one sweep experiment; returns the files written."""
    files = []
    sizes = sorted({p.latents for p in points})
    if experiment == "superposition":
        if any(p.mmcs is not None for p in points):
            files.append(mmcs_figure(points, out / "fig05_mmcs.png"))
        files.append(pareto_figure(points, ["l1_sqrt_l2"], out / "fig06_pareto_l1_sqrt_l2.png", latents=sizes[-1:]))
        files.append(pareto_figure(points, ["l0"], out / "fig13_pareto_l0.png"))
        files.append(pareto_figure(points, ["l1"], out / "fig14_pareto_l1.png"))
        files.append(pareto_figure(points, ["l1_sqrt_l2"], out / "fig15_pareto_l1_sqrt_l2.png"))
        files.append(pareto_figure(points, ["hoyer"], out / "fig16_pareto_hoyer.png"))
    else:
        files.append(pareto_figure(points, ["l1_sqrt_l2"], out / "fig07_pareto_l1_sqrt_l2.png", title=experiment))
        files.append(pareto_figure(points, list(SPARSITY_LABELS), out / "pareto_all_metrics.png", title=experiment))
    return files
