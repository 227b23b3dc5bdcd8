"""Optional dependencies: import one, or tell the user which `nullsae[extra]` installs it."""

from __future__ import annotations

import importlib
from types import ModuleType

from nullsae.errors import UserError


def require(module: str, extra: str) -> ModuleType:
    """Import `module`; if it (or a module it needs) is missing, raise UserError naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = exc.name or module
        raise UserError(f"this needs the {extra} extra ({missing} is not installed): pip install 'nullsae[{extra}]'") from None
