"""``create(name, **kwargs)``: build a loss by name, validating its arguments loudly."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from torch import nn

from classaware.losses import logit as _logit
from classaware.losses import margin as _margin


@dataclass(frozen=True)
class LossSpec:
    """What the harness needs to know about a loss.

    input: "cosine" (needs a CosineClassifier head) or "logits".
    needs_counts: the constructor takes ``class_counts`` (filled from the training set).
    takes_weight: accepts a per-class ``weight`` (so DRW can switch it).
    """

    cls: type[nn.Module]
    input: str
    needs_counts: bool
    takes_weight: bool
    defaults: tuple[tuple[str, object], ...] = ()


_REGISTRY: dict[str, LossSpec] = {
    "ce": LossSpec(_logit.CrossEntropyLoss, "logits", False, True),
    "camri": LossSpec(_margin.CAMRILoss, "cosine", False, True),
    "arcface": LossSpec(_margin.ArcFaceLoss, "cosine", False, True),
    "cosface": LossSpec(_margin.CosFaceLoss, "cosine", False, True),
    "ldam": LossSpec(_margin.LDAMLoss, "cosine", True, True),
    "elm": LossSpec(_margin.ELMLoss, "cosine", True, True),
    "simloss": LossSpec(_logit.SimLoss, "logits", False, False),
    "cce": LossSpec(_logit.ComplementCrossEntropy, "logits", False, True),
    "focal": LossSpec(_logit.FocalLoss, "logits", False, True),
    "logit_adjusted": LossSpec(_logit.LogitAdjustedLoss, "logits", True, True),
    "balanced_softmax": LossSpec(_logit.LogitAdjustedLoss, "logits", True, True, (("tau", 1.0),)),
}


def available() -> list[str]:
    """Names accepted by :func:`create`."""
    return list(_REGISTRY)


def spec(name: str) -> LossSpec:
    """The :class:`LossSpec` of ``name`` (ValueError listing the known names if unknown).

    Example
    -------
    >>> from classaware.losses import spec
    >>> spec("ldam").input, spec("ldam").needs_counts
    ('cosine', True)
    """
    if not isinstance(name, str):
        raise TypeError(f"loss name must be a str, got {type(name).__name__}")
    key = name.lower()
    if key not in _REGISTRY:
        raise ValueError(f"unknown loss {name!r}; known losses: {', '.join(_REGISTRY)}")
    return _REGISTRY[key]


def create(name: str, **kwargs: object) -> nn.Module:
    """Build the loss called ``name`` with ``kwargs``.

    Raises ValueError for an unknown name (listing the known ones) or an argument the loss
    does not take; the loss's own constructor validates the values.

    Example
    -------
    >>> from classaware.losses import create
    >>> loss = create("camri", important_classes=[3], margin=0.2, scale=16.0)
    """
    s = spec(name)
    key = name.lower()
    params = inspect.signature(s.cls.__init__).parameters
    unknown = [k for k in kwargs if k not in params]
    if unknown:
        allowed = [p for p in params if p != "self" and p not in dict(s.defaults)]
        raise ValueError(
            f"loss {name!r} does not take {', '.join(map(repr, unknown))}; it takes: {', '.join(allowed)}"
        )
    if key == "balanced_softmax" and "tau" in kwargs:
        raise ValueError(
            "loss 'balanced_softmax' is logit_adjusted with tau=1; use 'logit_adjusted' to set tau"
        )
    merged = dict(s.defaults)
    merged.update(kwargs)
    return s.cls(**merged)
