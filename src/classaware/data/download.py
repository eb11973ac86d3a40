"""Where datasets are looked for, and fetching them (checksum-verified, atomic) into the cache."""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from classaware.data.config import DataConfig, as_data_config
from classaware.errors import ConfigError

__all__ = ["RESOURCES", "SYSTEM_DATA_DIR", "Resource", "cache_root", "download_file", "fetch",
           "search_dirs"]

#: where Debian's ``dataset-*`` packages install (``/usr/share/datasets/<name>``)
SYSTEM_DATA_DIR = Path("/usr/share/datasets")


@dataclass(frozen=True)
class Resource:
    """Files of one dataset: tried from each mirror in turn; archives are unpacked after."""

    mirrors: tuple[str, ...]
    files: tuple[tuple[str, str], ...]     # (file name, "md5:<hex>" | "sha256:<hex>")
    archive: bool = False


_GTSRB = "https://sid.erda.dk/public/archives/daaeac0d7ce1152aea9b61d9f1e19370/"

#: Official download locations and checksums (the torchvision / dataset-page values).
RESOURCES: dict[str, Resource] = {
    "fashion-mnist": Resource(
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
         "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"),
        (("train-images-idx3-ubyte.gz", "md5:8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
         ("train-labels-idx1-ubyte.gz", "md5:25c81989df183df01b3e8a0aad5dffbe"),
         ("t10k-images-idx3-ubyte.gz", "md5:bef4ecab320f06d8554ea6380940ec79"),
         ("t10k-labels-idx1-ubyte.gz", "md5:bb300cfdad3c16e7a12a480ee83cd310"))),
    "mnist": Resource(
        ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        (("train-images-idx3-ubyte.gz", "md5:f68b3c2dcbeaaa9fbdd348bbdeb94873"),
         ("train-labels-idx1-ubyte.gz", "md5:d53e105ee54ea40749a09fcbcd1e9432"),
         ("t10k-images-idx3-ubyte.gz", "md5:9fb629c4189551a2d022fa330f9573f3"),
         ("t10k-labels-idx1-ubyte.gz", "md5:ec29112dd5afa0611ce80d1b7f02629c"))),
    "cifar10": Resource(("https://www.cs.toronto.edu/~kriz/",),
                        (("cifar-10-python.tar.gz", "md5:c58f30108f718f92721af3b95e74349a"),),
                        archive=True),
    "cifar100": Resource(("https://www.cs.toronto.edu/~kriz/",),
                         (("cifar-100-python.tar.gz", "md5:eb9058c3a382ffc7106e4002c42a8d85"),),
                         archive=True),
    "gtsrb": Resource((_GTSRB,),
                      (("GTSRB_Final_Training_Images.zip", "md5:f33fd80ac59bff73c82d25ab499e03a3"),
                       ("GTSRB_Final_Test_Images.zip", "md5:c7e4e6327067d32654124b0fe9e82185"),
                       ("GTSRB_Final_Test_GT.zip", "md5:fe31e9c9270bbcd7b84b7f21a9d9d9e5")),
                      archive=True),
}


def cache_root(cfg: DataConfig | Mapping[str, Any] | None = None) -> Path:
    """``data.cache_dir``, else ``$XDG_CACHE_HOME/classaware``, else ``~/.cache/classaware``."""
    cfg = as_data_config(cfg)
    if cfg.cache_dir:
        return Path(cfg.cache_dir).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "classaware"


def search_dirs(name: str, cfg: DataConfig | Mapping[str, Any] | None = None
                ) -> list[tuple[str, Path | None]]:
    """The places a named dataset is looked for, in order, as ``(label, path or None)``.

    1. ``data.dir/<name>``, then ``data.dir``, 2. ``$CLASSAWARE_DATA/<name>``,
    3. ``/usr/share/datasets/<name>``, 4. ``<cache_dir>/<name>``.  A ``None`` path means the
    place is not configured (reported in the not-found message all the same).
    """
    cfg = as_data_config(cfg)
    out: list[tuple[str, Path | None]] = []
    if cfg.dir:
        d = Path(cfg.dir).expanduser()
        out += [("data.dir", d / name), ("data.dir", d)]  # the specific folder first
    else:
        out.append(("data.dir (not set)", None))
    env = os.environ.get("CLASSAWARE_DATA")
    out.append(("$CLASSAWARE_DATA", Path(env).expanduser() / name) if env
               else ("$CLASSAWARE_DATA (not set)", None))
    out.append(("system", SYSTEM_DATA_DIR / name))
    out.append(("cache", cache_root(cfg) / name))
    return out


