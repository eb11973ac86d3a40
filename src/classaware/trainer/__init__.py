"""The training harness: the typed config (:mod:`.config`) and the training loop (:mod:`.loop`).

``train(config, **overrides)`` resolves and validates the configuration first (so a bad key
fails in milliseconds, before data or model), then runs the loop.

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
from classaware.trainer.config import RunConfig, dump_config, load_config

if TYPE_CHECKING:  # pragma: no cover
    from classaware.trainer.loop import Callback, RunResult

__all__ = ["Callback", "RunConfig", "RunResult", "config_source", "default_out_dir",
           "dump_config", "load_config", "train"]


def default_out_dir(cfg: RunConfig, root: str | Path = "runs") -> Path:
    """``runs/<YYYYmmdd-HHMMSS>-<loss>`` (a suffix ``-2``, ``-3``, ... if it already exists)."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{stamp}-{cfg.loss.name}"
    out, n = base, 1
    while out.exists():
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    return out


def config_source(config: Any, out: str | Path | None, resume: bool) -> Any:
    """The config to load: ``config``, or with ``resume`` and no config, ``OUT/config.toml``."""
    if resume and out is None:
        raise ConfigError("--resume needs --out RUN_DIR (out=..., the run to continue)")
    if resume and config is None:
        from classaware.trainer.checkpoint import saved_config

        return saved_config(out, "--resume")  # type: ignore[arg-type]
    return config


def train(config: RunConfig | Mapping[str, Any] | str | Path | None = None, *,
          out: str | Path | None = None, resume: bool = False, quiet: bool = False,
          **overrides: Any) -> RunResult:
    """Train one run and return its :class:`~classaware.trainer.loop.RunResult`.

    Parameters
    ----------
    config : RunConfig, dict, str or Path, optional
        A TOML file, the name of a shipped config (``"fmnist-camri"``), a dict or a resolved
        config; None = the defaults. With ``resume=True`` and no config, ``OUT/config.toml``.
    out : str or Path, optional
        The run directory; default ``runs/<date-time>-<loss>``.
    resume : bool
        Continue the run in ``out`` from its newest checkpoint that loads (a finished run is
        left as it is; with nothing to continue the run starts again).
    quiet : bool
        No progress bar and no table at the end.
    **overrides
        Section dicts (``loss={"name": "camri"}``) or dotted keys (``**{"optim.lr": 0.01}``;
        ``optim__lr=0.01`` is the same), applied in order after ``config``.  Two are objects
        instead: ``model=`` an ``nn.Module`` backbone (inputs to features ``[N, D]``; trained in
        place, recorded as ``model.name = "python"``) and ``data=`` your Datasets
        (``classaware.data.from_datasets(train, test, class_names)``) or a loaded DataBundle.

    Returns
    -------
    RunResult
        ``run_dir``, the resolved ``config``, ``final`` (the content of ``final.json``) and
        ``interrupted``.

    Raises
    ------
    ConfigError
        A bad config (before anything is trained), or ``resume`` without a run directory.

    Example
    -------
    >>> from classaware.trainer import train
    >>> r = train("fmnist-ce", out="runs/ce", train={"epochs": 1})  # doctest: +SKIP
    """
    objects = _objects(overrides)
    # Python keyword arguments cannot contain dots; `optim__lr=0.1` is accepted as `optim.lr`.
    dotted = {k.replace("__", "."): v for k, v in overrides.items() if k not in objects}
    cfg = load_config(config_source(config, out, resume), dotted)
    if out is None and int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        # every process computes its own default name; they must agree on one run directory
        raise ConfigError("under torchrun, pass --out DIR (out=...): all processes must "
                          "write to the same run directory")
    out_dir = Path(out) if out is not None else default_out_dir(cfg)
    from classaware.trainer.loop import run_training  # heavy: only after the config is valid

    return run_training(cfg, out_dir, resume=resume, quiet=quiet, **objects)


def _objects(overrides: dict[str, Any]) -> dict[str, Any]:
    """``model=`` / ``data=`` given as objects (a module, Datasets, a bundle), not sections."""
    out = {}
    if "model" in overrides and not isinstance(overrides["model"], Mapping):
        from torch import nn

        if not isinstance(overrides["model"], nn.Module):
            raise ConfigError(f"model: expected a [model] table (dict) or a torch.nn.Module "
                              f"backbone, got {type(overrides['model']).__name__}")
        out["model"] = overrides["model"]
    if "data" in overrides and not isinstance(overrides["data"], Mapping):
        from classaware.data import DataBundle
        from classaware.data.lazy import DatasetSource

        if not isinstance(overrides["data"], (DatasetSource, DataBundle)):
            raise ConfigError("data: expected a [data] table (dict), "
                              "classaware.data.from_datasets(...) or a DataBundle, got "
                              f"{type(overrides['data']).__name__}")
        out["data"] = overrides["data"]
    return out


def __getattr__(name: str) -> Any:
    if name in ("RunResult", "Callback"):
        from classaware.trainer import loop

        return getattr(loop, name)
    raise AttributeError(f"module 'classaware.trainer' has no attribute {name!r}")
