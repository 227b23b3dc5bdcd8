"""The synthetic ground-truth benchmark (docs/spec.md#synthetic): do an SAE and its random baselines recover known features?"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import torch
from pydantic import BaseModel

from nullsae.config import SynthConfig
from nullsae.io_utils import atomic_write_text, ensure_dir, read_json, save_figure
from nullsae.locks import folder_lock
from nullsae.metrics.reconstruction import reconstruction_metrics
from nullsae.metrics.recovery import max_cosines, mcc
from nullsae.sae.architectures import SAE
from nullsae.sae.config import SAEConfig
from nullsae.sae.train import train_saes
from nullsae.toy.korznikov import KorznikovData

BASELINE_NAMES = ("frozen-decoder", "soft-frozen-decoder", "frozen-encoder")
RECOVERY_THRESHOLD = 0.8


class SynthResult(BaseModel):
    arch: str
    baseline: str
    ev: float
    l0: float
    recovered_fraction: float
    mmcs: float
    mcc: float
    silent_fraction: float  # latents that fire on none of the held-out samples
    decoder_drift: float


class CurvePoint(BaseModel):
    samples: int
    baseline: str
    recovered_fraction: float
    mmcs: float
    ev: float


class SynthReport(BaseModel):
    setting: str
    config: SynthConfig
    results: list[SynthResult]
    curve: list[CurvePoint]
    seconds: float


def _sae_config(cfg: SynthConfig, baseline: str) -> SAEConfig:
    """The architecture's config at L0 = cfg.l0: k for the TopK family, a target L0 for the penalised ones (each keeps its own fields)."""
    return SAEConfig(
        arch=cfg.arch,
        d_in=100,
        n_latents=cfg.n_latents,
        baseline=baseline,
        seed=cfg.seed,
        dead_tokens=cfg.dead_tokens,
        k=cfg.l0,
        auxk=cfg.auxk_coef > 0,
        auxk_coef=cfg.auxk_coef,
        target_l0=float(cfg.l0),
    )


@torch.no_grad()
def _evaluate(sae: SAE, data: KorznikovData, x_eval: torch.Tensor, with_mcc: bool = True) -> dict[str, float]:
    """EV, L0, recovered fraction, MMCS, (Hungarian, seconds at m = 3,200) MCC and the fraction of
    latents silent on the held-out set: a SAE that collapses onto a few blended latents cannot recover."""
    was_training = sae.training
    sae.eval()
    z = sae.encode(x_eval)
    rec = reconstruction_metrics(x_eval, sae.decode(z), z)
    sae.train(was_training)
    best = max_cosines(data.features, sae.W_dec)
    return {
        "ev": rec.ev,
        "l0": rec.l0,
        "recovered_fraction": float((best > RECOVERY_THRESHOLD).mean()),
        "mmcs": float(best.mean()),
        "mcc": mcc(data.features, sae.W_dec) if with_mcc else float("nan"),
        "silent_fraction": float((z == 0).all(0).float().mean()),
    }


def run_synth(cfg: SynthConfig, progress: bool = True, checkpoint_dir: Path | None = None) -> SynthReport:
    """Train the SAE (and optionally its three random baselines) on one shared stream and score recovery.

    With `checkpoint_dir`, training and the recovery curve resume where an interrupted run stopped.
    """
    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    data = KorznikovData(cfg.setting, n_features=3200, batch_size=cfg.batch_size, seed=cfg.seed, device=cfg.device)
    x_eval = data.eval_set(cfg.eval_size)
    baselines = ("none", *BASELINE_NAMES) if cfg.baselines else ("none",)
    saes = {b: SAE(_sae_config(cfg, b)).to(cfg.device) for b in baselines}
    every = max(1, cfg.steps // cfg.curve_points)
    curve_file = checkpoint_dir / "curve.json" if checkpoint_dir is not None else None
    curve: list[CurvePoint] = []
    if curve_file is not None and curve_file.exists():
        curve = [CurvePoint.model_validate(p) for p in read_json(curve_file, "synth recovery curve", "delete the resume folder and rerun")]

    def record(step: int) -> None:
        curve[:] = [p for p in curve if p.samples != step * cfg.batch_size]  # a point after the last checkpoint, recorded again on resume
        for b, sae in saes.items():
            scores = _evaluate(sae, data, x_eval, with_mcc=False)
            curve.append(
                CurvePoint(samples=step * cfg.batch_size, baseline=b, **{k: scores[k] for k in ("recovered_fraction", "mmcs", "ev")})
            )
        if curve_file is not None:
            atomic_write_text(curve_file, json.dumps([p.model_dump() for p in curve]))

    with folder_lock(checkpoint_dir, "synth resume folder") if checkpoint_dir is not None else contextlib.nullcontext():
        train_saes(saes, data, cfg, checkpoint_dir=checkpoint_dir, progress=progress, callback=record, callback_every=every)
    results = []
    for b, sae in saes.items():
        results.append(SynthResult(arch=cfg.arch, baseline=b, decoder_drift=sae.decoder_drift(), **_evaluate(sae, data, x_eval)))
    return SynthReport(setting=cfg.setting, config=cfg, results=results, curve=curve, seconds=time.perf_counter() - start)


def write_outputs(report: SynthReport, out: str) -> None:
    """synth.json (the whole report) and recovery_curve.png (recovery and MMCS against samples seen)."""
    folder = ensure_dir(out)
    atomic_write_text(folder / "synth.json", report.model_dump_json(indent=2))
    plot_curve(report.curve, f"{report.config.arch}, {report.setting} p, lr {report.config.lr:g}", folder / "recovery_curve.png")


def plot_curve(curve: list[CurvePoint], title: str, path: Path) -> None:
    """Features recovered (%) and MMCS against training samples, one line per SAE (PNG, written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    for baseline in dict.fromkeys(p.baseline for p in curve):
        pts = [p for p in curve if p.baseline == baseline]
        samples = [p.samples for p in pts]
        axes[0].plot(samples, [100 * p.recovered_fraction for p in pts], marker="o", ms=3, label=baseline)
        axes[1].plot(samples, [p.mmcs for p in pts], marker="o", ms=3, label=baseline)
    for ax, label in zip(axes, ("features recovered (%)", "MMCS")):
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels of a short log range overlap
        ax.set_xlabel("training samples")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylim(0, max(1.0, 105 * max(p.recovered_fraction for p in curve)))  # a flat 0 % reads as 0, not as noise
    axes[1].set_ylim(0, 1)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)
