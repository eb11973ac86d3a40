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

Each loss reads as that recipe: gather the target cosine, form :math:`\psi`, write
:math:`s\psi` into :math:`s\cos` (by adding :math:`s(\psi - \cos\theta_y)` at the target),
cross entropy (:func:`_margin_ce`); autograd differentiates it.  :math:`\cos(\theta + m)`
is :math:`\cos\theta\cos m - \sin\theta\sin m` (no arccos).  float16/bfloat16 input is
computed in float32 (the loss is float32, the gradient in the input's dtype); float64 input,
with every margin, in float64.

Cosine range check: values outside ``[-1.001, 1.001]`` (or NaN) in a row that is not ignored
raise ValueError pointing to CosineClassifier (one ``aminmax`` pass; on CUDA and under
``torch.compile`` a device-side assert, no host sync).
``classaware.functional.set_value_checks(False)`` turns it off.

Common keyword arguments: ``weight`` (per-class, ``torch.nn.CrossEntropyLoss``'s rule: the
weighted mean divides by ``sum(weight[target])``), ``reduction`` (``"none" | "mean" | "sum"``)
and ``ignore_index`` (those rows give zero loss and zero gradient, even when they hold
inf/NaN; an all-ignored batch gives 0 under ``"mean"``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from classaware import weights as _weights
from classaware.functional._ce import Prepared, cross_entropy, prepare
from classaware.functional._checks import (
    as_float_tensor,
    check_bool,
    check_counts,
    check_real,
    check_scale,
    check_value,
    value_checks_enabled,
)

__all__ = ["arcface_loss", "camri_loss", "cosface_loss", "elm_loss", "ldam_loss"]

COSINE_TOLERANCE = 1e-3
COSINE_MESSAGE = (
    "input to a margin loss must be cosine similarities in [-1, 1] "
    "(use classaware.nn.CosineClassifier as the head); got values outside [-1.001, 1.001] "
    "(or NaN) in a row whose target is not ignore_index"
)


def _prepare_cosines(
    cosine: Tensor,
    target: Tensor,
    scale: float,
    weight: Tensor | Sequence[float] | None,
    reduction: str,
    ignore_index: int,
) -> tuple[Prepared, Tensor]:
    """Validate (cosine range included) and gather the target cosines ``cos θ_y`` [N]."""
    check_scale(scale)
    prep = prepare(cosine, target, weight, reduction, ignore_index)
    if value_checks_enabled() and prep.x.numel() > 0:
        lo, hi = torch.aminmax(prep.x.detach())  # ignored rows are zeros; NaN fails both tests
        check_value((lo >= -1 - COSINE_TOLERANCE) & (hi <= 1 + COSINE_TOLERANCE), COSINE_MESSAGE)
    return prep, prep.x.gather(1, prep.target[:, None]).squeeze(1)


def _margin_ce(prep: Prepared, shift: float | Tensor, scale: float) -> Tensor:
    """Cross entropy over ``z = s·cos`` with ``z_y = s·(cos θ_y + shift) = s·psi``.

    ``shift = psi - cos θ_y`` [N] (or a float) is added in place at the target column: no copy
    of ``z``, and an additive margin (a shift that does not depend on ``cos θ_y``) costs no
    gradient path of its own.
    """
    if not isinstance(shift, Tensor):
        shift = prep.x.new_full(prep.target.shape, shift)
    z = (prep.x * scale).scatter_add_(1, prep.target[:, None], (shift * scale)[:, None])
    return cross_entropy(z, prep)


def _sin_theta(c: Tensor) -> Tensor:
    r"""``sin θ = sqrt(1 - c²)`` for ``c = cos θ``, with a finite gradient at ``c = ±1``.

    The derivative ``-c / sin θ`` is infinite at ``c = ±1``; the gradient uses
    ``max(sin θ, sqrt(eps))`` there (the slope at the nearest representable angle) while the
    value stays exact: ``u - u.detach()`` is 0 in value and carries ``du`` in the backward.
    """
    u = 1 - c * c
    sin = u.clamp_min(0).sqrt().detach()
    floor = math.sqrt(torch.finfo(c.dtype).eps)
    return sin + (u - u.detach()) / (2 * sin.clamp_min(floor))


def _cos_plus(c: Tensor, m: float | Tensor) -> Tensor:
    """``cos(θ + m) = cos θ cos m - sin θ sin m`` for ``c = cos θ`` (``m = 0`` gives ``c``)."""
    cos_m, sin_m = (math.cos(m), math.sin(m)) if isinstance(m, float) else (m.cos(), m.sin())
    return c * cos_m - _sin_theta(c) * sin_m


def check_margin(margin: float, *, angle: bool = False) -> float:
    """A margin ``>= 0`` (finite); an angle (``angle=True``) must also be ``<= pi``."""
    margin = check_real(margin, "margin", minimum=0.0)
    if angle and margin > math.pi:
        raise ValueError(f"margin must be an angle in [0, pi] radians, got {margin}")
    return margin


def check_important_classes(important_classes: Sequence[int] | Tensor) -> list[int]:
    """CAMRI's important classes: distinct class indices >= 0 (a tensor is read to the host)."""
    if isinstance(important_classes, Tensor):
        if important_classes.dim() != 1 or important_classes.is_floating_point():
            raise TypeError(
                "important_classes must be a 1-D sequence of class indices (ints), got a "
                f"{important_classes.dtype} tensor of shape {tuple(important_classes.shape)}"
            )
        important_classes = important_classes.tolist()
    if isinstance(important_classes, (str, bytes)) or not isinstance(important_classes, Sequence):
        raise TypeError(
            "important_classes must be a sequence of class indices (ints), got "
            f"{type(important_classes).__name__}"
        )
    index: list[int] = []
    for k in important_classes:
        if isinstance(k, bool) or not hasattr(k, "__index__"):
            raise TypeError(
                "important_classes must hold class indices (ints); class names are converted "
                f"by the trainer, got {k!r}"
            )
        k = int(k)
        if k < 0:
            raise ValueError(f"important_classes must be class indices >= 0, got {k}")
        if k in index:
            raise ValueError(f"important_classes must not repeat a class, got {k} twice")
        index.append(k)
    return index


def check_camri_margin(margin: float | Sequence[float] | Tensor, num_important: int) -> list[float]:
    """CAMRI's margin: one angle in ``[0, pi]`` for every important class, or one per class."""
    if isinstance(margin, Tensor):
        margin = margin.tolist()
    if isinstance(margin, (int, float)) and not isinstance(margin, bool):
        margin = [margin] * num_important
    if isinstance(margin, (str, bytes)) or not isinstance(margin, Sequence):
        raise TypeError(f"margin must be a float or a sequence of floats, got {type(margin).__name__}")
    if len(margin) != num_important:
        raise ValueError(
            f"margin has {len(margin)} entries but there are {num_important} important classes "
            "(give one float, or one margin per important class)"
        )
    return [check_margin(m, angle=True) for m in margin]


def check_camri(
    important_classes: Sequence[int] | Tensor, margin: float | Sequence[float] | Tensor
) -> tuple[Tensor, Tensor]:
    """CAMRI's important classes and margins as int64 ``[K]`` and float64 ``[K]`` CPU tensors."""
    index = check_important_classes(important_classes)
    margins = check_camri_margin(margin, len(index))
    return torch.tensor(index, dtype=torch.int64), torch.tensor(margins, dtype=torch.float64)


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
    index, margins = check_camri(important_classes, margin)
    return _camri(cosine, target, index, margins, scale,
                  weight=weight, reduction=reduction, ignore_index=ignore_index)


def _camri(
    cosine: Tensor, target: Tensor, index: Tensor, margins: Tensor, scale: float, *,
    weight: Tensor | None, reduction: str, ignore_index: int,
) -> Tensor:
    """:func:`camri_loss` from validated ``index`` int64 [K] and ``margins`` [K] (CAMRILoss's buffers)."""
    prep, c = _prepare_cosines(cosine, target, scale, weight, reduction, ignore_index)
    x, num_classes = prep.x, prep.x.shape[1]
    if index.numel() > 0:
        check_value(index.amax() < num_classes,
                    f"important_classes must be class indices in [0, {num_classes})")
    per_class = x.new_zeros(num_classes).index_copy(0, index.to(x.device), margins.to(x))
    return _margin_ce(prep, _cos_plus(c, per_class[prep.target]) - c, scale)


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
    m = check_margin(margin, angle=True)
    check_bool(easy_margin, "easy_margin")
    prep, c = _prepare_cosines(cosine, target, scale, weight, reduction, ignore_index)
    psi = _cos_plus(c, m)
    if easy_margin:
        psi = torch.where(c > 0, psi, c)
    else:  # theta + m > pi  <=>  c <= cos(pi - m) = -cos(m)
        psi = torch.where(c > -math.cos(m), psi, c - m * math.sin(m))
    return _margin_ce(prep, psi - c, scale)


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
    m = check_margin(margin)
    prep, _ = _prepare_cosines(cosine, target, scale, weight, reduction, ignore_index)
    return _margin_ce(prep, -m, scale)


def ldam_deltas(
    class_counts: Sequence[float] | Tensor | None,
    max_margin: float,
    margins: Tensor | Sequence[float] | None,
) -> Tensor:
    """LDAM's :math:`\\Delta` [C] from exactly one of ``class_counts`` or ``margins`` (float64 for counts)."""
    if (class_counts is None) == (margins is None):
        raise ValueError("give exactly one of class_counts or margins")
    if class_counts is not None:
        counts = check_counts(class_counts, "class_counts")
        return _weights.ldam_margins(counts, max_margin, dtype=torch.float64)
    delta = as_float_tensor(margins, "margins")
    if delta.dim() != 1:
        raise ValueError(f"margins must be 1-D (one entry per class), got shape {tuple(delta.shape)}")
    check_value((delta >= 0).all(), "margins must be >= 0 (no negative margin)")
    return delta


def _ldam(
    cosine: Tensor, target: Tensor, delta: Tensor, lam: float, scale: float, *,
    weight: Tensor | None, reduction: str, ignore_index: int,
) -> Tensor:
    """``psi = cos θ_y - Δ_y - lam·Δ_ĵ``, ``ĵ = argmax_{j≠y} cos θ_j``: ELM, and LDAM (``lam = 0``)."""
    prep, _ = _prepare_cosines(cosine, target, scale, weight, reduction, ignore_index)
    if delta.shape[0] != prep.x.shape[1]:
        raise ValueError(f"class_counts / margins have {delta.shape[0]} entries but the input "
                         f"has {prep.x.shape[1]} classes")
    d = delta.to(prep.x)
    m = d[prep.target]
    if lam != 0.0:  # the strongest rival, chosen without gradient (ties: lowest index)
        rival = prep.x.scatter(1, prep.target[:, None], float("-inf")).argmax(1)
        m = m + lam * d[rival]
    return _margin_ce(prep, -m, scale)


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
    return _ldam(cosine, target, ldam_deltas(class_counts, max_margin, margins), 0.0, scale,
                 weight=weight, reduction=reduction, ignore_index=ignore_index)


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
    cosine, target, class_counts, max_margin, margins, weight, reduction, ignore_index
        As in :func:`ldam_loss`.
    lam : float, default 1.0
        Weight of the rival's margin; 0 gives LDAM.
    scale : float, default 30.0

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
    lam = check_real(lam, "lam")
    return _ldam(cosine, target, ldam_deltas(class_counts, max_margin, margins), lam, scale,
                 weight=weight, reduction=reduction, ignore_index=ignore_index)
