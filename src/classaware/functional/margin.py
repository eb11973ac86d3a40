r"""Margin losses on cosine similarities: CAMRI, ArcFace, CosFace, LDAM and ELM.

Every loss here is cross entropy over the logits

.. math:: z_j = s\cos\theta_j \;(j \ne y), \qquad z_y = s\,\psi(\cos\theta_y)

where ``cosine`` ``[N, C]`` holds :math:`\cos\theta_j` (the output of
:class:`classaware.nn.CosineClassifier`), ``s`` is the scale and :math:`\psi` puts a margin on
the target class only.  They differ in :math:`\psi`:

=========  =====================================================================
CAMRI      :math:`\cos(\theta_y + m_y)`, ``m_y`` > 0 only for the important classes
ArcFace    :math:`\cos(\theta_y + m)` (insightface's rule where :math:`\theta_y + m > \pi`)
CosFace    :math:`\cos\theta_y - m`
LDAM       :math:`\cos\theta_y - \Delta_y`, :math:`\Delta_y \propto n_y^{-1/4}`
ELM        :math:`\cos\theta_y - \Delta_y - \lambda\Delta_{\hat\jmath}`
=========  =====================================================================

Implementation: one ``torch.autograd.Function`` computes the reduced loss with one scaled
copy of the input and one ``log_softmax``; its backward is the analytic
``s·(softmax − one-hot)`` (log_softmax's own backward kernel) with the chain rule applied to
the target column only.  No ``arccos`` of the matrix, no one-hot matrix: the margin math
touches ``N`` numbers (in NumPy on the eager CPU path, where a torch call on ``N`` numbers
costs more than the arithmetic; in torch on CUDA and under ``torch.compile``, without host
synchronisation).  The input is used in float32 when it is float16/bfloat16 (the loss is
returned in float32, the gradient in the input's dtype) and in float64 when it is float64.
Double backward (``create_graph=True``) is not supported.

Cosine range check: values outside ``[-1.001, 1.001]`` (or NaN) in a row that is not ignored
raise ValueError pointing to CosineClassifier.  On the eager CPU path this costs one ``min``
over the matrix; the upper bound is read off the softmax normaliser (``max_j z_j <=
logsumexp_j z_j``) with an element-wise look at the few rows where that is not conclusive.
On CUDA / under compile it is ``torch._assert_async`` (no host sync).
``classaware.functional.set_value_checks(False)`` turns it off.

Common keyword arguments: ``weight`` (per-class, ``torch.nn.CrossEntropyLoss``'s rule: the
weighted mean divides by ``sum(weight[target])``), ``reduction`` (``"none" | "mean" | "sum"``)
and ``ignore_index`` (those rows give zero loss and zero gradient, even when they hold
inf/NaN; an all-ignored batch gives 0 under ``"mean"``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from classaware.functional._checks import (
    COSINE_MESSAGE,
    COSINE_TOLERANCE,
    _check_value,
    check_input_target,
    check_reduction,
    check_scale,
    check_weight,
    eager_cpu,
    value_checks_enabled,
)
from classaware.weights import as_counts, ldam_margins

__all__ = ["arcface_loss", "camri_loss", "cosface_loss", "elm_loss", "ldam_loss"]

# How the target logit is formed (see _target_logit).
_ADDITIVE = "additive"  # psi(c) = c - shift
_ANGULAR = "angular"  # psi(c) = cos(theta + m)
_ARCFACE = "arcface"  # cos(theta + m) where theta + m <= pi, else c - m sin m
_ARCFACE_EASY = "arcface_easy"  # cos(theta + m) where c > 0, else c


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _sin_floor(dtype: torch.dtype | np.dtype) -> float:
    # d sin(theta)/d cos(theta) = -cos/sin is infinite at cos = +-1; the backward uses
    # sin(theta) >= sqrt(eps) there, i.e. the derivative at the nearest representable angle.
    eps = torch.finfo(dtype).eps if isinstance(dtype, torch.dtype) else np.finfo(dtype).eps
    return math.sqrt(float(eps))


def _angular(c, m, kind: str, scale: float, xp):  # noqa: ANN001 - torch or numpy arrays
    """Target logit ``s·psi(c)`` and its derivative ``s·psi'(c)`` for the angular margins.

    ``xp`` is ``torch`` or ``numpy``: the same formulas run on tensors (CUDA, compile) or on
    NumPy views of CPU tensors (eager CPU: a NumPy ufunc on N numbers costs far less than a
    torch op).  ``m`` is a float or a per-sample array.  ``c`` is within the checked range
    ``[-1.001, 1.001]``; ``sin(theta)`` is taken of ``max(1 - c^2, 0)``.
    """
    if isinstance(m, float):
        cos_m, sin_m = math.cos(m), math.sin(m)
    else:
        cos_m, sin_m = xp.cos(m), xp.sin(m)
    s_cos_m, s_sin_m = cos_m * scale, sin_m * scale
    numpy = xp is np
    one_minus = 1.0 - c * c
    sin_t = xp.sqrt(xp.maximum(one_minus, 0.0) if numpy else one_minus.clamp_min(0.0))
    # s cos(theta + m) = s (cos(theta) cos(m) - sin(theta) sin(m)); with m = 0 this is s·c
    # exactly, i.e. cross entropy on s·cos
    t = c * s_cos_m - sin_t * s_sin_m
    floor = _sin_floor(c.dtype)
    d = c * s_sin_m / (xp.maximum(sin_t, floor) if numpy else sin_t.clamp_min(floor)) + s_cos_m
    if kind == _ARCFACE:
        # insightface: th = cos(pi - m) = -cos(m), mm = sin(pi - m) * m = m sin(m)
        keep = c > -cos_m
        if not numpy or not keep.all():
            t = xp.where(keep, t, (c - m * sin_m) * scale)
            d = xp.where(keep, d, scale)
    elif kind == _ARCFACE_EASY:
        keep = c > 0
        t = xp.where(keep, t, c * scale)
        d = xp.where(keep, d, scale)
    return t, d


class _MarginCrossEntropy(torch.autograd.Function):
    """Reduced cross entropy over ``s·cos`` with a margin on the target column.

    forward(cosine [N, C], target [N], m, opts) -> the reduced loss, in the compute dtype,
    ``opts = (scale, kind, extra_margins, lam, weight, reduction, ignore_index, all_valid,
    check)``.  ``m`` is a float or a per-class tensor [C]: the shift (additive) or the angle
    (angular).  ``extra_margins`` is ELM's Delta [C]: the target logit also loses
    ``lam·Delta[j_hat]``.  ``all_valid`` says that no target is ``ignore_index``.

    The backward is analytic: ``s·(softmax − onehot)`` times the per-sample upstream gradient
    (log_softmax's own backward kernel, the scale folded into its input), with the chain rule
    through the margin applied to the target column only.  On the eager CPU path the
    per-sample arithmetic (N numbers) runs in NumPy on views of the tensors; elsewhere
    (CUDA, torch.compile) it is the same arithmetic in torch, without host synchronisation.
    """

    @staticmethod
    def forward(ctx, cosine: Tensor, target: Tensor, m: Tensor | float, opts: tuple) -> Tensor:  # type: ignore[override]
        scale, kind, extra, lam, weight, reduction, ignore_index, all_valid, check = opts
        cd = _compute_dtype(cosine.dtype)
        n = cosine.shape[0]
        ctx.scale, ctx.in_dtype, ctx.reduction = scale, cosine.dtype, reduction
        # z = s * cos in the compute dtype: one pass, a fresh tensor we may overwrite
        z = torch.mul(cosine, scale) if cosine.dtype == cd else cosine.to(cd).mul_(scale)
        if eager_cpu(cosine):
            ctx.numpy = True
            return _forward_numpy(ctx, cosine, target, z, m, scale, kind, extra, lam, weight,
                                  reduction, ignore_index, all_valid, check)
        ctx.numpy = False
        # torch path (CUDA, torch.compile): elementwise selects with a one-hot mask instead of
        # scatter into [N, C] buffers (inductor fuses them; an in-place scatter on a buffer that
        # a fused sum also reads was reordered after that read by inductor in torch 2.13)
        valid = target != ignore_index
        tgt = torch.where(valid, target, 0)
        idx = tgt[:, None]
        onehot = _onehot(idx, z.shape[1])
        # ignored rows may hold inf/NaN: zero them so nothing non-finite reaches the softmax
        z = z.masked_fill(~valid[:, None], 0.0)
        if check and n > 0:
            bound = scale * (1.0 + COSINE_TOLERANCE)
            _check_value(
                (z.amin() >= -bound) & (z.amax() <= bound), cosine.device.type, COSINE_MESSAGE
            )
        c = torch.where(valid, cosine.gather(1, idx).squeeze(1).to(cd), 0.0)
        if isinstance(m, Tensor):
            m = m.to(cd)[tgt]
        d = None  # d t / d c; None means s (the plain softmax gradient is then right)
        if kind == _ADDITIVE:
            if extra is not None and z.shape[1] > 1 and n > 0:
                j_hat = z.masked_fill(onehot, float("-inf")).argmax(1)
                m = extra.to(cd)[j_hat].mul_(lam).add_(m)
            t = torch.sub(c, m).mul_(scale)
        else:
            t, d = _angular(c, m, kind, scale, torch)
        z = torch.where(onehot, t[:, None], z)
        logp = torch.log_softmax(z, 1)
        lp_y = logp.gather(1, idx).squeeze(1)
        # per-sample factor of the loss: weight[y], 0 on ignored rows, / the mean's denominator
        coef = valid.to(cd) if weight is None else torch.where(valid, weight.to(cd)[tgt], 0.0)
        if reduction == "none":
            loss = -(lp_y * coef)
        elif reduction == "sum":
            loss = -torch.dot(lp_y, coef)
        else:
            denom = coef.sum()
            coef = coef / torch.where(denom != 0, denom, 1.0)
            loss = -torch.dot(lp_y, coef)
        ctx.save_for_backward(logp, idx, coef, None if d is None else torch.expm1(lp_y) * d)
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        if ctx.numpy:
            gz = _backward_numpy(ctx, grad)
        else:
            logp, idx, coef, e = ctx.saved_tensors
            g = grad.to(logp.dtype) * coef  # per-sample d loss / d(-log p_y)
            onehot = _onehot(idx, logp.shape[1])
            # d loss / d z = g (p - onehot) = log_softmax backward of -g*s at the target
            go = torch.where(onehot, (g * -ctx.scale)[:, None], 0.0)
            gz = torch._log_softmax_backward_data(go, logp, 1, logp.dtype)
            if e is not None:  # chain rule through the margin, target column only
                gz = torch.where(onehot, (e * g)[:, None], gz)
        if gz.dtype != ctx.in_dtype:
            gz = gz.to(ctx.in_dtype)
        return gz, None, None, None


def _onehot(idx: Tensor, num_classes: int) -> Tensor:
    """Boolean [N, C] mask of the target column (torch path)."""
    return idx == torch.arange(num_classes, device=idx.device)


@functools.lru_cache(maxsize=64)
def _row_starts(n: int, num_classes: int) -> np.ndarray:
    starts = np.arange(n, dtype=np.int64) * num_classes
    starts.flags.writeable = False
    return starts


def _as_numpy(t: Tensor, dtype: torch.dtype) -> np.ndarray:
    if t.dtype != dtype or t.requires_grad or t.device.type != "cpu":
        t = t.detach().to("cpu", dtype)
    return t.numpy()


def _forward_numpy(ctx, cosine, target, z, m, scale, kind, extra, lam, weight, reduction,
                   ignore_index, all_valid, check) -> Tensor:  # noqa: ANN001
    """Eager-CPU forward: [N, C] work in torch, the per-sample work in NumPy on views."""
    n, num_classes = z.shape
    zn = z.numpy()
    npd = zn.dtype
    tn = target.numpy()
    if all_valid:
        valid, tg = None, tn
    else:
        valid = tn != ignore_index
        tg = np.where(valid, tn, 0)
        if not valid.all():
            zn[~valid] = 0.0  # ignored rows may hold inf/NaN
    check = check and n > 0
    bound = scale * (1.0 + COSINE_TOLERANCE)
    # The upper bound is read off the softmax normaliser below when it is informative
    # (max_j z_j <= logsumexp_j z_j), which saves a pass over [N, C]; see _check_upper.
    late_upper = check and bound >= 2.0 * math.log(num_classes)
    if check:
        if not zn.min() >= -bound:  # NaN compares False
            raise ValueError(COSINE_MESSAGE)
        if not late_upper and not zn.max() <= bound:
            raise ValueError(COSINE_MESSAGE)
    flat = _row_starts(n, num_classes) + tg  # flat index of each row's target entry
    if cosine.dtype == z.dtype:
        c = cosine.detach().numpy().reshape(-1)[flat]
    else:  # half input: the target cosines from z (the float32 value, within one rounding)
        c = zn.reshape(-1)[flat] / scale
    if valid is not None:
        c = np.where(valid, c, 0.0).astype(npd)
    if late_upper and not c.max() <= 1.0 + COSINE_TOLERANCE:
        raise ValueError(COSINE_MESSAGE)
    if isinstance(m, Tensor):
        m = _as_numpy(m, z.dtype)[tg]
    e = None
    if kind == _ADDITIVE:
        if extra is not None and num_classes > 1 and n > 0:
            zn.reshape(-1)[flat] = -np.inf
            # NumPy's argmax is SIMD-vectorised (torch's row argmax on the CPU is scalar);
            # both return the first index of the maximum (ties: lowest index)
            j_hat = np.argmax(zn, axis=1)
            m = m + lam * _as_numpy(extra, z.dtype)[j_hat]
        t = (c - m) * scale
    else:
        t, d = _angular(c, m, kind, scale, np)
    zn.reshape(-1)[flat] = t
    # in place: one [N, C] buffer fewer to allocate and to pull through the cache (the CPU
    # kernel reads each row before writing it)
    logp = torch.log_softmax(z, 1, out=z)
    lp_y = logp.numpy().reshape(-1)[flat]
    if late_upper:
        _check_upper(logp.numpy(), t - lp_y, valid, c, tg, scale, bound)
    if kind != _ADDITIVE:
        e = np.expm1(lp_y) * d
    if weight is not None:
        coef = _as_numpy(weight, z.dtype)[tg]
        if valid is not None:
            coef = np.where(valid, coef, 0.0).astype(npd)
    elif valid is not None:
        coef = valid.astype(npd)
    else:
        coef = None
    if reduction == "none":
        out = -lp_y if coef is None else -(lp_y * coef)
        loss = torch.from_numpy(np.ascontiguousarray(out, dtype=npd))
    else:
        total = lp_y.sum(dtype=np.float64) if coef is None else np.dot(lp_y, coef)
        if reduction == "mean":
            denom = n if coef is None else float(coef.sum(dtype=np.float64))
            denom = denom if denom != 0 else 1.0
            total = total / denom
            coef = (1.0 / denom) if coef is None else coef / denom
        loss = torch.from_numpy(np.asarray(-total, dtype=npd))
    ctx.save_for_backward(logp)
    ctx.flat, ctx.coef, ctx.e = flat, coef, e
    return loss


def _check_upper(logp, lse, valid, c, tg, scale, bound) -> None:  # noqa: ANN001
    """Raise unless every non-target ``z_ij <= bound``, from ``lse_i = t_i - log p_iy``.

    ``z_ij = log p_ij + lse_i <= lse_i``, so a row whose normaliser is within the bound needs
    no look; the few rows that are not (or are NaN) are rebuilt and checked element-wise.
    """
    if lse.max() <= bound:  # the common case: one call (NaN compares False)
        return
    over = ~(lse <= bound)
    if valid is not None:
        over &= valid
    if over.any():
        rows = np.flatnonzero(over)
        z_rows = logp[rows] + lse[rows, None]
        z_rows[np.arange(rows.shape[0]), tg[rows]] = c[rows] * scale  # the target's own cosine
        if not z_rows.max() <= bound:
            raise ValueError(COSINE_MESSAGE)


def _backward_numpy(ctx, grad: Tensor) -> Tensor:
    (logp,) = ctx.saved_tensors
    if ctx.reduction == "none":
        g = grad.detach().to(logp.dtype).contiguous().numpy()
    else:
        g = float(grad)
    if ctx.coef is not None:
        g = g * ctx.coef  # per-sample d loss / d(-log p_y)
    go = torch.zeros_like(logp)
    # d loss / d z = g (p - onehot) = log_softmax backward of -g*s at the target
    go.numpy().reshape(-1)[ctx.flat] = np.multiply(g, -ctx.scale)
    gz = torch._log_softmax_backward_data(go, logp, 1, logp.dtype, out=go)
    if ctx.e is not None:  # chain rule through the margin, target column only
        gz.numpy().reshape(-1)[ctx.flat] = ctx.e * g
    return gz


def _margin_ce(
    cosine: Tensor,
    target: Tensor,
    m: Tensor | float,
    scale: float,
    kind: str,
    *,
    weight: Tensor | None,
    reduction: str,
    ignore_index: int,
    all_valid: bool,
    extra_margins: Tensor | None = None,
    lam: float = 0.0,
) -> Tensor:
    """Shared tail: ``m`` is a float or a per-class tensor [C]."""
    if weight is not None and weight.device != cosine.device:
        weight = weight.to(cosine.device)
    opts = (scale, kind, extra_margins, lam, weight, reduction, ignore_index, all_valid,
            value_checks_enabled())
    return _MarginCrossEntropy.apply(cosine, target, m, opts)


def _common(
    cosine: Tensor,
    target: Tensor,
    scale: float,
    weight: Tensor | None,
    reduction: str,
    ignore_index: int,
) -> tuple[float, Tensor | None]:
    all_valid = check_input_target(cosine, target, ignore_index)
    check_reduction(reduction)
    scale = check_scale(scale)
    weight = check_weight(weight, cosine.shape[1])
    return scale, weight, all_valid


def _check_margin_value(margin: float, name: str = "margin", upper: float | None = None) -> float:
    if isinstance(margin, bool) or not isinstance(margin, (int, float)):
        raise TypeError(f"{name} must be a float, got {type(margin).__name__}")
    margin = float(margin)
    if not math.isfinite(margin) or margin < 0:
        raise ValueError(f"{name} must be >= 0 (and finite), got {margin}")
    if upper is not None and margin > upper:
        raise ValueError(f"{name} must be an angle in [0, pi] radians, got {margin}")
    return margin


def _check_lam(lam: float) -> float:
    if isinstance(lam, bool) or not isinstance(lam, (int, float)):
        raise TypeError(f"lam must be a float, got {type(lam).__name__}")
    if not math.isfinite(lam):
        raise ValueError(f"lam must be finite, got {lam}")
    return float(lam)


def check_important_classes(
    important_classes: Sequence[int] | Tensor, num_classes: int | None = None
) -> list[int] | Tensor:
    """Validate CAMRI's important class indices (distinct, in ``[0, num_classes)``).

    A sequence is checked on the host and returned as a list of ints; a tensor (the module's
    buffer) is checked without a host sync on CUDA and returned as is.
    """
    if isinstance(important_classes, Tensor):
        imp = important_classes
        if imp.dim() != 1 or imp.is_floating_point() or imp.dtype == torch.bool:
            raise TypeError(
                "important_classes must be a 1-D sequence of class indices (ints), got a "
                f"{imp.dtype} tensor of shape {tuple(imp.shape)}"
            )
        if value_checks_enabled() and imp.numel() > 0 and num_classes is not None:
            _check_value(
                (imp.amin() >= 0) & (imp.amax() < num_classes),
                imp.device.type,
                f"important_classes must be class indices in [0, {num_classes})",
            )
            if imp.numel() > 1:
                s = imp.sort().values
                _check_value(
                    (s[1:] != s[:-1]).all(),
                    imp.device.type,
                    "important_classes must not repeat a class",
                )
        return imp
    if isinstance(important_classes, (str, bytes)) or not isinstance(
        important_classes, Sequence
    ):
        raise TypeError(
            "important_classes must be a sequence of class indices (ints), got "
            f"{type(important_classes).__name__}"
        )
    out: list[int] = []
    for k in important_classes:
        if isinstance(k, bool) or not isinstance(k, int):
            try:
                import numpy as np

                if isinstance(k, np.integer):
                    k = int(k)
                else:
                    raise TypeError
            except TypeError:
                raise TypeError(
                    "important_classes must hold class indices (ints); class names are converted "
                    f"by the trainer, got {k!r}"
                ) from None
        if k < 0 or (num_classes is not None and k >= num_classes):
            bound = f"[0, {num_classes})" if num_classes is not None else ">= 0"
            raise ValueError(f"important_classes must be class indices in {bound}, got {k}")
        if k in out:
            raise ValueError(f"important_classes must not repeat a class, got {k} twice")
        out.append(k)
    return out


def check_camri_margin(
    margin: float | Sequence[float] | Tensor, num_important: int
) -> float | list[float] | Tensor:
    """Validate CAMRI's margin: one angle >= 0, or one per important class."""
    if isinstance(margin, Tensor):
        if margin.dim() == 0:
            margin = float(margin)
        else:
            if margin.dim() != 1 or margin.shape[0] != num_important:
                raise ValueError(
                    "margin must be one float or one per important class "
                    f"({num_important}), got shape {tuple(margin.shape)}"
                )
            if value_checks_enabled() and margin.numel() > 0:
                _check_value(
                    ((margin >= 0) & (margin <= math.pi)).all(),
                    margin.device.type,
                    "margin must be angles in [0, pi] radians (>= 0)",
                )
            return margin
    if isinstance(margin, (int, float)) and not isinstance(margin, bool):
        return _check_margin_value(margin, "margin", math.pi)
    if isinstance(margin, (str, bytes)) or not isinstance(margin, Sequence):
        raise TypeError(
            f"margin must be a float or a sequence of floats, got {type(margin).__name__}"
        )
    if len(margin) != num_important:
        raise ValueError(
            f"margin has {len(margin)} entries but there are {num_important} important classes "
            "(give one float, or one margin per important class)"
        )
    return [_check_margin_value(v, "margin", math.pi) for v in margin]


def camri_loss(
    cosine: Tensor,
    target: Tensor,
    important_classes: Sequence[int] | Tensor,
    margin: float | Sequence[float] | Tensor = math.pi / 16,
    scale: float = 16.0,
    *,
    weight: Tensor | None = None,
    reduction: str = "mean",
    ignore_index: int = -100,
) -> Tensor:
    r"""CAMRI loss: an additive angular margin on the important classes only.

    Nishiyama et al., "CAMRI Loss: Improving the Recall of a Specific Class without
    Sacrificing Accuracy", IJCNN 2022.

    .. math::
        \ell = -\log\frac{e^{s\cos(\theta_y + m_y)}}
               {e^{s\cos(\theta_y + m_y)} + \sum_{j\ne y} e^{s\cos\theta_j}},
        \qquad m_y = \begin{cases} m_k & y = \text{important\_classes}[k] \\
                                   0 & \text{otherwise}\end{cases}

    Only the target column carries a margin, computed as
    :math:`\cos\theta\cos m - \sin\theta\sin m` with :math:`\sin\theta = \sqrt{1-\cos^2\theta}`
    (no arccos).  Where :math:`\theta_y + m > \pi` the formula is used as is (no ArcFace-style
    correction).  At :math:`\cos\theta_y = \pm 1` the derivative of :math:`\sin\theta` is
    infinite; the gradient there uses :math:`\sin\theta \ge \sqrt{\epsilon}` (finite).

    Parameters
    ----------
    cosine : Tensor
        ``[N, C]`` cosines in ``[-1, 1]`` (e.g. :class:`classaware.nn.CosineClassifier`).
    target : Tensor
        ``[N]`` int64 class indices (or ``ignore_index``).
    important_classes : sequence of int or Tensor
        Distinct class indices in ``[0, C)`` that get the margin.
    margin : float or sequence of float, default pi/16
        Radians, in ``[0, pi]``: one angle for all important classes or one per entry of
        ``important_classes``.  The released configuration uses ``m = pi/16, s = 16`` (also
        ``m = 5pi/64, s = 16`` and ``m = pi/16, s = 8``).
    scale : float, default 16.0
        ``s > 0``.
    weight, reduction, ignore_index
        As in ``torch.nn.functional.cross_entropy``.

    Notes
    -----
    The authors' release is TensorFlow and takes arccos of the whole matrix; the value is the
    same.  With ``margin = 0`` (or no important class) this is cross entropy on ``s·cos``.

    Examples
    --------
    >>> import torch
    >>> from classaware.functional import camri_loss
    >>> cos = torch.tensor([[0.8, 0.1, -0.2], [0.3, 0.5, 0.0]])
    >>> round(camri_loss(cos, torch.tensor([0, 1]), important_classes=[1]).item(), 4)
    0.2698
    """
    scale, weight, all_valid = _common(cosine, target, scale, weight, reduction, ignore_index)
    num_classes = cosine.shape[1]
    imp = check_important_classes(important_classes, num_classes)
    k = imp.shape[0] if isinstance(imp, Tensor) else len(imp)
    margin = check_camri_margin(margin, k)
    if k > 0:
        idx = imp if isinstance(imp, Tensor) else torch.tensor(imp, dtype=torch.int64)
        if not isinstance(margin, Tensor):
            margin = torch.as_tensor(margin, dtype=torch.float32).expand(k)
    else:
        idx, margin = None, None
    per_class = camri_margins(idx, margin, num_classes, cosine)
    return _margin_ce(
        cosine, target, per_class, scale, _ANGULAR,
        weight=weight, reduction=reduction, ignore_index=ignore_index, all_valid=all_valid,
    )


def camri_margins(
    important_classes: Tensor | None, margin: Tensor | None, num_classes: int, like: Tensor
) -> Tensor:
    """Per-class margin vector ``[C]`` (0 for the classes that are not important).

    ``important_classes`` [K] int64 and ``margin`` [K] must already be validated.
    """
    per_class = torch.zeros(num_classes, dtype=_compute_dtype(like.dtype), device=like.device)
    if important_classes is not None and important_classes.numel() > 0:
        per_class.index_copy_(
            0,
            important_classes.to(device=like.device, dtype=torch.int64),
            margin.to(device=like.device, dtype=per_class.dtype),  # type: ignore[union-attr]
        )
    return per_class


def camri_from_margins(
    cosine: Tensor,
    target: Tensor,
    per_class_margin: Tensor,
    scale: float,
    *,
    weight: Tensor | None,
    reduction: str,
    ignore_index: int,
) -> Tensor:
    """:func:`camri_loss` from an already-built per-class margin vector (used by CAMRILoss)."""
    scale, weight, all_valid = _common(cosine, target, scale, weight, reduction, ignore_index)
    return _margin_ce(
        cosine, target, per_class_margin, scale, _ANGULAR,
        weight=weight, reduction=reduction, ignore_index=ignore_index, all_valid=all_valid,
    )


def arcface_loss(
    cosine: Tensor,
    target: Tensor,
    margin: float = 0.5,
    scale: float = 64.0,
    *,
    easy_margin: bool = False,
    weight: Tensor | None = None,
    reduction: str = "mean",
    ignore_index: int = -100,
) -> Tensor:
    r"""ArcFace (additive angular margin) loss.

    Deng et al., "ArcFace: Additive Angular Margin Loss for Deep Face Recognition", CVPR 2019.

    .. math::
        z_y = s\cdot\begin{cases} \cos(\theta_y + m) & \theta_y + m \le \pi \\
                                  \cos\theta_y - m\sin m & \theta_y + m > \pi \end{cases}
        \qquad z_j = s\cos\theta_j \; (j \ne y), \qquad \ell = \mathrm{CE}(z, y)

    The second branch is insightface's rule (the released code); it keeps the target logit
    decreasing in :math:`\theta`.  With ``easy_margin=True`` the margin applies only where
    :math:`\cos\theta_y > 0` (else :math:`z_y = s\cos\theta_y`).

    Parameters
    ----------
    cosine, target
        As in :func:`camri_loss`.
    margin : float, default 0.5
        Radians, in ``[0, pi]``.
    scale : float, default 64.0
        ``s > 0``.
    easy_margin : bool, default False
    weight, reduction, ignore_index
        As in ``torch.nn.functional.cross_entropy``.

    Notes
    -----
    ``margin = 0`` gives cross entropy on ``s·cos``.

    Examples
    --------
    >>> import torch
    >>> from classaware.functional import arcface_loss
    >>> cos = torch.tensor([[0.8, 0.1, -0.2], [0.3, 0.5, 0.0]])
    >>> round(arcface_loss(cos, torch.tensor([0, 1])).item(), 4)
    8.8449
    """
    scale, weight, all_valid = _common(cosine, target, scale, weight, reduction, ignore_index)
    margin = _check_margin_value(margin, "margin", math.pi)
    if not isinstance(easy_margin, bool):
        raise TypeError(f"easy_margin must be a bool, got {type(easy_margin).__name__}")
    kind = _ARCFACE_EASY if easy_margin else _ARCFACE
    return _margin_ce(
        cosine, target, margin, scale, kind,
        weight=weight, reduction=reduction, ignore_index=ignore_index, all_valid=all_valid,
    )


def cosface_loss(
    cosine: Tensor,
    target: Tensor,
    margin: float = 0.35,
    scale: float = 64.0,
    *,
    weight: Tensor | None = None,
    reduction: str = "mean",
    ignore_index: int = -100,
) -> Tensor:
    r"""CosFace (large margin cosine) loss.

    Wang et al., "CosFace: Large Margin Cosine Loss for Deep Face Recognition", CVPR 2018.

    .. math:: z_y = s(\cos\theta_y - m), \qquad z_j = s\cos\theta_j \;(j\ne y),
              \qquad \ell = \mathrm{CE}(z, y)

    Parameters
    ----------
    cosine, target
        As in :func:`camri_loss`.
    margin : float, default 0.35
        ``m >= 0`` (cosine units).
    scale : float, default 64.0
        ``s > 0``.
    weight, reduction, ignore_index
        As in ``torch.nn.functional.cross_entropy``.

    Notes
    -----
    Same as insightface's CosFace.  ``margin = 0`` gives cross entropy on ``s·cos``.

    Examples
    --------
    >>> import torch
    >>> from classaware.functional import cosface_loss
    >>> cos = torch.tensor([[0.8, 0.1, -0.2], [0.3, 0.5, 0.0]])
    >>> round(cosface_loss(cos, torch.tensor([0, 1])).item(), 4)
    4.8
    """
    scale, weight, all_valid = _common(cosine, target, scale, weight, reduction, ignore_index)
    margin = _check_margin_value(margin, "margin")
    return _margin_ce(
        cosine, target, margin, scale, _ADDITIVE,
        weight=weight, reduction=reduction, ignore_index=ignore_index, all_valid=all_valid,
    )


def _ldam_delta(
    class_counts: Sequence[float] | Tensor | None,
    max_margin: float,
    margins: Tensor | Sequence[float] | None,
    num_classes: int,
    device: torch.device,
) -> Tensor:
    if (class_counts is None) == (margins is None):
        raise ValueError("give exactly one of class_counts or margins")
    if margins is not None:
        if not isinstance(margins, Tensor):
            margins = torch.as_tensor(margins, dtype=torch.float32)
        if margins.dim() != 1 or margins.shape[0] != num_classes:
            raise ValueError(
                f"margins must have one entry per class ({num_classes}), "
                f"got shape {tuple(margins.shape)}"
            )
        if not margins.is_floating_point():
            raise TypeError(f"margins must be floats, got {margins.dtype}")
        if value_checks_enabled():
            _check_value(
                (margins >= 0).all(), margins.device.type, "margins must be >= 0 (no negative margin)"
            )
        return margins.to(device)
    counts = as_counts(class_counts, "class_counts")  # type: ignore[arg-type]
    if counts.shape[0] != num_classes:
        raise ValueError(
            f"class_counts has {counts.shape[0]} entries but input has {num_classes} classes"
        )
    return ldam_margins(counts, max_margin).to(device)


def ldam_from_margins(
    cosine: Tensor,
    target: Tensor,
    margins: Tensor,
    scale: float,
    lam: float = 0.0,
    *,
    weight: Tensor | None,
    reduction: str,
    ignore_index: int,
) -> Tensor:
    """:func:`ldam_loss` (``lam = 0``) or :func:`elm_loss` from an already validated ``[C]``
    margin tensor (used by LDAMLoss / ELMLoss, whose buffers were checked at construction)."""
    scale, weight, all_valid = _common(cosine, target, scale, weight, reduction, ignore_index)
    if margins.shape[0] != cosine.shape[1]:
        raise ValueError(
            f"margins must have one entry per class ({cosine.shape[1]}), "
            f"got {margins.shape[0]} (from class_counts)"
        )
    return _margin_ce(
        cosine, target, margins, scale, _ADDITIVE,
        weight=weight, reduction=reduction, ignore_index=ignore_index, all_valid=all_valid,
        extra_margins=margins if lam != 0.0 else None, lam=lam,
    )


def ldam_loss(
    cosine: Tensor,
    target: Tensor,
    class_counts: Sequence[float] | Tensor | None = None,
    max_margin: float = 0.5,
    scale: float = 30.0,
    *,
    margins: Tensor | Sequence[float] | None = None,
    weight: Tensor | None = None,
    reduction: str = "mean",
    ignore_index: int = -100,
) -> Tensor:
    r"""LDAM (label-distribution-aware margin) loss.

    Cao et al., "Learning Imbalanced Datasets with Label-Distribution-Aware Margin Loss",
    NeurIPS 2019.

    .. math:: \Delta_j = \text{max\_margin}\cdot\frac{n_j^{-1/4}}{\max_k n_k^{-1/4}}, \qquad
              z_y = s(\cos\theta_y - \Delta_y), \quad z_j = s\cos\theta_j \;(j\ne y),
              \qquad \ell = \mathrm{CE}(z, y)

    Parameters
    ----------
    cosine, target
        As in :func:`camri_loss`.
    class_counts : sequence or Tensor, optional
        Training samples per class (``C`` entries, each > 0).  Give this or ``margins``.
    max_margin : float, default 0.5
        The margin of the rarest class (``>= 0``; 0 gives cross entropy on ``s·cos``).
    scale : float, default 30.0
        ``s > 0`` (the released code's ``s``).
    margins : Tensor or sequence, optional
        Precomputed :math:`\Delta` ``[C]`` (see :func:`classaware.weights.ldam_margins`)
        instead of ``class_counts``.
    weight, reduction, ignore_index
        As in ``torch.nn.functional.cross_entropy``; LDAM-DRW passes
        :func:`classaware.weights.class_balanced` weights late in training.

    Notes
    -----
    Same as the released code (which feeds a normalised linear layer's cosines).

    Examples
    --------
    >>> import torch
    >>> from classaware.functional import ldam_loss
    >>> cos = torch.tensor([[0.8, 0.1, -0.2], [0.3, 0.5, 0.0]])
    >>> round(ldam_loss(cos, torch.tensor([0, 1]), class_counts=[100, 10, 1]).item(), 4)
    1.2596
    """
    scale, weight, all_valid = _common(cosine, target, scale, weight, reduction, ignore_index)
    delta = _ldam_delta(class_counts, max_margin, margins, cosine.shape[1], cosine.device)
    return _margin_ce(
        cosine, target, delta, scale, _ADDITIVE,
        weight=weight, reduction=reduction, ignore_index=ignore_index, all_valid=all_valid,
    )


def elm_loss(
    cosine: Tensor,
    target: Tensor,
    class_counts: Sequence[float] | Tensor | None = None,
    max_margin: float = 0.5,
    lam: float = 1.0,
    scale: float = 30.0,
    *,
    margins: Tensor | Sequence[float] | None = None,
    weight: Tensor | None = None,
    reduction: str = "mean",
    ignore_index: int = -100,
) -> Tensor:
    r"""ELM (enlarged large margin) loss.

    Kato & Hotta, "Enlarged Large Margin Loss for Imbalanced Classification", 2023.

    .. math:: z_y = s(\cos\theta_y - \Delta_y - \lambda\Delta_{\hat\jmath}), \quad
              \hat\jmath = \operatorname*{argmax}_{j\ne y}\cos\theta_j, \quad
              z_j = s\cos\theta_j \;(j\ne y), \qquad \ell = \mathrm{CE}(z, y)

    with LDAM's :math:`\Delta`.  The target must beat its strongest rival by that rival's
    margin too.  The choice of :math:`\hat\jmath` carries no gradient (ties: lowest index).

    Parameters
    ----------
    cosine, target
        As in :func:`camri_loss`.
    class_counts : sequence or Tensor, optional
        Training samples per class (``C`` entries, each > 0).  Give this or ``margins``.
    max_margin : float, default 0.5
        LDAM's largest margin (``>= 0``; 0 gives cross entropy on ``s·cos``).
    lam : float, default 1.0
        Weight of the rival's margin; 0 gives LDAM.
    scale : float, default 30.0
    margins : Tensor or sequence, optional
        Precomputed :math:`\Delta` ``[C]`` instead of ``class_counts``.
    weight, reduction, ignore_index
        As in ``torch.nn.functional.cross_entropy``.

    Notes
    -----
    This is the margin the paper describes (enlarged beyond LDAM's).  The authors' released
    code *adds* :math:`\lambda\Delta_{\hat\jmath}` to the target logit instead, i.e. this
    formula with :math:`\lambda` negated: ``lam=-1.0`` reproduces the released code.

    Examples
    --------
    >>> import torch
    >>> from classaware.functional import elm_loss
    >>> cos = torch.tensor([[0.8, 0.1, -0.2], [0.3, 0.5, 0.0]])
    >>> round(elm_loss(cos, torch.tensor([0, 1]), class_counts=[100, 10, 1]).item(), 4)
    3.5899
    """
    scale, weight, all_valid = _common(cosine, target, scale, weight, reduction, ignore_index)
    lam = _check_lam(lam)
    delta = _ldam_delta(class_counts, max_margin, margins, cosine.shape[1], cosine.device)
    return _margin_ce(
        cosine, target, delta, scale, _ADDITIVE,
        weight=weight, reduction=reduction, ignore_index=ignore_index, all_valid=all_valid,
        extra_margins=delta if lam != 0.0 else None, lam=lam,
    )
