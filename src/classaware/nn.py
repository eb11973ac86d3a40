"""Layers: the cosine classifier head that every margin loss needs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["CosineClassifier"]


def _positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a positive int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


class CosineClassifier(nn.Module):
    r"""Linear head without bias whose outputs are cosine similarities.

    .. math:: \cos\theta_{ij} = \frac{x_i \cdot w_j}{\lVert x_i\rVert\,\lVert w_j\rVert}
              \in [-1, 1]

    Features and class weights are L2-normalised (``F.normalize``, eps 1e-12: a zero feature
    vector gives cosines 0) and the result is clamped to ``[-1, 1]``.  This is the input the
    margin losses (CAMRI, ArcFace, CosFace, LDAM, ELM) expect; ``argmax`` of the cosines is the
    prediction.  The weight is kept in float32 and the cosines are computed in float32 even
    under autocast or for float16/bfloat16 features (float64 stays float64).

    Parameters
    ----------
    in_features : int
        Feature dimension ``D``.
    num_classes : int
        Number of classes ``C``.

    Attributes
    ----------
    weight : nn.Parameter
        ``[C, D]`` float32, Xavier-uniform initialised.  No bias.

    Examples
    --------
    >>> import torch
    >>> head = CosineClassifier(16, 3)
    >>> cos = head(torch.randn(4, 16))
    >>> cos.shape, bool(cos.abs().max() <= 1)
    (torch.Size([4, 3]), True)
    """

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.in_features = _positive_int(in_features, "in_features")
        self.num_classes = _positive_int(num_classes, "num_classes")
        self.weight = nn.Parameter(torch.empty(num_classes, in_features, dtype=torch.float32))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform initialisation of ``weight``."""
        nn.init.xavier_uniform_(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(
                f"input must be [N, {self.in_features}] features, got shape {tuple(x.shape)}"
            )
        if torch.is_autocast_enabled(x.device.type):
            with torch.autocast(device_type=x.device.type, enabled=False):
                return self._cosine(x)
        return self._cosine(x)

    def _cosine(self, x: Tensor) -> Tensor:
        dtype = torch.promote_types(torch.promote_types(x.dtype, self.weight.dtype), torch.float32)
        xn = F.normalize(x.to(dtype), dim=1)
        wn = F.normalize(self.weight.to(dtype), dim=1)
        return F.linear(xn, wn).clamp(-1.0, 1.0)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, num_classes={self.num_classes}, bias=False"

