"""Losses on logits: cross entropy, SimLoss, Complement CE, focal loss, logit adjustment.

Every function takes ``input`` [N, C] (logits, any floating dtype; float16/bfloat16 are computed
in float32) and ``target`` [N] (int64 class indices) and follows ``torch.nn.CrossEntropyLoss``
for ``weight`` / ``reduction`` / ``ignore_index``, with two fixes: an all-ignored batch gives 0
under ``"mean"`` (not NaN), and ignored rows contribute zero loss *and zero gradient* even when
they hold inf/NaN.

Speed: cross entropy, logit adjustment and focal loss run on ``F.cross_entropy``'s own fused
kernels; complement CE and SimLoss are custom autograd Functions whose [N, C] work is one or two
fused (log-)softmax passes forward and one pass backward (SimLoss gathers only the non-zero
entries of a sparse similarity).  See ``benchmarks/losses.py`` and
``docs/performance-losses.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from classaware.functional._checks import (
    _check_value,
    check_input_target,
    check_reduction,
    check_weight,
    eager_cpu,
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


class _Prep(NamedTuple):
    x: Tensor  # [N, C] float32/float64, ignored rows zeroed
    t: Tensor  # [N] target with ignored entries replaced by 0
    target: Tensor  # the original target
    ignore_index: int
    weight: Tensor | None  # [C] in x's dtype and device
    reduction: str
    n_ignored: int | None  # None when unknown (CUDA / compiling: no host sync)


def _check_real(value: object, name: str, *, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _setup(
    input: Tensor,
    target: Tensor,
    ignore_index: int,
    weight: Tensor | Sequence[float] | None,
    reduction: str,
) -> _Prep:
    """Validate; upcast half precision to float32; neutralise ignored rows.

    Ignored rows of ``x`` are replaced by zeros, so inf/NaN there reaches neither the loss nor
    the gradient; their target becomes 0 (a valid index) and their weight 0.
    """
    check_reduction(reduction)
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise TypeError(f"ignore_index must be an int, got {type(ignore_index).__name__}")
    none_ignored = check_input_target(input, target, ignore_index)
    x = input.float() if input.dtype in (torch.float16, torch.bfloat16) else input
    w = check_weight(weight, x.shape[1])
    if w is not None:
        w = w.to(device=x.device, dtype=x.dtype)
    if none_ignored is True:  # known for free on the CPU
        return _Prep(x, target, target, ignore_index, w, reduction, 0)
    valid = target != ignore_index
    if eager_cpu(x):
        if bool(valid.all()):
            return _Prep(x, target, target, ignore_index, w, reduction, 0)
        n_ignored = int(target.numel() - valid.sum())
    else:
        n_ignored = None  # always mask: one elementwise op, no host synchronisation
    x = torch.where(valid[:, None], x, torch.zeros((), dtype=x.dtype, device=x.device))
    t = torch.where(valid, target, torch.zeros_like(target))
    return _Prep(x, t, target, ignore_index, w, reduction, n_ignored)


def _coefficients(prep: _Prep) -> Tensor:
    """Per-sample factor c_i with loss = sum_i c_i * row_i ("mean"/"sum") or c * rows ("none").

    c_i = valid_i * weight[y_i], divided by sum_i c_i under "mean" (0 when that sum is 0, so an
    all-ignored batch gives 0, not NaN).
    """
    n = prep.t.shape[0]
    if prep.n_ignored == 0 and prep.weight is None:  # the common case, in one op
        value = 1.0 / n if prep.reduction == "mean" and n > 0 else 1.0
        return torch.full((n,), value, dtype=prep.x.dtype, device=prep.x.device)
    coef = (prep.target != prep.ignore_index).to(prep.x.dtype)
    if prep.weight is not None:
        coef = coef * prep.weight[prep.t]
    if prep.reduction == "mean":
        denom = coef.sum()
        coef = coef / torch.where(denom == 0, torch.ones_like(denom), denom)
    return coef


def _reduce_rows(rows: Tensor, coef: Tensor, reduce: bool) -> Tensor:
    out = rows * coef
    return out.sum() if reduce else out


def _weighted(rows: Tensor, prep: _Prep) -> Tensor:
    """Apply weight / ignore mask / reduction to per-sample losses (autograd on [N] only)."""
    return _reduce_rows(rows, _coefficients(prep), prep.reduction != "none")


def _ce_reduced(z: Tensor, prep: _Prep) -> Tensor:
    """Cross entropy of logits ``z`` with prep's weight / reduction / ignore rule."""
    if prep.n_ignored == 0 and prep.t.numel() > 0:
        # nothing ignored (and not empty): F.cross_entropy's own rule is exactly ours, and its
        # kernels are the fastest
        return F.cross_entropy(z, prep.t, weight=prep.weight, reduction=prep.reduction)
    return _weighted(F.cross_entropy(z, prep.t, reduction="none"), prep)


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
    prep = _setup(input, target, ignore_index, weight, reduction)
    return _ce_reduced(prep.x, prep)


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


