"""Every subcommand answers --help; no command prints a traceback for a user error."""

import argparse
import subprocess
import sys

import pytest

from nullsae.cli import COMMANDS, build_parser


def test_every_listed_command_is_registered():
    parser = build_parser()
    (subcommands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]  # noqa: SLF001 - argparse keeps them here
    registered = set(subcommands.choices)
    assert registered == set(COMMANDS), f"missing subcommands: {set(COMMANDS) - registered}"


@pytest.mark.parametrize("command", COMMANDS)
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([command, "--help"])
    assert exc.value.code == 0
    assert "usage: nullsae" in capsys.readouterr().out


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "nullsae.cli", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("nullsae ")
