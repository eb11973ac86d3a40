"""Loss modules on logits: thin wrappers over :mod:`classaware.functional.logit`.

Every module with a ``weight`` keeps it as a buffer (possibly ``None``): it follows
``.to(device)`` and the state dict, and a trainer switches deferred re-weighting (DRW) weights
by plain assignment, ``loss.weight = torch.tensor([...])`` (see :class:`~classaware.losses._base.Loss`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from classaware.functional import logit as F_logit
from classaware.functional._ce import prepare
from classaware.functional._checks import check_counts, check_real
from classaware.losses._base import Loss

__all__ = [
    "ComplementCrossEntropy",
    "CrossEntropyLoss",
    "FocalLoss",
    "LogitAdjustedLoss",
    "SimLoss",
]


class CrossEntropyLoss(Loss):
    r"""Cross entropy on logits (the baseline); see :func:`classaware.functional.cross_entropy`.

    .. math:: \ell_i = w_{y_i}\,\big(\operatorname{logsumexp}(x_i) - x_{i,y_i}\big)

    Same as ``torch.nn.CrossEntropyLoss`` (weight / reduction / ignore_index rules) except that
    a mean over nothing (an all-ignored batch, or targets whose weights are all 0) is 0, ignored
    rows holding inf/NaN give zero loss and zero gradient, float16/bfloat16 input is computed in
    float32, and one class (C = 1) or a negative, NaN, infinite or all-zero ``weight`` is a
    ValueError, as for every loss of this library.

    Examples
    --------
    >>> import torch
    >>> from classaware.losses import CrossEntropyLoss
    >>> loss = CrossEntropyLoss(weight=torch.tensor([1.0, 2.0, 1.0]))
    >>> value = loss(torch.randn(4, 3), torch.tensor([0, 1, 2, 1]))
    """

    def __init__(
        self,
        weight: Tensor | Sequence[float] | None = None,
        *,
        reduction: str = "mean",
        ignore_index: int = -100,
    ) -> None:
        super().__init__(weight=weight, reduction=reduction, ignore_index=ignore_index)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F_logit.cross_entropy(input, target, **self._ce_args())


class FocalLoss(Loss):
    r"""Focal loss (Lin et al., ICCV 2017); see :func:`classaware.functional.focal_loss`.

    .. math:: \ell_i = -w_{y_i}\,(1 - p_{i,y_i})^\gamma \log p_{i,y_i}

    Parameters
    ----------
    gamma : float, default 2.0
        Focusing parameter (>= 0); 0 is cross entropy.  Finite (zero) gradient at ``p -> 1``
        for every gamma, including ``0 < gamma < 1``.
    weight : Tensor [C], optional
        Per-class weight (the paper's alpha); weighted mean divides by ``sum(weight[target])``.
    reduction, ignore_index
        As ``torch.nn.CrossEntropyLoss``.

    Examples
    --------
    >>> import torch
    >>> from classaware.losses import FocalLoss
    >>> value = FocalLoss(gamma=2.0)(torch.randn(4, 3), torch.tensor([0, 1, 2, 1]))
    """

    def __init__(
        self,
        gamma: float = 2.0,
        *,
        weight: Tensor | Sequence[float] | None = None,
        reduction: str = "mean",
        ignore_index: int = -100,
    ) -> None:
        super().__init__(weight=weight, reduction=reduction, ignore_index=ignore_index)
        self.gamma = check_real(gamma, "gamma", minimum=0.0)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F_logit.focal_loss(input, target, self.gamma, **self._ce_args())

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, " + super().extra_repr()


class ComplementCrossEntropy(Loss):
    r"""Complement cross entropy (Kim, Lee & Jeon, PR Letters 2021; COT/CCE).

    .. math::
        \ell_i = \mathrm{CE}_i + \frac{\gamma}{K-1} H_i,\qquad
        H_i = -\sum_{j\ne y_i} q_{ij}\log q_{ij},\qquad q_{ij} = \frac{p_{ij}}{1 - p_{i,y_i}}

    ``gamma = -1`` (default, the paper) rewards a flat distribution over the wrong classes.
    The authors' released code computes ``CE + H / K`` instead (it *sharpens* the wrong-class
    distribution); ``gamma = (K - 1) / K`` reproduces it.  See
    :func:`classaware.functional.complement_cross_entropy`.

    Parameters
    ----------
    gamma : float, default -1.0
    weight : Tensor [C], optional
        Multiplies the whole per-sample loss.
    reduction, ignore_index
        As ``torch.nn.CrossEntropyLoss``.

    Examples
    --------
    >>> import torch
    >>> from classaware.losses import ComplementCrossEntropy
    >>> value = ComplementCrossEntropy()(torch.randn(4, 3), torch.tensor([0, 1, 2, 1]))
    """

    def __init__(
        self,
        gamma: float = -1.0,
        *,
        weight: Tensor | Sequence[float] | None = None,
        reduction: str = "mean",
        ignore_index: int = -100,
    ) -> None:
        super().__init__(weight=weight, reduction=reduction, ignore_index=ignore_index)
        self.gamma = check_real(gamma, "gamma")

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F_logit.complement_cross_entropy(input, target, self.gamma, **self._ce_args())

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, " + super().extra_repr()


class LogitAdjustedLoss(Loss):
    r"""Logit-adjusted cross entropy (Menon et al., ICLR 2021); ``tau=1`` is balanced softmax.

    .. math:: \ell_i = -\log \mathrm{softmax}(x_i + \tau\log\pi)_{y_i},\qquad
              \pi_j = n_j / \textstyle\sum_k n_k

    The prior enters only the loss; predict with the model's own logits.  ``tau = 1`` is the
    balanced softmax of Ren et al. (NeurIPS 2020) (``create("balanced_softmax", ...)``);
    ``tau = 0`` is cross entropy.

    Parameters
    ----------
    class_counts : sequence of C positive numbers
        Training-set counts (a zero count has no prior: ValueError).
    tau : float, default 1.0
        Adjustment strength, >= 0.
    weight, reduction, ignore_index
        As ``torch.nn.CrossEntropyLoss``.

    Examples
    --------
    >>> import torch
    >>> from classaware.losses import LogitAdjustedLoss
    >>> loss = LogitAdjustedLoss(class_counts=[500, 50, 5], tau=1.0)
    >>> value = loss(torch.randn(4, 3), torch.tensor([0, 1, 2, 1]))
    """

    log_prior: Tensor

    def __init__(
        self,
        class_counts: Tensor | Sequence[float],
        tau: float = 1.0,
        *,
        weight: Tensor | Sequence[float] | None = None,
        reduction: str = "mean",
        ignore_index: int = -100,
    ) -> None:
        super().__init__(weight=weight, reduction=reduction, ignore_index=ignore_index)
        self.tau = check_real(tau, "tau", minimum=0.0)
        counts = check_counts(class_counts, "class_counts")
        self.class_counts = counts.tolist()
        self.register_buffer("log_prior", F_logit.log_prior(counts))  # float64, as the functional

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        prep = prepare(input, target, self.weight, self.reduction, self.ignore_index)
        if self.log_prior.shape[0] != prep.x.shape[1]:
            raise ValueError(
                f"class_counts has {self.log_prior.shape[0]} entries but the input has "
                f"{prep.x.shape[1]} classes"
            )
        return F_logit._logit_adjusted(prep, self.tau * self.log_prior)

    def extra_repr(self) -> str:
        return f"num_classes={self.log_prior.shape[0]}, tau={self.tau}, " + super().extra_repr()


class SimLoss(Loss):
    r"""SimLoss (Kobs et al., 2020): credit for predicting a class similar to the true one.

    .. math:: \ell_i = -\log \sum_j S_{y_i j}\, p_{ij}

    computed in log space from logits (the released code takes probabilities).  ``S = I`` is
    cross entropy.  The matrix is validated once here (C x C, entries in [0, 1], unit
    diagonal); ``log S`` is cached for float32 input.  SimLoss takes no per-class weight.

    Parameters
    ----------
    similarity : Tensor [C, C]
        See :mod:`classaware.similarity` (``ordinal``, ``from_groups``, ``from_embeddings``).
    reduction, ignore_index
        As ``torch.nn.CrossEntropyLoss``.

    Examples
    --------
    >>> import torch
    >>> from classaware.losses import SimLoss
    >>> from classaware.similarity import ordinal
    >>> loss = SimLoss(ordinal(5, reduction_factor=0.5))
    >>> value = loss(torch.randn(4, 5), torch.tensor([0, 1, 2, 4]))
    """

    similarity: Tensor

    def __init__(
        self,
        similarity: Tensor | Sequence[Sequence[float]],
        *,
        reduction: str = "mean",
        ignore_index: int = -100,
    ) -> None:
        super().__init__(
            weight=None, reduction=reduction, ignore_index=ignore_index, takes_weight=False
        )
        sim = F_logit.check_similarity(similarity).detach().clone()
        self.register_buffer("similarity", sim)
        self._cache_log()

    def _cache_log(self) -> None:
        # log S for float32 (and half) input as a non-persistent buffer that follows
        # .to(device); another compute dtype (float64) takes the log of `similarity` per call
        self.register_buffer("log_similarity", self.similarity.float().log(), persistent=False)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[override]
        key = prefix + "similarity"
        if key in state_dict:
            sim = F_logit.check_similarity(state_dict[key]).detach().clone()
            self.similarity = sim.to(self.similarity.device)
            self._cache_log()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        prep = prepare(input, target, None, self.reduction, self.ignore_index)
        c = self.similarity.shape[0]
        if c != prep.x.shape[1]:
            raise ValueError(f"similarity is {c} x {c} but the input has {prep.x.shape[1]} classes")
        f32 = prep.x.dtype == torch.float32
        return F_logit._simloss(prep, self.log_similarity if f32 else self.similarity.log())

    def extra_repr(self) -> str:
        return f"num_classes={self.similarity.shape[0]}, " + super().extra_repr()
