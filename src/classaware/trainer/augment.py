"""Batch augmentation on whole tensors: random crop with zero padding, horizontal flip.

Both work on a batch ``x`` of shape [N, C, H, W] (any dtype, any device) with one
``torch.Generator`` on the batch's device, so there is no per-sample Python and no host sync.

* random crop: pad each side with ``padding`` zeros (raw pixel value 0, as torchvision's
  ``RandomCrop(32, padding=4)`` on the uint8 image), then take an H x W window at offset
  ``(dy, dx)`` drawn uniformly from ``{0, ..., 2 * padding}``; i.e.
  ``out[n, c, i, j] = xpad[n, c, i + dy_n, j + dx_n]``;
* horizontal flip: with probability 1/2 per image, ``out[n, c, i, j] = x[n, c, i, W - 1 - j]``.

Which augmentation a run uses (:func:`resolve_augment`, keys of ``[train]``, see
``docs/config.md``): ``augment = "auto"`` is on for image datasets except ``digits`` (8 x 8) and
Datasets passed from Python (``data.name = "python"``: they do their own transforms), and off
for feature vectors; ``crop_padding`` (default 4, 0 = no crop); ``hflip = "auto"`` flips
except for ``mnist``, ``gtsrb`` and ``digits`` (digits and traffic signs are not
mirror-symmetric).  Fashion-MNIST and CIFAR get crop + flip.

Example
-------
>>> import torch
>>> g = torch.Generator().manual_seed(0)
>>> x = torch.arange(2 * 3 * 4 * 4, dtype=torch.uint8).reshape(2, 3, 4, 4)
>>> augment_batch(x, crop_padding=1, flip=True, generator=g).shape
torch.Size([2, 3, 4, 4])
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from classaware.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from classaware.trainer.config import TrainConfig

NO_FLIP_DATASETS = ("mnist", "gtsrb", "digits")
NO_AUGMENT_DATASETS = ("digits", "python")  # python: your Dataset does its own transforms


def resolve_augment(train: TrainConfig, *, dataset: str, kind: str,
                    input_shape: tuple) -> tuple[int, bool]:
    """``(crop_padding, flip)`` of a run from ``train.augment``, ``crop_padding``, ``hflip``.

    ``(0, False)`` means no augmentation.  Asking for augmentation of feature vectors
    (``augment = true`` with non-image data) is a ConfigError.
    """
    is_image = kind == "image" and len(input_shape) == 3
    on = train.augment
    if on == "auto":
        on = is_image and dataset not in NO_AUGMENT_DATASETS
    if not on:
        return 0, False
    if not is_image:
        raise ConfigError(f"train.augment: true needs image data; {dataset!r} is {kind} data")
    flip = train.hflip if train.hflip != "auto" else dataset not in NO_FLIP_DATASETS
    return train.crop_padding, bool(flip)


def random_crop(x: Tensor, padding: int, generator: torch.Generator | None = None) -> Tensor:
    """Zero-pad by ``padding`` and crop back to H x W at a random offset per image."""
    if x.dim() != 4:
        raise ValueError(f"x must be [N, C, H, W], got shape {tuple(x.shape)}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    if padding == 0 or x.shape[0] == 0:
        return x
    n, c, h, w = x.shape
    xp = F.pad(x, (padding, padding, padding, padding))
    off = torch.randint(0, 2 * padding + 1, (2, n), generator=generator, device=x.device)
    rows = (off[0][:, None] + torch.arange(h, device=x.device))[:, None, :, None]   # [N,1,H,1]
    cols = (off[1][:, None] + torch.arange(w, device=x.device))[:, None, None, :]   # [N,1,1,W]
    idx_n = torch.arange(n, device=x.device)[:, None, None, None]
    idx_c = torch.arange(c, device=x.device)[None, :, None, None]
    return xp[idx_n, idx_c, rows, cols]


def random_flip(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Flip each image left-right with probability 1/2."""
    if x.dim() != 4:
        raise ValueError(f"x must be [N, C, H, W], got shape {tuple(x.shape)}")
    mask = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5
    return torch.where(mask[:, None, None, None], x.flip(3), x)


def augment_batch(x: Tensor, *, crop_padding: int = 0, flip: bool = False,
                  generator: torch.Generator | None = None) -> Tensor:
    """Random crop (when ``crop_padding > 0``) then random flip (when ``flip``)."""
    if crop_padding:
        x = random_crop(x, crop_padding, generator)
    if flip:
        x = random_flip(x, generator)
    return x
