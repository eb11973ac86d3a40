"""``load_data(cfg)``: locate → read → cap → validation split → imbalance; ``available_datasets``."""

from __future__ import annotations

import contextlib
import importlib.util
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from classaware.classes import resolve_classes
from classaware.data import download as _dl
from classaware.data.bundle import DataBundle, RawData
from classaware.data.config import DATASET_NAMES, DataConfig, as_data_config, check_path
from classaware.data.split import (
    balanced_holdout,
    class_counts,
    imbalance_subsample,
    stratified_split,
    stratified_subsample,
)
from classaware.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover - torch is imported when tensors are made
    from classaware.data.lazy import LazySplit

__all__ = ["available_datasets", "load_data", "locate", "split_train_val"]


@dataclass(frozen=True)
class _Named:
    """A dataset that lives in a well-known folder layout (searched in the usual places)."""

    find: Callable[[Path], Any]                # base dir -> handle (truthy) or None
    read: Callable[[Any, DataConfig], RawData]  # handle, cfg -> RawData
    note: str
    how: str                              # how to get it


def _idx(name: str) -> _Named:
    from classaware.data import idx

    classes = idx.FASHION_MNIST_CLASSES if name == "fashion-mnist" else idx.MNIST_CLASSES
    how = ("apt-get install dataset-fashion-mnist (Debian), or set data.download = true"
           if name == "fashion-mnist" else
           "set data.download = true, or put the four IDX files (train-images-idx3-ubyte.gz, "
           "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) "
           "in data.dir")
    return _Named(
        find=idx.find_idx_dir,
        read=lambda files, cfg: idx.load_idx_dataset(
            files, classes, str(Path(files["train_images"]).parent)),
        note="70000 gray 28×28 images, 10 classes (IDX files, .gz or not)",
        how=how,
    )


def _cifar(name: str) -> _Named:
    from classaware.data import cifar

    n = 10 if name == "cifar10" else 100
    return _Named(
        find=lambda base: cifar.find_cifar_dir(name, base),
        read=lambda d, cfg: cifar.load_cifar(name, d, cfg.label),
        note=f"60000 colour 32×32 images, {n} classes (python pickle batches"
             + (", fine or coarse labels)" if n == 100 else ")"),
        how="set data.download = true, or unpack "
            + ("cifar-10-python.tar.gz" if n == 10 else "cifar-100-python.tar.gz")
            + " from https://www.cs.toronto.edu/~kriz/cifar.html into data.dir",
    )


def _gtsrb() -> _Named:
    from classaware.data import gtsrb

    return _Named(
        find=gtsrb.find_gtsrb_dir,
        read=lambda d, cfg: gtsrb.load_gtsrb(d, cfg.image_size),
        note="German traffic signs, 43 classes (ppm + GT csv, ROI-cropped, resized)",
        how="set data.download = true, or unpack GTSRB_Final_Training_Images.zip, "
            "GTSRB_Final_Test_Images.zip and GTSRB_Final_Test_GT.zip into data.dir",
    )


_NAMED: dict[str, Callable[[], _Named]] = {
    "fashion-mnist": lambda: _idx("fashion-mnist"),
    "mnist": lambda: _idx("mnist"),
    "cifar10": lambda: _cifar("cifar10"),
    "cifar100": lambda: _cifar("cifar100"),
    "gtsrb": _gtsrb,
}

_NOTES = {
    "imagefolder": "data.path = root/<class>/*.png|jpg|jpeg|ppm (train/ + test/ optional)",
    "arrays": "data.path = an .npz with x_train, y_train, x_test, y_test [, class_names]",
    "csv": "data.path = a csv with feature columns + data.label_column [, data.test_path]",
    "digits": "scikit-learn's bundled 8×8 digits, 1797 samples, 10 classes",
}


def locate(name: str, cfg: DataConfig | Mapping[str, Any] | None = None
           ) -> tuple[Any, list[str]]:
    """Find a named dataset without reading it: ``(handle or None, places looked in)``."""
    spec = _NAMED[name]()
    looked: list[str] = []
    for label, path in _dl.search_dirs(name, cfg):
        if path is None:
            looked.append(label)
            continue
        looked.append(f"{label}: {path}")
        handle = spec.find(path) if path.is_dir() else None
        if handle:
            return handle, looked
    return None, looked


