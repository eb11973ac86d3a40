"""The optimizer and the learning-rate schedule of the trainer (the schedule's one home).

The learning rate is set at the start of each epoch and is constant within it (the schedule
of ``docs/config.md``; ``i`` = 0-based epoch, ``E = train.epochs``, ``W = warmup_epochs``)::

    warm(i)  = (i + 1) / W                 if i < W, else 1
    constant : lr(i) = lr * warm(i)
    step     : lr(i) = lr * warm(i) * factor ** (number of milestones m with i >= m)
    cosine   : lr(i) = lr * warm(i)                                                  if i < W
               lr(i) = min_lr + (lr - min_lr) * 1/2 * (1 + cos(pi * (i - W) / (E - W)))  otherwise

(for cosine, ``i - W`` is capped at ``E - W``, so an epoch past the end keeps ``min_lr``).
LDAM-DRW's "x0.01 after 160, x0.0001 after 180" with 5 warm-up epochs is ``warmup_epochs = 5``,
``milestones = [160, 180]``, ``factor = 0.01``: 0.02, 0.04, ..., 0.1, then 0.1 until epoch 159,
0.001 for 160-179 and 1e-5 from 180 on.  The schedule has no state: a resumed run recomputes
exactly the same rates from the epoch.

Example
-------
>>> from classaware.trainer.config import load_config
>>> cfg = load_config("ldam-drw-cifar10-lt")
>>> [round(lr_at(cfg.optim, cfg.train.epochs, i), 6) for i in (0, 4, 159, 160, 179, 180)]
[0.02, 0.1, 0.1, 0.001, 0.001, 1e-05]
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:  # pragma: no cover
    from classaware.trainer.config import OptimConfig

__all__ = ["build_optimizer", "lr_at", "set_lr"]


def build_optimizer(params: Iterable[Any], optim: OptimConfig) -> torch.optim.Optimizer:
    """The optimizer of the ``[optim]`` section.

    ``sgd``: ``torch.optim.SGD(lr, momentum, nesterov, weight_decay)``; ``adam``:
    ``torch.optim.Adam(lr, betas, weight_decay)`` (L2 added to the gradient); ``adamw``:
    ``torch.optim.AdamW(lr, betas, weight_decay)`` (decoupled decay).
    """
    if optim.name == "sgd":
        return torch.optim.SGD(params, lr=optim.lr, momentum=optim.momentum,
                               nesterov=optim.nesterov, weight_decay=optim.weight_decay)
    cls = torch.optim.Adam if optim.name == "adam" else torch.optim.AdamW
    return cls(params, lr=optim.lr, betas=optim.betas, weight_decay=optim.weight_decay)


def lr_at(optim: OptimConfig, epochs: int, epoch: int) -> float:
    """The learning rate of 0-based ``epoch`` of an ``epochs``-epoch run (module docstring)."""
    i, w, base = int(epoch), optim.warmup_epochs, optim.lr
    warm = (i + 1) / w if i < w else 1.0
    if optim.schedule == "constant":
        return base * warm
    if optim.schedule == "step":
        return base * warm * optim.factor ** sum(1 for m in optim.milestones if i >= m)
    if i < w:  # cosine during warm-up
        return base * warm
    span = max(epochs - w, 1)
    cos = 0.5 * (1.0 + math.cos(math.pi * min(i - w, span) / span))
    return optim.min_lr + (base - optim.min_lr) * cos


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> float:
    """Set ``lr`` on every parameter group of ``optimizer``; return it."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr
