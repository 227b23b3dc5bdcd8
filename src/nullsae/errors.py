"""User-facing errors: raised for bad input, printed by the CLI as one line with a non-zero exit."""


class UserError(Exception):
    """A problem the user can fix (bad flag, missing file, corrupt checkpoint).

    The message names the problem and the fix; the CLI prints it as one line, no traceback.
    """
