"""Argument checks shared by every loss, one validator per argument.

Shape and type checks are free and always on.  Value checks (target range, cosine range,
per-class constants) read a value back to the host: on the eager CPU that is free and they
raise ``ValueError``; on CUDA, or while ``torch.compile`` traces, they become
``torch._assert_async`` (a device-side assert: the training step never waits for the host, and
a failure surfaces as a CUDA error carrying the same message).  ``set_value_checks(False)`` (or
``CLASSAWARE_VALUE_CHECKS=0``) turns the value checks off.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import torch
from torch import Tensor

REDUCTIONS = ("none", "mean", "sum")

_VALUE_CHECKS = os.environ.get("CLASSAWARE_VALUE_CHECKS", "1") not in ("0", "false", "False")


def set_value_checks(enabled: bool) -> None:
    """Turn the data-dependent checks (target range, cosine range, weight values) on or off."""
    global _VALUE_CHECKS
    _VALUE_CHECKS = bool(enabled)


def value_checks_enabled() -> bool:
    """Whether the data-dependent checks are on (see :func:`set_value_checks`)."""
    return _VALUE_CHECKS


def eager_cpu(t: Tensor) -> bool:
    """True when ``t`` lives on the CPU and no ``torch.compile`` trace is running.

    Only then may a check read a value back to the host (``bool(tensor)``) for free.
    """
    return t.device.type == "cpu" and not torch.compiler.is_compiling()


def check_value(cond: Tensor, message: str) -> None:
    """Raise ``ValueError(message)`` unless the 0-d bool ``cond`` is True (no host sync off the CPU).

    Skipped when the value checks are off.  Off the eager CPU this is the device-side
    ``torch._assert_async``, the one private torch API the losses use.
    """
    if not _VALUE_CHECKS:
        return
    if cond.device.type != "cpu" or torch.compiler.is_compiling():
        torch._assert_async(cond, message)
    elif not bool(cond):
        raise ValueError(message)


def check_reduction(reduction: str) -> str:
    """Return ``reduction`` if it is one of ``"none"``, ``"mean"``, ``"sum"``; else ValueError."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def check_ignore_index(ignore_index: int) -> int:
    """``ignore_index`` must be a Python int (as for ``torch.nn.CrossEntropyLoss``)."""
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise TypeError(f"ignore_index must be an int, got {type(ignore_index).__name__}")
    return ignore_index


def check_real(
    value: object, name: str, *, minimum: float | None = None, maximum: float | None = None
) -> float:
    """``float(value)`` for a finite real number in ``[minimum, maximum]``; else TypeError / ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_scale(scale: float) -> float:
    """``float(scale)`` for a finite number > 0; else TypeError / ValueError."""
    scale = check_real(scale, "scale")
    if scale <= 0:
        raise ValueError(f"scale must be > 0 and finite, got {scale}")
    return scale


def check_bool(value: object, name: str) -> bool:
    """``value`` if it is a bool; else TypeError."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


def as_float_tensor(value: object, name: str) -> Tensor:
    """A floating tensor from a tensor or a (nested) sequence of numbers; TypeError otherwise.

    Python numbers become float64, so a float64 computation uses them exactly; every loss casts
    its per-class constants to the compute dtype at use.
    """
    if isinstance(value, Tensor):
        if not value.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {value.dtype}")
        return value
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a tensor or a sequence of numbers, got {type(value).__name__}")
    try:
        return torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(f"{name} must hold numbers, got {value!r}") from exc


