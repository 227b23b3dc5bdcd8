"""`nullsae ls RUN_DIR`: every SAE a run trained, with its folder and what determines it (from each cell's cell.json);
and where commands put their results on an SAE by default."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

COLUMNS = ("model", "variant", "layer", "arch", "baseline", "seed", "path")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ls",
        help="list the SAEs a run trained: folder, model, variant, layer, architecture, baseline, seed",
        description="List every trained SAE of a run folder (the folders to pass to --sae of other commands).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by `nullsae run` or `nullsae demo`")
    p.add_argument("--json", action="store_true", help="print one JSON list of rows instead of the table")
    p.set_defaults(func=run)


def results_path(sae: str | Path, name: str, suffix: str = "") -> Path:
    """Where a command's results on an SAE go by default: runs/<name>-<hash of the SAE's path><suffix>,
    never inside the SAE's folder (which would also change the digest `audit` names its run by)."""
    where = hashlib.sha256(str(Path(sae).resolve()).encode()).hexdigest()[:12]
    return Path("runs") / f"{name}-{where}{suffix}"


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as an aligned plain-text table with a header line."""
    cells = [list(COLUMNS)] + [[str(r[c]) for c in COLUMNS] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells)


def run(args: argparse.Namespace) -> int:
    from nullsae.experiment.store import list_saes

    rows = list_saes(args.run_dir)
    if args.json:
        print(json.dumps(rows))
    elif rows:
        print(table(rows))
    else:
        print(f"{args.run_dir}: no trained SAE yet (rerun `nullsae run` on its config to train them)")
    return 0
