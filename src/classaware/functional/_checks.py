"""Argument checks and reductions shared by every loss.

Value checks (target range, cosine range) run eagerly on CPU.  On CUDA (or while
``torch.compile`` traces) they become ``torch._assert_async`` so the training step never
waits for the host.  ``set_value_checks(False)`` (or ``CLASSAWARE_VALUE_CHECKS=0``) turns the
value checks off entirely; shape/dtype checks are free and always on.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

REDUCTIONS = ("none", "mean", "sum")
COSINE_TOLERANCE = 1e-3

_VALUE_CHECKS = os.environ.get("CLASSAWARE_VALUE_CHECKS", "1") not in ("0", "false", "False")


def set_value_checks(enabled: bool) -> None:
    """Turn the data-dependent checks (target range, cosine range) on or off globally."""
    global _VALUE_CHECKS
    _VALUE_CHECKS = bool(enabled)


def value_checks_enabled() -> bool:
    return _VALUE_CHECKS


def _is_compiling() -> bool:
    try:
        return bool(torch.compiler.is_compiling())
    except AttributeError:  # pragma: no cover - very old torch
        return False


def _check_value(cond: Tensor, device_type: str, message: str) -> None:
    """Raise ``ValueError(message)`` if ``cond`` (a 0-d bool tensor) is False, without host sync on CUDA."""
    if device_type != "cpu" or _is_compiling():
        torch._assert_async(cond, message)
    elif not bool(cond):
        raise ValueError(message)


def check_reduction(reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def check_scale(scale: float) -> float:
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise TypeError(f"scale must be a positive float, got {type(scale).__name__}")
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    return float(scale)


def check_input_target(input: Tensor, target: Tensor, ignore_index: int = -100) -> None:
    """Shape, dtype and range checks for ``input`` [N, C] and ``target`` [N] (int64)."""
    if not isinstance(input, Tensor):
        raise TypeError(f"input must be a torch.Tensor, got {type(input).__name__}")
    if not isinstance(target, Tensor):
        raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
    if input.dim() != 2:
        raise ValueError(f"input must be 2-D [N, C], got shape {tuple(input.shape)}")
    if not input.is_floating_point():
        raise TypeError(f"input must be a floating-point tensor, got {input.dtype}")
    if target.dim() != 1:
        raise ValueError(f"target must be 1-D [N] class indices, got shape {tuple(target.shape)}")
    if target.dtype != torch.int64:
        raise TypeError(f"target must be int64 class indices, got {target.dtype}")
    if target.shape[0] != input.shape[0]:
        raise ValueError(
            f"target has batch size {target.shape[0]} but input has {input.shape[0]} rows"
        )
    if input.shape[1] < 1:
        raise ValueError("input must have at least one class column")
    if _VALUE_CHECKS and target.numel() > 0:
        num_classes = input.shape[1]
        ok = ((target >= 0) & (target < num_classes)) | (target == ignore_index)
        _check_value(
            ok.all(),
            target.device.type,
            f"target must hold class indices in [0, {num_classes}) or ignore_index={ignore_index}",
        )


def check_cosine(input: Tensor, target: Tensor | None = None, ignore_index: int = -100) -> None:
    """Margin losses take cosines in [-1, 1] (a small tolerance is allowed)."""
    if not _VALUE_CHECKS or input.numel() == 0:
        return
    finite_rows = input
    if target is not None:
        # ignored rows may hold anything (inf/NaN included)
        finite_rows = torch.where((target != ignore_index)[:, None], input, 0)
    bound = 1.0 + COSINE_TOLERANCE
    _check_value(
        (finite_rows.abs() <= bound).all(),
        input.device.type,
        "input to a margin loss must be cosine similarities in [-1, 1] "
        "(use classaware.nn.CosineClassifier as the head); got values outside [-1.001, 1.001]",
    )


def check_weight(weight: Tensor | None, num_classes: int | None = None) -> Tensor | None:
    if weight is None:
        return None
    if not isinstance(weight, Tensor):
        weight = torch.as_tensor(weight, dtype=torch.float32)
    if weight.dim() != 1:
        raise ValueError(f"weight must be a 1-D per-class tensor, got shape {tuple(weight.shape)}")
    if num_classes is not None and weight.shape[0] != num_classes:
        raise ValueError(f"weight must have {num_classes} entries (one per class), got {weight.shape[0]}")
    return weight


def reduce_loss(
    loss: Tensor,
    target: Tensor,
    reduction: str,
    weight: Tensor | None = None,
    ignore_index: int = -100,
) -> Tensor:
    """Apply per-class ``weight`` and ``reduction`` to a per-sample ``loss`` [N].

    Follows ``torch.nn.CrossEntropyLoss``: the weighted mean divides by ``sum(weight[target])``
    over non-ignored rows.  Ignored rows give exactly 0 (callers must already have made their
    per-sample loss finite there).  An all-ignored batch gives 0 under "mean", not NaN.
    """
    valid = target != ignore_index
    if weight is not None:
        safe_target = torch.where(valid, target, 0)
        w = weight.to(device=loss.device, dtype=loss.dtype)[safe_target] * valid.to(loss.dtype)
    else:
        w = valid.to(loss.dtype)
    loss = torch.where(valid, loss * w, torch.zeros_like(loss))
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    denom = w.sum()
    return loss.sum() / torch.where(denom > 0, denom, torch.ones_like(denom))