def _logit_adjusted(prep: _Prep, adjustment: Tensor) -> Tensor:
    return _ce_reduced(prep.x + adjustment.to(device=prep.x.device, dtype=prep.x.dtype), prep)


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
    prep = _setup(input, target, ignore_index, weight, reduction)
    counts = _check_counts(class_counts, prep.x.shape[1])
    return _logit_adjusted(prep, tau * (counts / counts.sum()).log())


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
    prep = _setup(input, target, ignore_index, weight, reduction)
    return _focal(prep, gamma)


class _Focal(torch.autograd.Function):
    """rows = u^gamma * n, n = -log_softmax(x)_y, u = 1 - p_y = -expm1(-n); one autograd node.

    d rows / d n = u^gamma * (1 + gamma * n * (1 - u) / u)  (-> 0 as u -> 0 when gamma > 0),
    d n / d x = softmax(x) - onehot(y): CE's own ``log_softmax_backward`` kernel.
    """

    @staticmethod
    def forward(ctx, x: Tensor, target: Tensor, coef: Tensor, reduce: bool, gamma: float) -> Tensor:  # type: ignore[override]
        logp = torch.log_softmax(x, 1)
        n = -logp.gather(1, target[:, None]).squeeze(1)
        u = -torch.expm1(-n)
        pos = u > 0
        u_safe = torch.where(pos, u, torch.ones_like(u))
        mod = torch.where(pos, u_safe.pow(gamma), torch.zeros_like(u))
        dn = mod * (1 + gamma * n * (1 - u) / u_safe)
        ctx.save_for_backward(logp, target, coef * dn)
        return _reduce_rows(mod * n, coef, reduce)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        logp, target, coef_dn = ctx.saved_tensors
        go = torch.zeros_like(logp).scatter_(1, target[:, None], -(grad * coef_dn)[:, None])
        return torch._log_softmax_backward_data(go, logp, 1, logp.dtype), None, None, None, None


def _focal(prep: _Prep, gamma: float) -> Tensor:
    if gamma == 0.0:
        return _ce_reduced(prep.x, prep)
    coef = _coefficients(prep)
    return _Focal.apply(prep.x, prep.t, coef, prep.reduction != "none", gamma)


# --------------------------------------------------------------------------------------------
# complement cross entropy
# --------------------------------------------------------------------------------------------


class _ComplementCE(torch.autograd.Function):
    """Per-row CE + c * H(q), q = softmax of the non-target logits; analytic backward.

    With x' = x with its target entry set to -inf, q = softmax(x') (one fused pass; q_y = 0),
    lse' = logsumexp(x') = max(x') - log(max(q))   (max(q) >= 1/(K-1): no underflow),
    H = -sum_j q_j log q_j = lse' - sum_j q_j x_j,
    CE = lse - x_y = softplus(lse' - x_y)          (stable however close p_y is to 1).
    d/dx_j (j != y) = q_j [(1 - p_y) - c (log q_j + H)] = q_j (alpha - c x_j),
    alpha = (1 - p_y) - c H + c lse';  d/dx_y = -(1 - p_y),  1 - p_y = sigmoid(lse' - x_y).
    """

    @staticmethod
    def forward(ctx, x: Tensor, target: Tensor, coef: Tensor, reduce: bool, c: float) -> Tensor:  # type: ignore[override]
        ty = target[:, None]
        others = x.scatter(1, ty, float("-inf"))
        q = torch.softmax(others, 1)
        lse_o = others.amax(1, keepdim=True) - q.amax(1, keepdim=True).log()
        d = lse_o - x.gather(1, ty)
        h = lse_o - torch.linalg.vecdot(q, x)[:, None]  # q_y = 0, x_y finite
        rows = (F.softplus(d) + c * h).squeeze(1)
        ctx.c = c
        ctx.save_for_backward(x, q, h, d, lse_o, target, coef)
        return _reduce_rows(rows, coef, reduce)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, q, h, d, lse_o, target, coef = ctx.saved_tensors
        c = ctx.c
        g = (grad * coef)[:, None]
        one_minus_py = torch.sigmoid(d)
        out = x * (-c * g)
        out.add_(g * (one_minus_py - c * h + c * lse_o)).mul_(q)
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
    prep = _setup(input, target, ignore_index, weight, reduction)
    return _complement(prep, gamma)


def _complement(prep: _Prep, gamma: float) -> Tensor:
    k = prep.x.shape[1]
    if k < 2:
        raise ValueError(
            f"input must have at least 2 classes for complement_cross_entropy, got {k}"
        )
    if gamma == 0.0:
        return _ce_reduced(prep.x, prep)
    coef = _coefficients(prep)
    return _ComplementCE.apply(prep.x, prep.t, coef, prep.reduction != "none", gamma / (k - 1))


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
        if eager_cpu(s):
            if not bool(in_range):
                raise ValueError("similarity entries must lie in [0, 1] (and not be NaN)")
            if not bool(diag_one):
                raise ValueError("similarity must have ones on its diagonal (S[i, i] = 1)")
        elif value_checks_enabled():
            _check_value(in_range, s.device.type, "similarity entries must lie in [0, 1]")
            _check_value(diag_one, s.device.type, "similarity must have ones on its diagonal")
    return similarity


