"""Benchmark: toy-SAE sweep points (trained + evaluated SAEs) per minute, batched vs a plain loop.

Every arm runs the same `run_sweep` on the same Sharkey datasets; the loop arm trains one SAE at a
time (max_stack=1), the batched arm as many as the sweep's default stack size allows (on a CPU: as
many as keep the activations cache-sized), and `--stacks N …` adds arms of N runs per stacked model.
Prints a table and a JSON line.

    .venv/bin/python benchmarks/toy_sweep.py                      # quick default (about a minute on 2 idle cores)
    .venv/bin/python benchmarks/toy_sweep.py --d 256 --features 512 --latents 1024 --samples 10000 --seeds 6 --coefs 0.001 0.003 0.01 0.03 0.1 0.3 1 --epochs 1 --stacks 84
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from nullsae.toy.data import sharkey, with_controls
from nullsae.toy.sweep import SweepConfig, run_sweep


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--features", type=int, default=128)
    ap.add_argument("--latents", type=int, default=256)
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--coefs", type=float, nargs="+", default=[0.001, 0.01, 0.1, 1.0])
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--stacks", type=int, nargs="*", default=[], help="extra arms: runs per stacked model")
    args = ap.parse_args()

    datasets = []
    for seed in range(args.seeds):
        s = sharkey(n_samples=args.samples, d=args.d, n_features=args.features, seed=seed)
        datasets += with_controls(s.x, seed, s.features, mlp=False)
    cfg = SweepConfig(latents=[args.latents], coefs=args.coefs, epochs=args.epochs, mcc=False)
    n_points = len(datasets) * len(args.coefs)
    run_sweep(
        datasets[:1], cfg.model_copy(update={"coefs": args.coefs[:1], "epochs": 1}), progress=False
    )  # one-time start-up costs out of the timed arms
    rows = {}
    for arm, stack in (("batched", None), ("loop", 1), *((f"stack {n}", n) for n in args.stacks)):
        start = time.perf_counter()
        run_sweep(datasets, cfg.model_copy(update={"max_stack": stack}), progress=False)
        sec = time.perf_counter() - start
        rows[arm] = {"seconds": round(sec, 2), "points_per_minute": round(60 * n_points / sec, 2)}
    speedup = rows["loop"]["seconds"] / rows["batched"]["seconds"]
    print(
        f"toy sweep: {n_points} SAEs (d={args.d}, m={args.latents}, {args.samples} samples, {args.epochs} epochs), torch threads {torch.get_num_threads()}"
    )
    for arm, r in rows.items():
        print(f"  {arm:8s} {r['seconds']:8.2f} s  {r['points_per_minute']:8.2f} points/min")
    print(f"  batched speed-up ×{speedup:.2f}")
    print(json.dumps({"benchmark": "toy_sweep", "points": n_points, "config": vars(args), **rows, "speedup": round(speedup, 2)}))


if __name__ == "__main__":
    main()
