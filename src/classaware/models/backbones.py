"""Backbones: ``x -> features [N, D]``.

Every backbone exposes ``out_features`` (``D``).  They take float, already normalised input
(the trainer converts uint8 images and normalises them) and work in ``torch.channels_last``
memory format as well as the default contiguous one.

* :class:`SmallCNN` — a small, fast CNN for 28×28 gray images (any small ``H×W`` works).
* :class:`ResNet32` — the LDAM-DRW CIFAR ResNet-32 (3 stages × 5 basic blocks, 16/32/64 channels,
  parameter-free option-A shortcuts, Kaiming-normal initialisation).
* :class:`CamriCNN` — the VGG-style network of the CAMRI release (``src/archs.py`` of
  github.com/pfunami/CAMRI_Loss): conv blocks 64/128/256/512 with batch norm, global average
  pooling, a dense 512-d embedding followed by batch norm.
* :class:`MLP` — a multi-layer perceptron for feature vectors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SmallCNN", "ResNet32", "BasicBlockA", "OptionAShortcut", "CamriCNN", "MLP"]


class SmallCNN(nn.Module):
    """A small CNN for small gray (or colour) images, fast on a CPU.

    ``conv3x3(32)-BN-ReLU-maxpool -> conv3x3(64)-BN-ReLU-maxpool -> adaptive avg pool to
    (min(7, ceil(H/4)), min(7, ceil(W/4))) -> flatten -> Linear(embedding_dim) -> BN1d``.

    The embedding is the batch-normalised output of the dense layer (no ReLU), as in the CAMRI
    release, so that a cosine head sees features spread over the whole sphere.  For 28×28 input
    the pooled map is 7×7 and the dense layer has ``64·49·embedding_dim`` weights.

    Parameters
    ----------
    in_channels : int
        Input channels (1 for Fashion-MNIST).
    input_hw : tuple of int
        ``(H, W)`` of the input; fixes the pooled size.
    embedding_dim : int, default 128
        Feature size ``D``.
    dropout : float, default 0.0
        Dropout before the dense layer.

    Examples
    --------
    >>> net = SmallCNN(1, (28, 28))
    >>> net(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 128])
    """

    def __init__(self, in_channels: int, input_hw: tuple[int, int], embedding_dim: int = 128,
                 dropout: float = 0.0) -> None:
        super().__init__()
        h, w = input_hw
        pooled = (min(7, math.ceil(h / 4)), min(7, math.ceil(w / 4)))
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(32, 64, 3, padding=1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.AdaptiveAvgPool2d(pooled),
        )
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(64 * pooled[0] * pooled[1], embedding_dim, bias=False)
        self.bn = nn.BatchNorm1d(embedding_dim)
        self.out_features = embedding_dim

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        x = torch.flatten(x, 1)
        return self.bn(self.fc(self.dropout(x)))


class OptionAShortcut(nn.Module):
    """Parameter-free shortcut of the CIFAR ResNets (He et al. 2016, option A).

    ``x[:, :, ::stride, ::stride]`` zero-padded with ``(out_channels - in_channels)`` channels,
    split evenly before and after (LDAM-DRW pads ``planes // 4`` on each side when the width
    doubles).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        extra = out_channels - in_channels
        if extra < 0:
            raise ValueError(f"out_channels must be >= in_channels, got {out_channels} < "
                             f"{in_channels}")
        self.stride = stride
        self.pad = (extra // 2, extra - extra // 2)

    def forward(self, x: Tensor) -> Tensor:
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad[0], self.pad[1]))


