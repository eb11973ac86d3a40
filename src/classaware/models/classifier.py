"""``Classifier`` (backbone + head), the ``[model]`` config section, ``build_model`` and the
``"auto"`` rule (:func:`resolve_model_name`)."""

from __future__ import annotations

import difflib
import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from torch import Tensor, nn

from classaware import schema
from classaware.errors import ConfigError
from classaware.models.backbones import MLP, CamriCNN, ResNet32, SmallCNN
from classaware.models.custom import (
    build_factory,
    feature_dim,
    is_factory_name,
    load_init,
    weights_path,
)
from classaware.schema import FrozenMap, Section, expected, is_int, is_number, setting

__all__ = ["AUTO_MAX_SIZE", "BACKBONES", "HEADS", "Classifier", "ModelConfig", "build_model",
           "resolve_model_name"]

#: Backbone names and the input they take (``"image"``: ``[ch, H, W]``; ``"any"``: flattened).
BACKBONES: dict[str, str] = {"small_cnn": "image", "resnet32": "image", "camri_cnn": "image",
                             "mlp": "any"}
HEADS: tuple[str, ...] = ("linear", "cosine")
#: ``model.name`` values besides the backbones: the data-driven choice, and a backbone passed
#: from Python (``classaware.train(cfg, model=module)``)
AUTO, PYTHON = "auto", "python"
#: ``"auto"`` picks a built-in CNN for images up to this height and width
AUTO_MAX_SIZE = 32
_DEFAULT_EMBEDDING = {"small_cnn": 128, "camri_cnn": 512}
_NAMES = (AUTO, *BACKBONES, PYTHON)


def _hidden(key: str, v: Any) -> tuple[int, ...]:
    if not isinstance(v, (list, tuple)) or not v or not all(is_int(h) and h > 0 for h in v):
        raise expected(key, "a non-empty list of positive integers", v)
    return tuple(v)


def _model_name(key: str, v: Any) -> str:
    """A built-in name, ``"auto"``, ``"python"`` (any case) or ``"package.module:factory"``
    (kept as written: module paths are case-sensitive)."""
    if isinstance(v, str) and ":" in v:
        if not is_factory_name(v.strip()):
            raise expected(key, 'a backbone name or "package.module:factory"', v)
        return v.strip()
    if isinstance(v, str) and v.lower() in _NAMES:
        return v.lower()
    close = difflib.get_close_matches(v, _NAMES, n=1) if isinstance(v, str) else []
    what = f"one of {', '.join(map(repr, _NAMES))} or \"package.module:factory\" (your own)"
    raise ConfigError(f"{expected(key, what, v)}"
                      + (f"; did you mean {close[0]!r}?" if close else ""))


def _toml_value(v: Any) -> bool:
    if isinstance(v, (list, tuple)):
        return all(_toml_value(x) for x in v)
    if isinstance(v, Mapping):
        return all(isinstance(k, str) and _toml_value(x) for k, x in v.items())
    return isinstance(v, (str, bool)) or is_number(v)


def _kwargs(key: str, v: Any) -> FrozenMap:
    if not isinstance(v, Mapping) or not _toml_value(v):
        raise expected(key, "a table of keyword arguments (strings, numbers, booleans, lists, "
                            "tables)", v)
    return FrozenMap(v)


