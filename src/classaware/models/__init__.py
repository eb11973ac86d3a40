"""Models: a backbone (``x -> features [N, D]``) and a linear or cosine head.

>>> from classaware.models import build_model
>>> model = build_model({"name": "small_cnn", "head": "cosine"}, (1, 28, 28), 10)
>>> resolve_model_name({"name": "auto"}, (64,), "features")
'mlp'

Backbones: ``small_cnn`` (28×28 gray, fast on a CPU), ``resnet32`` (LDAM-DRW CIFAR ResNet-32),
``camri_cnn`` (the CAMRI release's VGG-style CNN with a 512-d embedding), ``mlp`` (feature
vectors); ``"auto"`` (the default) picks one from the data (:func:`resolve_model_name`); your
own is ``"package.module:factory"`` or an ``nn.Module`` passed from Python
(:mod:`classaware.models.custom`).  See :class:`ModelConfig` for the ``[model]`` keys.
"""

from __future__ import annotations

from classaware.models.backbones import (
    MLP,
    BasicBlockA,
    CamriCNN,
    OptionAShortcut,
    ResNet32,
    SmallCNN,
)
from classaware.models.classifier import (
    BACKBONES,
    HEADS,
    Classifier,
    ModelConfig,
    build_model,
    resolve_model_name,
)
from classaware.models.custom import load_init

__all__ = [
    "BACKBONES",
    "HEADS",
    "Classifier",
    "ModelConfig",
    "build_model",
    "load_init",
    "resolve_model_name",
    "SmallCNN",
    "ResNet32",
    "BasicBlockA",
    "OptionAShortcut",
    "CamriCNN",
    "MLP",
]
