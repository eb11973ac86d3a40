"""Losses on logits: cross entropy, SimLoss, Complement CE, focal loss, logit adjustment.

Every function takes ``input`` [N, C] (logits, any floating dtype; float16/bfloat16 are computed
in float32) and ``target`` [N] (int64 class indices) and follows ``torch.nn.CrossEntropyLoss``
for ``weight`` / ``reduction`` / ``ignore_index``, with two fixes: an all-ignored batch gives 0
under ``"mean"`` (not NaN), and ignored rows contribute zero loss *and zero gradient* even when
they hold inf/NaN.

Where arithmetic dominates, the [N, C] work runs in custom autograd Functions with an analytic
backward (one fused softmax forward, one pass backward), so these losses cost about as much as
``F.cross_entropy`` itself; see ``benchmarks/losses.py`` and ``docs/performance-losses.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from classaware.functional._checks import (
    _check_value,
    _is_compiling,
    check_input_target,
    check_reduction,
    check_weight,
    value_checks_enabled,
)

__all__ = [
    "complement_cross_entropy",
    "cross_entropy",
    "focal_loss",
    "logit_adjusted_loss",
    "simloss",
]

# --------------------------------------------------------------------------------------------
# shared preparation
# --------------------------------------------------------------------------------------------


def _prepare(input: Tensor, target: Tensor, ignore_index: int) -> tuple[Tensor, Tensor]:
    """Validate, upcast half precision to float32 and neutralise ignored rows.

    Returns ``(x, safe_target)``: ``x`` with ignored rows replaced by zeros (so inf/NaN there
    can reach neither the loss nor the gradient) and ``target`` with ignored entries replaced
    by 0 (a valid index).
    """
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise TypeError(f"ignore_index must be an int, got {type(ignore_index).__name__}")
    check_input_target(input, target, ignore_index)
    x = input.float() if input.dtype in (torch.float16, torch.bfloat16) else input
    valid = target != ignore_index
    safe_target = torch.where(valid, target, torch.zeros_like(target))
    if x.device.type != "cpu" or _is_compiling():
        # no host synchronisation: always mask (one fused elementwise op on GPU / compiled)
        x = torch.where(valid[:, None], x, torch.zeros((), dtype=x.dtype, device=x.device))
    elif x.shape[0] > 0 and not bool(valid.all()):
        x = torch.where(valid[:, None], x, torch.zeros((), dtype=x.dtype, device=x.device))
    return x, safe_target


def _check_real(value: object, name: str, *, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _weight_for(weight: Tensor | Sequence[float] | None, num_classes: int, device) -> Tensor | None:
    w = check_weight(weight, num_classes)
    if w is not None:
        if not w.is_floating_point():
            w = w.float()
        w = w.to(device)
    return w


def _setup(
    input: Tensor,
    target: Tensor,
    ignore_index: int,
    weight: Tensor | Sequence[float] | None,
    reduction: str,
) -> tuple[Tensor, Tensor, Tensor, bool]:
    """Validate everything and return ``(x, safe_target, coef, reduce)`` for a Function."""
    check_reduction(reduction)
    x, t = _prepare(input, target, ignore_index)
    w = _weight_for(weight, x.shape[1], x.device)
    coef = _coefficients(target, ignore_index, w, reduction, x.dtype)
    return x, t, coef, reduction != "none"


# --------------------------------------------------------------------------------------------
# reduction folded into the autograd Functions
# --------------------------------------------------------------------------------------------
#
# Each loss is one autograd.Function taking a per-sample coefficient ``coef`` [N] (no grad):
# coef_i = valid_i * weight[y_i], divided by sum_i coef_i under "mean" (0-safe).  The Function
# returns sum_i coef_i * row_i ("mean"/"sum") or coef * rows ("none"); its backward scales the
# analytic per-row gradient by coef.  This keeps a whole loss at one autograd node plus a few
# [N]-sized ops, so small batches pay little dispatch overhead and large ones one pass forward
# and one backward over [N, C] (as F.cross_entropy).


def _coefficients(
    target: Tensor, ignore_index: int, weight: Tensor | None, reduction: str, dtype: torch.dtype
) -> Tensor:
    valid = target != ignore_index
    coef = valid.to(dtype)
    if weight is not None:
        safe = torch.where(valid, target, torch.zeros_like(target))
        coef = coef * weight.to(dtype)[safe]
    if reduction == "mean":
        denom = coef.sum()
        coef = coef / torch.where(denom == 0, torch.ones_like(denom), denom)
    return coef


def _reduce_rows(rows: Tensor, coef: Tensor, reduce: bool) -> Tensor:
    out = rows * coef
    return out.sum() if reduce else out


def _row_grad(grad: Tensor, coef: Tensor) -> Tensor:
    return (grad * coef)[:, None]


class _CrossEntropy(torch.autograd.Function):
    """rows = logsumexp(x) - x_y;  d/dx = softmax(x) - onehot(y)."""

    @staticmethod
    def forward(ctx, x: Tensor, target: Tensor, coef: Tensor, reduce: bool) -> Tensor:  # type: ignore[override]
        rows = -torch.log_softmax(x, 1).gather(1, target[:, None]).squeeze(1)
        ctx.save_for_backward(x, target, coef)
        return _reduce_rows(rows, coef, reduce)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, target, coef = ctx.saved_tensors
        g = _row_grad(grad, coef)
        out = torch.softmax(x, 1).mul_(g)
        out.scatter_add_(1, target[:, None], -g)
        return out, None, None, None


class _Focal(torch.autograd.Function):
    """rows = u^gamma * n with n = -log p_y, u = 1 - p_y = -expm1(-n);
    d rows / d n = u^gamma * (1 + gamma * n * (1 - u) / u)  (-> 0 as u -> 0 for gamma > 0)."""

    @staticmethod
    def forward(ctx, x: Tensor, target: Tensor, coef: Tensor, reduce: bool, gamma: float) -> Tensor:  # type: ignore[override]
        n = -torch.log_softmax(x, 1).gather(1, target[:, None]).squeeze(1)
        u = -torch.expm1(-n)
        pos = u > 0
        u_safe = torch.where(pos, u, torch.ones_like(u))
        mod = torch.where(pos, u_safe.pow(gamma), torch.zeros_like(u))
        dn = mod * (1 + gamma * n * (1 - u) / u_safe)
        ctx.save_for_backward(x, target, coef, dn)
        return _reduce_rows(mod * n, coef, reduce)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, target, coef, dn = ctx.saved_tensors
        g = _row_grad(grad, coef) * dn[:, None]
        out = torch.softmax(x, 1).mul_(g)
        out.scatter_add_(1, target[:, None], -g)
        return out, None, None, None, None


# --------------------------------------------------------------------------------------------
# cross entropy
# --------------------------------------------------------------------------------------------


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
        Logits.  float16/bfloat16 are computed in float32.
    target : Tensor [N], int64
        Class indices in ``[0, C)`` or ``ignore_index``.
    weight : Tensor [C], optional
        Per-class weight; the weighted mean divides by ``sum(weight[target])`` (PyTorch's rule).
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
    x, t, coef, reduce = _setup(input, target, ignore_index, weight, reduction)
    return _CrossEntropy.apply(x, t, coef, reduce)


# --------------------------------------------------------------------------------------------
# logit adjustment / balanced softmax
# --------------------------------------------------------------------------------------------


def _check_counts(class_counts: object, num_classes: int | None = None) -> Tensor:
    """Validate ``class_counts`` (1-D, finite, all > 0, length C); returns a float64 tensor."""
    if isinstance(class_counts, Tensor):
        counts = class_counts.detach()
    else:
        try:
            counts = torch.as_tensor(class_counts)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(
                f"class_counts must be a sequence of positive numbers, got {class_counts!r}"
            ) from exc
    if counts.dtype == torch.bool or counts.is_complex():
        raise TypeError(f"class_counts must hold real numbers, got dtype {counts.dtype}")
    if counts.dim() != 1 or counts.numel() == 0:
        raise ValueError(
            f"class_counts must be a non-empty 1-D sequence (one count per class), "
            f"got shape {tuple(counts.shape)}"
        )
    if num_classes is not None and counts.numel() != num_classes:
        raise ValueError(
            f"class_counts has {counts.numel()} entries but the input has {num_classes} classes"
        )
    counts = counts.to(torch.float64)
    ok = (torch.isfinite(counts) & (counts > 0)).all()
    if counts.device.type == "cpu":
        if not bool(ok):
            raise ValueError(
                f"class_counts must all be finite and > 0 (a class with no training samples "
                f"has no prior), got {counts.tolist()}"
            )
    elif value_checks_enabled():
        _check_value(ok, counts.device.type, "class_counts must all be finite and > 0")
    return counts


def log_prior(class_counts: Tensor | Sequence[float]) -> Tensor:
    """``log(n_j / sum_k n_k)`` as float32 (validates ``class_counts``)."""
    counts = _check_counts(class_counts)
    return (counts / counts.sum()).log().to(torch.float32)


def _logit_adjusted(
    x: Tensor, t: Tensor, coef: Tensor, reduce: bool, adjustment: Tensor
) -> Tensor:
    z = x + adjustment.to(device=x.device, dtype=x.dtype)
    return _CrossEntropy.apply(z, t, coef, reduce)


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
    tau = _check_real(tau, "tau", minimum=0.0)
    x, t, coef, reduce = _setup(input, target, ignore_index, weight, reduction)
    counts = _check_counts(class_counts, x.shape[1])
    return _logit_adjusted(x, t, coef, reduce, tau * (counts / counts.sum()).log())


# --------------------------------------------------------------------------------------------
# focal loss
# --------------------------------------------------------------------------------------------


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

    ``1 - p`` is computed as ``-expm1(log p)`` and the modulator is guarded so that
    ``p -> 1`` gives a zero (not NaN) gradient for every ``gamma``, including ``0 < gamma < 1``.
    The paper's per-class ``alpha`` is ``weight`` here; with ``reduction="mean"`` the weighted
    sum is divided by ``sum(weight[target])`` as in ``torch.nn.CrossEntropyLoss`` (the paper
    divides by N).  ``gamma=0`` is cross entropy.

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
    gamma = _check_real(gamma, "gamma", minimum=0.0)
    x, t, coef, reduce = _setup(input, target, ignore_index, weight, reduction)
    if gamma == 0.0:
        return _CrossEntropy.apply(x, t, coef, reduce)
    return _Focal.apply(x, t, coef, reduce, gamma)


# --------------------------------------------------------------------------------------------
# complement cross entropy
# --------------------------------------------------------------------------------------------


class _ComplementCE(torch.autograd.Function):
    """Per-row CE + c * H(q), q = softmax over the non-target logits, analytic backward.

    With t_j = x_j - max_{k != y} x_k (and t_y := 0), e_j = exp(t_j) (e_y := 0), S = sum_j e_j:
    log q_j = t_j - log S, H = log S - sum_j e_j t_j / S,
    nll = softplus(lse' - x_y) with lse' = max' + log S (the logsumexp of the others).
    d/dx_j (j != y) = q_j * [(1 - p_y) - c (log q_j + H)],  d/dx_y = -(1 - p_y).
    """

    @staticmethod
    def forward(ctx, x: Tensor, target: Tensor, coef: Tensor, reduce: bool, c: float) -> Tensor:  # type: ignore[override]
        ty = target[:, None]
        t = x.scatter(1, ty, float("-inf"))
        m = t.amax(1, keepdim=True)
        t.sub_(m)
        e = t.exp()
        t.scatter_(1, ty, 0.0)  # so that e * t is 0 (not 0 * -inf) at the target
        s = e.sum(1, keepdim=True)
        log_s = s.log()
        h = log_s - torch.linalg.vecdot(e, t)[:, None] / s
        d = (m + log_s - x.gather(1, ty)).squeeze(1)  # logsumexp(others) - x_y
        rows = F.softplus(d) + c * h.squeeze(1)
        ctx.c = c
        ctx.save_for_backward(e, t, s, log_s, h, d, target, coef)
        return _reduce_rows(rows, coef, reduce)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        e, t, s, log_s, h, d, target, coef = ctx.saved_tensors
        c = ctx.c
        g = _row_grad(grad, coef)
        one_minus_py = torch.sigmoid(d)[:, None]
        gs = g / s
        alpha = gs * (one_minus_py + c * (log_s - h))
        out = torch.addcmul(alpha, t, gs, value=-c)
        out.mul_(e)
        out.scatter_(1, target[:, None], -g * one_minus_py)
        return out, None, None, None, None


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
    the paper argues helps the minority classes; ``gamma = 0`` is cross entropy.  Everything is
    computed in log space (``log q_j = x_j - logsumexp_{k != y} x_k``), so ``p_y -> 1`` gives no
    NaN; ``weight`` multiplies the whole per-sample loss.

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
    gamma = _check_real(gamma, "gamma")
    x, t, coef, reduce = _setup(input, target, ignore_index, weight, reduction)
    return _complement(x, t, coef, reduce, gamma)


def _complement(x: Tensor, t: Tensor, coef: Tensor, reduce: bool, gamma: float) -> Tensor:
    k = x.shape[1]
    if k < 2:
        raise ValueError(
            f"input must have at least 2 classes for complement_cross_entropy, got {k}"
        )
    if gamma == 0.0:
        return _CrossEntropy.apply(x, t, coef, reduce)
    return _ComplementCE.apply(x, t, coef, reduce, gamma / (k - 1))


# --------------------------------------------------------------------------------------------
# SimLoss
# --------------------------------------------------------------------------------------------


def check_similarity(
    similarity: object, num_classes: int | None = None, *, check_values: bool = True
) -> Tensor:
    """Validate a class-similarity matrix: C x C, entries in [0, 1], ones on the diagonal.

    Returns it as a floating tensor (array-likes are converted to float32).
    """
    if not isinstance(similarity, Tensor):
        try:
            similarity = torch.as_tensor(similarity, dtype=torch.float32)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(
                f"similarity must be a C x C tensor or nested sequence, got "
                f"{type(similarity).__name__}"
            ) from exc
    if not similarity.is_floating_point():
        similarity = similarity.float()
    if similarity.dim() != 2 or similarity.shape[0] != similarity.shape[1]:
        raise ValueError(
            f"similarity must be a square C x C matrix, got shape {tuple(similarity.shape)}"
        )
    if num_classes is not None and similarity.shape[0] != num_classes:
        raise ValueError(
            f"similarity must be {num_classes} x {num_classes} to match the input's "
            f"{num_classes} classes, got {tuple(similarity.shape)}"
        )
    if check_values and similarity.numel() > 0:
        s = similarity.detach()
        in_range = ((s >= 0) & (s <= 1)).all()  # False for NaN too
        diag_one = (s.diagonal() == 1).all()
        if s.device.type == "cpu" and not _is_compiling():
            if not bool(in_range):
                raise ValueError("similarity entries must lie in [0, 1] (and not be NaN)")
            if not bool(diag_one):
                raise ValueError("similarity must have ones on its diagonal (S[i, i] = 1)")
        elif value_checks_enabled():
            _check_value(in_range, s.device.type, "similarity entries must lie in [0, 1]")
            _check_value(diag_one, s.device.type, "similarity must have ones on its diagonal")
    return similarity


class _SimLoss(torch.autograd.Function):
    """-log sum_j S[y, j] p_j in log space; backward g * (softmax(x) - r), r the posterior."""

    @staticmethod
    def forward(ctx, x: Tensor, target: Tensor, coef: Tensor, reduce: bool, log_sim: Tensor) -> Tensor:  # type: ignore[override]
        z = log_sim.index_select(0, target)
        z.add_(torch.log_softmax(x, 1))  # log S[y, j] + log p_j
        m = z.amax(1, keepdim=True)  # >= log p_y (S[y, y] = 1): finite
        z.sub_(m).exp_()
        s = z.sum(1, keepdim=True)
        ctx.save_for_backward(x, z, s, coef)
        return _reduce_rows(-(m + s.log()).squeeze(1), coef, reduce)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, z, s, coef = ctx.saved_tensors
        g = _row_grad(grad, coef)
        out = torch.softmax(x, 1).mul_(g)
        out.addcmul_(z, -g / s)
        return out, None, None, None, None


def _simloss(x: Tensor, t: Tensor, coef: Tensor, reduce: bool, log_sim: Tensor) -> Tensor:
    return _SimLoss.apply(x, t, coef, reduce, log_sim.to(device=x.device, dtype=x.dtype))


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

    computed in log space (``log 0 = -inf`` entries drop out of the logsumexp with zero, not
    NaN, gradient), never as the log of a sum of probabilities, so it stays finite when every
    acceptable class has an underflowing probability.  ``S = I`` gives cross entropy.  Build
    ``S`` with :mod:`classaware.similarity` (``ordinal``, ``from_groups``, ``from_embeddings``).

    **Released code.**  The authors' code takes *probabilities* (softmax outputs) and computes
    ``-log(sum(S[y] * p) + eps)``; this takes logits and needs no epsilon.

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
    x, t, coef, reduce = _setup(input, target, ignore_index, None, reduction)
    sim = check_similarity(similarity, x.shape[1])
    return _simloss(x, t, coef, reduce, sim.log())