def _read_named(name: str, cfg: DataConfig) -> RawData:
    spec = _NAMED[name]()
    handle, looked = locate(name, cfg)
    if handle is None and cfg.download:
        _dl.fetch(name, cfg)
        handle = spec.find(_dl.cache_root(cfg) / name)
        if handle is None:
            raise ConfigError(f"{name}: downloaded into {_dl.cache_root(cfg) / name}, "
                              "but the expected files are not there")
    if handle is None:
        raise ConfigError(f"dataset {name} not found; looked in: {'; '.join(looked)}. "
                          f"To get it: {spec.how}")
    return spec.read(handle, cfg)


def _check_data_dir(cfg: DataConfig) -> None:
    check_path("data.dir", cfg.dir, True, "the folder where datasets are looked for first")


def _check_paths(cfg: DataConfig) -> None:
    """``data.dir``, ``data.path``, ``data.test_path``: set means it must be there (and be the
    right kind of thing), never silently ignored."""
    _check_data_dir(cfg)
    if cfg.name == "csv":
        check_path("data.path", cfg.path, False, "a .csv file")
        check_path("data.test_path", cfg.test_path, False, "a .csv file")
    elif cfg.name == "arrays":
        check_path("data.path", cfg.path, False, "an .npz file")
    elif cfg.name == "imagefolder":
        check_path("data.path" if cfg.path else "data.dir", cfg.path or cfg.dir, True,
                  "a folder holding one sub-folder of images per class")


def _read(cfg: DataConfig) -> RawData:
    _check_paths(cfg)
    name = cfg.name
    if name in _NAMED:
        return _read_named(name, cfg)
    if name == "digits":
        from classaware.data.tabular import load_digits

        return load_digits(as_images=cfg.as_images, test_fraction=cfg.test_fraction)
    if name == "arrays":
        from classaware.data.tabular import load_arrays

        return load_arrays(cfg.path)
    if name == "csv":
        from classaware.data.tabular import load_csv

        return load_csv(cfg.path, test_path=cfg.test_path, label_column=cfg.label_column,
                        test_fraction=cfg.test_fraction)
    if name == "imagefolder":
        from classaware.data.folder import load_imagefolder

        return load_imagefolder(cfg.path or cfg.dir, image_size=cfg.image_size,
                                channels=cfg.channels, test_fraction=cfg.test_fraction,
                                resize=cfg.resize)
    if name == "python":
        raise ConfigError("data.name: 'python' means the data was passed from Python; pass it "
                          "again: classaware.train(cfg, data=classaware.data.from_datasets(train, "
                          "test, class_names)) (or evaluate_run(run_dir, data=...))")
    raise ConfigError(f"unknown dataset {name!r}")  # pragma: no cover - validated before


def _class_order(order: tuple[Any, ...] | None, names: list[str]) -> list[int] | None:
    if order is None:
        return None
    out = resolve_classes(order, names, key="data.class_order")
    if len(out) != len(names):
        missing = [names[i] for i in range(len(names)) if i not in out]
        raise ConfigError(f"data.class_order: expected each of the {len(names)} classes exactly "
                          f"once; missing {missing}")
    return out


def _rng(seed: int, step: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), step])


#: the bundles kept for :func:`load_data` (None: no cache), see :func:`set_data_cache`
_CACHE: OrderedDict[tuple[DataConfig, int], DataBundle] | None = None
_CACHE_SIZE = 0


def set_data_cache(size: int | None) -> int | None:
    """From now on :func:`load_data` keeps the last ``size`` bundles it returned and returns the
    same bundle again for the same ``(DataConfig, seed)``; ``None`` turns the cache off.
    Returns the previous size (None: it was off).

    For a process that trains many runs (a study worker): the data is read, subset and split
    once.  The bundle is the one ``load_data`` would rebuild (it is deterministic for a config
    and a seed) and the trainer never writes into its tensors, so a run trained from the cache
    is bit-identical to one that loads its data itself.  :func:`data_cache` is the same for one
    ``with`` block.
    """
    global _CACHE, _CACHE_SIZE
    old = _CACHE_SIZE if _CACHE is not None else None
    if size is None:
        _CACHE, _CACHE_SIZE = None, 0
    elif old != size:
        _CACHE, _CACHE_SIZE = OrderedDict(), max(1, int(size))
    return old


