"""`nullsae synth`: the synthetic ground-truth benchmark of Korznikov et al. (docs/spec.md#synthetic)."""

from __future__ import annotations

import argparse

from pydantic import Field

from nullsae.config import SynthConfig, add_flags


class SynthCommand(SynthConfig):
    """`nullsae synth`'s settings: the benchmark's, on the best device present unless told."""

    device: str = Field(default="auto", description="auto (CUDA when present) | cpu | cuda | cuda:N")
    paper: bool = Field(
        default=False,
        description="train to the recovery plateau with its per-architecture steps, lr, lr drop and dead window "
        "(docs/results/synthetic.md); explicit options override it",
    )


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synth",
        help="train SAEs (and random baselines) on synthetic data with known features; report recovery",
        description="Korznikov et al. synthetic benchmark: d = 100, 3,200 unit features, ≈ 20 active per sample. "
        "Reports EV, L0, recovered fraction (max cos > 0.8), MMCS and MCC for the SAE and each baseline.",
    )
    flags = add_flags(p, SynthCommand)
    p.add_argument("--resume-dir", default=None, help="checkpoint folder: an interrupted run continues from it")
    p.add_argument("--out", default=None, help="folder for synth.json and the recovery-vs-samples curve (PNG)")
    p.add_argument("--json", action="store_true", help="print the results as one JSON object on the last line")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run, flags=flags)


def synth_config(args: argparse.Namespace) -> SynthConfig:
    """The run's settings: explicit options first, then `--paper`'s per-architecture plateau setting, then defaults."""
    from nullsae.config import flag_errors, given_flags

    given = given_flags(SynthCommand, args, args.flags)
    paper = given.pop("paper", False)
    device = given.pop("device", "auto")
    with flag_errors(args.flags):
        cfg = SynthConfig.with_paper(given, paper)

    from nullsae.devices import resolve_device  # imports torch: after the settings are checked

    return cfg.model_copy(update={"device": str(resolve_device(device))})


def run(args: argparse.Namespace) -> int:
    import json

    from nullsae.io_utils import check_writable_dir

    cfg = synth_config(args)  # before anything heavy loads

    from nullsae.synth import run_synth

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
