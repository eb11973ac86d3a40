"""Every on-disk format, built as a tiny fixture in tmp_path, read back by classaware.data."""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from classaware.data import available_datasets, download, load_data
from classaware.data.idx import FASHION_MNIST_CLASSES, read_idx
from classaware.errors import ConfigError

FM_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """No real dataset leaks into a test: no system dir, no $CLASSAWARE_DATA, a private cache."""
    monkeypatch.setattr(download, "SYSTEM_DATA_DIR", tmp_path / "system")
    monkeypatch.delenv("CLASSAWARE_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


# --------------------------------------------------------------------------- IDX
def write_idx(path: Path, arr: np.ndarray, *, gz: bool) -> None:
    header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    data = header + np.ascontiguousarray(arr, dtype=np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


def make_idx_dir(d: Path, *, gz: bool, n_train=40, n_test=20, seed=0, names=None):
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.arange(n_test)[::-1] % 10,
    }
    for stem, arr in arrays.items():
        write_idx(d / (stem + (".gz" if gz else "")), arr.astype(np.uint8), gz=gz)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_idx_gz_and_raw(tmp_path, gz):
    arrays = make_idx_dir(tmp_path / "fm", gz=gz)
    b = load_data({"name": "fashion-mnist", "dir": str(tmp_path / "fm"), "val_fraction": 0})
    assert b.kind == "image" and b.class_names == FASHION_MNIST_CLASSES
    assert b.x_train.dtype == torch.uint8 and b.y_train.dtype == torch.int64
    assert tuple(b.x_train.shape) == (40, 1, 28, 28) and tuple(b.x_test.shape) == (20, 1, 28, 28)
    np.testing.assert_array_equal(b.x_train[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(b.y_test.numpy(), arrays["t10k-labels-idx1-ubyte"])
    assert b.source == str(tmp_path / "fm")


def test_idx_found_under_name_subfolder_and_mnist_names(tmp_path):
    make_idx_dir(tmp_path / "root" / "mnist" / "raw", gz=True)
    b = load_data({"name": "mnist", "dir": str(tmp_path / "root"), "val_fraction": 0})
    assert b.class_names == [str(i) for i in range(10)] and len(b.y_train) == 40
    make_idx_dir(tmp_path / "root", gz=True, n_train=30)             # files in data.dir itself
    assert len(load_data({"name": "mnist", "dir": str(tmp_path / "root")}).y_test) == 20
    b = load_data({"name": "fashion-mnist", "dir": str(tmp_path / "root"), "val_fraction": 0})
    assert len(b.y_train) == 30 and b.source == str(tmp_path / "root")
    # data.dir/<name> wins over files lying in data.dir itself
    b = load_data({"name": "mnist", "dir": str(tmp_path / "root"), "val_fraction": 0})
    assert len(b.y_train) == 40 and b.source == str(tmp_path / "root" / "mnist" / "raw")


def test_idx_bad_files(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(b"\x08\x03\x00\x00garbage")
    with pytest.raises(ConfigError, match="not an IDX file"):
        read_idx(p)
    write_idx(p, np.zeros((3, 2), np.uint8), gz=False)
    p.write_bytes(p.read_bytes()[:-1])  # truncated
    with pytest.raises(ConfigError, match="size mismatch"):
        read_idx(p)


def test_lookup_order_and_env(tmp_path, monkeypatch):
    make_idx_dir(tmp_path / "env" / "fashion-mnist", gz=True, n_train=30)
    make_idx_dir(tmp_path / "cache" / "fashion-mnist", gz=True, n_train=50)
    monkeypatch.setenv("CLASSAWARE_DATA", str(tmp_path / "env"))
    cfg = {"name": "fashion-mnist", "cache_dir": str(tmp_path / "cache"), "val_fraction": 0}
    assert len(load_data(cfg).y_train) == 30           # $CLASSAWARE_DATA before the cache
    monkeypatch.delenv("CLASSAWARE_DATA")
    assert len(load_data(cfg).y_train) == 50
    make_idx_dir(tmp_path / "mine", gz=False, n_train=20)
    assert len(load_data({**cfg, "dir": str(tmp_path / "mine")}).y_train) == 20  # data.dir first


def test_not_found_names_every_place(tmp_path, monkeypatch):
    monkeypatch.setenv("CLASSAWARE_DATA", str(tmp_path / "envdir"))
    (tmp_path / "d").mkdir()  # an empty data.dir (one that does not exist is an error of its own)
    cfg = {"name": "fashion-mnist", "dir": str(tmp_path / "d"), "cache_dir": str(tmp_path / "c")}
    with pytest.raises(ConfigError) as info:
        load_data(cfg)
    msg = str(info.value)
    assert "\n" not in msg
    for place in (tmp_path / "d", tmp_path / "envdir" / "fashion-mnist",
                  tmp_path / "system" / "fashion-mnist", tmp_path / "c" / "fashion-mnist"):
        assert str(place) in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "data.download = true" in msg
    entry = {d["name"]: d for d in available_datasets(cfg)}["fashion-mnist"]
    assert entry["available"] is False and entry["location"] is None


# --------------------------------------------------------------------------- download
def _serve(tmp_path, monkeypatch, name, files, checksums, archive=False):
    """Put ``files`` in a folder and point RESOURCES[name] at it through a file:// URL."""
    src = tmp_path / "mirror"
    src.mkdir(exist_ok=True)
    for fname, data in files.items():
        (src / fname).write_bytes(data)
    res = download.Resource((src.as_uri() + "/",), tuple(zip(files, checksums)), archive)
    monkeypatch.setitem(download.RESOURCES, name, res)


def _md5(data: bytes) -> str:
    return "md5:" + hashlib.md5(data).hexdigest()


def test_download_good_checksum(tmp_path, monkeypatch):
    fixture = tmp_path / "fixture"
    arrays = make_idx_dir(fixture, gz=True)
    files = {p.name: p.read_bytes() for p in sorted(fixture.iterdir())}
    _serve(tmp_path, monkeypatch, "mnist", files, [_md5(v) for v in files.values()])
    cache = tmp_path / "cache"
    cfg = {"name": "mnist", "cache_dir": str(cache), "val_fraction": 0}
    with pytest.raises(ConfigError, match="not found"):
        load_data(cfg)
    b = load_data({**cfg, "download": True})
    np.testing.assert_array_equal(b.y_train.numpy(), arrays["train-labels-idx1-ubyte"])
    assert sorted(p.name for p in (cache / "mnist").iterdir()) == sorted(files)
    assert {d["name"]: d for d in available_datasets(cfg)}["mnist"]["location"] == str(
        cache / "mnist")


def test_download_sha256_and_bad_checksum_leaves_nothing(tmp_path, monkeypatch):
    data = b"some bytes" * 1000
    dest = tmp_path / "out" / "f.bin"
    url = _write(tmp_path / "src.bin", data)
    good = "sha256:" + hashlib.sha256(data).hexdigest()
    assert download.download_file(url, dest, good, progress=False).read_bytes() == data
    dest.unlink()
    bad = "md5:" + "0" * 32
    with pytest.raises(ConfigError, match="checksum mismatch"):
        download.download_file(url, dest, bad, progress=False)
    assert list(dest.parent.iterdir()) == []
    with pytest.raises(ValueError, match="checksum must be"):
        download.download_file(url, dest, "crc:1", progress=False)


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return path.as_uri()


def test_download_bad_checksum_via_load_data(tmp_path, monkeypatch):
    fixture = tmp_path / "fixture"
    make_idx_dir(fixture, gz=True)
    files = {p.name: p.read_bytes() for p in sorted(fixture.iterdir())}
    _serve(tmp_path, monkeypatch, "fashion-mnist", files, ["md5:" + "f" * 32] * 4)
    cache = tmp_path / "cache"
    with pytest.raises(ConfigError, match="checksum mismatch"):
        load_data({"name": "fashion-mnist", "cache_dir": str(cache), "download": True})
    assert list((cache / "fashion-mnist").iterdir()) == []


def test_download_tries_the_next_mirror(tmp_path, monkeypatch):
    fixture = tmp_path / "fixture"
    make_idx_dir(fixture, gz=False)
    files = {p.name: p.read_bytes() for p in sorted(fixture.iterdir())}
    _serve(tmp_path, monkeypatch, "mnist", files, [_md5(v) for v in files.values()])
    good = download.RESOURCES["mnist"]
    dead = (tmp_path / "no-such-mirror").as_uri() + "/"
    monkeypatch.setitem(download.RESOURCES, "mnist",
                        download.Resource((dead, *good.mirrors), good.files))
    out = download.fetch("mnist", {"cache_dir": str(tmp_path / "c")}, progress=False)
    assert sorted(p.name for p in out.iterdir()) == sorted(files)
    monkeypatch.setitem(download.RESOURCES, "mnist", download.Resource((dead,), good.files))
    with pytest.raises(ConfigError, match="could not download mnist") as info:
        download.fetch("mnist", {"cache_dir": str(tmp_path / "c2")}, progress=False)
    assert dead in str(info.value)
    with pytest.raises(ConfigError, match="not supported for 'digits'"):
        download.fetch("digits")


def test_download_cifar_archive_is_unpacked(tmp_path, monkeypatch):
    tree = tmp_path / "tree"
    make_cifar10(tree)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        t.add(tree / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    data = buf.getvalue()
    _serve(tmp_path, monkeypatch, "cifar10", {"cifar-10-python.tar.gz": data}, [_md5(data)],
           archive=True)
    cache = tmp_path / "cache"
    b = load_data({"name": "cifar10", "cache_dir": str(cache), "download": True,
                   "val_fraction": 0})
    assert len(b.y_train) == 50 and b.class_names[3] == "cat"
    assert sorted(p.name for p in (cache / "cifar10").iterdir()) == ["cifar-10-batches-py"]


# --------------------------------------------------------------------------- CIFAR
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck"]


def _dump(path: Path, obj: dict) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=2))


def make_cifar10(root: Path, per_batch=10, n_test=20):
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = np.random.default_rng(1)
    batches = []
    for i in range(1, 6):
        x = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, per_batch)]
        _dump(d / f"data_batch_{i}", {b"data": x, b"labels": y, b"batch_label": b"x"})
        batches.append((x, y))
    xt = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    _dump(d / "test_batch", {b"data": xt, b"labels": list(np.arange(n_test) % 10)})
    _dump(d / "batches.meta", {b"label_names": [n.encode() for n in CIFAR10_NAMES]})
    return batches, xt


def test_cifar10(tmp_path):
    batches, xt = make_cifar10(tmp_path)
    b = load_data({"name": "cifar10", "dir": str(tmp_path), "val_fraction": 0})
    assert b.class_names == CIFAR10_NAMES
    x0, y0 = batches[0]
    # row layout: 1024 red, 1024 green, 1024 blue values, each a 32x32 row-major plane
    assert b.x_train[0, 1, 2, 3].item() == x0[0, 1024 + 2 * 32 + 3]
    assert b.y_train[:10].tolist() == y0
    assert tuple(b.x_test.shape) == (20, 3, 32, 32) and b.x_test.dtype == torch.uint8
    np.testing.assert_array_equal(b.x_test.reshape(20, -1).numpy(), xt)


@pytest.mark.parametrize("label", ["fine", "coarse"])
def test_cifar100_fine_and_coarse(tmp_path, label):
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    rng = np.random.default_rng(2)
    fine_names = [f"f{i}" for i in range(100)]
    coarse_names = [f"c{i}" for i in range(20)]
    fine = list(range(100)) * 2
    coarse = [f // 5 for f in fine]
    x = rng.integers(0, 256, (200, 3072), dtype=np.uint8)
    for split in ("train", "test"):
        _dump(d / split, {b"data": x, b"fine_labels": fine, b"coarse_labels": coarse})
    _dump(d / "meta", {b"fine_label_names": [n.encode() for n in fine_names],
                       b"coarse_label_names": [n.encode() for n in coarse_names]})
    b = load_data({"name": "cifar100", "dir": str(tmp_path), "label": label, "val_fraction": 0})
    want_names, want_y = (fine_names, fine) if label == "fine" else (coarse_names, coarse)
    assert b.class_names == want_names and b.y_test.tolist() == want_y


def test_cifar_corrupt_batch(tmp_path):
    make_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(ConfigError, match="data_batch_3"):
        load_data({"name": "cifar10", "dir": str(tmp_path)})


# --------------------------------------------------------------------------- GTSRB
def write_ppm(path: Path, img: np.ndarray) -> None:
    h, w, _ = img.shape
    path.write_bytes(f"P6\n# fixture\n{w} {h}\n255\n".encode() + img.astype(np.uint8).tobytes())


def _sign(h, w, roi, colour):
    """A noisy border with a flat ``colour`` inside the ROI box (x1, y1, x2, y2), exclusive."""
    img = np.random.default_rng(h * w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    x1, y1, x2, y2 = roi
    img[y1:y2, x1:x2] = colour
    return img


COLOURS = [(200, 10, 10), (10, 200, 10), (10, 10, 200)]


def make_gtsrb(root: Path, per_class=4):
    train = root / "GTSRB" / "Final_Training" / "Images"
    for c, colour in enumerate(COLOURS):
        d = train / f"{c:05d}"
        d.mkdir(parents=True)
        lines = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
        for i in range(per_class):
            h, w = 40 + i, 45 + 2 * i
            roi = (5, 6, w - 5, h - 5)
            write_ppm(d / f"{c:05d}_{i:05d}.ppm", _sign(h, w, roi, colour))
            lines.append(f"{c:05d}_{i:05d}.ppm;{w};{h};{roi[0]};{roi[1]};{roi[2]};{roi[3]};{c}")
        (d / f"GT-{c:05d}.csv").write_text("\n".join(lines) + "\n")
    test = root / "GTSRB" / "Final_Test" / "Images"
    test.mkdir(parents=True)
    lines = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
    labels = [2, 0, 1, 2, 1]
    for i, c in enumerate(labels):
        roi = (6, 5, 36, 31)
        write_ppm(test / f"{i:05d}.ppm", _sign(38, 42, roi, COLOURS[c]))
        lines.append(f"{i:05d}.ppm;42;38;{';'.join(map(str, roi))};{c}")
    (root / "GT-final_test.csv").write_text("\n".join(lines) + "\n")
    return labels


def test_gtsrb_roi_crop_and_resize(tmp_path):
    labels = make_gtsrb(tmp_path)
    b = load_data({"name": "gtsrb", "dir": str(tmp_path), "val_fraction": 0})
    assert b.class_names == ["Speed limit (20km/h)", "Speed limit (30km/h)",
                             "Speed limit (50km/h)"]
    assert tuple(b.x_train.shape) == (12, 3, 32, 32) and b.y_test.tolist() == labels
    # after cropping to the ROI only the flat sign colour is left, whatever the resize
    for x, y in zip(b.x_train, b.y_train):
        assert (x.reshape(3, -1).T == torch.tensor(COLOURS[int(y)], dtype=torch.uint8)).all()
    for x, y in zip(b.x_test, b.y_test):
        assert (x.reshape(3, -1).T == torch.tensor(COLOURS[int(y)], dtype=torch.uint8)).all()
    b16 = load_data({"name": "gtsrb", "dir": str(tmp_path), "image_size": 16})
    assert b16.input_shape == (3, 16, 16)


def test_gtsrb_missing_test_gt(tmp_path):
    make_gtsrb(tmp_path)
    (tmp_path / "GT-final_test.csv").unlink()
    with pytest.raises(ConfigError, match="GT-final_test.csv"):
        load_data({"name": "gtsrb", "dir": str(tmp_path)})


# --------------------------------------------------------------------------- imagefolder
def _png(path: Path, arr: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def test_imagefolder_train_test_subfolders_gray(tmp_path):
    root = tmp_path / "imgs"
    for split, n in (("train", 3), ("test", 2)):
        for c, name in enumerate(["cat", "ant"]):
            for i in range(n):
                _png(root / split / name / f"{i}.png", np.full((10, 12), 40 * c + i, np.uint8))
    b = load_data({"name": "imagefolder", "path": str(root), "image_size": 8,
                   "val_fraction": 0})
    assert b.class_names == ["ant", "cat"]          # sorted folder names
    assert b.input_shape == (1, 8, 8) and len(b.y_train) == 6 and len(b.y_test) == 4
    for x, y in zip(b.x_train, b.y_train):          # flat images stay flat after resizing
        assert x.unique().numel() == 1 and (int(x[0, 0, 0]) >= 40) == (int(y) == 0)  # ant
    b3 = load_data({"name": "imagefolder", "path": str(root), "channels": 3, "val_fraction": 0})
    assert b3.input_shape == (3, 32, 32)


def test_imagefolder_carved_test_split_rgb_and_jpg(tmp_path):
    root = tmp_path / "imgs"
    for c, name in enumerate(["a", "b", "c"]):
        for i in range(10):
            arr = np.zeros((6, 6, 3), np.uint8)
            arr[..., c] = 255
            _png(root / name / f"{i}.png", arr)
    _png(root / "a" / "extra.jpg", np.full((6, 6, 3), 7, np.uint8))
    (root / "a" / "notes.txt").write_text("ignored")
    b = load_data({"name": "imagefolder", "path": str(root), "test_fraction": 0.2,
                   "val_fraction": 0, "image_size": 6})
    assert b.input_shape == (3, 6, 6)
    assert b.test_class_counts == [2, 2, 2] and b.train_class_counts == [9, 8, 8]
    again = load_data({"name": "imagefolder", "path": str(root), "test_fraction": 0.2,
                       "val_fraction": 0, "image_size": 6}, seed=5)
    assert torch.equal(again.x_test, b.x_test)      # the carved test set ignores the run seed
    with pytest.raises(ConfigError, match="does not exist"):
        load_data({"name": "imagefolder", "path": str(tmp_path / "nope")})


# --------------------------------------------------------------------------- arrays / csv
def test_arrays_images_nhwc_float_and_class_names(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.random((30, 5, 5, 3))
    y = np.arange(30) % 3
    p = tmp_path / "a.npz"
    np.savez(p, x_train=x, y_train=y, x_test=x[:6], y_test=y[:6],
             class_names=np.array(["x", "y", "z"]))
    b = load_data({"name": "arrays", "path": str(p), "val_fraction": 0})
    assert b.kind == "image" and b.input_shape == (3, 5, 5) and b.class_names == ["x", "y", "z"]
    np.testing.assert_array_equal(b.x_train.numpy(),
                                  np.rint(x * 255).astype(np.uint8).transpose(0, 3, 1, 2))


def test_arrays_features_and_label_encoding(tmp_path):
    p = tmp_path / "f.npz"
    x = np.arange(40, dtype=np.float64).reshape(20, 2)
    y = np.array([5, 7] * 10)
    np.savez(p, x_train=x, y_train=y, x_test=x[:4], y_test=y[:4])
    b = load_data({"name": "arrays", "path": str(p), "val_fraction": 0})
    assert b.kind == "features" and b.x_train.dtype == torch.float32
    assert b.class_names == ["5", "7"] and b.y_train.tolist() == [0, 1] * 10
    bad = tmp_path / "bad.npz"
    np.savez(bad, x_train=x, y_train=y)
    with pytest.raises(ConfigError, match="missing arrays"):
        load_data({"name": "arrays", "path": str(bad)})
    np.savez(bad, x_train=x, y_train=y, x_test=x, y_test=y, class_names=np.array(["a"]))
    with pytest.raises(ConfigError, match="labels must be integers in 0..0"):
        load_data({"name": "arrays", "path": str(bad)})


def test_csv_string_labels_and_split(tmp_path):
    rows = ["f1,label,f2"] + [f"{i},{'zeta' if i % 3 else 'alpha'},{i * 0.5}" for i in range(30)]
    p = tmp_path / "t.csv"
    p.write_text("\n".join(rows) + "\n")
    b = load_data({"name": "csv", "path": str(p), "val_fraction": 0, "test_fraction": 0.3})
    assert b.kind == "features" and b.input_shape == (2,) and b.class_names == ["alpha", "zeta"]
    assert b.test_class_counts == [3, 6] and b.train_class_counts == [7, 14]
    xs = torch.cat([b.x_train, b.x_test])
    assert sorted(xs[:, 0].tolist()) == list(range(30))           # every row exactly once
    for x, y in zip(b.x_train, b.y_train):                        # label follows its row
        assert (int(x[0]) % 3 == 0) == (int(y) == 0) and x[1] == x[0] * 0.5


def test_csv_test_path_label_column_and_errors(tmp_path):
    tr, te = tmp_path / "tr.csv", tmp_path / "te.csv"
    tr.write_text("a,b,y\n" + "".join(f"{i},{-i},{i % 2}\n" for i in range(10)))
    te.write_text("a,b,y\n1,2,1\n3,4,0\n")
    b = load_data({"name": "csv", "path": str(tr), "test_path": str(te), "label_column": "y",
                   "val_fraction": 0})
    assert b.class_names == ["0", "1"] and b.y_test.tolist() == [1, 0] and len(b.y_train) == 10
    with pytest.raises(ConfigError, match="no label column 'label'"):
        load_data({"name": "csv", "path": str(tr)})
    te.write_text("a,b,y\n1,oops,1\n")
    with pytest.raises(ConfigError, match="column 'b' is not numeric"):
        load_data({"name": "csv", "path": str(tr), "test_path": str(te), "label_column": "y"})


# --------------------------------------------------------------------------- digits
def test_digits_features_and_images():
    from sklearn.datasets import load_digits

    ref = load_digits()
    f = load_data({"name": "digits", "val_fraction": 0})
    i = load_data({"name": "digits", "as_images": True, "val_fraction": 0})
    assert f.kind == "features" and f.input_shape == (64,) and f.x_train.dtype == torch.float32
    assert i.kind == "image" and i.input_shape == (1, 8, 8) and i.x_train.dtype == torch.uint8
    assert len(f.y_train) + len(f.y_test) == len(ref.target) == 1797
    assert int(i.x_train.max()) == 255 and int(f.x_train.max()) == 16
    # the same rows in both views: images == round(features * 255 / 16)
    np.testing.assert_array_equal(
        i.x_train.reshape(len(i.y_train), 64).numpy(),
        np.rint(f.x_train.numpy().astype(np.float64) * 255 / 16).astype(np.uint8))
    assert torch.equal(f.y_test, load_data({"name": "digits"}, seed=9).y_test)  # fixed split
    entry = {d["name"]: d for d in available_datasets()}["digits"]
    assert entry["available"] is True


# --------------------------------------------------------------------------- real data
def _parse_idx_reference(path: Path) -> np.ndarray:
    raw = gzip.decompress(path.read_bytes())
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return np.frombuffer(raw[4 + 4 * ndim:], dtype=np.uint8).reshape(dims)


@pytest.mark.skipif(not (FM_DIR / "train-labels-idx1-ubyte.gz").exists(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist(monkeypatch):
    monkeypatch.setattr(download, "SYSTEM_DATA_DIR", FM_DIR.parent)
    b = load_data({"name": "fashion-mnist", "val_fraction": 0})
    assert tuple(b.x_train.shape) == (60000, 1, 28, 28) and tuple(b.x_test.shape) == (10000, 1,
                                                                                          28, 28)
    assert b.train_class_counts == [6000] * 10 and b.test_class_counts == [1000] * 10
    np.testing.assert_array_equal(
        b.y_test.numpy(), _parse_idx_reference(FM_DIR / "t10k-labels-idx1-ubyte.gz"))
    lt = load_data({"name": "fashion-mnist", "val_fraction": 0,
                    "imbalance": {"profile": "exp", "ratio": 100}})
    assert lt.train_class_counts == [6000, 3596, 2156, 1292, 774, 464, 278, 166, 100, 60]
    assert lt.test_class_counts == [1000] * 10
    v = load_data({"name": "fashion-mnist"})
    assert v.val_class_counts == [600] * 10 and v.train_class_counts == [5400] * 10
