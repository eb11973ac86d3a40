"""Datasets in memory: ``load_data(cfg) -> DataBundle`` and ``available_datasets()``.

Supported ``data.name``: ``fashion-mnist``, ``mnist`` (IDX), ``cifar10``, ``cifar100``
(python pickles), ``gtsrb`` (ppm + GT csv), ``imagefolder``, ``arrays`` (.npz), ``csv``,
``digits`` (scikit-learn, always offline).  See ``docs/data.md``.

Examples
--------
>>> from classaware.data import load_data
>>> b = load_data({"name": "digits", "as_images": True, "val_fraction": 0.1}, seed=0)
>>> b.kind, b.input_shape, b.x_train.dtype
('image', (1, 8, 8), torch.uint8)
"""

from __future__ import annotations

from classaware.data.bundle import DataBundle
from classaware.data.config import DATASET_NAMES, DataConfig, ImbalanceConfig
from classaware.data.registry import available_datasets, load_data
from classaware.data.split import imbalance_counts

__all__ = [
    "DATASET_NAMES",
    "DataBundle",
    "DataConfig",
    "ImbalanceConfig",
    "available_datasets",
    "imbalance_counts",
    "load_data",
]
