"""Per-class weights and margins computed from the training-set class counts.

All three functions accept the counts as a list, a NumPy array or a tensor (one positive
number per class) and return a float32 tensor on the CPU with one entry per class.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["class_balanced", "inverse_frequency", "ldam_margins"]

Counts = Sequence[float] | np.ndarray | Tensor


def as_counts(counts: Counts, name: str = "counts") -> Tensor:
    """Validate per-class counts and return them as a float64 CPU tensor.

    Raises TypeError for a non-numeric container and ValueError for a count that is zero,
    negative or not finite, for an empty sequence, or for anything not 1-D.
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
        arr = np.asarray(counts)
        if arr.dtype == np.bool_ or not (
            np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
        ):
            raise TypeError(f"{name} must hold real numbers (one count per class), got {arr.dtype}")
        t = torch.from_numpy(arr.astype(np.float64))
    if t.dim() != 1:
        raise ValueError(f"{name} must be 1-D (one count per class), got shape {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"{name} must have at least one class, got an empty sequence")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be finite, got {t.tolist()}")
    if not bool((t > 0).all()):
        bad = [i for i, v in enumerate(t.tolist()) if v <= 0]
        raise ValueError(
            f"{name} must be > 0 for every class (a class with no training sample has no "
            f"weight or margin); got {t.tolist()} (non-positive at class indices {bad})"
        )
    return t


def _check_real(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def _normalise(w: Tensor) -> Tensor:
    return (w * (w.numel() / w.sum())).to(torch.float32)


def class_balanced(counts: Counts, beta: float = 0.9999) -> Tensor:
    r"""Class-balanced weights of Cui et al. (CVPR 2019), as used by LDAM-DRW.

    .. math:: w_j = \frac{1 - \beta}{1 - \beta^{n_j}}, \qquad
              w \leftarrow w \cdot \frac{C}{\sum_k w_k}

    i.e. the inverse of the "effective number" of samples of class ``j``, normalised so the
    ``C`` weights sum to ``C``.  ``beta = 0`` gives all ones; ``beta -> 1`` tends to inverse
    frequency.  ``beta = 0.9999`` is the value of the LDAM-DRW release (Cao et al., NeurIPS 2019),
    whose deferred re-weighting switches to these weights late in training.

    Parameters
    ----------
    counts : sequence, ndarray or Tensor
        Training samples per class, each > 0.
    beta : float, default 0.9999
        In ``[0, 1)``.

    Returns
    -------
    Tensor
        float32 ``[C]``, summing to ``C``.

    Examples
    --------
    >>> class_balanced([1, 10], beta=0.9)
    tensor([1.7338, 0.2662])
    """
    n = as_counts(counts)
    beta = _check_real(beta, "beta")
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    w = (1.0 - beta) / (1.0 - torch.pow(torch.tensor(beta, dtype=torch.float64), n))
    return _normalise(w)


def inverse_frequency(counts: Counts, power: float = 1.0) -> Tensor:
    r"""Inverse-frequency weights :math:`w_j = n_j^{-p}`, normalised to sum to ``C``.

    ``power = 1`` is plain inverse frequency, ``power = 0.5`` its square root, ``power = 0``
    all ones.

    Parameters
    ----------
    counts : sequence, ndarray or Tensor
        Training samples per class, each > 0.
    power : float, default 1.0
        Exponent ``p >= 0``.

    Returns
    -------
    Tensor
        float32 ``[C]``, summing to ``C``.

    Examples
    --------
    >>> inverse_frequency([10, 30])
    tensor([1.5000, 0.5000])
    """
    n = as_counts(counts)
    power = _check_real(power, "power")
    if power < 0:
        raise ValueError(f"power must be >= 0, got {power}")
    return _normalise(torch.pow(n, -power))


def ldam_margins(counts: Counts, max_margin: float = 0.5) -> Tensor:
    r"""LDAM's per-class margins (Cao et al., NeurIPS 2019).

    .. math:: \Delta_j = \text{max\_margin}\cdot
              \frac{n_j^{-1/4}}{\max_k n_k^{-1/4}}

    The rarest class gets ``max_margin``; a class ``16x`` as frequent gets half of it.

    Parameters
    ----------
    counts : sequence, ndarray or Tensor
        Training samples per class, each > 0.
    max_margin : float, default 0.5
        The margin of the rarest class, ``>= 0`` (0 turns every margin off).

    Returns
    -------
    Tensor
        float32 ``[C]``.

    Examples
    --------
    >>> ldam_margins([1, 16], max_margin=0.5)
    tensor([0.5000, 0.2500])
    """
    n = as_counts(counts)
    max_margin = _check_real(max_margin, "max_margin")
    if max_margin < 0:
        raise ValueError(f"max_margin must be >= 0, got {max_margin}")
    q = torch.pow(n, -0.25)
    return (max_margin * q / q.max()).to(torch.float32)
