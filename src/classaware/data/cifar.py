"""CIFAR-10 and CIFAR-100 from the python-pickle batches as distributed."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from classaware.data.bundle import RawData
from classaware.errors import ConfigError

__all__ = ["CIFAR10_CLASSES", "find_cifar_dir", "load_cifar"]

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck"]

_LAYOUT = {
    "cifar10": ("cifar-10-batches-py",
                [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "batches.meta"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "meta"),
}


def find_cifar_dir(name: str, base: Path) -> Path | None:
    """``base/<cifar-10-batches-py | cifar-100-python>`` or ``base`` itself, if complete."""
    folder, train, test, _ = _LAYOUT[name]
    for d in (base / folder, base):
        if d.is_dir() and all((d / f).is_file() for f in train + test):
            return d
    return None


def _unpickle(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f, encoding="bytes")
    except Exception as exc:  # noqa: BLE001 - any unpickling problem is a data problem
        raise ConfigError(f"{path}: not a CIFAR pickle batch ({exc})") from exc
    if not isinstance(obj, dict):
        raise ConfigError(f"{path}: not a CIFAR pickle batch (a {type(obj).__name__})")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _names(values: Any) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def _read(paths: list[Path], label_key: str) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for p in paths:
        batch = _unpickle(p)
        if "data" not in batch or label_key not in batch:
            raise ConfigError(f"{p}: CIFAR batch without 'data' / {label_key!r}")
        data = np.asarray(batch["data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise ConfigError(f"{p}: CIFAR data must be [N, 3072] uint8, got {data.shape}")
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.append(np.asarray(batch[label_key], dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def load_cifar(name: str, d: Path, label: str = "fine") -> RawData:
    """Read CIFAR-10 (``label`` ignored) or CIFAR-100 with ``"fine"`` or ``"coarse"`` labels.

    Images are ``[N, 3, 32, 32]`` uint8 (the row layout of the batches: 1024 red, 1024 green,
    1024 blue values).  Class names come from the meta file.
    """
    _, train, test, meta_file = _LAYOUT[name]
    if name == "cifar10":
        label_key, names_key, default = "labels", "label_names", CIFAR10_CLASSES
    else:
        label_key, names_key, default = f"{label}_labels", f"{label}_label_names", None
    meta_path = d / meta_file
    names = None
    if meta_path.is_file():
        meta = _unpickle(meta_path)
        if names_key in meta:
            names = _names(meta[names_key])
    if names is None:
        if default is None:
            raise ConfigError(f"{meta_path}: missing, or without {names_key!r} (CIFAR-100 class "
                              "names come from the meta file)")
        names = list(default)
    x_tr, y_tr = _read([d / f for f in train], label_key)
    x_te, y_te = _read([d / f for f in test], label_key)
    for y in (y_tr, y_te):
        if len(y) and (y.min() < 0 or y.max() >= len(names)):
            raise ConfigError(f"{d}: labels out of range for {len(names)} classes")
    return RawData(x_tr, y_tr, x_te, y_te, names, "image", str(d))
