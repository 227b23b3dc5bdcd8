"""`nullsae report RUN_DIR`: rebuild report.html (verdicts, figures) from the results already in a run directory."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "report",
        help="rebuild the report of an existing run directory",
        description="Gather the finished results of a run directory (written by `nullsae run`, `demo` or `audit`) and write its "
        "report.html again: verdicts with bootstrap intervals, figures, example windows. Computes no SAE or metric.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (holds manifest.json)")
    p.add_argument("--n-bootstrap", type=int, help="bootstrap resamples per verdict (default: the run's setting)")
    p.add_argument("--quiet", action="store_true", help="print only the report path")
    p.add_argument("--json", action="store_true", help="print one JSON summary object as the last line")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nullsae.config import parse_config
    from nullsae.errors import UserError
    from nullsae.experiment import plan_run
    from nullsae.experiment.grid import ModelShape
    from nullsae.experiment.store import RunStore
    from nullsae.pipeline import report_for
    from nullsae.report.verdicts import terminal_lines, verdict_summary

    store = RunStore(args.run_dir)
    if not (store.root / "manifest.json").exists():
        raise UserError(f"{store.root} is not a run directory (no manifest.json); give the folder `nullsae run` wrote")
    manifest = store.manifest()
    cfg = parse_config(manifest["config"])
    if args.n_bootstrap is not None:
        cfg = parse_config({**manifest["config"], "report": {**manifest["config"]["report"], "n_bootstrap": args.n_bootstrap}})
    shapes = {m: ModelShape(**s) for m, s in manifest.get("shapes", {}).items()}
    plan = plan_run(cfg, shape_of=lambda m: shapes[m] if m in shapes else _missing(m))
    rep = report_for(store, plan)
    if args.json:
        print(
            json.dumps(
                {
                    "report": str(rep.path),
                    "verdicts": verdict_summary(rep.verdicts).to_dict(orient="records"),
                    "findings": [f.model_dump() for f in rep.findings],
                },
                default=str,
            )
        )
    else:
        if not args.quiet:
            print("\n".join(terminal_lines(rep.verdicts, rep.findings)))
        print(f"report: {rep.path}")
    return 0


def _missing(model: str) -> Any:
    from nullsae.errors import UserError

    raise UserError(f"the run's manifest lacks the shape of {model}; rerun `nullsae run` on it once")
