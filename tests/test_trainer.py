"""Trainer: schedules, augmentation, atomic checkpoints, and real tiny training runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from classaware.errors import ConfigError
from classaware.trainer import checkpoint as ckpt
from classaware.trainer.augment import augment_batch, random_crop, random_flip, resolve_augment
from classaware.trainer.optim import LRSchedule, build_optimizer

# ------------------------------------------------------------------------------------------------
# learning-rate schedules (reference written from docs/config.md's formula)


def _ref_lr(i, *, lr, schedule, epochs, warmup=0, milestones=(), factor=0.1, min_lr=0.0):
    warm = (i + 1) / warmup if i < warmup else 1.0
    if schedule == "constant":
        return lr * warm
    if schedule == "step":
        k = len([m for m in milestones if i >= m])
        return lr * warm * factor**k
    if i < warmup:
        return lr * warm
    return min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * (i - warmup) / (epochs - warmup)))


def test_ldam_drw_schedule_exact():
    cfg = {"lr": 0.1, "schedule": "step", "milestones": [160, 180], "factor": 0.01,
           "warmup_epochs": 5}
    s = LRSchedule(cfg, epochs=200)
    lrs = [s.lr_at(i) for i in range(200)]
    assert lrs[:5] == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1])
    assert lrs[5:160] == pytest.approx([0.1] * 155)
    assert lrs[160:180] == pytest.approx([1e-3] * 20)
    assert lrs[180:] == pytest.approx([1e-5] * 20)


@pytest.mark.parametrize("schedule", ["constant", "step", "cosine"])
@pytest.mark.parametrize("warmup", [0, 3])
def test_schedules_match_formula(schedule, warmup):
    kw = {"lr": 0.3, "schedule": schedule, "warmup_epochs": warmup, "milestones": [4, 7],
          "factor": 0.5, "min_lr": 0.01 if schedule == "cosine" else 0.0}
    s = LRSchedule(kw, epochs=10)
    got = [s.lr_at(i) for i in range(10)]
    ref = [_ref_lr(i, lr=0.3, schedule=schedule, epochs=10, warmup=warmup, milestones=[4, 7],
                   factor=0.5, min_lr=kw["min_lr"]) for i in range(10)]
    assert got == pytest.approx(ref, rel=1e-12)
    opt = build_optimizer([torch.nn.Parameter(torch.zeros(2))], {"name": "sgd", "lr": 0.3})
    assert s.apply(opt, 9) == pytest.approx(ref[9])
    assert opt.param_groups[0]["lr"] == pytest.approx(ref[9])


def test_schedule_agrees_with_config_helper():
    config = pytest.importorskip("classaware.trainer.config")
    cfg = config.load_config({"optim": {"lr": 0.2, "schedule": "step", "milestones": [2, 4],
                                        "factor": 0.1, "warmup_epochs": 2},
                              "train": {"epochs": 6}})
    s = LRSchedule(cfg["optim"], epochs=6)
    assert [s.lr_at(i) for i in range(6)] == pytest.approx(
        [config.lr_at(cfg, i) for i in range(6)])


def test_optimizers_and_bad_values():
    p = [torch.nn.Parameter(torch.zeros(3))]
    sgd = build_optimizer(p, {"name": "sgd", "lr": 0.1, "momentum": 0.8, "nesterov": True,
                              "weight_decay": 1e-4})
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.defaults["nesterov"] and sgd.defaults["momentum"] == 0.8
    assert isinstance(build_optimizer(p, {"name": "adam", "lr": 1e-3}), torch.optim.Adam)
    aw = build_optimizer(p, {"name": "adamw", "lr": 1e-3, "weight_decay": 0.05,
                             "betas": [0.8, 0.9]})
    assert isinstance(aw, torch.optim.AdamW) and aw.defaults["betas"] == (0.8, 0.9)
    with pytest.raises(ConfigError, match="optim.name"):
        build_optimizer(p, {"name": "rmsprop", "lr": 0.1})
    with pytest.raises(ConfigError, match="optim.lr"):
        build_optimizer(p, {"name": "sgd", "lr": 0.0})
    with pytest.raises(ConfigError, match="nesterov"):
        build_optimizer(p, {"name": "sgd", "lr": 0.1, "momentum": 0.0, "nesterov": True})
    with pytest.raises(ConfigError, match="optim.schedule"):
        LRSchedule({"lr": 0.1, "schedule": "poly"}, epochs=3)


# ------------------------------------------------------------------------------------------------
# augmentation


def test_random_crop_is_a_window_of_the_padded_image():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(1, 255, (64, 3, 8, 8), dtype=torch.uint8)
    p = 2
    out = random_crop(x, p, g)
    assert out.shape == x.shape and out.dtype == x.dtype
    xp = torch.nn.functional.pad(x, (p, p, p, p))
    offsets = set()
    for n in range(x.shape[0]):
        hits = [(dy, dx) for dy in range(2 * p + 1) for dx in range(2 * p + 1)
                if torch.equal(out[n], xp[n, :, dy:dy + 8, dx:dx + 8])]
        assert hits, f"image {n} is not a crop of its padded image"
        offsets.add(hits[0])
    assert len(offsets) > 10  # offsets really vary over the 25 possible ones


def test_random_flip_and_seeding():
    x = torch.randn(200, 2, 5, 5)
    out = random_flip(x, torch.Generator().manual_seed(1))
    same = [torch.equal(out[n], x[n]) for n in range(200)]
    flipped = [torch.equal(out[n], x[n].flip(-1)) for n in range(200)]
    assert all(a or b for a, b in zip(same, flipped))
    assert 60 < sum(flipped) < 140
    a = augment_batch(x, crop_padding=1, flip=True, generator=torch.Generator().manual_seed(3))
    b = augment_batch(x, crop_padding=1, flip=True, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="N, C, H, W"):
        random_crop(torch.zeros(3, 4, 4), 1)


def test_resolve_augment_auto_rules():
    r = resolve_augment
    assert r({"augment": "auto"}, dataset="cifar10", kind="image", input_shape=(3, 32, 32)) == (4, True)
    assert r({}, dataset="fashion-mnist", kind="image", input_shape=(1, 28, 28)) == (4, True)
    assert r({}, dataset="mnist", kind="image", input_shape=(1, 28, 28)) == (4, False)
    assert r({}, dataset="gtsrb", kind="image", input_shape=(3, 32, 32)) == (4, False)
    assert r({}, dataset="digits", kind="image", input_shape=(1, 8, 8)) == (0, False)
    assert r({}, dataset="csv", kind="features", input_shape=(5,)) == (0, False)
    assert r({"augment": False}, dataset="cifar10", kind="image", input_shape=(3, 32, 32)) == (0, False)
    assert r({"augment": True, "crop_padding": 2, "hflip": False}, dataset="cifar10",
             kind="image", input_shape=(3, 32, 32)) == (2, False)
    with pytest.raises(ConfigError, match="image data"):
        r({"augment": True}, dataset="csv", kind="features", input_shape=(5,))
    with pytest.raises(ConfigError, match="train.augment"):
        r({"augment": "sometimes"}, dataset="cifar10", kind="image", input_shape=(3, 32, 32))


# ------------------------------------------------------------------------------------------------
# atomic writes


def test_checkpoint_roundtrip_and_atomic_on_crash(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.pt"
    ckpt.save_checkpoint(path, {"epoch": 1, "w": torch.arange(3)})
    before = path.read_bytes()

    def crashing_save(obj, f):  # writes half a file, then dies
        f.write(b"PARTIAL")
        raise RuntimeError("simulated crash while writing")

    monkeypatch.setattr(ckpt.torch, "save", crashing_save)
    with pytest.raises(RuntimeError, match="simulated crash"):
        ckpt.save_checkpoint(path, {"epoch": 2})
    assert path.read_bytes() == before  # the old checkpoint is intact
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no partial file left
    monkeypatch.undo()
    state = ckpt.load_checkpoint(path)
    assert state["epoch"] == 1 and torch.equal(state["w"], torch.arange(3))


def test_rng_state_roundtrip():
    g = torch.Generator().manual_seed(5)
    state = ckpt.rng_state(g)
    a = (torch.rand(3), np.random.rand(2), torch.rand(2, generator=g))  # noqa: NPY002
    ckpt.set_rng_state(state, g)
    b = (torch.rand(3), np.random.rand(2), torch.rand(2, generator=g))  # noqa: NPY002
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and torch.equal(a[2], b[2])


def test_atomic_json(tmp_path):
    ckpt.atomic_write_json(tmp_path / "f.json", {"a": [1, 2]})
    assert json.loads((tmp_path / "f.json").read_text()) == {"a": [1, 2]}
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == ["f.json"]
