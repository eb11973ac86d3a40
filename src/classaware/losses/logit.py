"""Loss modules on logits: thin wrappers over :mod:`classaware.functional.logit`.

Every module with a ``weight`` keeps it as a buffer (possibly ``None``): it follows
``.to(device)`` and the state dict, and a trainer switches deferred re-weighting (DRW) weights
by plain assignment, ``loss.weight = torch.tensor([...])``.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from classaware.functional import logit as F_logit
from classaware.functional._checks import check_reduction, check_weight

__all__ = [
    "ComplementCrossEntropy",
    "CrossEntropyLoss",
    "FocalLoss",
    "LogitAdjustedLoss",
    "SimLoss",
]


def _as_weight(weight: Tensor | Sequence[float] | None) -> Tensor | None:
    w = check_weight(weight)
    if w is not None:
        w = w.detach().clone()
        if not w.is_floating_point():
            w = w.float()
    return w


def _check_ignore_index(ignore_index: object) -> int:
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise TypeError(f"ignore_index must be an int, got {type(ignore_index).__name__}")
    return ignore_index


class _LogitLoss(nn.Module):
    """Common state: ``weight`` buffer, ``reduction``, ``ignore_index``."""

    weight: Tensor | None

    def __init__(
        self,
        *,
        weight: Tensor | Sequence[float] | None,
        reduction: str,
        ignore_index: int,
        takes_weight: bool = True,
    ) -> None:
        super().__init__()
        self.reduction = check_reduction(reduction)
        self.ignore_index = _check_ignore_index(ignore_index)
        if takes_weight:
            self.register_buffer("weight", _as_weight(weight))

    def _setup(self, input: Tensor, target: Tensor, weight: Tensor | None = None) -> F_logit._Prep:
        return F_logit._setup(input, target, self.ignore_index, weight, self.reduction)

    def extra_repr(self) -> str:
        parts = [f"reduction={self.reduction!r}"]
        if self.ignore_index != -100:
            parts.append(f"ignore_index={self.ignore_index}")
        if getattr(self, "weight", None) is not None:
            parts.append(f"weight=<{self.weight.numel()} classes>")
        return ", ".join(parts)


class CrossEntropyLoss(_LogitLoss):
    r"""Cross entropy on logits (the baseline); see :func:`classaware.functional.cross_entropy`.

    .. math:: \ell_i = w_{y_i}\,\big(\operatorname{logsumexp}(x_i) - x_{i,y_i}\big)

    Same as ``torch.nn.CrossEntropyLoss`` (weight / reduction / ignore_index rules) except that
    an all-ignored batch gives 0 under "mean", ignored rows holding inf/NaN give zero loss and
    zero gradient, and float16/bfloat16 input is computed in float32.

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
        prep = self._setup(input, target, self.weight)
        return F_logit._ce_reduced(prep.x, prep)


class FocalLoss(_LogitLoss):
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
        self.gamma = F_logit._check_real(gamma, "gamma", minimum=0.0)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F_logit._focal(self._setup(input, target, self.weight), self.gamma)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, " + super().extra_repr()


class ComplementCrossEntropy(_LogitLoss):
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
        self.gamma = F_logit._check_real(gamma, "gamma")

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F_logit._complement(self._setup(input, target, self.weight), self.gamma)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, " + super().extra_repr()


class LogitAdjustedLoss(_LogitLoss):
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
        self.tau = F_logit._check_real(tau, "tau", minimum=0.0)
        counts = F_logit._check_counts(class_counts)
        self.class_counts = [float(c) for c in counts.tolist()]
        # float64 so that the module and the functional give bit-identical results
        self.register_buffer("log_prior", (counts / counts.sum()).log())

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        prep = self._setup(input, target, self.weight)
        if self.log_prior.shape[0] != prep.x.shape[1]:
            raise ValueError(
                f"class_counts has {self.log_prior.shape[0]} entries but the input has "
                f"{prep.x.shape[1]} classes"
            )
        return F_logit._logit_adjusted(prep, self.tau * self.log_prior)

    def extra_repr(self) -> str:
        return f"num_classes={self.log_prior.shape[0]}, tau={self.tau}, " + super().extra_repr()


class SimLoss(_LogitLoss):
    r"""SimLoss (Kobs et al., 2020): credit for predicting a class similar to the true one.

    .. math:: \ell_i = -\log \sum_j S_{y_i j}\, p_{ij}

    computed in log space from logits (the released code takes probabilities).  ``S = I`` is
    cross entropy.  The matrix is validated once here (C x C, entries in [0, 1], unit
    diagonal); ``log S`` is cached.  SimLoss takes no per-class weight.

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
        self._set_table(sim)

    def _set_table(self, sim: Tensor) -> None:
        # log S cached as non-persistent buffers (they follow .to(device)); sparse rows when S
        # is mostly zeros (groups, ordinal with a small factor)
        table = F_logit.similarity_table(sim)
        for name, value in zip(("log_dense", "sparse_index", "sparse_log_values"), table):
            self.register_buffer(name, value, persistent=False)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[override]
        key = prefix + "similarity"
        if key in state_dict:
            sim = F_logit.check_similarity(state_dict[key]).detach().clone()
            self.similarity = sim.to(self.similarity.device)
            self._set_table(self.similarity)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        prep = self._setup(input, target)
        c = self.similarity.shape[0]
        if c != prep.x.shape[1]:
            raise ValueError(f"similarity is {c} x {c} but the input has {prep.x.shape[1]} classes")
        table = F_logit.SimilarityTable(self.log_dense, self.sparse_index, self.sparse_log_values)
        return F_logit._simloss(prep, table)

    def extra_repr(self) -> str:
        return f"num_classes={self.similarity.shape[0]}, " + super().extra_repr()
