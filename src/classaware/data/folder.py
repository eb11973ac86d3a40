"""``imagefolder``: ``root/<class name>/*.png|jpg|jpeg|ppm`` (optionally under train/ and test/)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from classaware.data.bundle import RawData
from classaware.data.images import IMAGE_SUFFIXES, read_image, resize
from classaware.data.split import stratified_split
from classaware.errors import ConfigError

__all__ = ["load_imagefolder"]


def _class_dirs(root: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(root.iterdir())
            if p.is_dir() and not p.name.startswith(".")}


def _files(d: Path) -> list[Path]:
    return sorted(p for p in d.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not p.name.startswith("."))


def _read(items: list[tuple[Path, int]], size: int) -> tuple[np.ndarray, np.ndarray, bool]:
    x = np.empty((len(items), 3, size, size), dtype=np.uint8)
    y = np.empty(len(items), dtype=np.int64)
    all_gray = True
    for i, (path, label) in enumerate(items):
        img, gray = read_image(path)
        all_gray &= gray
        x[i] = resize(img, size).transpose(2, 0, 1)
        y[i] = label
    return x, y, all_gray


def load_imagefolder(root: str | Path, *, image_size: int = 32, channels: int | None = None,
                     test_fraction: float = 0.2) -> RawData:
    """Read every image under ``root/<class>/`` (sub-folders of a class included).

    Class names are the sorted folder names.  If ``root`` has ``train/`` and ``test/``
    sub-folders they are the two sets (test classes must appear in train); otherwise a
    stratified ``test_fraction`` test split is carved with the fixed seed 0, so the test set
    is the same in every run.  Images are resized (not cropped) to ``image_size`` ×
    ``image_size``; ``channels = None`` gives 1 channel when every image is gray, else 3.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ConfigError(f"data.path: image folder {root} does not exist")
    split = (root / "train").is_dir() and (root / "test").is_dir()
    train_root = root / "train" if split else root
    classes = _class_dirs(train_root)
    if not classes:
        raise ConfigError(f"{train_root}: no class sub-folders (expected root/<class>/*.png)")
    names = list(classes)
    index = {n: i for i, n in enumerate(names)}
    train_items = [(f, index[n]) for n, d in classes.items() for f in _files(d)]
    if not train_items:
        raise ConfigError(f"{train_root}: no images ({', '.join(IMAGE_SUFFIXES)}) in the class "
                          "folders")
    test_items: list[tuple[Path, int]] = []
    if split:
        for n, d in _class_dirs(root / "test").items():
            if n not in index:
                raise ConfigError(f"{root / 'test'}: class folder {n!r} has no counterpart in "
                                  f"{train_root}")
            test_items += [(f, index[n]) for f in _files(d)]
    x, y, gray = _read(train_items + test_items, image_size)
    n_train = len(train_items)
    if split:
        x_tr, y_tr, x_te, y_te = x[:n_train], y[:n_train], x[n_train:], y[n_train:]
    else:
        rest, held = stratified_split(y, test_fraction, len(names), np.random.default_rng(0))
        x_tr, y_tr, x_te, y_te = x[rest], y[rest], x[held], y[held]
    ch = channels if channels is not None else (1 if gray else 3)
    if ch == 1:
        # ITU-R 601-2 luma (what Pillow's convert("L") uses), rounded
        w = np.array([299, 587, 114], dtype=np.uint32)
        x_tr = ((np.tensordot(w, x_tr.astype(np.uint32), axes=([0], [1])) + 500) // 1000)
        x_te = ((np.tensordot(w, x_te.astype(np.uint32), axes=([0], [1])) + 500) // 1000)
        x_tr = x_tr.astype(np.uint8)[:, None]
        x_te = x_te.astype(np.uint8)[:, None]
    return RawData(x_tr, y_tr, x_te, y_te, names, "image", str(root))
