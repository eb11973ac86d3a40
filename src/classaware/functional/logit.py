"""Losses on logits: cross entropy, SimLoss, Complement CE, focal loss, logit adjustment.

Every function takes ``input`` [N, C] (logits, C >= 2, any floating dtype; float16/bfloat16
are computed in float32) and ``target`` [N] (int64 class indices) and follows
``torch.nn.CrossEntropyLoss`` for ``weight`` / ``reduction`` / ``ignore_index``, with two fixes:
a mean over nothing (an all-ignored batch) is 0, not NaN, and ignored rows contribute zero loss
*and zero gradient* even when they hold inf/NaN.  Per-class constants (weight, counts, S) given
as Python numbers are kept in float64 and cast to the compute dtype, so a float64 input is
computed in float64 throughout.

Each loss is its formula in plain torch, differentiated by autograd: no custom backward is
needed for a finite gradient (see the numerics notes of :func:`focal_loss`,
:func:`complement_cross_entropy` and :func:`simloss`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from classaware.functional._ce import Prepared, prepare, reduce_rows
from classaware.functional._ce import cross_entropy as _cross_entropy
from classaware.functional._checks import (
    as_float_tensor,
    check_counts,
    check_real,
    check_value,
)

__all__ = [
    "complement_cross_entropy",
    "cross_entropy",
    "focal_loss",
    "logit_adjusted_loss",
    "simloss",
]


def cross_entropy(
    input: Tensor,
    target: Tensor,
    *,
    weight: Tensor | Sequence[float] | None = None,
    reduction: str = "mean",
    ignore_index: int = -100,
) -> Tensor:
    r"""Cross entropy on logits, as ``F.cross_entropy`` with safer ignore handling.

    .. math:: \ell_i = -\log \mathrm{softmax}(x_i)_{y_i} = \operatorname{logsumexp}(x_i) - x_{i,y_i}

    Parameters
    ----------
    input : Tensor [N, C]
        Logits, C >= 2.  float16/bfloat16 are computed in float32.
    target : Tensor [N], int64
        Class indices in ``[0, C)`` or ``ignore_index``.
    weight : Tensor [C], optional
        Per-class weight, finite and >= 0, not all 0; the weighted mean divides by
        ``sum(weight[target])`` (PyTorch's rule).
    reduction : {"mean", "sum", "none"}
    ignore_index : int, default -100
        Rows with this target contribute zero loss and zero gradient, even if they hold
        inf/NaN; an all-ignored batch gives 0 under "mean" (``F.cross_entropy`` gives NaN).

    Examples
    --------
    >>> import torch
    >>> from classaware.functional import cross_entropy
    >>> cross_entropy(torch.zeros(2, 4), torch.tensor([0, 3]))
    tensor(1.3863)
    """
    prep = prepare(input, target, weight, reduction, ignore_index)
    return _cross_entropy(prep.x, prep)


def logit_adjusted_loss(
    input: Tensor,
    target: Tensor,
    class_counts: Tensor | Sequence[float],
    tau: float = 1.0,
    *,
    weight: Tensor | Sequence[float] | None = None,
    reduction: str = "mean",
    ignore_index: int = -100,
) -> Tensor:
    r"""Logit-adjusted cross entropy (Menon et al., ICLR 2021); ``tau=1`` is balanced softmax.

    .. math:: \ell_i = -\log \mathrm{softmax}(x_i + \tau \log \pi)_{y_i},
              \qquad \pi_j = n_j / \textstyle\sum_k n_k

    The prior lives only in the loss: at test time predict with the model's own logits
    (``argmax x``), which is then Bayes-optimal for the *balanced* error.  With ``tau=1`` this is
    the balanced softmax of Ren et al. (NeurIPS 2020).  ``tau=0`` is plain cross entropy.

    Parameters
    ----------
    input : Tensor [N, C]
        Logits.
    target : Tensor [N], int64
    class_counts : sequence of C positive numbers
        Training-set count of each class (only their ratios matter).
    tau : float, default 1.0
        Strength of the adjustment (>= 0; the paper's default is 1).
    weight, reduction, ignore_index
        As :func:`cross_entropy`.

    Examples
    --------
    >>> import torch
    >>> from classaware.functional import logit_adjusted_loss
    >>> x, y = torch.randn(8, 3), torch.randint(0, 3, (8,))
    >>> loss = logit_adjusted_loss(x, y, class_counts=[500, 50, 5], tau=1.0)
    """
    tau = check_real(tau, "tau", minimum=0.0)
    prep = prepare(input, target, weight, reduction, ignore_index)
    prior = log_prior(check_counts(class_counts, "class_counts", prep.x.shape[1]))
    return _logit_adjusted(prep, tau * prior)


def log_prior(counts: Tensor) -> Tensor:
    """``log(n_j / sum_k n_k)`` of validated counts, in their dtype (float64)."""
    return (counts / counts.sum()).log()


def _logit_adjusted(prep: Prepared, adjustment: Tensor) -> Tensor:
    return _cross_entropy(prep.x + adjustment.to(prep.x), prep)


def focal_loss(
    input: Tensor,
    target: Tensor,
    gamma: float = 2.0,
    *,
    weight: Tensor | Sequence[float] | None = None,
    reduction: str = "mean",
    ignore_index: int = -100,
) -> Tensor:
    r"""Focal loss (Lin et al., ICCV 2017) on logits.

    .. math:: \ell_i = -w_{y_i} (1 - p_{i,y_i})^\gamma \log p_{i,y_i},
              \qquad p_i = \mathrm{softmax}(x_i)

    The paper's per-class ``alpha`` is ``weight`` here; with ``reduction="mean"`` the weighted
    sum is divided by ``sum(weight[target])`` as in ``torch.nn.CrossEntropyLoss`` (the paper
    divides by N).  ``gamma=0`` is cross entropy.

    **Numerics.**  With :math:`n = -\log p_y` and :math:`u = 1 - p_y = -\mathrm{expm1}(-n)`
    the row loss is :math:`u^\gamma n`, differentiated by autograd.  At ``p_y = 1`` (``u = 0``)
    the derivative :math:`\gamma u^{\gamma-1}` is ``inf`` for ``gamma < 1``; the modulator is
    ``where(u > 0, u, 1) ** gamma`` masked to 0 there, so the gradient is 0, not NaN.  Otherwise
    ``u >= eps/2`` (``log_softmax`` rounds ``n`` to 0 below that), so it stays finite.

    Parameters
    ----------
    input : Tensor [N, C]
        Logits.
    target : Tensor [N], int64
    gamma : float, default 2.0
        Focusing parameter, >= 0 (the paper's default is 2).
    weight, reduction, ignore_index
        As :func:`cross_entropy`.

    Examples
    --------
    >>> import torch
    >>> from classaware.functional import focal_loss
    >>> loss = focal_loss(torch.randn(8, 5), torch.randint(0, 5, (8,)), gamma=2.0)
    """
    gamma = check_real(gamma, "gamma", minimum=0.0)
    return _focal(prepare(input, target, weight, reduction, ignore_index), gamma)


def _focal(prep: Prepared, gamma: float) -> Tensor:
    if gamma == 0.0:
        return _cross_entropy(prep.x, prep)
    n = -torch.log_softmax(prep.x, 1).gather(1, prep.target[:, None]).squeeze(1)  # -log p_y
    u = -torch.expm1(-n)  # 1 - p_y
    pos = u > 0
    u_safe = torch.where(pos, u, 1.0)  # so that u^(gamma - 1) is never 0^(gamma - 1)
    return reduce_rows(torch.where(pos, u_safe.pow(gamma), 0.0) * n, prep)


def complement_cross_entropy(
    input: Tensor,
    target: Tensor,
    gamma: float = -1.0,
    *,
    weight: Tensor | Sequence[float] | None = None,
    reduction: str = "mean",
    ignore_index: int = -100,
) -> Tensor:
    r"""Complement cross entropy (Kim, Lee & Jeon, Pattern Recognition Letters 2021; COT/CCE).

    .. math::
        \ell_i = \mathrm{CE}_i + \frac{\gamma}{K - 1} H_i, \qquad
        H_i = -\sum_{j \ne y_i} q_{ij} \log q_{ij}, \qquad
        q_{ij} = \frac{p_{ij}}{1 - p_{i,y_i}}

    ``H`` is the entropy (>= 0) of the predicted distribution over the *wrong* classes.
    ``gamma = -1`` (the paper's value) rewards a flat wrong-class distribution, which is what
    the paper argues helps the minority classes; ``gamma = 0`` is cross entropy; ``weight``
    multiplies the whole per-sample loss.

    **Numerics.**  ``q`` is the softmax of the logits with the target's set to ``-inf``, so
    with :math:`L = \operatorname{logsumexp}_{j \ne y} x_j`:
    :math:`H = L - \sum_j q_j x_j` and :math:`\mathrm{CE} = \mathrm{softplus}(L - x_y)`;
    nothing divides by :math:`1 - p_y`, so ``p_y -> 1`` gives no NaN (plain autograd).

    **Released code.**  The authors' PyTorch code returns ``CE - b * sum(q log q) / (N K)``, i.e.
    ``CE + b * H / K`` (balancing factor ``b = 1``): the entropy is *minimised*, which sharpens
    the wrong-class distribution, the opposite of the paper.  Setting
    ``gamma / (K - 1) = b / K``, i.e. ``gamma = b * (K - 1) / K`` (``(K - 1) / K`` for ``b = 1``),
    reproduces it here (up to the released code's 1e-7/1e-10 epsilons).

    Parameters
    ----------
    input : Tensor [N, K]
        Logits, K >= 2.
    target : Tensor [N], int64
    gamma : float, default -1.0
        Weight of the complement entropy, scaled by 1/(K - 1).
    weight, reduction, ignore_index
        As :func:`cross_entropy`.

    Examples
    --------
    >>> import torch
    >>> from classaware.functional import complement_cross_entropy
    >>> x, y = torch.randn(8, 10), torch.randint(0, 10, (8,))
    >>> paper = complement_cross_entropy(x, y)                      # gamma = -1
    >>> released = complement_cross_entropy(x, y, gamma=9 / 10)     # the authors' code, K = 10
    """
    gamma = check_real(gamma, "gamma")
    return _complement(prepare(input, target, weight, reduction, ignore_index), gamma)


def _complement(prep: Prepared, gamma: float) -> Tensor:
    x, y = prep.x, prep.target[:, None]
    if gamma == 0.0:
        return _cross_entropy(x, prep)
    others = x.scatter(1, y, float("-inf"))  # the wrong classes
    q = torch.softmax(others, 1)  # q_y = 0
    k = others.argmax(1, keepdim=True)  # q_k >= 1/(K-1), so log q_k is exact
    lse = (others.gather(1, k) - q.gather(1, k).log()).squeeze(1)  # logsumexp_{j != y} x_j
    h = lse - torch.linalg.vecdot(q, x)
    rows = F.softplus(lse - x.gather(1, y).squeeze(1)) + gamma / (x.shape[1] - 1) * h
    return reduce_rows(rows, prep)


def check_similarity(similarity: object, num_classes: int | None = None) -> Tensor:
    """Validate a class-similarity matrix: C x C, entries in [0, 1], ones on the diagonal.

    Returns it as a floating tensor (a nested sequence becomes float64).
    """
    if isinstance(similarity, Tensor) and not similarity.is_floating_point():
        similarity = similarity.double()  # an integer (0/1) matrix
    sim = as_float_tensor(similarity, "similarity")
    if sim.dim() != 2 or sim.shape[0] != sim.shape[1]:
        raise ValueError(f"similarity must be a square C x C matrix, got shape {tuple(sim.shape)}")
    if num_classes is not None and sim.shape[0] != num_classes:
        raise ValueError(
            f"similarity must be {num_classes} x {num_classes} to match the input's "
            f"{num_classes} classes, got {tuple(sim.shape)}"
        )
    if sim.numel() > 0:
        s = sim.detach()
        check_value(((s >= 0) & (s <= 1)).all(), "similarity entries must lie in [0, 1] (and not be NaN)")
        check_value((s.diagonal() == 1).all(), "similarity must have ones on its diagonal (S[i, i] = 1)")
    return sim


def _simloss(prep: Prepared, log_similarity: Tensor) -> Tensor:
    """``-log sum_j S[y, j] p_j = CE(x, y) - CE(x + log S[y], y)`` (both fused cross entropies)."""
    x, y = prep.x, prep.target
    z = x + log_similarity.to(x)[y]  # z_y = x_y as S[y, y] = 1; -inf where S = 0
    rows = F.cross_entropy(x, y, reduction="none") - F.cross_entropy(z, y, reduction="none")
    return reduce_rows(rows, prep)


def simloss(
    input: Tensor,
    target: Tensor,
    similarity: Tensor | Sequence[Sequence[float]],
    *,
    reduction: str = "mean",
    ignore_index: int = -100,
) -> Tensor:
    r"""SimLoss (Kobs et al., 2020): cross entropy that gives credit to similar classes.

    .. math::
        \ell_i = -\log \sum_j S_{y_i j}\, p_{ij}
               = -\operatorname{logsumexp}_j\big(\log \mathrm{softmax}(x_i)_j + \log S_{y_i j}\big)

    computed in log space, never as the log of a sum of probabilities, so it stays finite when
    every acceptable class has an underflowing probability: as :math:`S_{yy} = 1`,
    :math:`\ell_i = \mathrm{CE}(x_i, y_i) - \mathrm{CE}(x_i + \log S_{y_i}, y_i)`, two fused
    cross entropies (``log 0 = -inf`` entries drop out of the second softmax with zero, not NaN,
    gradient; plain autograd).  The difference carries a rounding error of about
    ``eps * |x_y - max_j x_j|``.  ``S = I`` gives cross entropy.  Build ``S`` with
    :mod:`classaware.similarity` (``ordinal``, ``from_groups``, ``from_embeddings``).

    **Released code.**  The authors' code works on *probabilities* (softmax outputs) and
    computes ``mean(-log(sum(S[y] * p) + 1e-8))``: the epsilon bounds every sample's loss by
    ``-log(1e-8) ~ 18.4`` and flattens its gradient once ``sum(S[y] * p)`` falls below ~1e-8.
    This takes logits, works in log space and needs no epsilon.

    Parameters
    ----------
    input : Tensor [N, C]
        Logits.
    target : Tensor [N], int64
    similarity : Tensor [C, C]
        ``S[i, j]`` in [0, 1], ones on the diagonal (validated on every call; the
        :class:`~classaware.losses.SimLoss` module validates once at construction).
    reduction, ignore_index
        As :func:`cross_entropy` (SimLoss takes no per-class weight).

    Examples
    --------
    >>> import torch
    >>> from classaware import similarity
    >>> from classaware.functional import simloss
    >>> S = similarity.ordinal(5, reduction_factor=0.5)
    >>> loss = simloss(torch.randn(8, 5), torch.randint(0, 5, (8,)), S)
    """
    prep = prepare(input, target, None, reduction, ignore_index)
    return _simloss(prep, check_similarity(similarity, prep.x.shape[1]).log())
