"""Trainer: schedules, augmentation, atomic checkpoints, and real tiny training runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from classaware import _io
from classaware.errors import ConfigError
from classaware.trainer import checkpoint as ckpt
from classaware.trainer.augment import augment_batch, random_crop, random_flip, resolve_augment
from classaware.trainer.config import OptimConfig, TrainConfig, load_config
from classaware.trainer.loop import Callback
from classaware.trainer.optim import build_optimizer, lr_at, set_lr

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


def _optim(**kw) -> OptimConfig:
    return load_config(None, {"train.epochs": 200,
                              **{f"optim.{k}": v for k, v in kw.items()}}).optim


def test_ldam_drw_schedule_exact():
    o = _optim(lr=0.1, schedule="step", milestones=[160, 180], factor=0.01, warmup_epochs=5)
    lrs = [lr_at(o, 200, i) for i in range(200)]
    assert lrs[:5] == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1])
    assert lrs[5:160] == pytest.approx([0.1] * 155)
    assert lrs[160:180] == pytest.approx([1e-3] * 20)
    assert lrs[180:] == pytest.approx([1e-5] * 20)


@pytest.mark.parametrize("schedule", ["constant", "step", "cosine"])
@pytest.mark.parametrize("warmup", [0, 3])
def test_schedules_match_formula(schedule, warmup):
    kw = {"lr": 0.3, "schedule": schedule, "warmup_epochs": warmup, "milestones": [4, 7],
          "factor": 0.5, "min_lr": 0.01 if schedule == "cosine" else 0.0}
    o = _optim(**kw)
    got = [lr_at(o, 10, i) for i in range(10)]
    ref = [_ref_lr(i, lr=0.3, schedule=schedule, epochs=10, warmup=warmup, milestones=[4, 7],
                   factor=0.5, min_lr=kw["min_lr"]) for i in range(10)]
    assert got == pytest.approx(ref, rel=1e-12)
    opt = build_optimizer([torch.nn.Parameter(torch.zeros(2))], o)
    assert set_lr(opt, got[9]) == pytest.approx(ref[9])
    assert opt.param_groups[0]["lr"] == pytest.approx(ref[9])


def test_optimizers_follow_the_config():
    p = [torch.nn.Parameter(torch.zeros(3))]
    sgd = build_optimizer(p, _optim(name="sgd", lr=0.1, momentum=0.8, nesterov=True,
                                    weight_decay=1e-4))
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.defaults["nesterov"] and sgd.defaults["momentum"] == 0.8
    assert sgd.defaults["weight_decay"] == 1e-4 and sgd.defaults["lr"] == 0.1
    adam = build_optimizer(p, _optim(name="adam", lr=1e-3))
    assert isinstance(adam, torch.optim.Adam) and adam.defaults["weight_decay"] == 5e-4
    aw = build_optimizer(p, _optim(name="adamw", lr=1e-3, weight_decay=0.05, betas=[0.8, 0.9]))
    assert isinstance(aw, torch.optim.AdamW) and aw.defaults["betas"] == (0.8, 0.9)
    # the optimizer's defaults are the config's: no second set of fallbacks
    assert build_optimizer(p, OptimConfig()).defaults["lr"] == OptimConfig().lr


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
    def r(*, dataset, kind, input_shape, **train):
        return resolve_augment(TrainConfig.from_dict(train, "train"), dataset=dataset, kind=kind,
                               input_shape=input_shape)

    assert r(augment="auto", dataset="cifar10", kind="image", input_shape=(3, 32, 32)) == (4, True)
    assert r(dataset="fashion-mnist", kind="image", input_shape=(1, 28, 28)) == (4, True)
    assert r(dataset="mnist", kind="image", input_shape=(1, 28, 28)) == (4, False)
    assert r(dataset="gtsrb", kind="image", input_shape=(3, 32, 32)) == (4, False)
    assert r(dataset="digits", kind="image", input_shape=(1, 8, 8)) == (0, False)
    assert r(dataset="csv", kind="features", input_shape=(5,)) == (0, False)
    assert r(augment=False, dataset="cifar10", kind="image", input_shape=(3, 32, 32)) == (0, False)
    assert r(augment=True, crop_padding=2, hflip=False, dataset="cifar10",
             kind="image", input_shape=(3, 32, 32)) == (2, False)
    with pytest.raises(ConfigError, match="image data"):
        r(augment=True, dataset="csv", kind="features", input_shape=(5,))
    with pytest.raises(ConfigError, match="train.augment"):
        r(augment="sometimes", dataset="cifar10", kind="image", input_shape=(3, 32, 32))


# ------------------------------------------------------------------------------------------------
# atomic writes


def test_checkpoint_roundtrip_and_atomic_on_crash(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.pt"
    ckpt.save_checkpoint(path, {"epoch": 1, "w": torch.arange(3)})
    before = path.read_bytes()

    def crashing_save(obj, f):  # writes half a file, then dies
        f.write(b"PARTIAL")
        raise RuntimeError("simulated crash while writing")

    monkeypatch.setattr(torch, "save", crashing_save)
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
    ckpt.set_rng_state(state)
    g.set_state(state["data_generator"])
    b = (torch.rand(3), np.random.rand(2), torch.rand(2, generator=g))  # noqa: NPY002
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and torch.equal(a[2], b[2])


def test_atomic_writes(tmp_path):
    _io.atomic_write_json(tmp_path / "f.json", {"a": [1, 2]})
    assert json.loads((tmp_path / "f.json").read_text()) == {"a": [1, 2]}
    _io.atomic_write_text(tmp_path / "sub" / "t.txt", "x")  # parents are created
    assert (tmp_path / "sub" / "t.txt").read_text() == "x"
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == ["f.json", "sub"]


def test_atomic_write_keeps_the_original_error_when_clean_up_fails(tmp_path, monkeypatch):
    def boom(f):
        raise RuntimeError("disk full")

    def unlink_fails(self, missing_ok=False):
        raise PermissionError("read-only")

    monkeypatch.setattr(Path, "unlink", unlink_fails)
    with pytest.raises(RuntimeError, match="disk full"):
        _io.atomic_write(tmp_path / "x.bin", boom)


def test_unreadable_checkpoint_is_one_line_config_error(tmp_path):
    bad = tmp_path / "last.pt"
    bad.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ConfigError, match=r"cannot be read \(truncated or corrupt\?\)") as info:
        ckpt.load_checkpoint(bad)
    assert "\n" not in str(info.value) and str(bad) in str(info.value)
    torch.save([1, 2], bad)
    with pytest.raises(ConfigError, match="not a classaware checkpoint"):
        ckpt.load_checkpoint(bad)


# ------------------------------------------------------------------------------------------------
# real tiny runs (scikit-learn digits, MLP; ~1 s each)

FINAL_KEYS = {"class_names", "train_class_counts", "important_classes", "important_class_names",
              "best_epoch", "head_type", "loss", "val", "test"}
SPLIT_KEYS = {"accuracy", "balanced_accuracy", "macro_f1", "per_class_recall",
              "per_class_precision", "confusion_matrix"}


class OnStep(Callback):
    """Calls ``fn(epoch, step)`` after every training step (the documented test hook)."""

    def __init__(self, fn):
        self.fn = fn

    def on_step_end(self, state):
        self.fn(state.epoch, state.step)


def _digits_cfg(**sections):
    base = {"seed": 1,
            "data": {"name": "digits", "val_fraction": 0.2},
            "model": {"name": "mlp", "hidden": [32]},
            "optim": {"name": "sgd", "lr": 0.1, "schedule": "constant"},
            "train": {"epochs": 2, "batch_size": 64, "progress": False}}
    for k, v in sections.items():
        base.setdefault(k, {}).update(v) if isinstance(v, dict) else base.__setitem__(k, v)
    return load_config(base)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    from classaware.trainer.loop import run_training

    run_dir = tmp_path_factory.mktemp("digits") / "run"
    cfg = _digits_cfg(loss={"important_classes": [3, 8]})
    result = run_training(cfg, run_dir, quiet=True)
    return result


def test_run_writes_every_output(digits_run):
    from sklearn.metrics import balanced_accuracy_score, f1_score
    from sklearn.metrics import confusion_matrix as sk_cm

    from classaware.data import load_data
    from classaware.trainer.config import load_config

    run_dir = digits_run.run_dir
    for name in ("config.toml", "metrics.jsonl", "final.json", "outputs.npz",
                 "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (run_dir / name).is_file(), name
    assert load_config(run_dir / "config.toml") == digits_run.config

    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    for r in lines:
        assert {"epoch", "lr", "train_loss", "train_accuracy", "val", "seconds"} <= r.keys()
        assert SPLIT_KEYS <= r["val"].keys() and r["lr"] == pytest.approx(0.1)

    final = json.loads((run_dir / "final.json").read_text())
    assert final == digits_run.final
    assert FINAL_KEYS <= final.keys()
    assert final["important_classes"] == [3, 8] and final["important_class_names"] == ["3", "8"]
    assert final["train_class_counts"] == load_data(digits_run.config.data, seed=1).train_class_counts
    for split in ("val", "test"):
        assert SPLIT_KEYS <= final[split].keys()
    assert final["val"]["accuracy"] == pytest.approx(lines[final["best_epoch"] - 1]["val"]["accuracy"])

    # predictions are the argmax of the saved raw outputs (no margin, no prior), and the
    # metrics are scikit-learn's on those predictions
    z = np.load(run_dir / "outputs.npz")
    data = load_data(digits_run.config.data, seed=1)
    assert np.array_equal(z["test_targets"], data.y_test.numpy())
    assert np.array_equal(z["val_targets"], data.y_val.numpy())
    pred = z["test_outputs"].argmax(1)
    y = z["test_targets"]
    assert final["test"]["confusion_matrix"] == sk_cm(y, pred, labels=range(10)).tolist()
    assert final["test"]["accuracy"] == pytest.approx(float((pred == y).mean()))
    assert final["test"]["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert final["test"]["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert final["test"]["accuracy"] > 0.8  # it really learned


def test_evaluate_run_reproduces_final(digits_run):
    from classaware.trainer.loop import evaluate_run

    res = evaluate_run(digits_run.run_dir)
    assert res["split"] == "test" and res["num_samples"] == sum(res["per_class_support"])
    assert res["confusion_matrix"] == digits_run.final["test"]["confusion_matrix"]
    val = evaluate_run(digits_run.run_dir, split="val")
    assert val["confusion_matrix"] == digits_run.final["val"]["confusion_matrix"]
    with pytest.raises(ValueError, match="split"):
        evaluate_run(digits_run.run_dir, split="dev")


def test_drw_switches_weights_at_the_right_epoch(tmp_path, monkeypatch):
    import classaware.losses as losses
    from classaware.trainer import loop

    seen, epochs = [], []
    real_create = losses.create

    def recording_create(name, **kw):
        fn = real_create(name, **kw)
        fn.register_forward_pre_hook(
            lambda m, inp: seen.append(None if m.weight is None else m.weight.clone()))
        return fn

    monkeypatch.setattr(losses, "create", recording_create)
    cfg = _digits_cfg(data={"imbalance": {"profile": "exp", "ratio": 10}},
                      train={"epochs": 3, "drw_epoch": 1, "drw_beta": 0.99})
    result = loop.run_training(cfg, tmp_path / "run", quiet=True,
                               callbacks=[OnStep(lambda e, s: epochs.append(e))])
    counts = np.array(result.final["train_class_counts"], dtype=np.float64)
    ref = (1 - 0.99) / (1 - 0.99 ** counts)
    ref = ref / ref.sum() * len(counts)
    assert len(seen) == len(epochs) > 0
    for w, e in zip(seen, epochs):
        if e < 1:
            assert w is None
        else:
            assert w is not None and np.allclose(w.numpy(), ref, rtol=1e-5)
    lines = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["drw"] for r in lines] == [False, True, True]


def test_margin_loss_trains_with_cosine_head(tmp_path):
    from classaware.trainer.loop import run_training

    cfg = _digits_cfg(model={"head": "cosine"},
                      loss={"name": "camri", "important_classes": ["8"], "scale": 16.0},
                      optim={"lr": 0.2}, train={"epochs": 3})
    result = run_training(cfg, tmp_path / "run", quiet=True)
    final = result.final
    assert final["head_type"] == "cosine" and final["loss"] == "camri"
    assert final["test"]["accuracy"] > 0.6
    assert set(final["angles"]) == {"val", "test"}
    assert len(final["angles"]["test"]["mean_deg"]) == 10
    z = np.load(result.run_dir / "outputs.npz")
    assert np.abs(z["test_outputs"]).max() <= 1.0 + 1e-4  # raw cosines, no scale, no margin
    pred = z["test_outputs"].argmax(1)
    assert final["test"]["accuracy"] == pytest.approx(float((pred == z["test_targets"]).mean()))


def test_without_validation_selects_on_training_metrics(tmp_path):
    from classaware.trainer.loop import run_training

    cfg = _digits_cfg(data={"val_fraction": 0.0}, eval={"select_metric": "balanced_accuracy"})
    result = run_training(cfg, tmp_path / "run", quiet=True)
    assert result.final["val"] is None and result.final["selected_on"] == "train"
    lines = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all(r["val"] is None and r["select"]["split"] == "train" for r in lines)
    z = np.load(result.run_dir / "outputs.npz")
    assert z["val_outputs"].shape == (0, 10) and z["test_outputs"].shape[0] > 0


def test_ctrl_c_prints_how_to_resume(tmp_path, monkeypatch, capsys):
    import signal

    from classaware.trainer import loop

    hook = OnStep(lambda e, s: signal.raise_signal(signal.SIGINT) if (e, s) == (0, 2) else None)
    result = loop.run_training(_digits_cfg(), tmp_path / "run", quiet=True, callbacks=[hook])
    assert result.interrupted and result.final == {}
    err = capsys.readouterr().err
    assert "--resume" in err and str(tmp_path / "run") in err
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()


def test_preloaded_data_gives_the_same_run(digits_run, tmp_path):
    """A worker that loads the data once and passes it in trains the same weights, bit for bit."""
    from classaware.data import load_data
    from classaware.trainer.loop import run_training

    cfg = digits_run.config
    result = run_training(cfg, tmp_path / "run", quiet=True,
                          data=load_data(cfg.data, seed=cfg.seed))
    a = ckpt.load_checkpoint(digits_run.run_dir / "checkpoints" / "last.pt")["model"]
    b = ckpt.load_checkpoint(result.run_dir / "checkpoints" / "last.pt")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert result.final["test"] == digits_run.final["test"] and not result.interrupted


def test_callbacks_see_every_epoch_and_can_stop_the_run(tmp_path):
    from classaware.trainer.loop import run_training

    class StopAfterFirstEpoch(Callback):
        def __init__(self):
            self.records = []

        def on_epoch_end(self, state, record):
            self.records.append((state.epoch, record["epoch"], record["val"]["accuracy"]))
            state.request_stop()

    cb = StopAfterFirstEpoch()
    result = run_training(_digits_cfg(train={"epochs": 3, "checkpoint_every": 5}), tmp_path / "r",
                          quiet=True, callbacks=[cb])
    assert result.interrupted and result.final == {}
    assert [r[:2] for r in cb.records] == [(1, 1)]
    # the stop saved last.pt of that epoch although checkpoint_every is 5
    assert ckpt.load_checkpoint(tmp_path / "r" / "checkpoints" / "last.pt")["epoch"] == 1
    done = run_training(_digits_cfg(train={"epochs": 3, "checkpoint_every": 5}), tmp_path / "r",
                        resume=True, quiet=True)
    assert not done.interrupted and done.final["epochs"] == 3


def test_a_bad_class_name_fails_before_the_model_is_built(tmp_path, monkeypatch):
    import classaware.models as models

    def no_model(*a, **k):
        raise AssertionError("the model must not be built")

    monkeypatch.setattr(models, "build_model", no_model)
    from classaware.trainer.loop import run_training

    with pytest.raises(ConfigError, match=r"^loss.important_classes: unknown class 'eight'; "
                                          r"the classes are: '0', '1'"):
        run_training(_digits_cfg(loss={"important_classes": ["eight"]}), tmp_path / "r",
                     quiet=True)
