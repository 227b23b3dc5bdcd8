"""`nullsae probe`: sparse probing of one SAE on labelled text tasks (SAEBench-style); prints a table, writes JSON."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "probe",
        help="sparse probing: can k SAE latents predict a text's label?",
        description="For each binary task, pick the k latents with the largest difference of mean (pooled) activation between the classes on "
        "the train half, fit a logistic-regression probe on them and report its test accuracy, next to the same probe on the raw activations "
        "(ceiling) and on k random projections (floor). Tasks: built-in ones from the bundled corpus (topic:<slug>, continent:<slug>, or the "
        "families topic, continent, builtin), a .csv/.jsonl/.parquet file with text and label columns, or hf:DATASET[:SPLIT[:CONFIG]].",
    )
    p.add_argument("--sae", required=True, help="SAE folder (nullsae, SAELens or sparsify format)")
    p.add_argument("--layer", type=int, required=True, help="layer the SAE reads (output of block ℓ)")
    p.add_argument(
        "--tasks", nargs="+", default=["builtin"], help="task names, families, files or hf:DATASET (default: builtin = all built-in tasks)"
    )
    p.add_argument("--model", default="smollm2", help="model the SAE belongs to (default: smollm2)")
    p.add_argument("--variant", default="trained", help="model variant (default: trained)")
    p.add_argument("--ks", default="1,2,5,10,20", help="comma list of latent counts (default: 1,2,5,10,20)")
    p.add_argument("--pooling", choices=["mean", "max"], default="mean", help="pooling over a text's tokens (default: mean)")
    p.add_argument("--max-tokens", type=int, default=128, help="tokens per text, BOS included (default: 128)")
    p.add_argument("--n-train", type=int, default=100, help="training texts per class (default: 100)")
    p.add_argument("--n-test", type=int, default=50, help="test texts per class (default: 50)")
    p.add_argument("--text-field", default="text", help="text column of a labelled file or dataset (default: text)")
    p.add_argument("--label-field", default="label", help="label column of a labelled file or dataset (default: label)")
    p.add_argument("--seed", type=int, default=0, help="seed of the splits and random projections (default: 0)")
    p.add_argument(
        "--out",
        default=None,
        help="result JSON (default: runs/probing-layer<L>-<hash of the SAE path>.json; the SAE's folder is never written)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nullsae.commands import int_list
    from nullsae.commands.ls import results_path
    from nullsae.errors import UserError
    from nullsae.io_utils import atomic_write_text
    from nullsae.models import load_model, make_variant
    from nullsae.probing import ProbingConfig, run_probing
    from nullsae.sae.io import load_sae
    from nullsae.tasks import TaskConfig, load_tasks

    ks = int_list(args.ks, "--ks")
    if not ks or min(ks) < 1:
        raise UserError(f"--ks must list positive integers, got '{args.ks}'")
    if args.n_train < 1 or args.n_test < 1 or args.max_tokens < 2:
        raise UserError("--n-train and --n-test must be positive and --max-tokens at least 2")
    task_cfg = TaskConfig(
        n_train=args.n_train, n_test=args.n_test, seed=args.seed, text_field=args.text_field, label_field=args.label_field
    )
    tasks = load_tasks(args.tasks, task_cfg)  # bad task names fail before the model loads
    for name, why in tasks.skipped.items():
        print(f"skipped {name}: {why}")
    sae = load_sae(args.sae)
    loaded, _ = make_variant(load_model(args.model), args.variant)
    cfg = ProbingConfig(ks=ks, pooling=args.pooling, max_tokens=args.max_tokens, seed=args.seed)
    result = run_probing(sae, loaded, args.layer, tasks.tasks, cfg)
    print(
        f"{'task':<40} {'n_train':>7} {'n_test':>6} "
        + " ".join(f"{'k=' + str(k):>6}" for k in ks)
        + f" {'raw':>6} "
        + " ".join(f"{'rnd' + str(k):>6}" for k in ks)
    )
    for t in result.tasks:
        print(
            f"{t.task:<40} {t.n_train:>7} {t.n_test:>6} "
            + " ".join(f"{t.sae[k]:>6.3f}" for k in ks)
            + f" {t.raw:>6.3f} "
            + " ".join(f"{t.random[k]:>6.3f}" for k in ks)
        )
    print(
        f"{'mean':<40} {'':>7} {'':>6} "
        + " ".join(f"{result.mean_sae[k]:>6.3f}" for k in ks)
        + f" {result.mean_raw:>6.3f} "
        + " ".join(f"{result.mean_random[k]:>6.3f}" for k in ks)
    )
    out = Path(args.out) if args.out else results_path(args.sae, f"probing-layer{args.layer}", ".json")
    atomic_write_text(out, result.model_dump_json(indent=1))
    print(f"results: {out}")
    return 0
