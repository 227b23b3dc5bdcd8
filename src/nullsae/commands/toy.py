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
import math
import time
from pathlib import Path

from nullsae.errors import UserError
from nullsae.io_utils import atomic_write_text

EXPERIMENTS = ("superposition", "glove", "embeddings", "lomax")
DATA = ("inputs", "gaussian", "mlp-inputs", "mlp-gaussian")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "toy",
        help="toy models of superposition: Sharkey data, GloVe, token embeddings, Lomax (Heap et al. §4)",
        description="Train toy SAEs over an L1-coefficient sweep on superposed data, word vectors or token embeddings, "
        "against Gaussian controls and after a random MLP; write CSV/JSON and the paper's figures.",
    )
    p.add_argument("experiment", choices=EXPERIMENTS, help="superposition (Figs. 5, 6, 13-16), glove / embeddings (Fig. 7), lomax (Fig. 4)")
    p.add_argument("--latents", type=int, nargs="+", help="dictionary sizes (default: 1024 for superposition, 4d and 16d for vectors)")
    p.add_argument("--seeds", type=int, nargs="+", help="seeds (default: 0-9 for superposition, 0 for vectors)")
    p.add_argument("--coefs", type=float, nargs="*", help="L1 coefficients (default: logspace(-3, 2, 21))")
    p.add_argument("--epochs", type=int, default=100, help="training epochs per SAE (default 100)")
    p.add_argument("--batch-size", type=int, default=256, help="samples per training step (default: 256)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default: 1e-3)")
    p.add_argument(
        "--samples",
        type=int,
        default=10_000,
        help="samples (superposition) or most vectors used (glove: the first, most frequent; embeddings: a seeded random subset; default: 10000)",
    )
    p.add_argument("--data", nargs="+", choices=DATA, default=list(DATA), help="which datasets to sweep (default: all four)")
    p.add_argument("--vectors", help="glove: a .npy (n, d) array or a GloVe text file instead of the bundled GloVe 6B 50-d")
    p.add_argument("--model", default="smollm2", help="embeddings: model spec (smollm2, a folder, a .gguf or a hub id; default: smollm2)")
    p.add_argument(
        "--variants",
        nargs="+",
        default=["trained", "rerandomized"],
        help="embeddings: variants whose embedding matrix is swept (default: trained rerandomized)",
    )
    p.add_argument(
        "--frontier-ev",
        type=float,
        nargs="+",
        default=[0.8, 0.9],
        help="EV levels at which each curve's L1/√L2 is read off (JSON frontier_at_ev; default 0.8 0.9: after the random MLP, SPEC's c grid reaches 0.8 but not 0.9)",
    )
    p.add_argument("--max-stack", type=int, help="most SAEs trained together in one batched model (bounds memory)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present) | cpu | cuda | cuda:N (default: auto)")
    p.add_argument("--json", action="store_true", help="print the results object as the last stdout line")
    p.add_argument("--out", type=Path, help="output folder (default runs/toy/EXPERIMENT)")
    p.set_defaults(func=run)


def _check_args(args: argparse.Namespace) -> None:
    if args.latents is not None and (not args.latents or min(args.latents) < 1):
        raise UserError(f"--latents must be integers ≥ 1, got {args.latents}")
    if args.coefs is not None and not args.coefs:
        raise UserError("--coefs was given an empty list; pass at least one L1 coefficient, e.g. --coefs 0.01 0.03 0.1")
    if args.coefs is not None and any(not math.isfinite(c) or c < 0 for c in args.coefs):
        raise UserError(f"--coefs must be finite and ≥ 0, got {args.coefs}")
    if args.seeds is not None and len(set(args.seeds)) != len(args.seeds):
        raise UserError(f"--seeds lists a seed twice: {args.seeds}")
    for flag in ("epochs", "batch_size", "samples"):
        if getattr(args, flag) < 1:
            raise UserError(f"--{flag.replace('_', '-')} must be ≥ 1, got {getattr(args, flag)}")
    if args.max_stack is not None and args.max_stack < 1:
        raise UserError(f"--max-stack must be ≥ 1, got {args.max_stack}")
    if any(not 0 < ev < 1 for ev in args.frontier_ev):
        raise UserError(f"--frontier-ev levels must lie strictly between 0 and 1, got {args.frontier_ev}")
    if not args.lr > 0:
        raise UserError(f"--lr must be positive, got {args.lr}")


