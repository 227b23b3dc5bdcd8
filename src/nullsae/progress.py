"""Progress that suits both a terminal and a log file: a tqdm bar when stderr is a terminal (or a notebook),
otherwise no bar, one plain line when a stage starts and one when it ends (with its count, time and summary).

`progress_bar(...)` takes tqdm's arguments, so a call site swaps `tqdm(` for `progress_bar(`.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator, Sized
from typing import Any

# Set when TQDM_DISABLE was set only to keep the libraries' tqdm bars out of a log (not to quiet nullsae).
LIBRARY_BARS_OFF = "NULLSAE_LIBRARY_BARS_OFF"


def interactive() -> bool:
    """True when progress can be redrawn in place: stderr is a terminal or the code runs in a notebook kernel."""
    return bool(getattr(sys.stderr, "isatty", lambda: False)()) or "ipykernel" in sys.modules


def plain_library_progress() -> None:
    """Off a terminal, the libraries draw no bars of their own (set before they are imported): the Hugging Face
    ones, and any plain tqdm bar such as transformers' GGUF conversion."""
    if not interactive():
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
        if "TQDM_DISABLE" not in os.environ:
            os.environ["TQDM_DISABLE"] = "1"
            os.environ[LIBRARY_BARS_OFF] = "1"  # off for the libraries' bars; nullsae's own lines still print


def progress_bar(
    iterable: Iterable[Any] | None = None, *, desc: str = "", total: float | None = None, disable: bool = False, **kwargs: Any
) -> Any:
    """A tqdm bar on a terminal, else a `LogLines` with the same methods (iteration, update, set_postfix, close)."""
    if interactive():
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=desc, total=total, disable=disable, **kwargs)
    return LogLines(iterable, desc=desc, total=total, disable=disable, unit=kwargs.get("unit", "it"), initial=kwargs.get("initial", 0))


class LogLines:
    """Progress for a log: "<desc>: started" and "<desc>: done, <n> <unit> in <t> s (<postfix>)", no cursor control."""

    def __init__(self, iterable: Iterable[Any] | None, *, desc: str, total: float | None, disable: bool, unit: str, initial: float):
        self.iterable = iterable
        if total is None and isinstance(iterable, Sized):
            total = len(iterable)
        self.desc, self.total, self.unit, self.n = desc or "progress", total, unit, initial
        quiet = os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true", "yes") and os.environ.get(LIBRARY_BARS_OFF) != "1"
        self.disable = disable or quiet
        self.postfix = ""
        self.start = time.monotonic()
        self.closed = False
        of = f" (of {_count(total)} {unit})" if total is not None else ""
        self._line(f"started{of}" if not initial else f"resumed at {_count(initial)}{of}")

    def _line(self, text: str) -> None:
        if not self.disable:
            print(f"{self.desc}: {text}", file=sys.stderr, flush=True)

    def __iter__(self) -> Iterator[Any]:
        assert self.iterable is not None, "LogLines without an iterable is driven by update()"
        try:
            for item in self.iterable:
                yield item
                self.n += 1
        finally:
            self.close()

    def __len__(self) -> int:
        return int(self.total or 0)

    def __enter__(self) -> LogLines:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def update(self, n: float = 1) -> None:
        self.n += n

    def set_postfix(self, ordered_dict: dict[str, Any] | None = None, refresh: bool = True, **kwargs: Any) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        """Ignored: call sites label the item in progress this way, which is no summary of the stage."""

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        tail = f" ({self.postfix})" if self.postfix else ""
        self._line(f"done, {_count(self.n)} {self.unit} in {time.monotonic() - self.start:.1f} s{tail}")


def _count(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() else f"{x:.1f}"
