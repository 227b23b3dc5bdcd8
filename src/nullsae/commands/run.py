"""`nullsae run CONFIG.yaml`: build the grid of a run config, compute every cell (resuming), write the report."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

DESCRIPTION = """Train and evaluate every SAE of a run config (models x variants x layers x architectures,
plus random SAE baselines) and write a side-by-side report with verdicts. CONFIG is a YAML file or a
bundled preset (demo, paper-pythia-70m, probe-edit-smollm2). Every config key can be overridden by a flag
(`--section.key VALUE`, lists comma-separated). Finished cells are never recomputed: rerun the same
command to resume an interrupted run."""


def add_common_options(p: argparse.ArgumentParser, out_help: str) -> None:
    p.add_argument("--out", metavar="DIR", help=out_help)
    p.add_argument("--executor", choices=["local", "ray"], default="local", help="where tasks run (default local)")
    p.add_argument("--address", metavar="ADDR", help="Ray cluster address (host:port) for --executor ray")
    p.add_argument("--dry-run", action="store_true", help="validate the config and print the plan, compute nothing")
    p.add_argument("--quiet", action="store_true", help="no progress bars or messages; print only the report path")
    p.add_argument("--json", action="store_true", help="print one JSON summary object as the last line")


def add_parser(subparsers: Any) -> None:
    from nullsae.config import add_config_flags

    p = subparsers.add_parser("run", help="run an experiment grid from a YAML config and write the report", description=DESCRIPTION)
    p.add_argument("config", metavar="CONFIG", help="YAML config file or preset name (demo, paper-pythia-70m, probe-edit-smollm2)")
    add_common_options(p, "run directory (default runs/<name>)")
    add_config_flags(p)
    p.set_defaults(func=run)


def quiet_libraries() -> None:
    """No progress bars or info logs from the libraries underneath (--quiet, --json)."""
    import logging
    import os
    import warnings

    from nullsae.progress import LIBRARY_BARS_OFF

    os.environ["TQDM_DISABLE"] = "1"
    os.environ.pop(LIBRARY_BARS_OFF, None)  # quiet means nullsae's own progress lines too
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["TRANSFORMERS_VERBOSITY"] = "error"
    warnings.filterwarnings("ignore")
    logging.getLogger("sentence_transformers").setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:
        pass


def execute_and_print(cfg: Any, args: argparse.Namespace, out: Path) -> int:
    """Plan, run and report; then print the report path (and the JSON summary with --json)."""
    from nullsae.experiment import plan_run
    from nullsae.pipeline import execute

    progress = not (args.quiet or args.json)
    if not progress:
        quiet_libraries()
    if args.dry_run:
        plan = plan_run(cfg)
        summary = {"run_dir": str(out), "tasks": len(plan.tasks), "cells": len(plan.cells), "cells_list": [c.label for c in plan.cells]}
        if args.json:
            print(json.dumps(summary))
        elif not args.quiet:
            print(f"{len(plan.cells)} SAE cells in {len(plan.tasks)} tasks:")
            for c in plan.cells:
                print(f"  {c.label}  [{c.key}]")
        return 0
    result = execute(cfg, out, executor=args.executor, address=args.address, progress=progress)
    if args.json:
        print(json.dumps(result.summary(), default=str))
    else:
        if progress:
            for line in result.text_lines():
                print(line)
            from nullsae.commands.ls import table
            from nullsae.experiment.store import list_saes

            print(f"SAEs of this run (`nullsae ls {out}` lists them again):\n{table(list_saes(out))}")
        print(f"report: {result.report_path}")
    sys.stdout.flush()
    return 0


def run(args: argparse.Namespace) -> int:
    from nullsae.config import build_config, overrides_from_args

    cfg = build_config(args.config, overrides_from_args(args))
    out = Path(args.out) if args.out else Path("runs") / cfg.name
    return execute_and_print(cfg, args, out)