class SimilarityTable(NamedTuple):
    """log S prepared for the loss: dense [C, C], or the non-zero entries of each row.

    ``index`` [C, K] holds the columns j with S[i, j] > 0 (padded with i itself) and
    ``log_values`` [C, K] their log S (padding: -inf); ``index`` is None for the dense form.
    """

    log_dense: Tensor | None
    index: Tensor | None
    log_values: Tensor | None


# gather only the non-zero entries when a row has at most this fraction of them
_SPARSE_FRACTION = 0.25


def similarity_table(similarity: Tensor) -> SimilarityTable:
    """Precompute log S (sparse rows when S is mostly zeros, e.g. groups or ordinal)."""
    sim = similarity.detach()
    c = sim.shape[0]
    nonzero = sim > 0
    k = int(nonzero.sum(1).max()) if c > 0 else 0
    if k > _SPARSE_FRACTION * c:
        return SimilarityTable(sim.log(), None, None)
    # stable sort puts the non-zero columns first, in column order
    order = torch.sort((~nonzero).to(torch.int8), dim=1, stable=True).indices[:, :k]
    keep = nonzero.gather(1, order)
    rows = torch.arange(c, device=sim.device)[:, None].expand(c, k)
    index = torch.where(keep, order, rows)
    log_values = torch.where(keep, sim.gather(1, order).log(), float("-inf"))
    return SimilarityTable(None, index, log_values)


class _SimLossDense(torch.autograd.Function):
    """rows = lse(x) - lse(z), z = x + log S[y];  d/dx = softmax(x) - softmax(z).

    Both softmaxes are fused kernels that handle ``log S = -inf`` (S = 0) exactly; each
    logsumexp comes from ``max(v) - log max(softmax(v))`` (max softmax >= 1/C: no underflow).
    The backward is one pass, ``g * (p - r)``, with no ``exp``.
    """

    @staticmethod
    def forward(ctx, x: Tensor, target: Tensor, coef: Tensor, reduce: bool, log_sim: Tensor) -> Tensor:  # type: ignore[override]
        p = torch.softmax(x, 1)
        lse_x = x.amax(1) - p.amax(1).log()
        z = log_sim.index_select(0, target).add_(x)  # log S[y, j] + x_j; -inf where S = 0
        r = torch.softmax(z, 1)  # posterior over the credited classes
        lse_z = z.amax(1) - r.amax(1).log()
        ctx.save_for_backward(p, r, coef)
        return _reduce_rows(lse_x - lse_z, coef, reduce)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        p, r, coef = ctx.saved_tensors
        out = torch.sub(p, r).mul_((grad * coef)[:, None])
        return out, None, None, None, None


class _SimLossSparse(torch.autograd.Function):
    """As _SimLossDense, with z gathered at the K non-zero columns of S[y] only ([N, K])."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, x: Tensor, target: Tensor, coef: Tensor, reduce: bool, index: Tensor, log_values: Tensor
    ) -> Tensor:
        ty = target[:, None]
        lsx = torch.log_softmax(x, 1)
        idx = index.index_select(0, target)
        z = x.gather(1, idx).add_(log_values.index_select(0, target))
        lse_z = torch.logsumexp(z, 1, keepdim=True)
        r = z.sub_(lse_z).exp_()
        # lse(x) - lse(z) = (x_y - log_softmax(x)_y) - lse(z)
        rows = (x.gather(1, ty) - lsx.gather(1, ty) - lse_z).squeeze(1)
        ctx.save_for_backward(lsx, idx, r, coef)
        return _reduce_rows(rows, coef, reduce)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        lsx, idx, r, coef = ctx.saved_tensors
        go = torch.zeros_like(lsx).scatter_add_(1, idx, r * (-(grad * coef))[:, None])
        out = torch._log_softmax_backward_data(go, lsx, 1, lsx.dtype)
        return out, None, None, None, None, None


def _simloss(prep: _Prep, table: SimilarityTable) -> Tensor:
    x = prep.x
    coef = _coefficients(prep)
    reduce = prep.reduction != "none"
    if table.index is None:
        log_sim = table.log_dense.to(device=x.device, dtype=x.dtype)
        return _SimLossDense.apply(x, prep.t, coef, reduce, log_sim)
    return _SimLossSparse.apply(
        x,
        prep.t,
        coef,
        reduce,
        table.index.to(x.device),
        table.log_values.to(device=x.device, dtype=x.dtype),
    )


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

    **Released code.**  The authors' code works on *probabilities* (softmax outputs) and
    computes ``mean(-log(sum(S[y] * p) + 1e-8))``: the epsilon bounds every sample's loss by
    ``-log(1e-8) ~ 18.4`` and flattens its gradient once ``sum(S[y] * p)`` falls below ~1e-8.  This takes logits,
    works in log space and needs no epsilon.

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
    prep = _setup(input, target, ignore_index, None, reduction)
    sim = check_similarity(similarity, prep.x.shape[1])
    # choosing the sparse form reads S back to the host: only where that is free
    table = similarity_table(sim) if eager_cpu(sim) else SimilarityTable(sim.log(), None, None)
    return _simloss(prep, table)
