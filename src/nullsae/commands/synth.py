"""`nullsae synth`: the synthetic ground-truth benchmark of Korznikov et al. (docs/spec.md#synthetic)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from nullsae.errors import UserError

if TYPE_CHECKING:
    from nullsae.synth import SynthConfig


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synth",
        help="train SAEs (and random baselines) on synthetic data with known features; report recovery",
        description="Korznikov et al. synthetic benchmark: d = 100, 3,200 unit features, ≈ 20 active per sample. "
        "Reports EV, L0, recovered fraction (max cos > 0.8), MMCS and MCC for the SAE and each baseline.",
    )
    p.add_argument("--setting", choices=["variable", "constant"], default="variable", help="feature probabilities (default: variable)")
    p.add_argument("--arch", default="batchtopk", help="relu | topk | batchtopk | jumprelu | matryoshka (default: batchtopk)")
    p.add_argument(
        "--baselines", action="store_true", help="also train the frozen-decoder, soft-frozen-decoder and frozen-encoder baselines"
    )
    p.add_argument("--steps", type=int, default=None, help="training batches of 4,096 samples (default 2,000; --paper: per architecture)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 2e-3; --paper: 3e-3)")
    p.add_argument(
        "--paper",
        action="store_true",
        help="train to the recovery plateau with its per-architecture steps, lr, lr drop and dead window (docs/results/synthetic.md); explicit options override it",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic features, data and SAE initialisation (default: 0)")
    p.add_argument(
        "--dead-tokens",
        type=int,
        default=None,
        help="samples without firing after which a latent counts as dead and AuxK trains it (default 2,000,000; --paper: per architecture)",
    )
    p.add_argument(
        "--lr-drop-step", type=int, default=None, help="from this step on the lr is multiplied by --lr-drop-factor (default: no drop)"
    )
    p.add_argument("--lr-drop-factor", type=float, default=1 / 3, help="the lr drop's factor (default 1/3)")
    p.add_argument("--auxk-coef", type=float, default=1 / 32, help="AuxK weight α for topk/batchtopk/matryoshka (default 1/32; 0: no AuxK)")
    p.add_argument(
        "--decay-fraction",
        type=float,
        default=None,
        help="linear lr decay over this final fraction of steps (default 0.2; --paper: per architecture)",
    )
    p.add_argument("--curve-points", type=int, default=10, help="recovery evaluations (and checkpoints) along training (default: 10)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present) | cpu | cuda | cuda:N (default: auto)")
    p.add_argument("--resume-dir", default=None, help="checkpoint folder: an interrupted run continues from it")
    p.add_argument("--out", default=None, help="folder for synth.json and the recovery-vs-samples curve (PNG)")
    p.add_argument("--json", action="store_true", help="print the results as one JSON object on the last line")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def synth_config(args: argparse.Namespace) -> SynthConfig:
    """The run's settings: explicit options first, then `--paper`'s per-architecture plateau setting, then defaults."""
    from nullsae.devices import resolve_device
    from nullsae.sae.config import check_arch
    from nullsae.synth import DEFAULT_LR, DEFAULT_STEPS, SynthConfig, paper_setting

    check_arch(args.arch)
    paper = paper_setting(args.arch) if args.paper else None

    def pick(given, field: str, default):
        return given if given is not None else (getattr(paper, field) if paper is not None else default)

    steps = pick(args.steps, "steps", DEFAULT_STEPS)
    lr = pick(args.lr, "lr", DEFAULT_LR)
    dead_tokens = pick(args.dead_tokens, "dead_tokens", SynthConfig.model_fields["dead_tokens"].default)
    drop = pick(args.lr_drop_step, "lr_drop_step", None)
    decay = pick(args.decay_fraction, "decay_fraction", SynthConfig.model_fields["decay_fraction"].default)
    if steps < 1:
        raise UserError(f"--steps must be at least 1, got {steps}")
    if lr <= 0:
        raise UserError(f"--lr must be positive, got {lr}")
    if dead_tokens < 1:
        raise UserError(f"--dead-tokens must be at least 1, got {dead_tokens}")
    if not args.auxk_coef >= 0:
        raise UserError(f"--auxk-coef must be ≥ 0 (0 turns AuxK off), got {args.auxk_coef}")
    if not 0 <= decay <= 1:
        raise UserError(f"--decay-fraction must be between 0 and 1, got {decay}")
    if drop is not None and drop < 1:
        raise UserError(f"--lr-drop-step must be at least 1, got {drop}")
    if not 0 < args.lr_drop_factor <= 1:
        raise UserError(f"--lr-drop-factor must be in (0, 1], got {args.lr_drop_factor}")
    return SynthConfig(
        setting=args.setting,
        arch=args.arch,
        baselines=args.baselines,
        steps=steps,
        lr=lr,
        seed=args.seed,
        curve_points=max(1, args.curve_points),
        decay_fraction=decay,
        dead_tokens=dead_tokens,
        auxk_coef=args.auxk_coef,
        lr_drop_step=drop,
        lr_drop_factor=args.lr_drop_factor,
        device=str(resolve_device(args.device)),
    )


def run(args: argparse.Namespace) -> int:
    from nullsae.io_utils import check_writable_dir
    from nullsae.synth import run_synth

    cfg = synth_config(args)
    resume = check_writable_dir(args.resume_dir) if args.resume_dir else None
    if args.out:
        check_writable_dir(args.out)  # before training, so a bad path never throws the results away
    report = run_synth(cfg, progress=not (args.quiet or args.json), checkpoint_dir=resume)
    print(
        f"synthetic {report.setting} p, m = {cfg.n_latents}, L0 = {cfg.l0}, {cfg.steps} steps × {cfg.batch_size} ({report.seconds:.0f} s)"
    )
    print(f"{'arch':<11}{'baseline':<22}{'EV':>7}{'L0':>7}{'recovered':>11}{'MMCS':>7}{'MCC':>7}{'silent':>8}")
    for r in report.results:
        print(
            f"{r.arch:<11}{r.baseline:<22}{r.ev:>7.3f}{r.l0:>7.1f}{r.recovered_fraction:>10.1%}{r.mmcs:>7.3f}{r.mcc:>7.3f}{r.silent_fraction:>8.1%}"
        )
    if args.json:
        keys = ("arch", "baseline", "ev", "l0", "recovered_fraction", "mmcs", "mcc")
        print(json.dumps({"setting": report.setting, "results": [{k: getattr(r, k) for k in keys} for r in report.results]}))
    if args.out:  # after the results are printed: a failing disk cannot take them away
        from nullsae.synth import write_outputs

        write_outputs(report, args.out)
    return 0
