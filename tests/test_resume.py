"""Resuming gives the same weights as an uninterrupted run (CPU, bit for bit).

Tiny real runs on scikit-learn's digits (as 1×8×8 images, so the augmentation and the data
generator are exercised too) with an MLP with dropout (so torch's global RNG matters).
"""

from __future__ import annotations

import json
import signal

import pytest
import torch

from classaware.trainer import loop
from classaware.trainer.checkpoint import load_checkpoint
from classaware.trainer.config import load_config
from classaware.trainer.loop import Callback

pytestmark = pytest.mark.slow


class OnStep(Callback):
    def __init__(self, fn):
        self.fn = fn

    def on_step_end(self, state):
        self.fn(state.epoch, state.step)


def _cfg(optim=None, **train):
    t = {"epochs": 3, "batch_size": 64, "augment": True, "crop_padding": 1, "hflip": True,
         "progress": False, "log_interval": 2}
    t.update(train)
    return load_config({
        "seed": 3,
        "data": {"name": "digits", "as_images": True, "val_fraction": 0.2},
        "model": {"name": "mlp", "hidden": [32], "dropout": 0.2},
        "optim": {"name": "sgd", "lr": 0.05, "schedule": "cosine", "warmup_epochs": 1,
                  **(optim or {})},
        "train": t,
    })


def _weights(run_dir):
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]


def _assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


def _lines(run_dir):
    out = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        rec.pop("seconds")
        rec.pop("train_seconds")
        out.append(rec)
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ref") / "run"
    result = loop.run_training(_cfg(), run_dir, quiet=True)
    assert result.final
    return run_dir


def test_ctrl_c_mid_epoch_then_resume_is_exact(reference, tmp_path):
    run_dir = tmp_path / "run"

    def ctrl_c(epoch, step):  # a real SIGINT, delivered in the middle of epoch 2
        if (epoch, step) == (1, 3):
            signal.raise_signal(signal.SIGINT)

    result = loop.run_training(_cfg(), run_dir, quiet=True, callbacks=[OnStep(ctrl_c)])
    assert result.final == {} and result.interrupted
    assert not (run_dir / "final.json").exists()
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert (state["epoch"], state["step"]) == (1, 3)  # stopped right after the step it was in
    assert len(_lines(run_dir)) == 1
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored

    result = loop.run_training(_cfg(), run_dir, resume=True, quiet=True)
    assert result.final and not result.interrupted
    _assert_same_weights(_weights(run_dir), _weights(reference))
    assert _lines(run_dir) == _lines(reference)  # the interrupted epoch's metrics included
    ref_final = json.loads((reference / "final.json").read_text())
    got_final = json.loads((run_dir / "final.json").read_text())
    assert got_final["test"] == ref_final["test"]


def test_two_epochs_then_resume_to_three(tmp_path):
    # constant schedule: a 2-epoch run extended to 3 must equal a 3-epoch run
    def cfg(epochs):
        return _cfg(optim={"schedule": "constant", "warmup_epochs": 0}, epochs=epochs)

    ref, run = tmp_path / "ref", tmp_path / "run"
    loop.run_training(cfg(3), ref, quiet=True)
    first = loop.run_training(cfg(2), run, quiet=True)
    assert first.final["best_epoch"] <= 2
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == 2
    loop.run_training(cfg(3), run, resume=True, quiet=True)
    _assert_same_weights(_weights(run), _weights(ref))
    assert [r["epoch"] for r in _lines(run)] == [1, 2, 3]


def test_crash_then_resume_is_exact(reference, tmp_path):
    run_dir = tmp_path / "run"

    def crash(epoch, step):
        if (epoch, step) == (2, 2):
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        loop.run_training(_cfg(), run_dir, quiet=True, callbacks=[OnStep(crash)])
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["epoch"] == 2
    assert not list((run_dir / "checkpoints").glob("*.tmp*"))
    loop.run_training(_cfg(), run_dir, resume=True, quiet=True)
    _assert_same_weights(_weights(run_dir), _weights(reference))


def test_refuses_to_overwrite_and_resume_of_nothing_starts_the_run(reference, tmp_path, capsys):
    from classaware.errors import ConfigError

    with pytest.raises(ConfigError, match="already holds a run"):
        loop.run_training(_cfg(), reference, quiet=True)
    # --resume with nothing to continue starts the run (never stuck); it is the same run
    result = loop.run_training(_cfg(), tmp_path / "empty", resume=True, quiet=True)
    assert "no checkpoint to resume from; starting the run again from epoch 1" in \
        capsys.readouterr().out
    assert result.final and not result.interrupted
    _assert_same_weights(_weights(tmp_path / "empty"), _weights(reference))