def _datasets(args: argparse.Namespace, seeds: list[int]):
    """(datasets, d) of the experiment, restricted to --data."""
    import torch

    from nullsae.toy.data import load_vectors, sharkey, token_embeddings, with_controls

    mlp = any(name.startswith("mlp-") for name in args.data)
    out = []
    if args.experiment == "superposition":
        for s in seeds:
            data = sharkey(n_samples=args.samples, seed=s)
            out += with_controls(data.x, s, data.features, mlp=mlp)
    elif args.experiment == "glove":
        x = load_vectors(args.vectors, max_vectors=args.samples)
        for s in seeds:
            out += with_controls(x, s, mlp=mlp)
    else:
        from dataclasses import replace

        from nullsae.models import load_model

        mats = token_embeddings(load_model(args.model), args.variants)
        rows = None
        for variant, emb in mats.items():
            if rows is None:
                rows = torch.randperm(emb.shape[0], generator=torch.Generator().manual_seed(0))[: args.samples]
            for s in seeds:
                out += [replace(ds, name=f"{variant}/{ds.name}") for ds in with_controls(emb[rows], s, mlp=mlp)]
    keep = [ds for ds in out if ds.name.rsplit("/", 1)[-1] in args.data]
    return keep, keep[0].x.shape[1]


def _lomax(args: argparse.Namespace, out: Path) -> dict:
    import pandas as pd
    import torch

    from nullsae.toy.data import lomax_example
    from nullsae.toy.figures import lomax_figure

    seed = (args.seeds or [0])[0]
    ex = lomax_example(n_samples=args.samples, seed=seed)
    table = torch.cat([ex.sparse_inputs, ex.dense_inputs, ex.dense_outputs, ex.sparse_outputs], dim=1).numpy()
    cols = ["z1", "z2", "z3", "x1", "x2", "y1", "y2", "zout1", "zout2", "zout3"]
    atomic_write_text(out / "lomax.csv", pd.DataFrame(table, columns=cols).to_csv(index=False))
    fig = lomax_figure(ex, out / "fig04_lomax.png")
    return {"experiment": "lomax", "points": [], "files": [str(out / "lomax.csv"), str(fig)]}


def _train_seconds(runs: list) -> float | None:
    """Training wall time of the whole sweep, summed over its resumed calls (None if any stack's is unrecorded)."""
    shares = [r.train_seconds for r in runs]
    return None if None in shares else sum(shares)


def run(args: argparse.Namespace) -> int:
    from nullsae.io_utils import check_writable_dir
    from nullsae.locks import folder_lock

    _check_args(args)
    out = check_writable_dir(args.out or Path("runs") / "toy" / args.experiment)
    with folder_lock(out, "toy output folder"):
        return _run(args, out)


def _run(args: argparse.Namespace, out: Path) -> int:
    """The experiment itself, with `out` (and its checkpoints) held by this process."""
    start = time.time()
    if args.experiment == "lomax":
        result = _lomax(args, out)
    else:
        import pandas as pd
        import torch
        from pydantic import ValidationError

        from nullsae.devices import resolve_device
        from nullsae.toy.figures import sweep_figures
        from nullsae.toy.sweep import SweepConfig, default_coefs, run_sweep, sparsity_at_ev, summarize

        seeds = args.seeds or (list(range(10)) if args.experiment == "superposition" else [0])
        datasets, d = _datasets(args, seeds)
        latents = args.latents or ([1024] if args.experiment == "superposition" else [4 * d, 16 * d])
        try:
            cfg = SweepConfig(
                latents=latents,
                coefs=args.coefs if args.coefs is not None else default_coefs(),
                epochs=args.epochs,
                batch_size=args.batch_size,
                lr=args.lr,
                max_stack=args.max_stack,
                device=str(resolve_device(args.device)),
            )
        except ValidationError as exc:
            err = exc.errors()[0]
            raise UserError(f"bad sweep setting {'.'.join(map(str, err['loc']))}: {err['msg']}") from None
        runs = run_sweep(datasets, cfg, checkpoint_dir=out / "checkpoints")
        points = summarize(runs)
        atomic_write_text(out / "runs.csv", pd.DataFrame([r.model_dump() for r in runs]).to_csv(index=False))
        flat = [{**p.model_dump(exclude={"sem"}), **{f"sem_{k}": v for k, v in p.sem.items()}} for p in points]
        atomic_write_text(out / "points.csv", pd.DataFrame(flat).to_csv(index=False))
        files = [str(f) for f in sweep_figures(args.experiment, points, out)]
        result = {
            "experiment": args.experiment,
            "config": {**cfg.model_dump(), "seeds": seeds, "samples": args.samples, "d": d},
            "points": [p.model_dump() for p in points],
            "frontier_at_ev": [row for ev in args.frontier_ev for row in sparsity_at_ev(points, ev)],
            "threads": torch.get_num_threads(),
            "train_seconds": _train_seconds(runs),
            "files": [str(out / "runs.csv"), str(out / "points.csv"), *files],
        }
    result["seconds"] = round(time.time() - start, 1)
    text = json.dumps(result)
    atomic_write_text(out / "results.json", text + "\n")
    if args.json:
        print(text)
    else:
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
