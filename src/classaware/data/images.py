"""Image decoding helpers: a direct PPM/PGM reader and Pillow for the rest (imported lazily)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from classaware.errors import ConfigError

__all__ = ["IMAGE_SUFFIXES", "read_image", "read_pnm", "resize"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".ppm", ".pgm", ".bmp")


def _pil() -> Any:
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - Pillow comes with matplotlib
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
            gray = im.mode in ("1", "L", "LA", "I", "I;16", "F")
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
