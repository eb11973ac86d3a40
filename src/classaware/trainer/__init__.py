"""The training harness: configuration (:mod:`.config`) and the training loop (:mod:`.loop`).

``train(config, **overrides)`` resolves and validates the configuration first (so a bad key
fails in milliseconds, before torch, data or model), then runs the loop.

Example
-------
>>> import classaware
>>> result = classaware.train("fmnist-camri", out="runs/camri", **{"train.epochs": 1})  # doctest: +SKIP
>>> result.final["test"]["per_class_recall"]  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from classaware.errors import ConfigError
from classaware.trainer.config import DEFAULTS, dump_config, load_config, resolve_classes

if TYPE_CHECKING:  # pragma: no cover
    from classaware.trainer.loop import RunResult

__all__ = ["DEFAULTS", "RunResult", "default_out_dir", "dump_config", "load_config",
           "resolve_classes", "train"]


def default_out_dir(cfg: Mapping[str, Any], root: str | Path = "runs") -> Path:
    """``runs/<YYYYmmdd-HHMMSS>-<loss>`` (a suffix ``-2``, ``-3``, ... if it already exists)."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{stamp}-{cfg['loss']['name']}"
    out, n = base, 1
    while out.exists():
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    return out


def _split_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    # Python keyword arguments cannot contain dots; `optim__lr=0.1` is accepted as `optim.lr`.
    return {k.replace("__", "."): v for k, v in overrides.items()}


def train(config: Mapping[str, Any] | str | Path | None = None, *, out: str | Path | None = None,
          resume: bool = False, quiet: bool = False, **overrides: Any) -> RunResult:
    """Train one run and return its :class:`~classaware.trainer.loop.RunResult`.

    Parameters
    ----------
    config : dict, str or Path, optional
        A TOML file, the name of a shipped config (``"fmnist-camri"``) or a dict; None = the
        defaults. With ``resume=True`` and no config, ``OUT/config.toml`` is used.
    out : str or Path, optional
        The run directory; default ``runs/<date-time>-<loss>``.
    resume : bool
        Continue the run in ``out`` from ``checkpoints/last.pt``.
    quiet : bool
        No progress bar and no table at the end.
    **overrides
        Section dicts (``loss={"name": "camri"}``) or dotted keys (``**{"optim.lr": 0.01}``;
        ``optim__lr=0.01`` is the same), applied in order after ``config``.

    Returns
    -------
    RunResult
        ``run_dir``, the resolved ``config`` and ``final`` (the content of ``final.json``).

    Raises
    ------
    ConfigError
        A bad config (before anything is trained), or ``resume`` without a run directory.

    Example
    -------
    >>> from classaware.trainer import train
    >>> r = train("fmnist-ce", out="runs/ce", train={"epochs": 1})  # doctest: +SKIP
    """
    if resume and out is None:
        raise ConfigError("resume: needs out=RUN_DIR (the run to continue)")
    if resume and config is None:
        saved = Path(out) / "config.toml"  # type: ignore[arg-type]
        if not saved.is_file():
            raise ConfigError(f"resume: {str(saved)!r} not found; is {str(out)!r} a run directory?")
        config = saved
    cfg = load_config(config, _split_overrides(overrides))
    if out is None and int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        # every process computes its own default name; they must agree on one run directory
        raise ConfigError("under torchrun, pass --out DIR (out=...): all processes must "
                          "write to the same run directory")
    out_dir = Path(out) if out is not None else default_out_dir(cfg)
    from classaware.trainer.loop import run_training  # heavy: only after the config is valid

    return run_training(cfg, out_dir, resume=resume, quiet=quiet)


def __getattr__(name: str) -> Any:
    if name == "RunResult":
        from classaware.trainer.loop import RunResult

        return RunResult
    raise AttributeError(f"module 'classaware.trainer' has no attribute {name!r}")
