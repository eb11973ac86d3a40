"""``imagefolder``: ``root/<class name>/*.png|jpg|jpeg|ppm`` (optionally under train/ and test/).

:func:`load_imagefolder` lists the files (no decoding) into :class:`ImageFiles`, a
``torch.utils.data.Dataset`` that decodes one image per item: read, resize or centre-crop to
``image_size`` (:func:`~classaware.data.images.fit`), channels first, and the luma conversion
when the set is gray.  :func:`~classaware.data.load_data` then either reads the splits it keeps
into memory (``data.in_memory``; ``"auto"``: when they fit in ``data.max_memory_gb``) or hands
them to the trainer as :class:`~classaware.data.lazy.LazySplit` s read by ``data.workers``
DataLoader processes per batch.  Both paths decode every image with the same function, so they
see the same pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from classaware.data.bundle import RawData
from classaware.data.images import IMAGE_SUFFIXES, fit, is_gray, read_image, to_gray
from classaware.data.lazy import LazySplit
from classaware.data.split import stratified_split
from classaware.errors import ConfigError

__all__ = ["ImageFiles", "load_imagefolder"]


def _class_dirs(root: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(root.iterdir())
            if p.is_dir() and not p.name.startswith(".")}


def _files(d: Path) -> list[Path]:
    return sorted(p for p in d.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not p.name.startswith("."))


class ImageFiles:
    """Image files as a map-style Dataset: item ``i`` is ``(uint8 [channels, size, size], label)``.

    Picklable (paths and settings only), so DataLoader workers can be forked or spawned.

    Examples
    --------
    >>> ds = ImageFiles([], [], size=32, resize="stretch", channels=3)   # doctest: +SKIP
    >>> x, y = ds[0]                                                     # doctest: +SKIP
    """

    def __init__(self, paths: list[Path], labels: list[int], *, size: int, resize: str,
                 channels: int) -> None:
        self.paths = [str(p) for p in paths]
        self.targets = np.asarray(labels, dtype=np.int64)
        self.size, self.resize, self.channels = size, resize, channels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img, _ = read_image(self.paths[i])
        x = np.ascontiguousarray(fit(img, self.size, self.resize).transpose(2, 0, 1))
        if self.channels == 1:
            x = to_gray(x)
        return torch.from_numpy(x), int(self.targets[i])


def load_imagefolder(root: str | Path, *, image_size: int = 32, channels: int | None = None,
                     test_fraction: float = 0.2, resize: str = "stretch") -> RawData:
    """List every image under ``root/<class>/`` (sub-folders of a class included).

    Class names are the sorted folder names.  If ``root`` has ``train/`` and ``test/``
    sub-folders they are the two sets (test classes must appear in train); otherwise a
    stratified ``test_fraction`` test split is carved with the fixed seed 0, so the test set
    is the same in every run.  Each image becomes ``image_size`` × ``image_size`` by
    ``resize`` (``"stretch"``: resized, the aspect ratio changes; ``"center_crop"``: shorter
    side resized, then the central square); ``channels = None`` gives 1 channel when every
    image is gray (read from the file headers), else 3.  Nothing is decoded here: ``x_train``
    and ``x_test`` are :class:`~classaware.data.lazy.LazySplit` s over :class:`ImageFiles`.
    """
    root = Path(root).expanduser()  # checked by the registry (data.config.check_path)
    split = (root / "train").is_dir() and (root / "test").is_dir()
    train_root = root / "train" if split else root
    classes = _class_dirs(train_root)
    if not classes:
        raise ConfigError(f"{train_root}: no class sub-folders (expected root/<class>/*.png)")
    names = list(classes)
    index = {n: i for i, n in enumerate(names)}
    items = [(f, index[n]) for n, d in classes.items() for f in _files(d)]
    if not items:
        raise ConfigError(f"{train_root}: no images ({', '.join(IMAGE_SUFFIXES)}) in the class "
                          "folders")
    n_train = len(items)
    if split:
        for n, d in _class_dirs(root / "test").items():
            if n not in index:
                raise ConfigError(f"{root / 'test'}: class folder {n!r} has no counterpart in "
                                  f"{train_root}")
            items += [(f, index[n]) for f in _files(d)]
    paths = [p for p, _ in items]
    y = np.array([label for _, label in items], dtype=np.int64)
    ch = channels if channels is not None else (1 if all(is_gray(p) for p in paths) else 3)
    files = ImageFiles(paths, y.tolist(), size=image_size, resize=resize, channels=ch)
    x = LazySplit(files, range(len(paths)), (ch, image_size, image_size), torch.uint8)
    if split:
        tr, te = np.arange(n_train), np.arange(n_train, len(paths))
    else:
        tr, te = stratified_split(y, test_fraction, len(names), np.random.default_rng(0))
    return RawData(x[tr], y[tr], x[te], y[te], names, "image", str(root))

