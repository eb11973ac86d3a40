"""Atomic file writes: the one home for "never leave a half-written file".

A file is written to ``<name>.tmp-<pid>`` in the same directory, flushed, fsync'ed and moved
over the target with ``os.replace`` (atomic on POSIX), then the directory is fsync'ed.  A crash
in the middle leaves the previous file intact (plus, at worst, a stray ``.tmp-*`` file, which
:func:`clean_tmp` removes).  If the write fails, the temporary file is removed and the original
error propagates (a failing clean-up never hides it).

Example
-------
>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> atomic_write_text(d / "a.txt", "hello")
>>> (d / "a.txt").read_text()
'hello'
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_save_npz", "atomic_write", "atomic_write_bytes", "atomic_write_json",
           "atomic_write_text", "clean_tmp"]


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # platforms without directory fds
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _os_error(exc: BaseException) -> OSError | None:
    """The OSError behind ``exc`` (itself, or its cause / context: torch.save reports a full
    disk as a RuntimeError whose context is the OSError), else None."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        if isinstance(e, OSError):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Call ``write(fileobj)`` on a temporary file, then atomically move it to ``path``.

    A failure of the file system (a full disk, a read-only directory, ...) is an ``OSError``
    whose ``filename`` is ``path`` and whose ``strerror`` the system's ("No space left on
    device"), even where the writer wraps it (``torch.save``'s RuntimeError).
    """
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        cause = _os_error(exc)
        if cause is None or cause.errno is None:
            raise
        raise OSError(cause.errno, cause.strerror or os.strerror(cause.errno), str(path)) from exc
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, allow_nan=True) + "\n")


def atomic_save_npz(path: str | Path, **arrays: Any) -> None:
    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def clean_tmp(directory: str | Path) -> None:
    """Remove stray ``*.tmp-*`` files a crash may have left in ``directory``."""
    directory = Path(directory)
    if directory.is_dir():
        for p in directory.glob("*.tmp-*"):
            p.unlink(missing_ok=True)