@dataclass(frozen=True)
class ModelConfig(Section):
    """Every key of the ``[model]`` section with its default.

    * ``name``: ``"auto"`` (default: chosen from the data, see :func:`resolve_model_name`), a
      backbone of :data:`BACKBONES`, your own ``"package.module:factory"`` (a callable returning
      an ``nn.Module`` from inputs to features ``[N, D]``), or ``"python"`` (the backbone was
      passed as ``classaware.train(cfg, model=module)``).
    * ``head``: ``"linear"`` (logits) or ``"cosine"`` (:class:`classaware.nn.CosineClassifier`,
      outputs cosines in [-1, 1]; required by the margin losses).
    * ``embedding_dim``: feature size ``D``; ``0`` = the backbone's own (small_cnn 128,
      camri_cnn 512).  resnet32 (64), mlp (last hidden size) and your own backbones have a
      fixed ``D``: any other value than 0 is an error for them.
    * ``hidden``: mlp hidden sizes.
    * ``dropout``: dropout probability (mlp: after each hidden layer; small_cnn: before the
      dense layer; camri_cnn: after each pooling, as in the release, which used 0.25);
      resnet32 and your own backbones take none here and reject a non-zero value.
    * ``batch_norm``: mlp only: batch norm after each hidden linear layer.
    * ``kwargs``: keyword arguments of a ``"package.module:factory"`` (a table).
    * ``init``: a local file with a state dict loaded into the backbone before training
      (stored as an absolute path); ``init_strict``: every key must match (default), else
      the matching keys are loaded and the others listed.
    """

    name: str = setting(AUTO, _model_name)
    head: str = setting("linear", schema.choice(HEADS))
    embedding_dim: int = setting(0, schema.integer(lo=0))
    hidden: tuple[int, ...] = setting((256, 256), _hidden)
    dropout: float = setting(0.0, schema.number(0.0, 1.0, hi_open=True))
    batch_norm: bool = setting(False, schema.boolean)
    kwargs: FrozenMap = setting(FrozenMap(), _kwargs)
    init: str | None = setting(None, schema.optional(weights_path))
    init_strict: bool = setting(True, schema.boolean)

    def _check(self, prefix: str) -> None:
        if self.kwargs and not is_factory_name(self.name):
            raise ConfigError(f"{prefix}.kwargs: only for model.name = \"package.module:factory\""
                              f" (got model.name = {self.name!r})")
        if self.name != AUTO:
            _check_for(self, self.name, prefix, "")

    def resolved(self, input_shape: Sequence[int], kind: str | None = None) -> ModelConfig:
        """This section with ``name = "auto"`` replaced by :func:`resolve_model_name`'s choice
        (itself otherwise)."""
        name = resolve_model_name(self, input_shape, kind)
        return self if name == self.name else replace(self, name=name)


def _check_for(c: ModelConfig, name: str, prefix: str, why: str) -> None:
    """The rules that depend on the backbone (``why``: how ``"auto"`` chose it, or empty)."""
    if c.embedding_dim != 0 and name not in _DEFAULT_EMBEDDING:
        fixed = {"resnet32": "64", "mlp": "the last entry of model.hidden"}.get(
            name, "its output's size")
        raise ConfigError(f"{prefix}.embedding_dim: {name}{why}'s feature size is fixed "
                          f"({fixed}); leave embedding_dim = 0, got {c.embedding_dim!r}")
    if c.dropout != 0 and name not in ("mlp", "small_cnn", "camri_cnn"):
        raise ConfigError(f"{prefix}.dropout: {name}{why} takes no model.dropout; leave "
                          f"dropout = 0, got {c.dropout!r}")


