"""`nullsae synth`: the synthetic ground-truth benchmark of Korznikov et al. (SPEC §8)."""

from __future__ import annotations

import argparse
import json

from nullsae.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synth",
        help="train SAEs (and random baselines) on synthetic data with known features; report recovery",
        description="Korznikov et al. synthetic benchmark: d = 100, 3,200 unit features, ≈ 20 active per sample. "
        "Reports EV, L0, recovered fraction (max cos > 0.8), MMCS and MCC for the SAE and each baseline.",
    )
    p.add_argument("--setting", choices=["variable", "constant"], default="variable", help="feature probabilities (default: variable)")
    p.add_argument("--arch", default="batchtopk", help="relu | topk | batchtopk | jumprelu | matryoshka (default: batchtopk)")
    p.add_argument("--baselines", action="store_true", help="also train the frozen-decoder, soft-frozen-decoder and frozen-encoder baselines")
    p.add_argument("--steps", type=int, default=None, help="training batches of 4,096 samples (default 2,000; --paper: the plateau length)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 2e-3)")
    p.add_argument("--paper", action="store_true", help="train to the recovery plateau (see README for its time)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dead-tokens", type=int, default=2_000_000, help="samples without firing after which a latent counts as dead and AuxK trains it (default 2,000,000)")
    p.add_argument("--auxk-coef", type=float, default=1 / 32, help="AuxK weight α for topk/batchtopk/matryoshka (default 1/32; 0: no AuxK)")
    p.add_argument("--decay-fraction", type=float, default=0.2, help="linear lr decay over this final fraction of steps (default 0.2)")
    p.add_argument("--curve-points", type=int, default=10, help="recovery evaluations (and checkpoints) along training")
    p.add_argument("--device", default="auto", help="auto (CUDA when present) | cpu | cuda | cuda:N")
    p.add_argument("--resume-dir", default=None, help="checkpoint folder: an interrupted run continues from it")
    p.add_argument("--out", default=None, help="folder for synth.json and the recovery-vs-samples curve (PNG)")
    p.add_argument("--json", action="store_true", help="print the results as one JSON object on the last line")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nullsae.devices import resolve_device
    from nullsae.sae.config import check_arch
    from nullsae.synth import DEFAULT_LR, DEFAULT_STEPS, PAPER_LR, PAPER_STEPS, SynthConfig, run_synth

    check_arch(args.arch)
    steps = args.steps if args.steps is not None else (PAPER_STEPS if args.paper else DEFAULT_STEPS)
    lr = args.lr if args.lr is not None else (PAPER_LR if args.paper else DEFAULT_LR)
    if steps < 1:
        raise UserError(f"--steps must be at least 1, got {steps}")
    if lr <= 0:
        raise UserError(f"--lr must be positive, got {lr}")
    if args.dead_tokens < 1:
        raise UserError(f"--dead-tokens must be at least 1, got {args.dead_tokens}")
    if not args.auxk_coef >= 0:
        raise UserError(f"--auxk-coef must be ≥ 0 (0 turns AuxK off), got {args.auxk_coef}")
    if not 0 <= args.decay_fraction <= 1:
        raise UserError(f"--decay-fraction must be between 0 and 1, got {args.decay_fraction}")
    cfg = SynthConfig(setting=args.setting, arch=args.arch, baselines=args.baselines, steps=steps, lr=lr, seed=args.seed, curve_points=max(1, args.curve_points), decay_fraction=args.decay_fraction, dead_tokens=args.dead_tokens, auxk_coef=args.auxk_coef, device=str(resolve_device(args.device)))
    from pathlib import Path

    resume = Path(args.resume_dir) if args.resume_dir else None
    report = run_synth(cfg, progress=not (args.quiet or args.json), checkpoint_dir=resume)
    if args.out:
        from nullsae.synth import write_outputs

        write_outputs(report, args.out)
    print(f"synthetic {report.setting} p, m = {cfg.n_latents}, L0 = {cfg.l0}, {cfg.steps} steps × {cfg.batch_size} ({report.seconds:.0f} s)")
    print(f"{'arch':<11}{'baseline':<22}{'EV':>7}{'L0':>7}{'recovered':>11}{'MMCS':>7}{'MCC':>7}{'silent':>8}")
    for r in report.results:
        print(f"{r.arch:<11}{r.baseline:<22}{r.ev:>7.3f}{r.l0:>7.1f}{r.recovered_fraction:>10.1%}{r.mmcs:>7.3f}{r.mcc:>7.3f}{r.silent_fraction:>8.1%}")
    if args.json:
        keys = ("arch", "baseline", "ev", "l0", "recovered_fraction", "mmcs", "mcc")
        print(json.dumps({"setting": report.setting, "results": [{k: getattr(r, k) for k in keys} for r in report.results]}))
    return 0
