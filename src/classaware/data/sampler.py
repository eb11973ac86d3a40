"""Class re-sampling of the training order: ``data.sampler`` and deferred re-sampling (DRS).

An epoch visits ``N`` training samples (``N`` = the training-set size, so an epoch has the same
number of steps whatever the sampler).  With ``data.sampler``:

* ``"none"``: a random permutation of the training set (every sample once);
* ``"class_balanced"``: ``N`` draws with replacement, class ``j`` with probability
  ``p_j = 1 / C'`` (``C'`` the number of classes that have training samples), then a sample of
  that class uniformly: per sample ``p_i = p_{y_i} / n_{y_i}`` — the re-sampling of the LDAM-DRW
  release (its ``ImbalancedDatasetSampler``, per-sample weight ``1 / n_{y_i}``);
* ``"sqrt"``: the same with ``p_j ∝ √n_j`` (square-root sampling).

``train.drs_epoch = E`` defers it (the LDAM-DRW paper's DRS): epochs ``0 .. E-1`` use ``"none"``,
epochs from ``E`` on the chosen sampler.

Draws come from the run's data generator (seeded per epoch), so the order is the same for the
same seed, and every DDP rank draws the same order and trains its shard of each batch.

Example
-------
>>> import torch
>>> class_probabilities([90, 9, 1], "sqrt").round(decimals=3).tolist()
[0.703, 0.222, 0.074]
>>> y = torch.tensor([0] * 90 + [1] * 9 + [2])
>>> order = epoch_order(y, 3, "class_balanced", torch.Generator().manual_seed(0))
>>> order.shape, torch.bincount(y[order], minlength=3).tolist()
(torch.Size([100]), [32, 39, 29])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from classaware.data.config import SAMPLERS

__all__ = ["SAMPLERS", "class_probabilities", "epoch_order", "sampler_at"]


def sampler_at(sampler: str, drs_epoch: int | None, epoch: int) -> str:
    """The sampler in use at 0-based ``epoch``: ``"none"`` before ``drs_epoch``, else ``sampler``."""
    return "none" if drs_epoch is not None and epoch < drs_epoch else sampler


def class_probabilities(counts: Sequence[int] | Tensor, sampler: str) -> Tensor:
    """Probability of drawing each class (float64, sums to 1; 0 for an empty class).

    ``"class_balanced"``: ``1 / C'`` for the ``C'`` non-empty classes; ``"sqrt"``:
    ``√n_j / Σ_k √n_k``; ``"none"``: ``n_j / N`` (the training frequencies).
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    n = torch.as_tensor(counts, dtype=torch.float64)
    if n.dim() != 1 or (n < 0).any() or n.sum() <= 0:
        raise ValueError(f"counts must be non-negative per-class counts, not all 0, got "
                         f"{n.tolist()}")
    w = {"none": n, "class_balanced": (n > 0).double(), "sqrt": n.sqrt()}[sampler]
    return w / w.sum()


def epoch_order(labels: Tensor, num_classes: int, sampler: str,
                generator: torch.Generator) -> Tensor:
    """The training order of one epoch: ``len(labels)`` indices into the training set.

    ``"none"``: ``torch.randperm`` (one draw from ``generator``); otherwise a class per draw
    (``torch.multinomial`` over :func:`class_probabilities`, with replacement) and a uniform
    sample within it, so per sample ``p_i = p_{y_i} / n_{y_i}``.  On ``generator``'s device.
    """
    n = labels.shape[0]
    device = generator.device
    if sampler == "none":
        return torch.randperm(n, generator=generator, device=device)
    y = labels.to(device)
    counts = torch.bincount(y, minlength=num_classes)
    p = class_probabilities(counts.cpu(), sampler).to(device)
    by_class = torch.argsort(y, stable=True)               # sample indices grouped by class
    start = torch.cumsum(counts, 0) - counts                # first position of each class
    cls = torch.multinomial(p, n, replacement=True, generator=generator)
    u = torch.rand(n, generator=generator, device=device, dtype=torch.float64)
    within = (u * counts[cls]).long().clamp_max(counts[cls] - 1)
    return by_class[start[cls] + within]
