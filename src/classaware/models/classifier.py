"""``Classifier`` (backbone + head), the ``[model]`` config section and ``build_model``."""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from classaware.errors import ConfigError
from classaware.models.backbones import MLP, CamriCNN, ResNet32, SmallCNN
from classaware.schema import Section, boolean, choice, expected, integer, is_int, number, setting

__all__ = ["BACKBONES", "HEADS", "Classifier", "ModelConfig", "build_model"]

#: Backbone names and the input they take (``"image"``: ``[ch, H, W]``; ``"any"``: flattened).
BACKBONES: dict[str, str] = {"small_cnn": "image", "resnet32": "image", "camri_cnn": "image",
                             "mlp": "any"}
HEADS: tuple[str, ...] = ("linear", "cosine")
_DEFAULT_EMBEDDING = {"small_cnn": 128, "camri_cnn": 512}


def _hidden(key: str, v: Any) -> tuple[int, ...]:
    if not isinstance(v, (list, tuple)) or not v or not all(is_int(h) and h > 0 for h in v):
        raise expected(key, "a non-empty list of positive integers", v)
    return tuple(v)


@dataclass(frozen=True)
class ModelConfig(Section):
    """Every key of the ``[model]`` section with its default.

    * ``name``: backbone, one of :data:`BACKBONES`.
    * ``head``: ``"linear"`` (logits) or ``"cosine"`` (:class:`classaware.nn.CosineClassifier`,
      outputs cosines in [-1, 1]; required by the margin losses).
    * ``embedding_dim``: feature size ``D``; ``0`` = the backbone's own (small_cnn 128,
      camri_cnn 512).  resnet32 (64) and mlp (last hidden size) have a fixed ``D``: any other
      value than 0 is an error for them.
    * ``hidden``: mlp hidden sizes.
    * ``dropout``: dropout probability (mlp: after each hidden layer; small_cnn: before the
      dense layer; camri_cnn: after each pooling, as in the release, which used 0.25);
      resnet32 has none and rejects a non-zero value.
    * ``batch_norm``: mlp only: batch norm after each hidden linear layer.
    """

    name: str = setting("small_cnn", choice(BACKBONES))
    head: str = setting("linear", choice(HEADS))
    embedding_dim: int = setting(0, integer(lo=0))
    hidden: tuple[int, ...] = setting((256, 256), _hidden)
    dropout: float = setting(0.0, number(0.0, 1.0, hi_open=True))
    batch_norm: bool = setting(False, boolean)

    def _check(self, prefix: str) -> None:
        if self.embedding_dim != 0 and self.name not in _DEFAULT_EMBEDDING:
            fixed = "64" if self.name == "resnet32" else "the last entry of model.hidden"
            raise ConfigError(f"{prefix}.embedding_dim: {self.name}'s feature size is fixed "
                              f"({fixed}); leave embedding_dim = 0, got {self.embedding_dim!r}")
        if self.dropout != 0 and self.name == "resnet32":
            raise ConfigError(f"{prefix}.dropout: resnet32 has no dropout; leave dropout = 0, "
                              f"got {self.dropout!r}")


