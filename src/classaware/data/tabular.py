"""``arrays`` (.npz), ``csv`` (features + a label column) and ``digits`` (scikit-learn)."""

from __future__ import annotations

import csv
import zipfile
import zlib
from pathlib import Path

import numpy as np

from classaware.data.bundle import RawData
from classaware.data.config import check_path
from classaware.data.split import stratified_split
from classaware.errors import ConfigError

__all__ = ["load_arrays", "load_csv", "load_digits"]


def _as_images(x: np.ndarray, where: str) -> np.ndarray:
    """``[N, H, W]`` / ``[N, C, H, W]`` / ``[N, H, W, C]`` (C in 1, 3, 4) → uint8 ``[N, C, H, W]``."""
    if x.ndim == 3:
        x = x[:, None]
    elif x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        x = x.transpose(0, 3, 1, 2)
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if x.dtype.kind in "iu":
        if x.size and (x.min() < 0 or x.max() > 255):
            raise ConfigError(f"{where}: integer images must lie in 0..255")
        return np.ascontiguousarray(x.astype(np.uint8))
    if x.dtype.kind == "f":
        if x.size and (not np.isfinite(x).all() or x.min() < 0 or x.max() > 1):
            raise ConfigError(f"{where}: float images must lie in [0, 1] (or store uint8)")
        return np.ascontiguousarray(np.rint(x * 255).astype(np.uint8))
    raise ConfigError(f"{where}: unsupported image dtype {x.dtype}")


def _as_features(x: np.ndarray, where: str) -> np.ndarray:
    if x.dtype.kind not in "iuf" or (x.dtype.kind == "f" and not np.isfinite(x).all()):
        raise ConfigError(f"{where}: features must be finite numbers, got dtype {x.dtype}")
    return np.ascontiguousarray(x.astype(np.float32))


def _encode_labels(*ys: np.ndarray, where: str) -> tuple[list[np.ndarray], list[str]]:
    """Map labels to 0..K-1 over the sorted distinct values (numbers numerically, else as text).

    Integer labels that already are ``0..K-1`` stay as they are.
    """
    allv = np.concatenate([np.asarray(y).ravel() for y in ys])
    if allv.dtype.kind in "iub" or (allv.dtype.kind == "f" and np.all(np.mod(allv, 1) == 0)):
        values = np.unique(allv.astype(np.int64))
        names = [str(v) for v in values.tolist()]
        enc = [np.searchsorted(values, np.asarray(y).astype(np.int64)) for y in ys]
    elif allv.dtype.kind in "USO":
        values = np.unique(allv.astype(str))
        names = values.tolist()
        enc = [np.searchsorted(values, np.asarray(y).astype(str)) for y in ys]
    else:
        raise ConfigError(f"{where}: labels must be integers or strings, got dtype {allv.dtype}")
    return [e.astype(np.int64) for e in enc], names


def load_arrays(path: str | Path) -> RawData:
    """An ``.npz`` with ``x_train, y_train, x_test, y_test`` and optional ``class_names``.

    ``x`` with 2 dimensions is a feature matrix (float32); with 3 (``[N, H, W]``) or 4
    (``[N, C, H, W]`` or ``[N, H, W, C]``) dimensions images (uint8; floats must lie in [0, 1]
    and are scaled by 255).  With ``class_names`` the labels must be indices into it;
    without, the sorted distinct labels become the classes.
    """
    check_path("data.path", str(path), False, "an .npz file")
    path = Path(path).expanduser()
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        # a truncated archive: BadZipFile, EOFError or a zlib error, depending on where it ends
        raise ConfigError(f"data.path: {path} is not a readable .npz file (truncated or "
                          f"corrupt?): {exc}") from None
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in arrays]
    if missing:
        raise ConfigError(f"{path}: missing arrays {missing} (has {sorted(arrays)})")
    x_tr, x_te = arrays["x_train"], arrays["x_test"]
    y_tr, y_te = arrays["y_train"].ravel(), arrays["y_test"].ravel()
    if len(x_tr) != len(y_tr) or len(x_te) != len(y_te):
        raise ConfigError(f"{path}: x and y lengths differ ({len(x_tr)}/{len(y_tr)} train, "
                          f"{len(x_te)}/{len(y_te)} test)")
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise ConfigError(f"{path}: x_train {x_tr.shape} and x_test {x_te.shape} differ in shape")
    if x_tr.ndim == 2:
        kind, x_tr, x_te = "features", _as_features(x_tr, str(path)), _as_features(x_te, str(path))
    elif x_tr.ndim in (3, 4):
        kind, x_tr, x_te = "image", _as_images(x_tr, str(path)), _as_images(x_te, str(path))
    else:
        raise ConfigError(f"{path}: x_train must have 2 (features) or 3-4 (images) dimensions, "
                          f"got shape {x_tr.shape}")
    if "class_names" in arrays:
        names = [str(n) for n in arrays["class_names"].ravel().tolist()]
        ys = []
        for y in (y_tr, y_te):
            if y.dtype.kind not in "iu" or (len(y) and (y.min() < 0 or y.max() >= len(names))):
                raise ConfigError(f"{path}: with class_names, labels must be integers in "
                                  f"0..{len(names) - 1}")
            ys.append(y.astype(np.int64))
        y_tr, y_te = ys
    else:
        (y_tr, y_te), names = _encode_labels(y_tr, y_te, where=str(path))
    return RawData(x_tr, y_tr, x_te, y_te, names, kind, str(path))


