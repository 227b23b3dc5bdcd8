"""User-facing errors: raised for bad input, printed by the CLI as one line with a non-zero exit.

Advice in a message names only options the running command accepts: library code phrases it with
`advice(flag, ...)`, which the CLI answers from the parser of the command being run.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextvars import ContextVar

_OPTIONS: ContextVar[frozenset[str] | None] = ContextVar("nullsae_command_options", default=None)


class UserError(Exception):
    """A problem the user can fix (bad flag, missing file, corrupt checkpoint).

    The message names the problem and the fix; the CLI prints it as one line, no traceback.
    """


def set_command_options(options: Iterable[str] | None) -> None:
    """The option strings of the command being run (the CLI sets them; None outside the CLI)."""
    _OPTIONS.set(None if options is None else frozenset(options))


def advice(flag: str, with_flag: str, without: str) -> str:
    """`with_flag` (which names `flag`) when the running command accepts `flag`, or outside the CLI;
    else `without`, advice that needs no option of this command."""
    options = _OPTIONS.get()
    return with_flag if options is None or flag in options else without