class BasicBlockA(nn.Module):
    """ResNet basic block with an option-A shortcut.

    ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``; the shortcut is the identity when
    shape is kept, else :class:`OptionAShortcut`.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = (
            OptionAShortcut(in_channels, out_channels, stride)
            if stride != 1 or in_channels != out_channels else nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet32(nn.Module):
    """The CIFAR ResNet-32 of LDAM-DRW (``resnet32`` in ``models/resnet_cifar.py``).

    ``conv3x3(16)-BN-ReLU -> 3 stages of 5 BasicBlockA (16, 32, 64 channels; stride 1, 2, 2) ->
    global average pooling``; features are 64-d.  Conv (and linear) weights are initialised with
    ``kaiming_normal_`` (fan-in, gain √2), BN with weight 1 and bias 0.  The backbone has
    463,504 parameters (the full 10-class model with a linear head 464,154: "0.46M").

    Examples
    --------
    >>> net = ResNet32(3)
    >>> net(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 64])
    """

    def __init__(self, in_channels: int = 3, num_blocks: Sequence[int] = (5, 5, 5),
                 widths: Sequence[int] = (16, 32, 64)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        stages = []
        in_ch = widths[0]
        for i, (n, width) in enumerate(zip(num_blocks, widths)):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(BasicBlockA(in_ch, width, stride))
                in_ch = width
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_features = in_ch
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return torch.flatten(self.pool(x), 1)


def _keras_he_normal_(weight: Tensor) -> None:
    """Keras ``he_normal``: truncated normal at ±2σ, σ = √(2/fan_in) / 0.8796."""
    fan_in = weight.shape[1] * (weight[0][0].numel() if weight.dim() > 2 else 1)
    std = math.sqrt(2.0 / fan_in) / 0.87962566103423978
    nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)


class CamriCNN(nn.Module):
    """The VGG-style CNN of the CAMRI release (``convs`` in ``src/archs.py``), in PyTorch.

    ======  ==========================================================================
    block   layers (every conv: 3×3, 'same' padding, bias, ReLU)
    ======  ==========================================================================
    1       conv64, conv64, BN, conv64, maxpool 2, dropout
    2       conv128, conv128, BN, conv128, maxpool 2, dropout
    3       conv256, conv256, BN, conv256, conv256, conv256, BN
    4       conv512, conv512, global average pooling
    head    dense(embedding_dim, he_normal) -> BN  = the embedding ``z``
    ======  ==========================================================================

    As in Keras: conv weights Glorot-uniform with zero bias, batch norm ``eps = 1e-3`` and
    running-average momentum 0.01 (Keras ``momentum = 0.99``).  The release uses dropout 0.25
    and a 512-d embedding.

    Examples
    --------
    >>> net = CamriCNN(3, embedding_dim=512, dropout=0.25)
    >>> net(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 512])
    """

    def __init__(self, in_channels: int = 3, embedding_dim: int = 512,
                 dropout: float = 0.25) -> None:
        super().__init__()

        def conv(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True)]

        def bn(ch: int) -> nn.Module:
            return nn.BatchNorm2d(ch, eps=1e-3, momentum=0.01)

        def drop() -> nn.Module:
            return nn.Dropout(dropout) if dropout > 0 else nn.Identity()

        layers: list[nn.Module] = [
            *conv(in_channels, 64), *conv(64, 64), bn(64), *conv(64, 64),
            nn.MaxPool2d(2, ceil_mode=True), drop(),
            *conv(64, 128), *conv(128, 128), bn(128), *conv(128, 128),
            nn.MaxPool2d(2, ceil_mode=True), drop(),
            *conv(128, 256), *conv(256, 256), bn(256), *conv(256, 256), *conv(256, 256),
            *conv(256, 256), bn(256),
            *conv(256, 512), *conv(512, 512),
            nn.AdaptiveAvgPool2d(1),
        ]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(512, embedding_dim)
        self.bn = nn.BatchNorm1d(embedding_dim, eps=1e-3, momentum=0.01)
        self.out_features = embedding_dim
        for m in self.features.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        _keras_he_normal_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.flatten(self.features(x), 1)
        return self.bn(self.fc(x))


class MLP(nn.Module):
    """Multi-layer perceptron for feature vectors (input of any shape is flattened).

    Each hidden layer is ``Linear -> [BatchNorm1d] -> ReLU -> [Dropout]``; the features are the
    output of the last hidden layer.

    Examples
    --------
    >>> MLP(64, [256, 256])(torch.zeros(4, 64)).shape
    torch.Size([4, 256])
    """

    def __init__(self, in_features: int, hidden: Sequence[int] = (256, 256),
                 dropout: float = 0.0, batch_norm: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten(1)]
        prev = in_features
        for width in hidden:
            layers.append(nn.Linear(prev, width, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(nn.ReLU(inplace=True))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            prev = width
        self.net = nn.Sequential(*layers)
        self.out_features = prev

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
