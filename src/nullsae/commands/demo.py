"""`nullsae demo`: the main job on the embedded default (bundled SmolLM2 + bundled Wikipedia corpus).

All five variants at three layers, TopK SAEs, the three random SAE baselines at one layer,
reconstruction + downstream + latent statistics + `tokens`/`embedding` auto-interp, and the report
at runs/demo/report.html. Sized for ≤ 15 minutes on 2 CPU cores; the preset `demo.yaml` says how
to scale it up.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from nullsae.commands.run import add_common_options, execute_and_print

DESCRIPTION = """Run the demo: SAEs on the bundled SmolLM2-135M and its four null models (three layers,
TopK, the three random SAE baselines at one layer) on the bundled Wikipedia corpus, then write the
report (runs/demo/report.html). Interrupt it at any time and rerun to resume. Flags override the
`demo` preset (e.g. --tokens.train 2000000 --sae.expansion 32 for a bigger run)."""


def add_parser(subparsers: Any) -> None:
    from nullsae.config import add_config_flags, load_yaml

    p = subparsers.add_parser("demo", help="the main job on the bundled model and corpus (≤ 15 min on 2 cores)", description=DESCRIPTION)
    add_common_options(p, "run directory (default runs/demo)")
    add_config_flags(p, base=load_yaml("demo"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nullsae.config import build_config, overrides_from_args

    cfg = build_config("demo", overrides_from_args(args))
    out = Path(args.out) if args.out else Path("runs") / "demo"
    return execute_and_print(cfg, args, out)
