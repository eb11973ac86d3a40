"""Image decoding helpers: a direct PPM/PGM reader and Pillow for the rest (imported lazily),
resizing (:func:`fit`: stretch or centre crop), the gray test and the luma conversion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from classaware.errors import ConfigError

__all__ = ["IMAGE_SUFFIXES", "RESIZE_MODES", "fit", "is_gray", "read_image", "read_pnm",
           "resize", "to_gray"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".ppm", ".pgm", ".bmp")
#: ``data.resize``: how an image becomes ``image_size`` × ``image_size``
RESIZE_MODES = ("stretch", "center_crop")
_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def _pil() -> Any:
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - Pillow is a dependency
        raise ConfigError("reading png/jpg images needs Pillow: pip install pillow") from exc
    return Image


def read_pnm(path: str | Path) -> np.ndarray | None:
    """Read a binary PPM (P6) or PGM (P5) with maxval <= 255 as ``[H, W, 3|1]`` uint8.

    Returns None for any other variant (ASCII P3/P2, 16-bit), which callers hand to Pillow.
    """
    data = Path(path).read_bytes()
    if data[:2] not in (b"P6", b"P5"):
        return None
    fields: list[int] = []
    pos = 2
    while len(fields) < 3:
        while pos < len(data) and data[pos:pos + 1].isspace():
            pos += 1
        if data[pos:pos + 1] == b"#":
            while pos < len(data) and data[pos:pos + 1] not in (b"\n", b"\r"):
                pos += 1
            continue
        start = pos
        while pos < len(data) and data[pos:pos + 1].isdigit():
            pos += 1
        if start == pos:
            raise ConfigError(f"{path}: malformed PNM header")
        fields.append(int(data[start:pos]))
    pos += 1  # the single whitespace byte after maxval
    width, height, maxval = fields
    if maxval > 255:
        return None
    ch = 3 if data[:2] == b"P6" else 1
    n = width * height * ch
    if len(data) - pos < n:
        raise ConfigError(f"{path}: truncated PNM ({len(data) - pos} of {n} pixel bytes)")
    return np.frombuffer(data, dtype=np.uint8, count=n, offset=pos).reshape(height, width, ch)


def read_image(path: str | Path) -> tuple[np.ndarray, bool]:
    """Decode an image file to ``[H, W, 3]`` uint8 and whether it was gray to begin with.

    An image with no pixels (0×0, or 0 in one side) is a ConfigError naming the file.
    """
    arr, gray = _decode(Path(path))
    if 0 in arr.shape[:2]:
        raise ConfigError(f"{path}: empty image ({arr.shape[1]}×{arr.shape[0]} pixels)")
    return arr, gray


def _decode(path: Path) -> tuple[np.ndarray, bool]:
    if path.suffix.lower() in (".ppm", ".pgm"):
        arr = read_pnm(path)
        if arr is not None:
            if arr.shape[2] == 1:
                return np.repeat(arr, 3, axis=2), True
            return arr, False
    Image = _pil()
    try:
        with Image.open(path) as im:
            gray = im.mode in _GRAY_MODES
            if im.mode == "P":
                im = im.convert("RGBA")
            rgb = im.convert("RGB")
            return np.asarray(rgb, dtype=np.uint8), gray
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read image ({exc})") from exc


def resize(img: np.ndarray, size: int) -> np.ndarray:
    """Resize ``[H, W, C]`` uint8 to ``[size, size, C]`` (Pillow bilinear, antialiased)."""
    if img.shape[0] == size and img.shape[1] == size:
        return img
    Image = _pil()
    pil = Image.fromarray(np.ascontiguousarray(img[:, :, 0] if img.shape[2] == 1 else img))
    return np.asarray(pil.resize((size, size), Image.BILINEAR), dtype=np.uint8).reshape(
        size, size, img.shape[2])


def is_gray(path: str | Path) -> bool:
    """Whether :func:`read_image` would call the file gray, from its header only (no decoding)."""
    path = Path(path)
    if path.suffix.lower() in (".ppm", ".pgm"):
        with open(path, "rb") as f:
            magic = f.read(2)
        if magic in (b"P5", b"P6"):
            return magic == b"P5"
    Image = _pil()
    try:
        with Image.open(path) as im:
            return im.mode in _GRAY_MODES
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read image ({exc})") from exc


def fit(img: np.ndarray, size: int, mode: str = "stretch") -> np.ndarray:
    """``[H, W, C]`` uint8 to ``[size, size, C]``.

    ``"stretch"``: both sides resized to ``size`` (:func:`resize`; the aspect ratio changes);
    ``"center_crop"``: the shorter side resized to ``size`` (the longer one in proportion,
    rounded), then the central ``size`` × ``size`` square (offset ``(long - size) // 2``).
    """
    if mode == "stretch":
        return resize(img, size)
    if mode != "center_crop":
        raise ValueError(f"mode must be one of {RESIZE_MODES}, got {mode!r}")
    h, w = img.shape[:2]
    if min(h, w) != size:
        scale = size / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        Image = _pil()
        pil = Image.fromarray(np.ascontiguousarray(img[:, :, 0] if img.shape[2] == 1 else img))
        img = np.asarray(pil.resize((nw, nh), Image.BILINEAR), dtype=np.uint8).reshape(
            nh, nw, img.shape[2])
        h, w = nh, nw
    top, left = (h - size) // 2, (w - size) // 2
    return img[top:top + size, left:left + size]


def to_gray(x: np.ndarray) -> np.ndarray:
    """RGB ``[..., 3, H, W]`` uint8 to ``[..., 1, H, W]``: ITU-R 601-2 luma, rounded (what
    Pillow's ``convert("L")`` computes)."""
    w = np.array([299, 587, 114], dtype=np.uint32)
    luma = (np.tensordot(w, x.astype(np.uint32), axes=([0], [x.ndim - 3])) + 500) // 1000
    return np.expand_dims(luma.astype(np.uint8), x.ndim - 3)
