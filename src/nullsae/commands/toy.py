"""`nullsae toy superposition|glove|embeddings|lomax`: the toy-model experiments of Heap et al. §4.

Each sweep trains every (dataset, seed, coefficient) toy SAE as one batched model and writes
runs.csv (one row per SAE), points.csv and results.json (mean ± s.e.m. over seeds) and the paper's
figures as PNG. With --json the last stdout line is the results object. An interrupted sweep resumes
when the same command runs again: finished batched models and the unfinished one's state (saved
every 10 minutes) wait in OUT/checkpoints until the sweep completes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# ToyConfig's own latents and device stand for the sweep's (per-experiment default, auto device).
SKIP = ("sweep.latents", "sweep.device")


def add_parser(subparsers) -> None:
    from nullsae.config import add_flags
    from nullsae.toy.config import ToyConfig

    p = subparsers.add_parser(
        "toy",
        help="toy models of superposition: Sharkey data, GloVe, token embeddings, Lomax (Heap et al. §4)",
        description="Train toy SAEs over an L1-coefficient sweep on superposed data, word vectors or token embeddings, "
        "against Gaussian controls and after a random MLP; write CSV/JSON and the paper's figures.",
    )
    flags = add_flags(p, ToyConfig, skip=SKIP)
    p.add_argument("--json", action="store_true", help="print the results object as the last stdout line")
    p.add_argument("--out", type=Path, help="output folder (default runs/toy/EXPERIMENT)")
    p.set_defaults(func=run, flags=flags)


def run(args: argparse.Namespace) -> int:
    from nullsae.config import config_from_args
    from nullsae.io_utils import check_writable_dir
    from nullsae.locks import folder_lock
    from nullsae.toy.config import ToyConfig
    from nullsae.toy.run import run_toy

    cfg = config_from_args(ToyConfig, args, args.flags)
    out = check_writable_dir(args.out or Path("runs") / "toy" / cfg.experiment)
    with folder_lock(out, "toy output folder"):
        result = run_toy(cfg, out)
    if args.json:
        print(json.dumps(result))
        return 0
    for p in result["points"]:
        mm = f" mmcs={p['mmcs']:.3f}" if p.get("mmcs") is not None else ""
        print(
            f"{p['data']:>14} m={p['latents']:<5} c={p['coef']:<9.4g} ev={p['ev']:.3f} l0={p['l0']:.1f} "
            f"l1/√l2={p['l1_sqrt_l2']:.2f} hoyer={p['hoyer']:.3f}{mm}"
        )
    for f in result.get("frontier_at_ev", []):
        val = f["l1_sqrt_l2"]
        print(f"{f['data']:>14} m={f['latents']:<5} reaches EV {f['ev']} at L1/√L2 = {'not reached' if val is None else f'{val:.2f}'}")
    trained = result.get("train_seconds")
    print(f"wrote {out} ({result['seconds']} s{'' if trained is None else f'; training over all calls: {trained:.1f} s'})")
    return 0
