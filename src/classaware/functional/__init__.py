"""Each loss as a pure function.  Margin losses take cosines [N, C]; the others take logits."""

from classaware.functional._checks import set_value_checks
from classaware.functional.logit import (
    complement_cross_entropy,
    cross_entropy,
    focal_loss,
    logit_adjusted_loss,
    simloss,
)
from classaware.functional.margin import (
    arcface_loss,
    camri_loss,
    cosface_loss,
    elm_loss,
    ldam_loss,
)

__all__ = [
    "arcface_loss",
    "camri_loss",
    "complement_cross_entropy",
    "cosface_loss",
    "cross_entropy",
    "elm_loss",
    "focal_loss",
    "ldam_loss",
    "logit_adjusted_loss",
    "set_value_checks",
    "simloss",
]
