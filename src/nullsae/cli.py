"""The `nullsae` console command: one subcommand per module in `nullsae.commands`.

Each command module exposes `add_parser(subparsers)` and `run(args) -> int`; modules import their
heavy dependencies inside `run` so that `nullsae --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from nullsae import __version__
from nullsae.errors import UserError, set_command_options
from nullsae.io_utils import os_error
from nullsae.progress import plain_library_progress

COMMANDS = ["demo", "run", "audit", "synth", "toy", "activations", "autointerp", "probe", "edit", "report", "ls"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nullsae",
        description="Train and evaluate SAEs on a transformer and on its null models, side by side.",
    )
    parser.add_argument("--version", action="version", version=f"nullsae {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"nullsae.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"nullsae.commands.{name}":
                raise
            continue  # command not built yet
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    plain_library_progress()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    set_command_options(sub.choices[args.command]._option_string_actions)
    previous = warnings.formatwarning
    warnings.formatwarning = lambda message, *_, **__: f"nullsae {args.command}: warning: {message}\n"  # one line, no source path
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"nullsae {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file-system fault outside the write path (a read, a library's own write)
        print(f"nullsae {args.command}: error: {os_error(exc, exc.filename or 'a file', 'read or write')}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"nullsae {args.command}: error: out of memory; use a smaller model, fewer tokens or a smaller SAE", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nullsae {args.command}: interrupted; finished work is saved, rerun to resume", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = previous
        set_command_options(None)


if __name__ == "__main__":
    sys.exit(main())