def resolve_model_name(model_cfg: ModelConfig | Mapping[str, Any] | None,
                       input_shape: Sequence[int], kind: str | None = None) -> str:
    """The backbone ``model.name = "auto"`` stands for on data of ``input_shape``.

    ===========================================  ============
    data (one sample's shape)                    backbone
    ===========================================  ============
    feature vectors (``kind == "features"``,     ``mlp``
    or any shape that is not ``[ch, H, W]``)
    3-channel 32×32 images                       ``resnet32``
    other images up to 32×32 (1 channel, or      ``small_cnn``
    3 channels smaller than 32×32)
    larger images                                ConfigError: name a model (or set
                                                 ``data.image_size`` ≤ 32)
    ===========================================  ============

    Any other ``model.name`` is returned as is.  The key rules that depend on the backbone
    (``embedding_dim``, ``dropout``) are checked for the chosen one.

    Parameters
    ----------
    model_cfg : ModelConfig, mapping or None
        The ``[model]`` section.
    input_shape : sequence of int
        One sample's shape (``DataBundle.input_shape``).
    kind : str, optional
        ``"image"`` or ``"features"`` (``DataBundle.kind``); default: image when the shape has 3
        dimensions.

    Examples
    --------
    >>> resolve_model_name({}, (64,)), resolve_model_name({}, (1, 28, 28))
    ('mlp', 'small_cnn')
    >>> resolve_model_name({"name": "auto"}, (3, 32, 32), "image")
    'resnet32'
    """
    c = model_cfg if isinstance(model_cfg, ModelConfig) else ModelConfig.from_dict(
        model_cfg, "model")
    if c.name != AUTO:
        return c.name
    shape = _check_shape(input_shape)
    image = (kind or "image") == "image" and len(shape) == 3
    if not image:
        name, why = "mlp", f" (auto: feature vectors of shape {list(shape)})"
    else:
        ch, h, w = shape
        if max(h, w) > AUTO_MAX_SIZE:
            raise ConfigError(
                f"model.name: \"auto\" has no built-in model for {ch}×{h}×{w} images (the "
                f"built-ins are sized for up to {AUTO_MAX_SIZE}×{AUTO_MAX_SIZE}); set "
                f"data.image_size = {AUTO_MAX_SIZE}, or name a model: \"resnet32\", "
                "\"small_cnn\", \"camri_cnn\" or your own \"package.module:factory\"")
        name = "resnet32" if (ch, h, w) == (3, AUTO_MAX_SIZE, AUTO_MAX_SIZE) else "small_cnn"
        why = f" (auto: {ch}×{h}×{w} images)"
    _check_for(c, name, "model", why)
    return name


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
        self.init_note: str | None = None

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
                num_classes: int, *, backbone: nn.Module | None = None,
                load_weights: bool = True) -> Classifier:
    """Build a :class:`Classifier` from a ``[model]`` section.

    Parameters
    ----------
    cfg : ModelConfig, mapping or None
        The ``[model]`` section (a mapping is validated into a :class:`ModelConfig`; missing
        keys take its defaults).  ``name = "auto"`` is resolved by :func:`resolve_model_name`.
    input_shape : tuple of int
        One sample's shape without the batch dimension: ``(ch, H, W)`` for images (the
        channels become the first conv's ``in_channels``), ``(D,)`` (or any shape, flattened)
        for ``mlp``.
    num_classes : int
        Number of classes ``C`` (head outputs).
    backbone : nn.Module, optional
        Your own backbone instance (inputs to features ``[N, D]``), used as is (not copied):
        ``cfg.name`` must then be ``"python"``.  Without it, ``name = "python"`` is an error.
    load_weights : bool
        Load ``cfg.init`` into the backbone (re-evaluation passes False: the checkpoint holds
        the weights).

    Returns
    -------
    Classifier
        ``init_note`` holds what ``model.init`` loaded (None without it).

    Raises
    ------
    ConfigError
        Bad config, an image backbone asked for non-image input, a factory that does not
        import, raises or does not map inputs to ``[N, D]``, weights that do not fit.
    ValueError, TypeError
        Bad ``input_shape`` or ``num_classes``.

    Examples
    --------
    >>> model = build_model({"name": "resnet32", "head": "cosine"}, (3, 32, 32), 10)
    >>> model.head_type, model.feature_dim
    ('cosine', 64)
    >>> build_model({}, (64,), 10).name          # "auto" on feature vectors
    'mlp'
    """
    c = cfg if isinstance(cfg, ModelConfig) else ModelConfig.from_dict(cfg, "model")
    shape = _check_shape(input_shape)
    if not is_int(num_classes) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    c = c.resolved(shape)
    if (backbone is not None) != (c.name == PYTHON):
        raise ConfigError("model.name: \"python\" means the backbone is passed from Python "
                          "and none was passed: classaware.train(cfg, model=module), "
                          "evaluate_run(run_dir, model=module)"
                          if backbone is None else
                          f"model.name: a backbone instance needs model.name = \"python\", "
                          f"got {c.name!r}")
    net, dim = _backbone(c, shape) if backbone is None else (backbone, -1)
    if dim < 0:
        dim = feature_dim(net, shape, key="model.name")
    note = load_init(net, c.init, strict=c.init_strict) if load_weights and c.init else None
    head: nn.Module
    if c.head == "linear":
        head = nn.Linear(dim, num_classes)
        if c.name == "resnet32":  # LDAM-DRW initialises every conv and linear layer this way
            nn.init.kaiming_normal_(head.weight)
    else:
        from classaware.nn import CosineClassifier

        head = CosineClassifier(dim, num_classes)
    model = Classifier(net, head, c.head, name=c.name, feature_dim=dim, num_classes=num_classes)
    model.init_note = note
    return model


def _backbone(c: ModelConfig, shape: tuple[int, ...]) -> tuple[nn.Module, int]:
    """The backbone named by ``c.name`` and its feature size (-1: found by a dry forward)."""
    if is_factory_name(c.name):
        return build_factory(c.name, c.kwargs, shape), -1
    if BACKBONES[c.name] == "image" and len(shape) != 3:
        raise ConfigError(f"model.name: {c.name} takes images [channels, H, W], but the data has "
                          f"input shape {shape}; use name = \"mlp\" (or \"auto\") for feature "
                          "vectors")
    emb = c.embedding_dim or _DEFAULT_EMBEDDING.get(c.name, 0)
    net: nn.Module
    if c.name == "small_cnn":
        net = SmallCNN(shape[0], (shape[1], shape[2]), embedding_dim=emb, dropout=c.dropout)
    elif c.name == "resnet32":
        net = ResNet32(shape[0])
    elif c.name == "camri_cnn":
        net = CamriCNN(shape[0], embedding_dim=emb, dropout=c.dropout)
    else:
        net = MLP(math.prod(shape), list(c.hidden), dropout=c.dropout, batch_norm=c.batch_norm)
    return net, int(net.out_features)
