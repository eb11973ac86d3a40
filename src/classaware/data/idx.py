"""MNIST and Fashion-MNIST: IDX files, gzipped or not."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from classaware.data.bundle import RawData
from classaware.errors import ConfigError

__all__ = ["FASHION_MNIST_CLASSES", "MNIST_CLASSES", "find_idx_dir", "load_idx_dataset",
           "read_idx"]

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot"]
MNIST_CLASSES = [str(i) for i in range(10)]

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
           0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}

# the four files, each under its usual names (the IDX "-" and the LeCun-site "." spelling)
_STEMS = {
    "train_images": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "train_labels": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "test_images": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "test_labels": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzipped or not, detected from the content) into a numpy array.

    Layout: two zero bytes, a type code (0x08 = uint8, ...), the number of dimensions ``d``,
    ``d`` big-endian uint32 sizes, then the data in C order.  uint8 data is returned
    without a copy of the decompressed bytes (``np.frombuffer`` on a ``bytearray``).

    Examples
    --------
    >>> read_idx("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz").shape
    ... # doctest: +SKIP
    (10000,)
    """
    path = Path(path)
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ConfigError(f"{path}: corrupt gzip file ({exc})") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise ConfigError(f"{path}: not an IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_DTYPES[raw[2]])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise ConfigError(f"{path}: IDX size mismatch (header says {shape}, "
                          f"{expected} bytes expected, file has {len(raw)})")
    buf = bytearray(raw) if dtype.itemsize == 1 else raw
    arr = np.frombuffer(buf, dtype=dtype, offset=header).reshape(shape)
    return arr if dtype.itemsize == 1 else arr.astype(dtype.newbyteorder("="))


def _find_file(d: Path, key: str) -> Path | None:
    for stem in _STEMS[key]:
        for suffix in (".gz", ""):
            p = d / (stem + suffix)
            if p.is_file():
                return p
    return None


def find_idx_dir(base: Path) -> dict[str, Path] | None:
    """The four IDX files under ``base`` (or ``base/raw``), or None if any is missing."""
    for d in (base, base / "raw"):
        if d.is_dir():
            files = {k: _find_file(d, k) for k in _STEMS}
            if all(files.values()):
                return files  # type: ignore[return-value]
    return None


def load_idx_dataset(files: dict[str, Path], class_names: list[str], source: str) -> RawData:
    """Read the four IDX files into a :class:`RawData` (images ``[N, 1, 28, 28]`` uint8)."""
    x_tr = read_idx(files["train_images"])
    y_tr = read_idx(files["train_labels"])
    x_te = read_idx(files["test_images"])
    y_te = read_idx(files["test_labels"])
    for x, y, what in ((x_tr, y_tr, "train"), (x_te, y_te, "test")):
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise ConfigError(f"{source}: {what} images {x.shape} and labels {y.shape} do not match")
        if x.dtype != np.uint8:
            raise ConfigError(f"{source}: {what} images must be uint8 IDX, got {x.dtype}")
        if len(y) and int(y.max()) >= len(class_names):
            raise ConfigError(f"{source}: {what} label {int(y.max())} out of range "
                              f"for {len(class_names)} classes")
    return RawData(x_tr[:, None], y_tr.astype(np.int64), x_te[:, None], y_te.astype(np.int64),
                   list(class_names), "image", source)
