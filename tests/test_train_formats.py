"""Train end to end on a tiny fixture of every on-disk format (issue 3: "train on each").

The fixture writers are the data tests' own (tests/test_data_formats.py); here each format goes
through the whole harness: load → val split → model → one epoch → best.pt → test → final.json.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import classaware
from test_data_formats import _dump, _png, make_cifar10, make_gtsrb, make_idx_dir


def _cifar100(root):
    d = root / "cifar-100-python"
    d.mkdir(parents=True)
    rng = np.random.default_rng(3)
    fine = list(range(100)) * 2
    x = rng.integers(0, 256, (200, 3072), dtype=np.uint8)
    for split in ("train", "test"):
        _dump(d / split, {b"data": x, b"fine_labels": fine, b"coarse_labels": [f // 5 for f in fine]})
    _dump(d / "meta", {b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                       b"coarse_label_names": [f"c{i}".encode() for i in range(20)]})
    return {"name": "cifar100", "dir": str(root), "label": "coarse"}, 20


def _imagefolder(root):
    for split, n in (("train", 6), ("test", 2)):
        for c, name in enumerate(["ant", "bee", "cat"]):
            for i in range(n):
                arr = np.full((12, 10, 3), 30 * c + i, np.uint8)
                arr[..., c] = 250
                _png(root / "imgs" / split / name / f"{i}.png", arr)
    return {"name": "imagefolder", "path": str(root / "imgs"), "image_size": 8}, 3


def _arrays(root):
    rng = np.random.default_rng(4)
    p = root / "a.npz"
    np.savez(p, x_train=rng.integers(0, 256, (30, 8, 8), dtype=np.uint8), y_train=np.arange(30) % 3,
             x_test=rng.integers(0, 256, (9, 8, 8), dtype=np.uint8), y_test=np.arange(9) % 3,
             class_names=np.array(["x", "y", "z"]))
    return {"name": "arrays", "path": str(p)}, 3


def _csv(root):
    p = root / "t.csv"
    rows = ["f1,f2,label"] + [f"{i % 7},{i * 0.1:.1f},{'ab'[i % 2]}" for i in range(40)]
    p.write_text("\n".join(rows) + "\n")
    return {"name": "csv", "path": str(p), "test_fraction": 0.25}, 2


def _idx(root, gz):
    name = "fashion-mnist" if gz else "mnist"
    make_idx_dir(root / name, gz=gz)
    return {"name": name, "dir": str(root / name)}, 10


def _cifar10(root):
    make_cifar10(root)
    return {"name": "cifar10", "dir": str(root)}, 10


def _gtsrb(root):
    make_gtsrb(root)  # three classes, ppm images with ROI csv files, and the test set
    return {"name": "gtsrb", "dir": str(root)}, 3


FORMATS = {
    "idx-gz": lambda root: _idx(root, gz=True),
    "idx-raw": lambda root: _idx(root, gz=False),
    "cifar10": _cifar10,
    "cifar100": _cifar100,
    "gtsrb": _gtsrb,
    "imagefolder": _imagefolder,
    "arrays": _arrays,
    "csv": _csv,
    "digits": lambda root: ({"name": "digits"}, 10),
}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_train_one_epoch_on_each_format(tmp_path, monkeypatch, fmt):
    monkeypatch.delenv("CLASSAWARE_DATA", raising=False)
    data, num_classes = FORMATS[fmt](tmp_path)
    features = fmt in ("csv", "digits")
    result = classaware.train(
        {"seed": 0, "data": {**data, "val_fraction": 0.2},
         "model": {"name": "mlp", "hidden": [16]} if features else {"name": "small_cnn"},
         "optim": {"name": "sgd", "lr": 0.05, "schedule": "constant"},
         "train": {"epochs": 1, "batch_size": 16, "progress": False}},
        out=tmp_path / "run", quiet=True)
    final = json.loads((result.run_dir / "final.json").read_text())
    assert len(final["class_names"]) == num_classes
    assert 0 < sum(final["train_class_counts"]) < 2000  # the fixture, not a real data set
    for split in ("val", "test"):
        cm = np.array(final[split]["confusion_matrix"])
        assert cm.shape == (num_classes, num_classes) and cm.sum() > 0
        assert final[split]["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
    assert (result.run_dir / "checkpoints" / "best.pt").is_file()
    assert len((result.run_dir / "metrics.jsonl").read_text().splitlines()) == 1
