"""Class-aware losses as ``nn.Module`` s (thin wrappers over :mod:`classaware.functional`)."""

from classaware.losses.factory import LossSpec, available, create, spec
from classaware.losses.logit import (
    ComplementCrossEntropy,
    CrossEntropyLoss,
    FocalLoss,
    LogitAdjustedLoss,
    SimLoss,
)
from classaware.losses.margin import ArcFaceLoss, CAMRILoss, CosFaceLoss, ELMLoss, LDAMLoss

__all__ = [
    "ArcFaceLoss",
    "CAMRILoss",
    "ComplementCrossEntropy",
    "CosFaceLoss",
    "CrossEntropyLoss",
    "ELMLoss",
    "FocalLoss",
    "LDAMLoss",
    "LogitAdjustedLoss",
    "LossSpec",
    "SimLoss",
    "available",
    "create",
    "spec",
]
