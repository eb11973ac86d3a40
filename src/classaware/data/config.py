"""The ``[data]`` config section: defaults, types and validation."""

from __future__ import annotations

import copy
import difflib
import math
from collections.abc import Mapping
from os import PathLike
from typing import Any

from classaware.errors import ConfigError

__all__ = ["DATA_DEFAULTS", "DATA_TYPES", "DATASET_NAMES", "resolve_data_config",
           "validate_data_config"]

#: every dataset name ``data.name`` accepts
DATASET_NAMES: tuple[str, ...] = ("fashion-mnist", "mnist", "cifar10", "cifar100", "gtsrb",
                                  "imagefolder", "arrays", "csv", "digits")

#: Every key of ``[data]`` with its default (``None``: no default / not set).
DATA_DEFAULTS: dict[str, Any] = {
    "name": "fashion-mnist",      # one of DATASET_NAMES
    "dir": None,                  # directory holding the dataset files (looked in first)
    "download": False,            # fetch mnist / fashion-mnist / cifar / gtsrb into cache_dir
    "cache_dir": None,            # default $XDG_CACHE_HOME/classaware or ~/.cache/classaware
    "val_fraction": 0.1,          # stratified validation split carved from the training set
    "test_fraction": 0.2,         # test split carved when a dataset has none (fixed seed 0)
    "split_seed": None,           # seed of max_train cap and val split (None: the run seed)
    "imbalance": {"profile": "none", "ratio": 100, "seed": 0},   # "none" | "exp" | "step"
    "class_order": None,          # imbalance rank order: class names or indices
    "max_train": None,            # stratified cap on the training set (before the val split)
    "max_test": None,             # stratified cap on the test set (fixed seed 0)
    "path": None,                 # imagefolder root, arrays .npz, csv train file
    "test_path": None,            # csv test file
    "label_column": "label",      # csv label column
    "label": "fine",              # cifar100: "fine" | "coarse"
    "image_size": 32,             # imagefolder / gtsrb: images resized to image_size²
    "channels": None,             # imagefolder: 1 | 3 | None (1 if every image is gray)
    "as_images": False,           # digits: uint8 1×8×8 images instead of 64 float features
}

_IMBALANCE_DEFAULTS = DATA_DEFAULTS["imbalance"]

#: Accepted Python types per key (after TOML parsing); ``None`` is always accepted where the
#: default is ``None``.  Nested: ``imbalance`` is a table with the keys of its default.
DATA_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,), "dir": (str, PathLike), "download": (bool,), "cache_dir": (str, PathLike),
    "val_fraction": (int, float), "test_fraction": (int, float), "split_seed": (int,),
    "imbalance": (dict,), "class_order": (list, tuple), "max_train": (int,), "max_test": (int,),
    "path": (str, PathLike), "test_path": (str, PathLike), "label_column": (str,),
    "label": (str,), "image_size": (int,), "channels": (int,), "as_images": (bool,),
}


def _type_name(value: Any) -> str:
    return type(value).__name__


def _fail(key: str, expected: str, value: Any) -> ConfigError:
    return ConfigError(f"data.{key} must be {expected}, got {value!r}")


