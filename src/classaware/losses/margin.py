"""Margin losses as ``nn.Module`` s: thin wrappers over :mod:`classaware.functional.margin`.

Every module takes cosines ``[N, C]`` (the output of :class:`classaware.nn.CosineClassifier`)
and int64 targets ``[N]``.  ``weight`` is a buffer (possibly ``None``) so a trainer can switch
to deferred re-weighting with ``loss.weight = tensor``; margins and important classes are
buffers too, so ``.to(device)`` moves everything and the forward pass never copies from the
host.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from classaware.functional import margin as F
from classaware.functional._checks import check_bool, check_counts, check_real, check_scale
from classaware.losses._base import Loss
from classaware.weights import ldam_margins

__all__ = ["ArcFaceLoss", "CAMRILoss", "CosFaceLoss", "ELMLoss", "LDAMLoss"]


class _MarginLoss(Loss):
    def __init__(self, scale: float, weight: Tensor | None, reduction: str, ignore_index: int) -> None:
        super().__init__(weight=weight, reduction=reduction, ignore_index=ignore_index)
        self.scale = check_scale(scale)

    def extra_repr(self) -> str:
        return f"scale={self.scale}, " + super().extra_repr()


class CAMRILoss(_MarginLoss):
    r"""CAMRI loss (Nishiyama et al., IJCNN 2022): an angular margin on the important classes.

    .. math:: z_y = s\cos(\theta_y + m_y), \quad z_j = s\cos\theta_j\;(j\ne y), \quad
              \ell = \mathrm{CE}(z, y), \quad m_y = 0 \text{ unless } y \text{ is important}

    See :func:`classaware.functional.camri_loss` for the details and numerics.

    Parameters
    ----------
    important_classes : sequence of int
        Distinct class indices that get the margin (the trainer converts class names).
    margin : float or sequence of float, default pi/16
        Radians in ``[0, pi]``; one for all important classes, or one per important class.
        Released configuration: ``m = pi/16, s = 16``.
    scale : float, default 16.0
    weight : Tensor, optional
        Per-class weights (buffer; assign ``loss.weight = t`` to change it).
    reduction : {"mean", "sum", "none"}, default "mean"
    ignore_index : int, default -100

    Buffers
    -------
    important_classes : int64 ``[K]``; margin : float64 ``[K]`` (aligned); weight.

    Examples
    --------
    >>> import torch
    >>> from classaware.nn import CosineClassifier
    >>> head, loss_fn = CosineClassifier(8, 3), CAMRILoss(important_classes=[2])
    >>> loss = loss_fn(head(torch.randn(5, 8)), torch.tensor([0, 1, 2, 2, 1]))
    >>> loss.backward()
    """

    important_classes: Tensor
    margin: Tensor

    def __init__(
        self,
        important_classes: Sequence[int],
        margin: float | Sequence[float] = math.pi / 16,
        scale: float = 16.0,
        *,
        weight: Tensor | None = None,
        reduction: str = "mean",
        ignore_index: int = -100,
    ) -> None:
        super().__init__(scale, weight, reduction, ignore_index)
        index, margins = F.check_camri(important_classes, margin)
        self.register_buffer("important_classes", index)
        self.register_buffer("margin", margins)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F._camri(input, target, self.important_classes, self.margin, self.scale,
                        **self._ce_args())

    def extra_repr(self) -> str:
        return (
            f"important_classes={self.important_classes.tolist()}, "
            f"margin={[round(v, 6) for v in self.margin.tolist()]}, {super().extra_repr()}"
        )


class ArcFaceLoss(_MarginLoss):
    r"""ArcFace loss (Deng et al., CVPR 2019): target logit :math:`s\cos(\theta_y + m)`.

    Where :math:`\theta_y + m > \pi` the target logit is :math:`s(\cos\theta_y - m\sin m)`
    (insightface); ``easy_margin=True`` applies the margin only where :math:`\cos\theta_y > 0`.
    See :func:`classaware.functional.arcface_loss`.

    Parameters
    ----------
    margin : float, default 0.5
        Radians in ``[0, pi]``.
    scale : float, default 64.0
    easy_margin : bool, default False
    weight, reduction, ignore_index
        As in :class:`CAMRILoss`.

    Examples
    --------
    >>> import torch
    >>> loss = ArcFaceLoss(margin=0.3, scale=8.0)
    >>> round(loss(torch.tensor([[0.5, 0.3]]), torch.tensor([0])).item(), 4)
    1.0544
    """

    def __init__(
        self,
        margin: float = 0.5,
        scale: float = 64.0,
        *,
        easy_margin: bool = False,
        weight: Tensor | None = None,
        reduction: str = "mean",
        ignore_index: int = -100,
    ) -> None:
        super().__init__(scale, weight, reduction, ignore_index)
        self.margin = F.check_margin(margin, angle=True)
        self.easy_margin = check_bool(easy_margin, "easy_margin")

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.arcface_loss(input, target, self.margin, self.scale,
                              easy_margin=self.easy_margin, **self._ce_args())

    def extra_repr(self) -> str:
        return f"margin={self.margin}, easy_margin={self.easy_margin}, {super().extra_repr()}"


class CosFaceLoss(_MarginLoss):
    r"""CosFace loss (Wang et al., CVPR 2018): target logit :math:`s(\cos\theta_y - m)`.

    See :func:`classaware.functional.cosface_loss`.

    Parameters
    ----------
    margin : float, default 0.35
        ``>= 0``.
    scale : float, default 64.0
    weight, reduction, ignore_index
        As in :class:`CAMRILoss`.

    Examples
    --------
    >>> import torch
    >>> loss = CosFaceLoss(margin=0.2, scale=16.0)
    >>> round(loss(torch.tensor([[0.5, 0.3]]), torch.tensor([0])).item(), 4)
    0.6931
    """

    def __init__(
        self,
        margin: float = 0.35,
        scale: float = 64.0,
        *,
        weight: Tensor | None = None,
        reduction: str = "mean",
        ignore_index: int = -100,
    ) -> None:
        super().__init__(scale, weight, reduction, ignore_index)
        self.margin = F.check_margin(margin)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.cosface_loss(input, target, self.margin, self.scale, **self._ce_args())

    def extra_repr(self) -> str:
        return f"margin={self.margin}, {super().extra_repr()}"


class LDAMLoss(_MarginLoss):
    r"""LDAM loss (Cao et al., NeurIPS 2019): target logit :math:`s(\cos\theta_y - \Delta_y)`.

    :math:`\Delta_j = \text{max\_margin}\cdot n_j^{-1/4}/\max_k n_k^{-1/4}`.  For LDAM-DRW set
    ``loss.weight = classaware.weights.class_balanced(counts, 0.9999)`` at the DRW epoch.
    See :func:`classaware.functional.ldam_loss`.

    Parameters
    ----------
    class_counts : sequence or Tensor
        Training samples per class, each > 0.
    max_margin : float, default 0.5
    scale : float, default 30.0
    weight, reduction, ignore_index
        As in :class:`CAMRILoss`.

    Buffers
    -------
    class_counts, margins : float64 ``[C]`` (margins: the :math:`\Delta`, used in the input's
    compute dtype, so float64 input is computed exactly); weight.

    Examples
    --------
    >>> import torch
    >>> loss = LDAMLoss(class_counts=[500, 50, 5])
    >>> [round(m, 4) for m in loss.margins.tolist()]
    [0.1581, 0.2812, 0.5]
    """

    class_counts: Tensor
    margins: Tensor

    def __init__(
        self,
        class_counts: Sequence[float] | Tensor,
        max_margin: float = 0.5,
        scale: float = 30.0,
        *,
        weight: Tensor | None = None,
        reduction: str = "mean",
        ignore_index: int = -100,
    ) -> None:
        super().__init__(scale, weight, reduction, ignore_index)
        counts = check_counts(class_counts, "class_counts")
        self.max_margin = check_real(max_margin, "max_margin", minimum=0.0)
        self.lam = 0.0
        self.register_buffer("class_counts", counts)
        self.register_buffer("margins", ldam_margins(counts, max_margin, dtype=torch.float64))
        if self.weight is not None and self.weight.shape[0] != counts.shape[0]:
            raise ValueError(
                f"weight must have {counts.shape[0]} entries (one per class), "
                f"got {self.weight.shape[0]}"
            )

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F._ldam(input, target, self.margins, self.lam, self.scale, **self._ce_args())

    def extra_repr(self) -> str:
        return f"classes={self.margins.shape[0]}, max_margin={self.max_margin}, {super().extra_repr()}"


class ELMLoss(LDAMLoss):
    r"""ELM loss (Kato & Hotta, 2023): target logit :math:`s(\cos\theta_y - \Delta_y - \lambda\Delta_{\hat\jmath})`.

    :math:`\hat\jmath = \operatorname{argmax}_{j\ne y}\cos\theta_j` (no gradient through the
    choice), :math:`\Delta` as in LDAM.  The authors' released code adds
    :math:`\lambda\Delta_{\hat\jmath}` instead; ``lam=-1.0`` reproduces it.
    See :func:`classaware.functional.elm_loss`.

    Parameters
    ----------
    class_counts : sequence or Tensor
        Training samples per class, each > 0.
    max_margin : float, default 0.5
    lam : float, default 1.0
    scale : float, default 30.0
    weight, reduction, ignore_index
        As in :class:`CAMRILoss`.

    Examples
    --------
    >>> import torch
    >>> loss = ELMLoss(class_counts=[500, 50, 5], lam=1.0)
    >>> cos = torch.tensor([[0.5, 0.4, 0.1]])
    >>> round(loss(cos, torch.tensor([0])).item(), 4)
    10.1787
    """

    def __init__(
        self,
        class_counts: Sequence[float] | Tensor,
        max_margin: float = 0.5,
        lam: float = 1.0,
        scale: float = 30.0,
        *,
        weight: Tensor | None = None,
        reduction: str = "mean",
        ignore_index: int = -100,
    ) -> None:
        super().__init__(
            class_counts, max_margin, scale,
            weight=weight, reduction=reduction, ignore_index=ignore_index,
        )
        self.lam = check_real(lam, "lam")

    def extra_repr(self) -> str:
        return f"lam={self.lam}, {super().extra_repr()}"