class Classifier(nn.Module):
    """A backbone followed by a linear or cosine head.

    ``features(x) = backbone(x)`` has shape ``[N, D]``; ``forward(x) = head(features(x))`` has
    shape ``[N, C]``: logits for ``head_type == "linear"``, cosines
    ``cos θ_j = <f/‖f‖, w_j/‖w_j‖>`` for ``head_type == "cosine"``.  Predictions are the
    argmax of ``forward`` (no margin, no prior).

    Attributes
    ----------
    backbone : nn.Module
    head : nn.Module
        ``nn.Linear(D, C)`` or ``classaware.nn.CosineClassifier(D, C)``.
    head_type : str
        ``"linear"`` or ``"cosine"``.
    name : str
        Backbone name.
    feature_dim, num_classes : int

    Examples
    --------
    >>> import torch
    >>> model = build_model({"name": "small_cnn"}, (1, 28, 28), 10)
    >>> model(torch.zeros(4, 1, 28, 28)).shape, model.features(torch.zeros(4, 1, 28, 28)).shape
    (torch.Size([4, 10]), torch.Size([4, 128]))
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, head_type: str, *, name: str,
                 feature_dim: int, num_classes: int) -> None:
        super().__init__()
        if head_type not in HEADS:
            raise ValueError(f"head_type must be one of {HEADS}, got {head_type!r}")
        self.backbone = backbone
        self.head = head
        self.head_type = head_type
        self.name = name
        self.feature_dim = int(feature_dim)
        self.num_classes = int(num_classes)

    def features(self, x: Tensor) -> Tensor:
        """Backbone features ``[N, D]``."""
        return self.backbone(x)

    def forward(self, x: Tensor) -> Tensor:
        """Head output ``[N, C]`` (logits or cosines)."""
        return self.head(self.backbone(x))

    def extra_repr(self) -> str:
        return (f"name={self.name!r}, head_type={self.head_type!r}, "
                f"feature_dim={self.feature_dim}, num_classes={self.num_classes}")


def _check_shape(input_shape: Any) -> tuple[int, ...]:
    if not isinstance(input_shape, Sequence) or isinstance(input_shape, str):
        raise TypeError(f"input_shape must be a tuple of positive ints, got {input_shape!r}")
    try:
        shape = tuple(operator.index(s) for s in input_shape)
    except TypeError:
        raise TypeError(f"input_shape must be a tuple of positive ints, "
                        f"got {input_shape!r}") from None
    if len(shape) == 0 or min(shape) < 1:
        raise ValueError(f"input_shape must be a non-empty tuple of positive ints, "
                         f"got {input_shape!r}")
    return shape


def build_model(cfg: ModelConfig | Mapping[str, Any] | None, input_shape: Sequence[int],
                num_classes: int) -> Classifier:
    """Build a :class:`Classifier` from a ``[model]`` section.

    Parameters
    ----------
    cfg : ModelConfig, mapping or None
        The ``[model]`` section (a mapping is validated into a :class:`ModelConfig`; missing
        keys take its defaults).
    input_shape : tuple of int
        One sample's shape without the batch dimension: ``(ch, H, W)`` for images (the
        channels become the first conv's ``in_channels``), ``(D,)`` (or any shape, flattened)
        for ``mlp``.
    num_classes : int
        Number of classes ``C`` (head outputs).

    Returns
    -------
    Classifier

    Raises
    ------
    ConfigError
        Bad config, or an image backbone asked for non-image input.
    ValueError, TypeError
        Bad ``input_shape`` or ``num_classes``.

    Examples
    --------
    >>> model = build_model({"name": "resnet32", "head": "cosine"}, (3, 32, 32), 10)
    >>> model.head_type, model.feature_dim
    ('cosine', 64)
    """
    c = cfg if isinstance(cfg, ModelConfig) else ModelConfig.from_dict(cfg, "model")
    shape = _check_shape(input_shape)
    if not is_int(num_classes) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if BACKBONES[c.name] == "image" and len(shape) != 3:
        raise ConfigError(f"model.name: {c.name} takes images [channels, H, W], but the data has "
                          f"input shape {shape}; use name = \"mlp\" for feature vectors")
    emb = c.embedding_dim or _DEFAULT_EMBEDDING.get(c.name, 0)
    backbone: nn.Module
    if c.name == "small_cnn":
        backbone = SmallCNN(shape[0], (shape[1], shape[2]), embedding_dim=emb, dropout=c.dropout)
    elif c.name == "resnet32":
        backbone = ResNet32(shape[0])
    elif c.name == "camri_cnn":
        backbone = CamriCNN(shape[0], embedding_dim=emb, dropout=c.dropout)
    else:
        backbone = MLP(math.prod(shape), list(c.hidden), dropout=c.dropout,
                       batch_norm=c.batch_norm)
    dim = int(backbone.out_features)
    head: nn.Module
    if c.head == "linear":
        head = nn.Linear(dim, num_classes)
        if c.name == "resnet32":  # LDAM-DRW initialises every conv and linear layer this way
            nn.init.kaiming_normal_(head.weight)
    else:
        from classaware.nn import CosineClassifier

        head = CosineClassifier(dim, num_classes)
    return Classifier(backbone, head, c.head, name=c.name, feature_dim=dim,
                      num_classes=num_classes)
