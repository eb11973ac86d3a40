"""Atomic file writes and checkpoints.

Every file the trainer must never leave half-written (``checkpoints/*.pt``, ``final.json``,
``outputs.npz``) is written to ``<name>.tmp-<pid>`` in the same directory, flushed, fsync'ed and
moved over the target with ``os.replace`` (atomic on POSIX), then the directory is fsync'ed.
A crash in the middle leaves the previous file intact (plus, at worst, a stray ``.tmp-*`` file,
which :func:`clean_tmp` removes).

Example
-------
>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> atomic_write_bytes(d / "a.txt", b"hello")
>>> (d / "a.txt").read_bytes()
b'hello'
"""

from __future__ import annotations

import io
import json
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(fileobj)`` on a temporary file, then atomically move it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    data = (json.dumps(obj, indent=2, allow_nan=True) + "\n").encode()
    atomic_write_bytes(path, data)


def atomic_save_npz(path: str | Path, **arrays: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def save_checkpoint(path: str | Path, state: dict) -> None:
    """``torch.save(state)`` atomically."""
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` (CPU tensors)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    # weights_only=False: the checkpoint holds RNG states and plain python objects we wrote
    return torch.load(path, map_location="cpu", weights_only=False)


def clean_tmp(directory: str | Path) -> None:
    """Remove stray ``*.tmp-*`` files a crash may have left in ``directory``."""
    directory = Path(directory)
    if directory.is_dir():
        for p in directory.glob("*.tmp-*"):
            p.unlink(missing_ok=True)


def rng_state(data_generator: torch.Generator | None = None) -> dict:
    """Every random state a resumed run needs: python, numpy, torch (+ CUDA), the data generator."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),  # noqa: NPY002 - the legacy global state
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if data_generator is not None:
        state["data_generator"] = data_generator.get_state()
    return state


def set_rng_state(state: dict, data_generator: torch.Generator | None = None) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if data_generator is not None and "data_generator" in state:
        data_generator.set_state(state["data_generator"])
