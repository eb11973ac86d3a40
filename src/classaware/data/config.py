"""The ``[data]`` config section: :class:`DataConfig` (defaults, types, ranges, in one place).

Example
-------
>>> cfg = DataConfig.from_dict({"name": "MNIST", "imbalance": {"profile": "exp"}}, "data")
>>> cfg.name, cfg.imbalance.ratio
('mnist', 100.0)
>>> DataConfig.from_dict({"val_fraction": 1.5}, "data")
Traceback (most recent call last):
...
classaware.errors.ConfigError: data.val_fraction: expected a number in [0, 1), got 1.5 (float)
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from classaware.classes import class_list
from classaware.data.images import RESIZE_MODES
from classaware.errors import ConfigError
from classaware.schema import (
    Section,
    boolean,
    choice,
    expected,
    filepath,
    integer,
    is_int,
    number,
    optional,
    section,
    setting,
    text,
    tristate,
)

__all__ = ["DATASET_NAMES", "SAMPLERS", "VAL_FROM", "DataConfig", "ImbalanceConfig",
           "as_data_config", "check_path"]

#: ``data.val_from``: carve validation from the training set before the imbalance (``"train"``),
#: or draw it, balanced, from the images the imbalance leaves unused (``"unused"``)
VAL_FROM: tuple[str, ...] = ("train", "unused")

#: every dataset name ``data.name`` accepts (``"python"``: Datasets passed from Python,
#: ``classaware.train(cfg, data=classaware.data.from_datasets(...))``)
DATASET_NAMES: tuple[str, ...] = ("fashion-mnist", "mnist", "cifar10", "cifar100", "gtsrb",
                                  "imagefolder", "arrays", "csv", "digits", "python")
#: ``data.sampler``: how an epoch's training order is drawn (see ``classaware.data.sampler``)
SAMPLERS: tuple[str, ...] = ("none", "class_balanced", "sqrt")
#: datasets that can be read per sample instead of into memory (``data.in_memory = false``)
_LAZY_DATASETS = ("imagefolder", "python")


def _channels(key: str, v: Any) -> int:
    if not is_int(v) or v not in (1, 3):
        raise expected(key, "1 or 3", v)
    return v


def _class_order(key: str, v: Any) -> tuple[str | int, ...]:
    return class_list(key, v, min_len=1)


@dataclass(frozen=True)
class ImbalanceConfig(Section):
    """``data.imbalance``: the LDAM-DRW long-tail subsample of the training set."""

    profile: str = setting("none", choice(("none", "exp", "step")))
    ratio: float = setting(100.0, number(lo=1.0))       # largest / smallest class
    seed: int = setting(0, integer(lo=0))


@dataclass(frozen=True)
class DataConfig(Section):
    """Every key of ``[data]`` with its default (None: not set); see ``docs/data.md``."""

    name: str = setting("fashion-mnist", choice(DATASET_NAMES))
    dir: str | None = setting(None, optional(filepath))         # looked in first
    download: bool = setting(False, boolean)                # fetch into cache_dir
    cache_dir: str | None = setting(None, optional(filepath))   # default ~/.cache/classaware
    val_fraction: float = setting(0.1, number(0.0, 1.0, hi_open=True))
    val_from: str = setting("train", choice(VAL_FROM))      # where validation images come from
    test_fraction: float = setting(0.2, number(0.0, 1.0, lo_open=True, hi_open=True))
    split_seed: int | None = setting(None, optional(integer(lo=0)))  # None: the run seed
    imbalance: ImbalanceConfig = section(ImbalanceConfig)
    class_order: tuple[str | int, ...] | None = setting(None, optional(_class_order))
    max_train: int | None = setting(None, optional(integer(lo=1)))
    max_test: int | None = setting(None, optional(integer(lo=1)))
    path: str | None = setting(None, optional(filepath))        # imagefolder root, .npz, .csv
    test_path: str | None = setting(None, optional(filepath))   # csv test file
    label_column: str = setting("label", text)              # csv
    label: str = setting("fine", choice(("fine", "coarse")))  # cifar100
    image_size: int = setting(32, integer(lo=1))            # imagefolder / gtsrb
    resize: str = setting("stretch", choice(RESIZE_MODES))  # imagefolder: or "center_crop"
    channels: int | None = setting(None, optional(_channels))  # imagefolder: None = auto
    as_images: bool = setting(False, boolean)               # digits as 1×8×8 images
    allow_empty_classes: bool = setting(False, boolean)     # train although a class has 0 images
    in_memory: bool | str = setting("auto", tristate)       # imagefolder / python datasets
    max_memory_gb: float = setting(4.0, number(lo=0.0, lo_open=True))  # "auto"'s limit
    workers: int = setting(2, integer(lo=0, hi=256))        # DataLoader processes (lazy data)
    sampler: str = setting("none", choice(SAMPLERS))        # epoch order: class re-sampling

    def _check(self, prefix: str) -> None:
        if self.name in ("arrays", "csv") and self.path is None:
            raise ConfigError(f"{prefix}.path: required for data.name = {self.name!r} (the "
                              f"{'.npz' if self.name == 'arrays' else '.csv'} file)")
        if self.in_memory is False and self.name not in _LAZY_DATASETS:
            raise ConfigError(f"{prefix}.in_memory: false is for data.name = 'imagefolder' and "
                              f"Python datasets; {self.name!r} is always read into memory")
        if self.name == "imagefolder" and self.path is None and self.dir is None:
            raise ConfigError(f"{prefix}.path: required for data.name = 'imagefolder' (the root "
                              "folder holding one sub-folder per class)")
        if self.val_from == "unused" and self.imbalance.profile == "none":
            raise ConfigError(f"{prefix}.val_from: \"unused\" draws validation from the images the "
                              f"imbalance leaves unused, but {prefix}.imbalance.profile = \"none\" "
                              "leaves none; set an imbalance profile or val_from = \"train\"")

    def resolved(self) -> DataConfig:
        """The same config with ``dir``, ``cache_dir``, ``path`` and ``test_path`` made absolute
        (``~`` expanded, relative to the current directory): what a run directory records, so
        that ``classaware evaluate`` works from any directory."""
        keys = ("dir", "cache_dir", "path", "test_path")
        return dataclasses.replace(self, **{
            k: os.path.abspath(os.path.expanduser(v)) for k in keys
            if (v := getattr(self, k)) is not None})


def as_data_config(cfg: DataConfig | Mapping[str, Any] | None) -> DataConfig:
    """``cfg`` itself, or a ``[data]`` mapping (None: the defaults) validated into a DataConfig."""
    return cfg if isinstance(cfg, DataConfig) else DataConfig.from_dict(cfg, "data")


def check_path(key: str, value: str | None, folder: bool, what: str) -> None:
    """A ConfigError naming ``key`` unless ``value`` (if set) is an existing folder (``folder``)
    or file: "does not exist", "is a file" or "is a folder", each with ``what`` was expected."""
    if value is None:
        return
    p = Path(value).expanduser()
    if not p.exists():
        raise ConfigError(f"{key}: {str(p)!r} does not exist (expected {what})")
    if folder != p.is_dir():
        raise ConfigError(f"{key}: {str(p)!r} is a {'file' if folder else 'folder'}, "
                          f"expected {what}")