def _read_csv(path: Path, label_column: str, key: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    check_path(key, str(path), False, "a .csv file")
    with open(path, newline="") as f:
        reader = csv.reader(f)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise ConfigError(f"{path}: empty csv file") from None
        rows = [r for r in reader if r]
    if label_column not in header:
        raise ConfigError(f"{path}: no label column {label_column!r} (data.label_column); "
                          f"columns: {header}")
    li = header.index(label_column)
    feats = [h for i, h in enumerate(header) if i != li]
    if not feats:
        raise ConfigError(f"{path}: no feature columns besides {label_column!r}")
    for n, r in enumerate(rows, start=2):
        if len(r) != len(header):
            raise ConfigError(f"{path}: line {n} has {len(r)} fields, the header {len(header)}")
    labels = np.array([r[li].strip() for r in rows], dtype=str)
    x = np.empty((len(rows), len(feats)), dtype=np.float32)
    cols = [i for i in range(len(header)) if i != li]
    for j, i in enumerate(cols):
        try:
            x[:, j] = [float(r[i]) for r in rows]
        except ValueError:
            raise ConfigError(f"{path}: column {header[i]!r} is not numeric") from None
    if not np.isfinite(x).all():
        raise ConfigError(f"{path}: features must be finite (found nan or inf)")
    return feats, x, labels


def _numeric_labels(labels: np.ndarray) -> np.ndarray:
    try:
        v = labels.astype(np.float64)
    except ValueError:
        return labels
    return v.astype(np.int64) if len(v) and np.all(np.mod(v, 1) == 0) else labels


def load_csv(path: str | Path, *, test_path: str | Path | None = None,
             label_column: str = "label", test_fraction: float = 0.2) -> RawData:
    """A csv with a header row: every column but ``label_column`` is a numeric feature.

    Integer labels are kept as classes named ``"0"``, ``"1"``, ... (over the sorted distinct
    values); other labels are class names, sorted.  Without ``test_path`` a stratified
    ``test_fraction`` test split is carved with the fixed seed 0.
    """
    path = Path(path).expanduser()
    feats, x_tr, lab_tr = _read_csv(path, label_column, "data.path")
    if test_path is not None:
        tpath = Path(test_path).expanduser()
        feats_te, x_te, lab_te = _read_csv(tpath, label_column, "data.test_path")
        if feats_te != feats:
            raise ConfigError(f"{tpath}: columns {feats_te} differ from {path}'s {feats}")
        nums = [_numeric_labels(lab_tr), _numeric_labels(lab_te)]
        if nums[0].dtype.kind != nums[1].dtype.kind:
            nums = [lab_tr, lab_te]
        (y_tr, y_te), names = _encode_labels(*nums, where=str(path))
    else:
        (y,), names = _encode_labels(_numeric_labels(lab_tr), where=str(path))
        rest, held = stratified_split(y, test_fraction, len(names), np.random.default_rng(0))
        x_tr, y_tr, x_te, y_te = x_tr[rest], y[rest], x_tr[held], y[held]
    if len(y_tr) == 0:
        raise ConfigError(f"{path}: no data rows")
    src = str(path) if test_path is None else f"{path} + {test_path}"
    return RawData(x_tr, y_tr, x_te, y_te, names, "features", src)


def load_digits(*, as_images: bool = False, test_fraction: float = 0.2) -> RawData:
    """scikit-learn's bundled 8×8 digits (1797 samples, values 0..16), always offline.

    Features: float32 ``[N, 64]`` with the raw 0..16 values.  ``as_images``: uint8
    ``[N, 1, 8, 8]`` scaled by ``round(v * 255 / 16)``.  The test split is a stratified
    ``test_fraction`` split with the fixed seed 0.
    """
    try:
        from sklearn.datasets import load_digits as _sk_digits
    except ImportError as exc:
        raise ConfigError("data.name = 'digits' needs scikit-learn: "
                          "pip install scikit-learn (or classaware[all])") from exc
    d = _sk_digits()
    y = np.asarray(d.target, dtype=np.int64)
    if as_images:
        x = np.rint(np.asarray(d.images) * (255.0 / 16.0)).astype(np.uint8)[:, None]
        kind = "image"
    else:
        x = np.asarray(d.data, dtype=np.float32)
        kind = "features"
    rest, held = stratified_split(y, test_fraction, 10, np.random.default_rng(0))
    return RawData(x[rest], y[rest], x[held], y[held], [str(i) for i in range(10)], kind,
                   "scikit-learn (bundled digits)")
