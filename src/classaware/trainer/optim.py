"""Optimizers and learning-rate schedules of the trainer.

The learning rate is set at the start of each epoch and is constant within it (the schedule
of ``docs/config.md``; ``i`` = 0-based epoch, ``E = train.epochs``, ``W = warmup_epochs``)::

    warm(i)  = (i + 1) / W                 if i < W, else 1
    constant : lr(i) = lr * warm(i)
    step     : lr(i) = lr * warm(i) * factor ** (number of milestones m with i >= m)
    cosine   : lr(i) = lr * warm(i)                                                  if i < W
               lr(i) = min_lr + (lr - min_lr) * 1/2 * (1 + cos(pi * (i - W) / (E - W)))  otherwise

LDAM-DRW's "x0.01 after 160, x0.0001 after 180" with 5 warm-up epochs is ``warmup_epochs = 5``,
``milestones = [160, 180]``, ``factor = 0.01``: 0.02, 0.04, ..., 0.1, then 0.1 until epoch 159,
0.001 for 160-179 and 1e-5 from 180 on.

Example
-------
>>> import torch
>>> model = torch.nn.Linear(3, 2)
>>> cfg = {"name": "sgd", "lr": 0.1, "momentum": 0.9, "schedule": "step",
...        "milestones": [2], "factor": 0.1, "warmup_epochs": 0}
>>> opt = build_optimizer(model.parameters(), cfg)
>>> sched = LRSchedule(cfg, epochs=3)
>>> [round(sched.lr_at(e), 4) for e in range(3)]
[0.1, 0.1, 0.01]
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from classaware.errors import ConfigError

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine")


def build_optimizer(params: Iterable[Any], cfg: dict) -> torch.optim.Optimizer:
    """The optimizer of the ``[optim]`` section.

    ``sgd``: ``torch.optim.SGD(lr, momentum, nesterov, weight_decay)``; ``adam``:
    ``torch.optim.Adam(lr, weight_decay)`` (L2 added to the gradient); ``adamw``:
    ``torch.optim.AdamW(lr, weight_decay)`` (decoupled decay).  Optional ``betas`` for Adam/AdamW.
    """
    name = str(cfg.get("name", "sgd")).lower()
    lr = float(cfg.get("lr", 0.1))
    wd = float(cfg.get("weight_decay", 0.0))
    if not lr > 0:
        raise ConfigError(f"optim.lr must be > 0, got {lr}")
    if wd < 0:
        raise ConfigError(f"optim.weight_decay must be >= 0, got {wd}")
    if name == "sgd":
        momentum = float(cfg.get("momentum", 0.9))
        nesterov = bool(cfg.get("nesterov", False))
        if nesterov and momentum <= 0:
            raise ConfigError("optim.nesterov = true needs optim.momentum > 0")
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov,
                               weight_decay=wd)
    kw: dict[str, Any] = {"lr": lr, "weight_decay": wd}
    if "betas" in cfg and cfg["betas"] is not None:
        kw["betas"] = tuple(float(b) for b in cfg["betas"])
    if name == "adam":
        return torch.optim.Adam(params, **kw)
    if name == "adamw":
        return torch.optim.AdamW(params, **kw)
    raise ConfigError(f"optim.name must be one of {', '.join(OPTIMIZERS)}, got {name!r}")


class LRSchedule:
    """Learning rate of each 0-based epoch (see the module docstring for the formulas).

    ``apply(optimizer, epoch)`` sets the rate of every parameter group and returns it.  The
    schedule has no hidden state: a resumed run recomputes exactly the same rates from the epoch.
    """

    def __init__(self, cfg: dict, *, epochs: int) -> None:
        self.base_lr = float(cfg.get("lr", 0.05))
        self.schedule = str(cfg.get("schedule", "constant")).lower()
        self.milestones = [int(m) for m in (cfg.get("milestones") or [])]
        self.factor = float(cfg.get("factor", 0.1))
        self.warmup_epochs = int(cfg.get("warmup_epochs", 0) or 0)
        self.min_lr = float(cfg.get("min_lr", 0.0) or 0.0)
        self.epochs = int(epochs)
        if self.schedule not in SCHEDULES:
            raise ConfigError(
                f"optim.schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.epochs < 1:
            raise ConfigError(f"train.epochs must be >= 1, got {epochs}")
        if self.warmup_epochs < 0:
            raise ConfigError(f"optim.warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if self.schedule == "step" and not self.factor > 0:
            raise ConfigError(f"optim.factor must be > 0, got {self.factor}")
        if any(m < 0 for m in self.milestones):
            raise ConfigError(f"optim.milestones must be >= 0, got {self.milestones}")
        if not 0 <= self.min_lr < self.base_lr:
            raise ConfigError(f"optim.min_lr must be in [0, lr), got {self.min_lr}")

    def lr_at(self, epoch: int) -> float:
        """The learning rate of ``epoch`` (0-based)."""
        i, w = int(epoch), self.warmup_epochs
        warm = (i + 1) / w if i < w else 1.0
        if self.schedule == "constant":
            return self.base_lr * warm
        if self.schedule == "step":
            return self.base_lr * warm * self.factor ** sum(1 for m in self.milestones if i >= m)
        if i < w:  # cosine during warm-up
            return self.base_lr * warm
        span = max(self.epochs - w, 1)
        cos = 0.5 * (1.0 + math.cos(math.pi * min(i - w, span) / span))
        return self.min_lr + (self.base_lr - self.min_lr) * cos

    def apply(self, optimizer: torch.optim.Optimizer, epoch: int) -> float:
        """Set the rate of ``epoch`` on every parameter group of ``optimizer``; return it."""
        lr = self.lr_at(epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr

    def state_dict(self) -> dict:
        return {"base_lr": self.base_lr, "schedule": self.schedule, "milestones": self.milestones,
                "factor": self.factor, "warmup_epochs": self.warmup_epochs,
                "min_lr": self.min_lr, "epochs": self.epochs}
