"""Checkpoints (written atomically by :mod:`classaware._io`), the random states they carry, and
the checks of a run directory (the one home for "is this a run, can it be resumed").

Example
-------
>>> import tempfile, pathlib, torch
>>> p = pathlib.Path(tempfile.mkdtemp()) / "last.pt"
>>> save_checkpoint(p, {"epoch": 1, "w": torch.zeros(2)})
>>> load_checkpoint(p)["epoch"]
1
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from classaware._io import atomic_write
from classaware.errors import ConfigError

__all__ = ["load_checkpoint", "newest", "resume_candidates", "rng_state", "run_dir_problem",
           "save_checkpoint", "saved_checkpoint", "saved_config", "set_rng_state"]


def saved_config(run_dir: str | Path, what: str) -> Path:
    """``run_dir/config.toml``, or a ConfigError saying why ``run_dir`` is not a run directory.

    ``what`` names the argument in the message (``"RUN_DIR"``, ``"--resume"``).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        state = "is not a directory" if run_dir.exists() else "does not exist"
        raise ConfigError(f"{what}: {str(run_dir)!r} {state}")
    path = run_dir / "config.toml"
    if not path.is_file():
        raise ConfigError(f"{what}: {str(run_dir)!r} has no config.toml: not a classaware run "
                          "directory")
    return path


def saved_checkpoint(run_dir: str | Path) -> Path:
    """``checkpoints/best.pt``, else ``checkpoints/last.pt`` of ``run_dir`` (else ConfigError)."""
    ck = Path(run_dir) / "checkpoints"
    for name in ("best.pt", "last.pt"):
        if (ck / name).is_file():
            return ck / name
    raise ConfigError(f"RUN_DIR: {str(run_dir)!r} has no checkpoint (checkpoints/best.pt or "
                      "last.pt): the run has not finished an epoch")


#: what a run directory holds once a run has started training (any of them)
_RUN_FILES = ("metrics.jsonl", "final.json", "checkpoints/last.pt", "checkpoints/best.pt")


def run_dir_problem(run_dir: Path, *, resume: bool) -> str | None:
    """Why training into ``run_dir`` cannot start (None when it can).

    The directory (and ``checkpoints/``) is created here and a file is written and removed in
    it, so an unusable ``--out`` (a file, a path under a file, a read-only or immutable
    directory) is one line before anything heavy runs.  Without ``resume`` a directory that
    already holds a run is refused; with ``resume`` every state is usable (see
    :func:`resume_candidates`).
    """
    unusable = _unwritable(run_dir)
    if unusable:
        return unusable
    if not resume and any((run_dir / f).exists() for f in _RUN_FILES):
        return (f"{run_dir} already holds a run; use --resume to continue it (it starts again "
                "when nothing can be continued) or choose another --out")
    return None


def _unwritable(run_dir: Path) -> str | None:
    for p in (run_dir, *run_dir.parents):  # the nearest existing ancestor must be a directory
        if p.exists() or p.is_symlink():
            if not p.is_dir():
                where = "is a file" if p == run_dir else f"is under {str(p)!r}, a file"
                return f"--out: {str(run_dir)!r} {where}, not a directory"
            break
    try:
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=run_dir / "checkpoints"):
            pass
    except OSError as exc:
        return f"--out: cannot write in {str(run_dir)!r}: {exc.strerror or exc}"
    return None


def resume_candidates(run_dir: str | Path) -> tuple[dict[str, dict], list[str]]:
    """The readable checkpoints of ``run_dir`` (``{"last.pt": state, "best.pt": state}``,
    those present) and one line for each unreadable one, which is moved aside to
    ``NAME.unreadable`` (kept, never deleted).

    ``--resume`` continues from the newest *resumable* one (:func:`newest`); with none it
    starts the run again.
    """
    ck = Path(run_dir) / "checkpoints"
    found: dict[str, dict] = {}
    notes: list[str] = []
    for name in ("last.pt", "best.pt"):
        path = ck / name
        if not path.is_file():
            continue
        try:
            found[name] = load_checkpoint(path)
        except ConfigError as exc:
            aside = path.with_name(name + ".unreadable")
            os.replace(path, aside)
            notes.append(f"{exc} (moved aside to {aside.name})")
    return found, notes


def newest(states: dict[str, dict]) -> dict | None:
    """The resumable state (it has ``optimizer``) with the largest ``(epoch, step)``, or None.

    ``best.pt`` files of older versions hold the model only and are not resumable."""
    ok = [s for s in states.values() if "optimizer" in s]
    return max(ok, key=lambda s: (int(s["epoch"]), int(s.get("step", 0))), default=None)


def save_checkpoint(path: str | Path, state: dict) -> None:
    """``torch.save(state)`` atomically."""
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` (CPU tensors).

    A missing file is FileNotFoundError; an unreadable one (truncated, corrupt, not a
    checkpoint) is a one-line ConfigError naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:  # weights_only=False: the checkpoint holds RNG states and plain python objects we wrote
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises RuntimeError, pickle errors, EOFError, ...
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"checkpoint {path} cannot be read (truncated or corrupt?): "
                          f"{first}") from None
    if not isinstance(state, dict):
        raise ConfigError(f"checkpoint {path} is not a classaware checkpoint")
    return state


def rng_state(data_generator: torch.Generator | None = None) -> dict:
    """Every random state a resumed run needs: python, numpy, torch (+ CUDA), the data generator."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": _numpy_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if data_generator is not None:
        state["data_generator"] = data_generator.get_state()
    return state


def set_rng_state(state: dict) -> None:
    """Restore python, numpy, torch (and CUDA) states saved by :func:`rng_state`."""
    random.setstate(state["python"])
    np.random.set_state(_numpy_state_from(state["numpy"]))  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _numpy_state() -> tuple:
    """numpy's legacy global state with its key as a tensor, so that a checkpoint holds only
    tensors and plain python values and loads with ``torch.load(weights_only=True)`` (e.g. as
    another run's ``model.init``)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002 - the global state
    return (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss))


def _numpy_state_from(saved: tuple) -> tuple:
    """The inverse of :func:`_numpy_state` (a checkpoint written before it holds the array)."""
    name, keys, pos, has_gauss, gauss = saved
    keys = keys.numpy() if isinstance(keys, torch.Tensor) else np.asarray(keys)
    return (name, keys.astype(np.uint32), pos, has_gauss, gauss)
