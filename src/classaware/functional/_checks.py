"""Argument checks shared by every loss (each loss family applies weight and reduction in its own fused path).

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
COSINE_MESSAGE = (
    "input to a margin loss must be cosine similarities in [-1, 1] "
    "(use classaware.nn.CosineClassifier as the head); got values outside [-1.001, 1.001] "
    "(or NaN) in a row whose target is not ignore_index"
)

_VALUE_CHECKS = os.environ.get("CLASSAWARE_VALUE_CHECKS", "1") not in ("0", "false", "False")


def set_value_checks(enabled: bool) -> None:
    """Turn the data-dependent checks (target range, cosine range) on or off globally."""
    global _VALUE_CHECKS
    _VALUE_CHECKS = bool(enabled)


def value_checks_enabled() -> bool:
    """Whether the data-dependent checks are on (see :func:`set_value_checks`)."""
    return _VALUE_CHECKS


def _is_compiling() -> bool:
    try:
        return bool(torch.compiler.is_compiling())
    except AttributeError:  # pragma: no cover - very old torch
        return False


def eager_cpu(t: Tensor) -> bool:
    """True when ``t`` lives on the CPU and no ``torch.compile`` trace is running.

    Only then may a check read a value back to the host (``bool(tensor)``) for free.
    """
    return t.device.type == "cpu" and not _is_compiling()


def _check_value(cond: Tensor, device_type: str, message: str) -> None:
    """Raise ``ValueError(message)`` if ``cond`` (a 0-d bool tensor) is False, without host sync on CUDA."""
    if device_type != "cpu" or _is_compiling():
        torch._assert_async(cond, message)
    elif not bool(cond):
        raise ValueError(message)


def check_reduction(reduction: str) -> str:
    """Return ``reduction`` if it is one of ``"none"``, ``"mean"``, ``"sum"``; else ValueError."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def check_scale(scale: float) -> float:
    """Return ``float(scale)`` if it is a finite number > 0; else TypeError / ValueError."""
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise TypeError(f"scale must be a positive float, got {type(scale).__name__}")
    if not (scale > 0 and scale < float("inf")):
        raise ValueError(f"scale must be > 0 and finite, got {scale}")
    return float(scale)


def check_ignore_index(ignore_index: int) -> int:
    """``ignore_index`` must be a Python int (as for ``torch.nn.CrossEntropyLoss``)."""
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise TypeError(f"ignore_index must be an int, got {type(ignore_index).__name__}")
    return ignore_index


def check_input_target(input: Tensor, target: Tensor, ignore_index: int = -100) -> bool:
    """Shape, dtype and range checks for ``input`` [N, C] and ``target`` [N] (int64).

    Returns True when it is known (for free, on the CPU) that no row is ``ignore_index``, so a
    loss may skip its masking; False otherwise (some row is ignored, or it is not known).
    """
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
    if target.device != input.device:
        raise ValueError(f"target is on {target.device} but input is on {input.device}")
    check_ignore_index(ignore_index)
    num_classes = input.shape[1]
    if target.numel() == 0:
        return True
    if eager_cpu(target):
        lo, hi = (int(v) for v in torch.aminmax(target))  # one pass covers the common case
        if lo >= 0 and hi < num_classes:
            return not 0 <= ignore_index < num_classes
    if _VALUE_CHECKS:
        ok = ((target >= 0) & (target < num_classes)) | (target == ignore_index)
        _check_value(
            ok.all(),
            target.device.type,
            f"target must hold class indices in [0, {num_classes}) or ignore_index={ignore_index}",
        )
    return False


def check_weight(weight: Tensor | None, num_classes: int | None = None) -> Tensor | None:
    """Validate a per-class ``weight`` (None, or 1-D with ``num_classes`` entries) and return it as a tensor."""
    if weight is None:
        return None
    if not isinstance(weight, Tensor):
        try:
            weight = torch.as_tensor(weight, dtype=torch.float32)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(
                f"weight must be a 1-D per-class tensor of floats, got {type(weight).__name__}"
            ) from exc
    if not weight.is_floating_point():
        raise TypeError(f"weight must be a floating-point tensor, got {weight.dtype}")
    if weight.dim() != 1:
        raise ValueError(f"weight must be a 1-D per-class tensor, got shape {tuple(weight.shape)}")
    if num_classes is not None and weight.shape[0] != num_classes:
        raise ValueError(f"weight must have {num_classes} entries (one per class), got {weight.shape[0]}")
    return weight
