"""Every subcommand answers --help; no command prints a traceback for a user error."""

import subprocess
import sys

import pytest

from nullsae.cli import COMMANDS, build_parser


def test_every_listed_command_is_registered():
    parser = build_parser()
    registered = set(parser._subparsers._group_actions[0].choices)  # noqa: SLF001 - argparse keeps them here
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
