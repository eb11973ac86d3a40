"""Per-class weights and margins computed from the training-set class counts.

All three functions accept the counts as a list, a NumPy array or a tensor (one positive
number per class), compute in float64 and return a tensor on the CPU with one entry per class,
float32 unless ``dtype`` says otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from classaware.functional._checks import check_counts, check_real

__all__ = ["class_balanced", "inverse_frequency", "ldam_margins"]

Counts = Sequence[float] | np.ndarray | Tensor


def _normalise(w: Tensor, dtype: torch.dtype) -> Tensor:
    return (w * (w.numel() / w.sum())).to(dtype)


def class_balanced(counts: Counts, beta: float = 0.9999, *, dtype: torch.dtype = torch.float32) -> Tensor:
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
    dtype : torch.dtype, default float32

    Returns
    -------
    Tensor
        ``[C]``, summing to ``C``.

    Examples
    --------
    >>> class_balanced([1, 10], beta=0.9)
    tensor([1.7338, 0.2662])
    """
    n = check_counts(counts)
    beta = check_real(beta, "beta")
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    w = (1.0 - beta) / (1.0 - torch.pow(torch.tensor(beta, dtype=torch.float64), n))
    return _normalise(w, dtype)


def inverse_frequency(counts: Counts, power: float = 1.0, *, dtype: torch.dtype = torch.float32) -> Tensor:
    r"""Inverse-frequency weights :math:`w_j = n_j^{-p}`, normalised to sum to ``C``.

    ``power = 1`` is plain inverse frequency, ``power = 0.5`` its square root, ``power = 0``
    all ones.

    Parameters
    ----------
    counts : sequence, ndarray or Tensor
        Training samples per class, each > 0.
    power : float, default 1.0
        Exponent ``p >= 0``.
    dtype : torch.dtype, default float32
        Of the returned ``[C]`` weights (they sum to ``C``).

    Examples
    --------
    >>> inverse_frequency([10, 30])
    tensor([1.5000, 0.5000])
    """
    n = check_counts(counts)
    power = check_real(power, "power", minimum=0.0)
    return _normalise(torch.pow(n, -power), dtype)


def ldam_margins(counts: Counts, max_margin: float = 0.5, *, dtype: torch.dtype = torch.float32) -> Tensor:
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
    dtype : torch.dtype, default float32
        ``LDAMLoss`` keeps float64 margins, so a float64 input is computed exactly.

    Returns
    -------
    Tensor
        ``[C]``.

    Examples
    --------
    >>> ldam_margins([1, 16], max_margin=0.5)
    tensor([0.5000, 0.2500])
    """
    n = check_counts(counts)
    max_margin = check_real(max_margin, "max_margin", minimum=0.0)
    q = torch.pow(n, -0.25)
    return (max_margin * q / q.max()).to(dtype)