def _hasher(checksum: str) -> tuple[Any, str]:
    algo, _, hexdigest = checksum.partition(":")
    if algo not in ("md5", "sha256") or not hexdigest:
        raise ValueError(f"checksum must be 'md5:<hex>' or 'sha256:<hex>', got {checksum!r}")
    return hashlib.new(algo), hexdigest.lower()


def file_checksum_ok(path: Path, checksum: str) -> bool:
    """Whether ``path``'s digest equals ``checksum`` (``"md5:<hex>"`` or ``"sha256:<hex>"``)."""
    h, expected = _hasher(checksum)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest() == expected


def download_file(url: str, dest: str | Path, checksum: str, *, progress: bool = True,
                  timeout: float = 60.0) -> Path:
    """Fetch ``url`` to ``dest``, verifying ``checksum``; nothing is left behind on failure.

    The bytes go to a temporary file next to ``dest`` while being hashed; only a matching
    digest is moved into place with :func:`os.replace` (atomic).  A mismatch raises
    :class:`ConfigError`; network errors propagate as :class:`OSError`.

    Examples
    --------
    >>> download_file("https://example.org/a.gz", "/tmp/a.gz", "md5:0123...")  # doctest: +SKIP
    """
    from tqdm.auto import tqdm

    dest = Path(dest)
    h, expected = _hasher(checksum)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length") if resp.headers else None
            total = int(length) if length and str(length).isdigit() else None
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                      desc=dest.name, disable=not progress, leave=False) as bar:
                for chunk in iter(lambda: resp.read(1 << 20), b""):
                    out.write(chunk)
                    h.update(chunk)
                    bar.update(len(chunk))
        got = h.hexdigest()
        if got != expected:
            raise ConfigError(f"checksum mismatch for {url}: expected {checksum}, got "
                              f"{checksum.partition(':')[0]}:{got} (file discarded)")
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest


def _safe_members(names: list[str], root: Path) -> None:
    root = root.resolve()
    for n in names:
        target = (root / n).resolve()
        if target != root and root not in target.parents:
            raise ConfigError(f"refusing to unpack {n!r}: it would land outside {root}")


def _merge_move(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``; directories that exist already are merged entry by entry."""
    if dst.is_dir() and src.is_dir():
        for child in src.iterdir():
            _merge_move(child, dst / child.name)
        src.rmdir()
    else:
        if dst.exists():
            shutil.rmtree(dst) if dst.is_dir() else dst.unlink()
        os.replace(src, dst)


def _unpack(archive: Path, dest: Path) -> None:
    """Unpack into a temporary folder inside ``dest``, then move the contents into place."""
    tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=dest))
    try:
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as z:
                _safe_members(z.namelist(), tmp)
                z.extractall(tmp)
        else:
            with tarfile.open(archive) as t:
                _safe_members(t.getnames(), tmp)
                if hasattr(tarfile, "data_filter"):
                    t.extractall(tmp, filter="data")
                else:  # pragma: no cover - Python < 3.11.4
                    t.extractall(tmp)
        for child in list(tmp.iterdir()):
            _merge_move(child, dest / child.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def fetch(name: str, cfg: DataConfig | Mapping[str, Any] | None = None, *,
          progress: bool = True) -> Path:
    """Download dataset ``name`` into ``<cache_dir>/<name>`` and return that folder.

    Each file is tried from every mirror in turn; archives (CIFAR, GTSRB) are unpacked and
    then deleted.  Files already present with the right checksum are not fetched again.
    """
    if name not in RESOURCES:
        raise ConfigError(f"data.download is not supported for {name!r} "
                          f"(downloadable: {', '.join(RESOURCES)})")
    res = RESOURCES[name]
    dest = cache_root(cfg) / name
    dest.mkdir(parents=True, exist_ok=True)
    for filename, checksum in res.files:
        target = dest / filename
        if not (target.exists() and file_checksum_ok(target, checksum)):
            errors = []
            for mirror in res.mirrors:
                url = mirror.rstrip("/") + "/" + filename
                try:
                    download_file(url, target, checksum, progress=progress)
                    break
                except (OSError, ConfigError) as exc:  # URLError is an OSError
                    errors.append(f"{url}: {exc}")
            else:
                raise ConfigError(f"could not download {name} ({filename}): " + "; ".join(errors))
        if res.archive:
            _unpack(target, dest)
            target.unlink()
    return dest
