"""The one write path: every file nullsae writes goes to a temp file beside its target, then is renamed
onto it, so a target is either complete or absent. An OS error (full disk, file-size limit, read-only
folder, a file where a folder should be, …) becomes one `UserError` line naming the path and the fix,
and the temp file is removed.
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import shutil
import struct
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nullsae.errors import UserError

_FIXES = {
    errno.ENOSPC: "the disk is full; free space or write to another disk",
    errno.EDQUOT: "the disk quota is used up; free space or write to another disk",
    errno.EFBIG: "the file is larger than this system lets a process write (ulimit -f); raise the limit or write less",
    errno.EROFS: "the file system is read-only; write to another folder",
    errno.EACCES: "no permission to write there; fix the permissions or write to another folder",
    errno.EPERM: "no permission to write there; fix the permissions or write to another folder",
    errno.ENOTDIR: "a part of that path is a file, not a folder; give a folder path",
    errno.EEXIST: "something else is already there; remove it or give another path",
    errno.EISDIR: "that is a folder, not a file; give a file path",
    errno.ENAMETOOLONG: "the name is too long; use a shorter path",
    errno.ENOENT: "a folder in that path does not exist; create it or give another path",
}


def os_error(exc: OSError, path: str | Path, doing: str = "write") -> UserError:
    """One line for an OS error on `path`: what failed, the system's reason and the fix."""
    code = exc.errno
    if code is None:  # pyarrow and others put the errno in the message only
        m = re.search(r"errno (\d+)", str(exc), re.IGNORECASE)
        code = int(m.group(1)) if m else None
    reason = exc.strerror or (os.strerror(code) if code else str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    fix = _FIXES.get(code or 0, "check the path and the disk")  # no errno 0: the general fix
    return UserError(f"cannot {doing} {path}: {reason}; {fix}")


@contextmanager
def os_errors(path: str | Path, doing: str = "write") -> Iterator[None]:
    """Turn an OSError raised inside the block into `os_error(...)` (a UserError)."""
    try:
        yield
    except UserError:
        raise
    except OSError as exc:
        raise os_error(exc, path, doing) from exc


def ensure_dir(path: str | Path) -> Path:
    """Create the folder `path` (and its parents), or say in one line why it cannot be one."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{path} is a file, not a folder; give a folder path (or remove that file)")
    with os_errors(path, "create the folder"):
        path.mkdir(parents=True, exist_ok=True)
    return path


def check_writable_dir(path: str | Path) -> Path:
    """`ensure_dir`, then prove a file can be written there: a command checks its output folder before
    the work, so a bad path never throws away a finished computation."""
    path = ensure_dir(path)
    with os_errors(path):
        fd, probe = tempfile.mkstemp(prefix=".nullsae-probe.", dir=path)
        os.close(fd)
        os.unlink(probe)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_MASK = _umask()
_FILE_MODE, _DIR_MODE = 0o666 & ~_MASK, 0o777 & ~_MASK  # what open() and mkdir() give; mkstemp/mkdtemp alone give 0o600/0o700


def _tmp_beside(path: Path) -> Path:
    ensure_dir(path.parent)
    if path.is_dir():
        raise UserError(f"cannot write {path}: it is a folder; give a file path (or remove that folder)")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, _FILE_MODE)
    os.close(fd)
    return Path(tmp)


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call `write(tmp)` on a temp file beside `path`, fsync it, then rename it onto `path`."""
    path = Path(path)
    with os_errors(path):
        tmp = _tmp_beside(path)
        try:
            write(tmp)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return path


def write_bytes(path: str | Path, data: bytes | memoryview) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=1, sort_keys=True, default=str))


def write_parquet(path: str | Path, df: Any) -> Path:
    return atomic_write(path, lambda tmp: df.to_parquet(tmp, index=False))


def atomic_dir(path: str | Path, fill: Callable[[Path], object]) -> Path:
    """Fill a temp folder beside `path`, then rename it onto `path` (replacing an older one)."""
    path = Path(path)
    with os_errors(path):
        ensure_dir(path.parent)
        if path.exists() and not path.is_dir():
            raise UserError(f"cannot write the folder {path}: a file is there; remove it or give another path")
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        tmp.chmod(_DIR_MODE)
        try:
            fill(tmp)
            if path.exists():
                shutil.rmtree(path)
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return path


def save_figure(fig: Any, path: str | Path, **kwargs: Any) -> Path:
    """matplotlib `fig.savefig` through the write path (the format comes from `path`'s suffix)."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, **kwargs))


def atomic_torch_save(obj: object, path: str | Path) -> Path:
    """torch.save through the write path (serialised in memory first, so a disk error is an OSError)."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return write_bytes(path, buf.getbuffer())


_ST_DTYPES = {
    "float32": "F32",
    "float16": "F16",
    "bfloat16": "BF16",
    "float64": "F64",
    "int64": "I64",
    "int32": "I32",
    "int16": "I16",
    "int8": "I8",
    "uint8": "U8",
    "bool": "BOOL",
}


def save_safetensors(tensors: dict[str, Any], path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Write tensors in the safetensors format through the write path, streaming each tensor's bytes
    (no second copy in memory); readable by `safetensors.torch.load_file`."""
    import torch

    arrays = {}
    header: dict[str, Any] = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        dtype = str(t.dtype).removeprefix("torch.")
        if dtype not in _ST_DTYPES:
            raise ValueError(f"cannot store dtype {dtype} in safetensors")
        raw = t.view(torch.int16) if t.dtype == torch.bfloat16 else t
        arrays[name] = raw.reshape(-1).numpy()
        nbytes = t.numel() * t.element_size()
        header[name] = {"dtype": _ST_DTYPES[dtype], "shape": list(t.shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            fh.write(struct.pack("<Q", len(blob)))
            fh.write(blob)
            for name in sorted(arrays):
                if arrays[name].size:
                    fh.write(memoryview(arrays[name]).cast("B"))

    return atomic_write(path, write)


def remove_stale_temps(folder: str | Path) -> int:
    """Delete the temp files and folders the write path leaves when its process is killed mid-write
    (`.NAME.XXXX.tmp`); call only while holding the folder's lock. Returns how many were removed."""
    stale = [p for p in Path(folder).rglob(".*.tmp") if p.name.startswith(".")]
    for p in stale:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return len(stale)


def read_json(path: str | Path, what: str = "file", fix: str = "delete it and rerun") -> Any:
    """Parse a JSON file nullsae wrote, or say in one line that it is missing, a folder or corrupt."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"the {what} {path} is a folder, not a file; {fix}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"the {what} {path} is missing; {fix}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"the {what} {path} is corrupt (not valid JSON: {exc}); {fix}") from None
    except OSError as exc:
        raise os_error(exc, path, "read") from exc


# The text writer under the name most callers use.
atomic_write_text = write_text