@contextlib.contextmanager
def data_cache(size: int = 2) -> Iterator[None]:
    """:func:`set_data_cache` for the ``with`` block (the previous setting is restored).

    Example
    -------
    >>> with data_cache():
    ...     load_data({"name": "digits"}) is load_data({"name": "digits"})
    True
    """
    old = set_data_cache(size)
    try:
        yield
    finally:
        set_data_cache(old)


def load_data(cfg: DataConfig | Mapping[str, Any] | None = None, *, seed: int = 0,
              source: Any = None) -> DataBundle:
    """Load the dataset described by ``cfg`` (a :class:`DataConfig`, or a ``[data]`` mapping
    validated into one) into a :class:`DataBundle`.

    Steps, in order:

    1. read train and test (see :class:`DataConfig` for the keys of each dataset), or take
       them from ``source`` (:func:`classaware.data.from_datasets`: your own Datasets);
    2. ``max_train`` / ``max_test``: stratified random caps (train: seeded by ``split_seed``
       or ``seed``; test: fixed seed 0, so it is the same in every run);
    3. validation split and imbalance (:func:`split_train_val`): with ``val_from = "train"``
       a stratified ``val_fraction`` of the training set, then the LDAM-DRW long-tail
       subsample of what stays in train, seeded by ``imbalance.seed`` — class at rank ``i`` of
       ``class_order`` keeps ``int(n_max * (1 / ratio) ** (i / (C - 1)))`` (``exp``) or
       ``n_max`` / ``int(n_max * (1 / ratio))`` for the first ``C // 2`` / the other classes
       (``step``), ``n_max`` the largest class; with ``val_from = "unused"`` the imbalance
       first, on the whole training set (the release's counts), then ``round(val_fraction *
       n_max)`` validation images per class from the images it leaves unused;
    4. checks: at least two classes, no empty images, every class has a training image
       (unless ``allow_empty_classes``).

    5. ``in_memory``: image folders are decoded into memory when the kept splits fit in
       ``max_memory_gb`` (``"auto"``; ``true``: always), else — and Datasets from ``source``
       unless ``in_memory = true`` — they stay :class:`~classaware.data.lazy.LazySplit` s that
       the trainer reads per batch with ``workers`` DataLoader processes.

    The test set is never touched by the imbalance.  Raises :class:`ConfigError` for a bad
    config or a dataset that cannot be found (naming every place looked in).

    Examples
    --------
    >>> b = load_data({"name": "digits", "imbalance": {"profile": "exp", "ratio": 10}})
    >>> b.train_class_counts[0] > b.train_class_counts[-1]
    True
    """
    cfg = as_data_config(cfg)
    if not (isinstance(seed, int) and not isinstance(seed, bool)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if _CACHE is None or source is not None:
        return _load(cfg, seed, source)
    key = (cfg, seed)
    if key not in _CACHE:
        _CACHE[key] = _load(cfg, seed, None)
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    _CACHE.move_to_end(key)
    return _CACHE[key]


def _load(cfg: DataConfig, seed: int, source: Any) -> DataBundle:
    """:func:`load_data` without the cache."""
    raw = source.raw() if source is not None else _read(cfg)
    _check_raw(raw)
    names = list(raw.class_names)
    num = len(names)
    x_tr, y_tr, x_te, y_te = raw.x_train, raw.y_train, raw.x_test, raw.y_test
    split_seed = cfg.split_seed if cfg.split_seed is not None else seed
    meta: dict[str, Any] = {"split_seed": split_seed,
                            "loaded_train": len(y_tr), "loaded_test": len(y_te)}
    stages = {"none in the dataset": class_counts(y_tr, num)}
    if cfg.max_train is not None and cfg.max_train < len(y_tr):
        keep = stratified_subsample(y_tr, cfg.max_train, num, _rng(split_seed, 1))
        x_tr, y_tr = x_tr[keep], y_tr[keep]
        stages[f"after data.max_train = {cfg.max_train}"] = class_counts(y_tr, num)
    if cfg.max_test is not None and cfg.max_test < len(y_te):
        keep = stratified_subsample(y_te, cfg.max_test, num, _rng(0, 2))
        x_te, y_te = x_te[keep], y_te[keep]

    order = _class_order(cfg.class_order, names)  # names checked even without imbalance
    train, val = split_train_val(y_tr, num, cfg, seed=split_seed, order=order, meta=meta)
    x_val, y_val = x_tr[val], y_tr[val]
    x_tr, y_tr = x_tr[train], y_tr[train]
    stages["after the validation split and the imbalance"] = class_counts(y_tr, num)
    _check_empty_classes(stages, names, cfg.allow_empty_classes)

    import torch

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a))

    from classaware.data.lazy import is_lazy

    xs = _inputs((x_tr, x_val, x_te), raw.kind, cfg, from_source=source is not None)
    meta["in_memory"] = not any(is_lazy(x) for x in xs)
    return DataBundle(
        name="python" if source is not None else cfg.name, class_names=names, kind=raw.kind,
        x_train=xs[0], y_train=t(y_tr.astype(np.int64, copy=False)),
        x_val=xs[1], y_val=t(y_val.astype(np.int64, copy=False)),
        x_test=xs[2], y_test=t(y_te.astype(np.int64, copy=False)),
        source=raw.source, meta=meta)


