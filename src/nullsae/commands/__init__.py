"""CLI subcommands: each module has `add_parser(subparsers)` and sets `func` to its `run(args)`."""

from nullsae.errors import UserError


def int_list(text: str, flag: str) -> list[int]:
    """Parse the comma-separated integers given to `flag` (e.g. --layers 2,6), or say what is wrong."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"{flag} must be comma-separated integers, got '{text}'") from None
    if not values:
        raise UserError(f"{flag} is empty; give at least one integer")
    return values