def _unknown(key: str, known: list[str], prefix: str = "data") -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {prefix}.{close[0]}?)" if close else ""
    return ConfigError(f"unknown key {prefix}.{key}{hint}; known keys: {', '.join(known)}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def validate_data_config(cfg: Mapping[str, Any]) -> None:
    """Check a (possibly partial) ``[data]`` section; raise :class:`ConfigError` on a problem.

    Missing keys take their :data:`DATA_DEFAULTS` value.  The message is one line naming the
    key, what it must be and what it got, e.g.
    ``data.imbalance.profile must be 'exp', 'step' or 'none', got 'foo'``.

    Examples
    --------
    >>> validate_data_config({"name": "digits", "val_fraction": 0.2})
    >>> validate_data_config({"name": "digits", "val_fraction": 1.5})
    Traceback (most recent call last):
    ...
    classaware.errors.ConfigError: data.val_fraction must be a number in [0, 1), got 1.5
    """
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"[data] must be a table (dict), got {_type_name(cfg)}")
    known = list(DATA_DEFAULTS)
    for key in cfg:
        if key not in DATA_DEFAULTS:
            raise _unknown(str(key), known)
    c = {**DATA_DEFAULTS, **cfg}

    name = c["name"]
    if not isinstance(name, str) or name.lower() not in DATASET_NAMES:
        raise _fail("name", "one of " + ", ".join(repr(n) for n in DATASET_NAMES), name)
    name = name.lower()
    for key in ("dir", "cache_dir", "path", "test_path"):
        v = c[key]
        if v is not None and not (isinstance(v, (str, PathLike)) and str(v) != ""):
            raise _fail(key, "a path (string)", v)
    for key in ("download", "as_images"):
        if not isinstance(c[key], bool):
            raise _fail(key, "true or false", c[key])
    v = c["val_fraction"]
    if not (_is_number(v) and 0 <= v < 1):
        raise _fail("val_fraction", "a number in [0, 1)", v)
    v = c["test_fraction"]
    if not (_is_number(v) and 0 < v < 1):
        raise _fail("test_fraction", "a number in (0, 1)", v)
    v = c["split_seed"]
    if v is not None and not (_is_int(v) and v >= 0):
        raise _fail("split_seed", "a non-negative integer", v)
    for key in ("max_train", "max_test"):
        v = c[key]
        if v is not None and not (_is_int(v) and v > 0):
            raise _fail(key, "a positive integer", v)
    v = c["image_size"]
    if not (_is_int(v) and v > 0):
        raise _fail("image_size", "a positive integer", v)
    v = c["channels"]
    if v is not None and not (_is_int(v) and v in (1, 3)):
        raise _fail("channels", "1 or 3", v)
    v = c["label"]
    if v not in ("fine", "coarse"):
        raise _fail("label", "'fine' or 'coarse'", v)
    v = c["label_column"]
    if not (isinstance(v, str) and v):
        raise _fail("label_column", "a non-empty column name", v)

    _validate_imbalance(c["imbalance"])
    order = c["class_order"]
    if order is not None:
        if not isinstance(order, (list, tuple)) or not order:
            raise _fail("class_order", "a non-empty list of class names or indices", order)
        for item in order:
            if not (isinstance(item, str) or (_is_int(item) and item >= 0)):
                raise _fail("class_order", "a list of class names or non-negative indices", order)
        if len(set(order)) != len(order):
            raise _fail("class_order", "a list without repeats", order)

    if name in ("arrays", "csv") and c["path"] is None:
        raise ConfigError(f"data.path is required for data.name = {name!r} "
                          f"(the {'.npz' if name == 'arrays' else '.csv'} file)")
    if name == "imagefolder" and c["path"] is None and c["dir"] is None:
        raise ConfigError("data.path is required for data.name = 'imagefolder' "
                          "(the root folder holding one sub-folder per class)")


def _validate_imbalance(imb: Any) -> None:
    if imb is None:
        return
    if not isinstance(imb, Mapping):
        raise _fail("imbalance", "a table {profile, ratio, seed}", imb)
    for key in imb:
        if key not in _IMBALANCE_DEFAULTS:
            raise _unknown(str(key), list(_IMBALANCE_DEFAULTS), prefix="data.imbalance")
    m = {**_IMBALANCE_DEFAULTS, **imb}
    if m["profile"] not in ("exp", "step", "none"):
        raise _fail("imbalance.profile", "'exp', 'step' or 'none'", m["profile"])
    if not (_is_number(m["ratio"]) and m["ratio"] >= 1):
        raise _fail("imbalance.ratio", "a number >= 1", m["ratio"])
    if not (_is_int(m["seed"]) and m["seed"] >= 0):
        raise _fail("imbalance.seed", "a non-negative integer", m["seed"])


def resolve_data_config(cfg: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Validate ``cfg`` and return it completed with :data:`DATA_DEFAULTS` (a new dict).

    ``imbalance`` is merged key by key, ``name`` is lower-cased.

    Examples
    --------
    >>> resolve_data_config({"name": "MNIST", "imbalance": {"profile": "exp"}})["imbalance"]
    {'profile': 'exp', 'ratio': 100, 'seed': 0}
    """
    cfg = {} if cfg is None else cfg
    validate_data_config(cfg)
    out = copy.deepcopy(DATA_DEFAULTS)
    for key, value in cfg.items():
        if key == "imbalance":
            out[key] = {**_IMBALANCE_DEFAULTS, **(value or {})}
        else:
            out[key] = copy.deepcopy(value)
    out["name"] = out["name"].lower()
    return out
