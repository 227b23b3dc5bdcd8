"""One process per folder: a run directory, an activation cache entry, a resume or checkpoint folder.

The lock is `fcntl.flock` on `<folder>/.nullsae.lock`, which the kernel releases when its holder dies,
so a lock left by a killed process is simply taken over. The holder writes its PID, host and start
time into the file so that a second process can say who holds the folder. Re-entrant within a process.
Taking a lock removes the temp files a killed holder left half-written.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nullsae.errors import UserError
from nullsae.io_utils import ensure_dir, os_errors, remove_stale_temps

LOCK_NAME = ".nullsae.lock"
_HELD: dict[str, int] = {}  # lock file → how many times this process holds it


class FolderBusy(UserError):
    """Another live process holds the folder."""


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another process"
    since = time.strftime("%H:%M:%S", time.localtime(info.get("started", 0)))
    return f"process {info.get('pid', '?')} on {info.get('host', '?')} (since {since})"


@contextmanager
def folder_lock(folder: str | Path, what: str = "folder") -> Iterator[Path]:
    """Hold `folder` exclusively for the block, or raise `FolderBusy` naming the process that holds it."""
    folder = ensure_dir(folder)
    path = folder / LOCK_NAME
    key = str(path.resolve())
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield folder
        finally:
            _HELD[key] -= 1
        return
    with os_errors(path, "lock"):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderBusy(f"the {what} {folder} is in use by {_holder(fd)}; wait for it to finish, or use another folder") from None
        with os_errors(path, "lock"):
            os.ftruncate(fd, 0)
            info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "command": " ".join(sys.argv)[:500]}
            os.pwrite(fd, json.dumps(info).encode(), 0)
        _HELD[key] = 1
        try:
            remove_stale_temps(folder)  # left by a holder killed mid-write; nobody else writes here now
            yield folder
        finally:
            del _HELD[key]
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
