"""Data that does not fit in memory: an image folder read per batch by DataLoader workers
(``data.in_memory = false``), the same run as in memory; ``data.resize``; your own Datasets
(``classaware.data.from_datasets``) through ``classaware.train``.
"""

from __future__ import annotations

import json
import signal

import numpy as np
import pytest
import torch

import classaware
from classaware.cli import main
from classaware.data import load_data
from classaware.data.images import fit
from classaware.data.lazy import LazySplit, from_datasets, read_batches
from classaware.errors import ConfigError
from classaware.trainer.checkpoint import load_checkpoint
from classaware.trainer.config import load_config
from classaware.trainer.loop import Callback, run_training

CLASSES = {"ant": 30, "bee": 18, "cow": 9}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Full-size images of several shapes (png and jpg), the class in the colour."""
    from PIL import Image

    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for c, (name, n) in enumerate(CLASSES.items()):
        (root / name).mkdir()
        for i in range(n):
            h, w = (int(v) for v in rng.integers(20, 70, 2))
            img = rng.integers(0, 120, (h, w, 3)).astype(np.uint8)
            img[..., c] += 120
            Image.fromarray(img).save(root / name / f"{i:03d}.{'jpg' if i % 4 == 0 else 'png'}")
    return root


def _keys(folder, *extra: str) -> list[str]:
    keys = ["data.name=imagefolder", f"data.path='{folder}'", "data.image_size=16",
            "data.val_fraction=0.2", "train.epochs=2", "train.batch_size=8", "train.device=cpu",
            "train.progress=false", "train.num_threads=1", "optim.lr=0.05", "seed=4", *extra]
    return [a for k in keys for a in ("--set", k)]


def _run(folder, out, *extra: str) -> dict:
    assert main(["train", *_keys(folder, *extra), "--out", str(out), "--quiet"]) == 0
    return json.loads((out / "final.json").read_text())


def _same_weights(a, b) -> bool:
    wa = load_checkpoint(a / "checkpoints" / "best.pt")["model"]
    wb = load_checkpoint(b / "checkpoints" / "best.pt")["model"]
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.slow
@pytest.mark.parametrize("augment", ["false", "true"])
def test_read_per_batch_is_the_same_run_as_in_memory(folder, tmp_path, augment):
    mem = _run(folder, tmp_path / "mem", "data.in_memory=true", f"train.augment={augment}")
    lazy = _run(folder, tmp_path / "lazy", "data.in_memory=false", "data.workers=2",
                f"train.augment={augment}")
    assert mem["train_class_counts"] == lazy["train_class_counts"] == [19, 12, 6]
    assert mem["test"] == lazy["test"] and mem["val"] == lazy["val"]
    assert _same_weights(tmp_path / "mem", tmp_path / "lazy")
    assert (json.loads((tmp_path / "mem" / "metrics.jsonl").read_text().splitlines()[-1])
            ["train_loss"] == json.loads((tmp_path / "lazy" / "metrics.jsonl").read_text()
                                         .splitlines()[-1])["train_loss"])


@pytest.mark.slow
def test_the_number_of_workers_does_not_change_the_run(folder, tmp_path, capsys):
    _run(folder, tmp_path / "w0", "data.in_memory=false", "data.workers=0")
    code = main(["train", *_keys(folder, "data.in_memory=false", "data.workers=2"), "--out",
                 str(tmp_path / "w2")])
    assert code == 0
    assert "read per batch by 2 worker(s)" in capsys.readouterr().out.splitlines()[0]
    assert _same_weights(tmp_path / "w0", tmp_path / "w2")
    # and evaluate of a lazy run reads it per batch again
    assert main(["evaluate", str(tmp_path / "w2"), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["accuracy"] == json.loads((tmp_path / "w2" / "final.json").read_text())[
        "test"]["accuracy"]


def test_auto_decides_by_the_decoded_size(folder):
    base = {"name": "imagefolder", "path": str(folder), "image_size": 16, "workers": 0}
    small = load_data(base)
    assert small.meta["in_memory"] and isinstance(small.x_train, torch.Tensor)
    # 57 images × 3 × 16 × 16 bytes = 43,776 bytes: over a 40 kB limit
    big = load_data({**base, "max_memory_gb": 40e-6})
    assert not big.meta["in_memory"] and isinstance(big.x_train, LazySplit)
    assert big.x_train.shape == small.x_train.shape and big.train_class_counts == \
        small.train_class_counts
    batches = [[3, 0, 7], [1]]
    for workers in (0, 2):
        got = list(read_batches(big.x_train, batches, workers=workers))
        assert all(torch.equal(g, small.x_train[b]) for g, b in zip(got, batches))
    with pytest.raises(ConfigError, match=r"^data.in_memory: false is for data.name = "
                                          r"'imagefolder' and Python datasets; 'digits'"):
        load_config(None, ["data.name=digits", "data.in_memory=false"])


class _StopAt(Callback):
    def __init__(self, at):
        self.at = at

    def on_step_end(self, state):
        if (state.epoch, state.step) == self.at:
            signal.raise_signal(signal.SIGINT)


@pytest.mark.slow
def test_resume_mid_epoch_of_a_lazy_run_is_exact(folder, tmp_path):
    cfg = load_config(None, [k for k in _keys(folder, "data.in_memory=false", "data.workers=2",
                                               "train.augment=true") if k != "--set"])
    run_training(cfg, tmp_path / "ref", quiet=True)
    part = tmp_path / "part"
    assert run_training(cfg, part, quiet=True, callbacks=[_StopAt((1, 2))]).interrupted
    assert load_checkpoint(part / "checkpoints" / "last.pt")["step"] == 2
    run_training(cfg, part, resume=True, quiet=True)
    a = load_checkpoint(part / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "ref" / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_center_crop_and_stretch(folder):
    img = np.arange(20 * 40 * 3, dtype=np.uint8).reshape(20, 40, 3)
    assert fit(img, 10, "stretch").shape == (10, 10, 3)
    from PIL import Image

    half = np.asarray(Image.fromarray(img).resize((20, 10), Image.BILINEAR))
    assert np.array_equal(fit(img, 10, "center_crop"), half[:, 5:15])
    assert np.array_equal(fit(img[:, :20], 20, "center_crop"), img[:, :20])  # nothing to do
    b = load_data({"name": "imagefolder", "path": str(folder), "image_size": 12,
                   "resize": "center_crop", "workers": 0})
    assert b.input_shape == (3, 12, 12)
    with pytest.raises(ConfigError, match=r"^data.resize: expected one of 'stretch', "
                                          r"'center_crop'"):
        load_config(None, ["data.resize=crop"])


def test_a_corrupt_image_read_by_a_worker_is_one_line(folder, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    bad = broken / "cow" / "003.png"
    bad.write_bytes(bad.read_bytes()[:60])  # a valid header, truncated pixel data
    code = main(["train", *_keys(broken, "data.in_memory=false", "data.workers=2"), "--out",
                 str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert f"{bad}: cannot read image" in err


def test_an_image_folder_path_that_is_a_file(tmp_path):
    f = tmp_path / "x.png"
    f.write_bytes(b"")
    with pytest.raises(ConfigError, match=r"^data.path: .* is a file, expected a folder holding one sub-folder"):
        load_data({"name": "imagefolder", "path": str(f)})


# ------------------------------------------------------------------------------ your Datasets
class Blobs(torch.utils.data.Dataset):
    """Feature vectors around a class centre; no ``targets`` attribute (labels read per item)."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.y = torch.arange(n) % 4
        self.x = torch.randn(n, 6, generator=g) + 2 * torch.nn.functional.one_hot(self.y, 6)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i], int(self.y[i])


