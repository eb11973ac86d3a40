"""Datasets: ``load_data(cfg) -> DataBundle``, ``available_datasets()``, ``from_datasets``.

Supported ``data.name``: ``fashion-mnist``, ``mnist`` (IDX), ``cifar10``, ``cifar100``
(python pickles), ``gtsrb`` (ppm + GT csv), ``imagefolder``, ``arrays`` (.npz), ``csv``,
``digits`` (scikit-learn, always offline), and your own ``torch.utils.data.Dataset`` pair
(:func:`from_datasets`, recorded as ``"python"``).  Image folders too large for memory, and
Datasets, are read per batch (:mod:`classaware.data.lazy`).  See ``docs/data.md``.

Examples
--------
>>> from classaware.data import load_data
>>> b = load_data({"name": "digits", "as_images": True, "val_fraction": 0.1}, seed=0)
>>> b.kind, b.input_shape, b.x_train.dtype
('image', (1, 8, 8), torch.uint8)
"""

from __future__ import annotations

from typing import Any

from classaware.data.bundle import DataBundle
from classaware.data.config import DATASET_NAMES, DataConfig, ImbalanceConfig
from classaware.data.registry import available_datasets, data_cache, load_data, set_data_cache
from classaware.data.split import imbalance_counts

__all__ = [
    "DATASET_NAMES",
    "DataBundle",
    "DataConfig",
    "DatasetSource",
    "ImbalanceConfig",
    "LazySplit",
    "available_datasets",
    "from_datasets",
    "imbalance_counts",
    "data_cache",
    "load_data",
    "set_data_cache",
]


def __getattr__(name: str) -> Any:  # torch-backed parts load on first use
    if name in ("from_datasets", "DatasetSource", "LazySplit"):
        from classaware.data import lazy

        return getattr(lazy, name)
    raise AttributeError(f"module 'classaware.data' has no attribute {name!r}")
