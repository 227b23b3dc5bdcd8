"""`nullsae probe`: sparse probing of one SAE on labelled text tasks (SAEBench-style); prints a table, writes JSON."""

from __future__ import annotations

import argparse

from pydantic import Field

from nullsae.commands import SAEModelInput
from nullsae.config import ProbingSettings, add_flags
from nullsae.tasks import TaskConfig


class ProbeCommand(SAEModelInput):
    """`nullsae probe`'s settings: the SAE, the tasks and their sizes, the probes."""

    probing: ProbingSettings = Field(default_factory=ProbingSettings)
    task: TaskConfig = Field(default_factory=TaskConfig)


# The task sizes are probing's (as in a run config); one seed drives the splits and the random projections.
SKIP = ("probing.baseline_layers_only", "task.n_train", "task.n_test", "task.seed")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "probe",
        help="sparse probing: can k SAE latents predict a text's label?",
        description="For each binary task, pick the k latents with the largest difference of mean (pooled) activation between the classes on "
        "the train half, fit a logistic-regression probe on them and report its test accuracy, next to the same probe on the raw activations "
        "(ceiling) and on k random projections (floor). Tasks: built-in ones from the bundled corpus (topic:<slug>, continent:<slug>, or the "
        "families topic, continent, builtin), a .csv/.jsonl/.parquet file with text and label columns, or hf:DATASET[:SPLIT[:CONFIG]].",
    )
    flags = add_flags(p, ProbeCommand, skip=SKIP)
    p.add_argument(
        "--out",
        default=None,
        help="result JSON (default: runs/probing-layer<L>-<hash of the SAE path>.json; the SAE's folder is never written)",
    )
    p.set_defaults(func=run, flags=flags)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nullsae.commands import check_layer_early, loaded_variant, sae_and_model
    from nullsae.commands.ls import results_path
    from nullsae.config import config_from_args
    from nullsae.io_utils import atomic_write_text
    from nullsae.tasks import load_tasks

    cfg = config_from_args(ProbeCommand, args, args.flags)
    pc = cfg.probing
    task_cfg = cfg.task.model_copy(update={"n_train": pc.n_train, "n_test": pc.n_test, "seed": pc.seed})
    check_layer_early(cfg)
    tasks = load_tasks(pc.tasks, task_cfg)  # bad task names fail before the SAE and the model load
    opened, model, layer = sae_and_model(cfg)
    for name, why in tasks.skipped.items():
        print(f"skipped {name}: {why}")

    from nullsae.probing import format_tables, run_probing

    result = run_probing(opened.sae, loaded_variant(model, cfg.variant), layer, tasks.tasks, pc)
    print(format_tables(result))
    out = Path(args.out) if args.out else results_path(opened.folder, f"probing-layer{layer}", ".json")
    atomic_write_text(out, result.model_dump_json(indent=1))
    print(f"results: {out}")
    return 0