@pytest.mark.slow
def test_your_own_datasets_through_classaware_train(tmp_path, capsys):
    from classaware.trainer.evaluate import evaluate_run

    train_ds, test_ds = Blobs(400, 0), Blobs(120, 1)
    src = from_datasets(train_ds, test_ds, class_names=["n", "e", "s", "w"])
    out = tmp_path / "run"
    result = classaware.train({"data": {"imbalance": {"profile": "exp", "ratio": 4},
                                        "workers": 0, "val_fraction": 0.25},
                               "train": {"epochs": 3, "device": "cpu", "batch_size": 16}},
                              data=src, out=out, quiet=True)
    final = result.final
    assert final["dataset"] == "python" and final["model"] == "mlp"
    # the run's [data] keys applied to the Datasets: val split (25 per class), then exp 4
    assert final["train_class_counts"] == [75, 47, 29, 18]
    assert final["test"]["accuracy"] > 0.7
    saved = load_config(out / "config.toml")
    assert (saved.data.name, saved.model.name) == ("python", "mlp")
    capsys.readouterr()
    code = main(["evaluate", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "data.name: 'python'" in err
    again = evaluate_run(out, data=src)
    assert again["accuracy"] == final["test"]["accuracy"]


def test_from_datasets_checks_its_input():
    ds = torch.utils.data.TensorDataset(torch.zeros(4, 2), torch.tensor([0, 1, 2, 1]))
    with pytest.raises(ConfigError, match=r"^train: labels must be integers in \[0, 2\)"):
        from_datasets(ds, ds, ["a", "b"])
    with pytest.raises(ConfigError, match="^class_names: expected distinct names"):
        from_datasets(ds, ds, ["a", "a", "b"])
    with pytest.raises(ConfigError, match="^test: expected a map-style torch Dataset"):
        from_datasets(ds, 3, ["a", "b", "c"])
    ds.targets = [0, 1, 2, 1]  # torchvision's convention: no pass over the items
    assert from_datasets(ds, ds, ["a", "b", "c"]).train_labels.tolist() == [0, 1, 2, 1]