def split_train_val(y: np.ndarray, num_classes: int, cfg: DataConfig | Mapping[str, Any], *,
                    seed: int, order: list[int] | None = None,
                    meta: dict[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(train, val)``: sorted, disjoint indices into the training labels ``y``.

    ``cfg.val_from = "train"``: a stratified ``val_fraction`` split of ``y`` (seeded by
    ``seed``), then the imbalance (``cfg.imbalance``, seeded by its own ``seed``) on the rest.
    ``"unused"``: the imbalance on all of ``y`` — so the training counts are the LDAM-DRW
    release's, e.g. 5000, 2997, ..., 50 for CIFAR-10 at ratio 100 — then
    ``round(val_fraction * n_max)`` validation images per class drawn from the images it
    leaves unused; a class with fewer unused images (the head class of ``exp`` and the first
    half of ``step`` keep all theirs) gives all it has, and is listed in
    ``meta["val_short"]`` (class index → validation images).

    Example
    -------
    >>> y = np.repeat(np.arange(10), 5000)
    >>> cfg = {"val_from": "unused", "imbalance": {"profile": "exp", "ratio": 100}}
    >>> train, val = split_train_val(y, 10, cfg, seed=0)
    >>> np.bincount(y[train]).tolist()
    [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    >>> np.bincount(y[val]).tolist()
    [0, 500, 500, 500, 500, 500, 500, 500, 500, 500]
    """
    cfg = as_data_config(cfg)
    y = np.asarray(y)
    meta = {} if meta is None else meta
    imb = cfg.imbalance
    counts = class_counts(y, num_classes)
    if imb.profile != "none":
        meta["imbalance"] = imb.to_dict()
        meta["class_order"] = order if order is not None else list(range(num_classes))
    if cfg.val_from == "unused":
        meta["train_counts_before_imbalance"] = counts.tolist()
        train = imbalance_subsample(y, num_classes, imb.profile, imb.ratio, order,
                                    _rng(imb.seed, 4))
        per_class = round(cfg.val_fraction * int(counts.max(initial=0)))
        val = balanced_holdout(y, train, per_class, num_classes, _rng(seed, 3))
        got = class_counts(y[val], num_classes)
        meta["val_per_class"] = per_class
        meta["val_short"] = {c: int(got[c]) for c in range(num_classes) if got[c] < per_class}
        return train, val
    rest, val = stratified_split(y, cfg.val_fraction, num_classes, _rng(seed, 3))
    meta["train_counts_before_imbalance"] = class_counts(y[rest], num_classes).tolist()
    if imb.profile != "none":
        keep = imbalance_subsample(y[rest], num_classes, imb.profile, imb.ratio, order,
                                   _rng(imb.seed, 4))
        rest = rest[keep]
    return rest, val


def _check_raw(raw: RawData) -> None:
    """At least two classes and samples with something in them."""
    names = list(raw.class_names)
    if len(names) < 2:
        raise ConfigError(f"data: {raw.source} has {len(names)} class"
                          f"{'' if len(names) == 1 else 'es'} ({', '.join(map(repr, names))}); "
                          "a classifier needs at least 2")
    shape = tuple(raw.x_train.shape[1:])
    if 0 in shape:
        what = (f"images of {shape[-1]}×{shape[-2]} pixels ({_plural_channels(shape[0])})"
                if raw.kind == "image" and len(shape) == 3 else "samples with no values")
        raise ConfigError(f"data: {raw.source} has {what}")


def _plural_channels(n: int) -> str:
    return f"{n} channel" + ("" if n == 1 else "s")


def _check_empty_classes(stages: dict[str, np.ndarray], names: list[str], allow: bool) -> None:
    """A ConfigError naming the classes without training images, and the step that emptied
    them (unless ``data.allow_empty_classes``)."""
    final = list(stages.values())[-1]
    empty = [c for c in range(len(names)) if final[c] == 0]
    if not empty or allow:
        return
    causes = []
    for step, counts in stages.items():
        newly = [names[c] for c in empty if counts[c] == 0]
        if newly:
            causes.append(f"{', '.join(map(repr, newly))} ({step})")
            empty = [c for c in empty if counts[c] != 0]
    raise ConfigError(f"data: no training images for class {', '.join(causes)}; give every "
                      "class a training image (e.g. a larger data.max_train) or set "
                      "data.allow_empty_classes = true to train without them")
def _inputs(xs: tuple[Any, ...], kind: str, cfg: DataConfig, *, from_source: bool) -> list[Any]:
    """The three splits' inputs as tensors (numpy arrays converted; lazy splits read into memory
    when ``data.in_memory`` says so) or :class:`LazySplit` s."""
    import torch

    from classaware.data.lazy import is_lazy

    lazy = [x for x in xs if is_lazy(x)]
    if lazy:
        nbytes = sum(x.shape.numel() * torch.empty((), dtype=x.dtype).element_size()
                     for x in lazy)
        keep = (cfg.in_memory if cfg.in_memory != "auto"
                else not from_source and nbytes <= cfg.max_memory_gb * 1e9)
        if not keep:
            return list(xs)
    xdt = np.uint8 if kind == "image" else np.float32
    return [_read_all(x, cfg.workers) if is_lazy(x)
            else torch.from_numpy(np.ascontiguousarray(x.astype(xdt, copy=False))) for x in xs]


def _read_all(x: LazySplit, workers: int) -> Any:
    """Every sample of a lazy split, decoded by ``workers`` processes, as one tensor."""
    import torch

    from classaware.data.lazy import iter_chunks

    chunks = list(iter_chunks(x, 256, workers=workers))
    return torch.cat(chunks) if chunks else torch.zeros((0, *x.sample_shape), dtype=x.dtype)


def available_datasets(cfg: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Which datasets can be loaded here, and from where (for ``classaware datasets``).

    Nothing is read or downloaded: the named datasets are looked for in the usual places
    (``cfg``'s ``dir`` and ``cache_dir`` included), ``digits`` needs scikit-learn, and
    ``imagefolder`` / ``arrays`` / ``csv`` count as available when ``cfg`` names that dataset
    and its ``path`` exists.

    Returns
    -------
    list[dict]
        One ``{"name", "available", "location", "note"}`` per dataset, in a fixed order.
    """
    cfg = as_data_config(cfg)
    _check_data_dir(cfg)
    out = []
    for name in DATASET_NAMES:
        if name == "python":  # not found anywhere: given from Python (from_datasets)
            continue
        if name in _NAMED:
            spec = _NAMED[name]()
            handle, _ = locate(name, cfg)
            if handle is not None:
                loc = handle["train_images"].parent if isinstance(handle, dict) else handle
                out.append(dict(name=name, available=True, location=str(loc), note=spec.note))
            else:
                out.append(dict(name=name, available=False, location=None,
                                note=f"{spec.note}; to get it: {spec.how}"))
        elif name == "digits":
            ok = importlib.util.find_spec("sklearn") is not None
            out.append(dict(name=name, available=ok,
                            location="scikit-learn (bundled)" if ok else None,
                            note=_NOTES[name] + ("" if ok else "; pip install scikit-learn")))
        else:
            path = cfg.path or (cfg.dir if name == "imagefolder" else None)
            ok = cfg.name == name and path is not None and Path(path).expanduser().exists()
            out.append(dict(name=name, available=ok,
                            location=str(Path(path).expanduser()) if ok else None,
                            note=_NOTES[name]))
    return out