def check_input_target(input: Tensor, target: Tensor, ignore_index: int = -100) -> bool:
    """Shape, dtype and range checks for ``input`` [N, C] (C >= 2) and ``target`` [N] (int64).

    Returns True when it is known (for free, on the eager CPU) that no row is ``ignore_index``,
    so a loss may skip its masking; False otherwise (some row is ignored, or it is not known).
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
    num_classes = input.shape[1]
    if num_classes < 2:
        raise ValueError(
            f"input must have at least 2 classes (columns), got shape {tuple(input.shape)}: "
            "with one class every loss is 0 and nothing is learned"
        )
    if target.device != input.device:
        raise ValueError(f"target is on {target.device} but input is on {input.device}")
    check_ignore_index(ignore_index)
    if target.numel() == 0:
        return True
    if eager_cpu(target):
        lo, hi = (int(v) for v in torch.aminmax(target))  # one pass covers the common case
        if lo >= 0 and hi < num_classes:
            return not 0 <= ignore_index < num_classes
    ok = ((target >= 0) & (target < num_classes)) | (target == ignore_index)
    check_value(
        ok.all(),
        f"target must hold class indices in [0, {num_classes}) or ignore_index={ignore_index}",
    )
    return False


def check_weight(weight: Tensor | Sequence[float] | None, num_classes: int | None = None) -> Tensor | None:
    """Validate a per-class ``weight``: None, or 1-D, ``num_classes`` entries, finite, >= 0, not all 0.

    A sequence becomes a float64 tensor.  The values are checked as the other value checks are
    (host-free off the CPU; skipped with ``set_value_checks(False)``).
    """
    if weight is None:
        return None
    weight = as_float_tensor(weight, "weight")
    if weight.dim() != 1:
        raise ValueError(f"weight must be a 1-D per-class tensor, got shape {tuple(weight.shape)}")
    if num_classes is not None and weight.shape[0] != num_classes:
        raise ValueError(f"weight must have {num_classes} entries (one per class), got {weight.shape[0]}")
    if weight.numel() > 0:
        lo, hi = torch.aminmax(weight.detach())  # NaN propagates, so it fails both tests
        check_value(
            (lo >= 0) & (hi > 0) & (hi < math.inf),
            "weight must be finite and >= 0 with at least one entry > 0 (a negative, NaN or "
            "infinite class weight, or all zeros, has no weighted mean)",
        )
    return weight


def check_counts(counts: object, name: str = "counts", num_classes: int | None = None) -> Tensor:
    """Per-class training counts (a sequence, NumPy array or tensor) as a float64 CPU tensor.

    TypeError for a non-numeric container; ValueError for anything not 1-D, an empty sequence,
    a count that is zero, negative or not finite, or (given ``num_classes``) the wrong length.
    """
    if isinstance(counts, Tensor):
        if counts.dtype == torch.bool or counts.is_complex():
            raise TypeError(f"{name} must hold real numbers (one count per class), got {counts.dtype}")
        t = counts.detach().to("cpu", torch.float64)
    else:
        if isinstance(counts, (str, bytes)) or not hasattr(counts, "__len__"):
            raise TypeError(
                f"{name} must be a sequence, NumPy array or tensor of per-class counts, "
                f"got {type(counts).__name__}"
            )
        try:
            t = torch.as_tensor(counts)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(f"{name} must hold real numbers (one count per class), got {counts!r}") from exc
        if t.dtype == torch.bool or not (t.is_floating_point() or t.dtype in _INT_DTYPES):
            raise TypeError(f"{name} must hold real numbers (one count per class), got {t.dtype}")
        t = t.to(torch.float64)
    if t.dim() != 1:
        raise ValueError(f"{name} must be 1-D (one count per class), got shape {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"{name} must have at least one class, got an empty sequence")
    if num_classes is not None and t.numel() != num_classes:
        raise ValueError(f"{name} has {t.numel()} entries but the input has {num_classes} classes")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be finite, got {t.tolist()}")
    if not bool((t > 0).all()):
        bad = [i for i, v in enumerate(t.tolist()) if v <= 0]
        raise ValueError(
            f"{name} must be > 0 for every class (a class with no training sample has no "
            f"weight, margin or prior); got {t.tolist()} (non-positive at class indices {bad})"
        )
    return t


_INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
