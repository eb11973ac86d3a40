"""Class-balanced and square-root re-sampling (``data.sampler``) and deferred re-sampling
(``train.drs_epoch``): the class frequencies (chi-square), determinism, the command line, the
shipped long-tail presets, and 2 torchrun processes against one.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from classaware.cli import main
from classaware.data.sampler import class_probabilities, epoch_order, sampler_at
from classaware.errors import ConfigError
from classaware.trainer.checkpoint import load_checkpoint
from classaware.trainer.config import load_config
from classaware.trainer.loop import run_training

COUNTS = [500, 100, 20, 5, 0, 1]  # an empty class, and a class with one sample
LABELS = torch.repeat_interleave(torch.arange(len(COUNTS)), torch.tensor(COUNTS))


def _draws(sampler: str, epochs: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.cat([epoch_order(LABELS, len(COUNTS), sampler, g) for _ in range(epochs)])


def test_class_probabilities_follow_the_formulas():
    n = torch.tensor(COUNTS, dtype=torch.float64)
    present = (n > 0).double()
    torch.testing.assert_close(class_probabilities(COUNTS, "class_balanced"),
                               present / present.sum())
    torch.testing.assert_close(class_probabilities(COUNTS, "sqrt"), n.sqrt() / n.sqrt().sum())
    torch.testing.assert_close(class_probabilities(COUNTS, "none"), n / n.sum())
    with pytest.raises(ValueError, match="sampler must be one of"):
        class_probabilities(COUNTS, "balanced")
    with pytest.raises(ValueError, match="counts must be"):
        class_probabilities([0, 0], "sqrt")


@pytest.mark.parametrize("sampler", ["class_balanced", "sqrt"])
def test_drawn_class_frequencies_pass_a_chi_square_test(sampler):
    from scipy.stats import chisquare

    drawn = _draws(sampler, epochs=40)
    assert drawn.shape == (40 * len(LABELS),)
    seen = torch.bincount(LABELS[drawn], minlength=len(COUNTS)).double()
    p = class_probabilities(COUNTS, sampler)
    assert seen[4] == 0  # the empty class is never drawn
    keep = p > 0
    expected = p[keep] * seen.sum()
    assert chisquare(seen[keep].numpy(), expected.numpy()).pvalue > 1e-3
    # the test has power: the same draws are far from the other sampler's frequencies
    other = class_probabilities(COUNTS, "sqrt" if sampler == "class_balanced" else
                                "class_balanced")[keep] * seen.sum()
    assert chisquare(seen[keep].numpy(), other.numpy()).pvalue < 1e-12
    # within a class every sample is equally likely
    in_class_1 = drawn[(drawn >= 500) & (drawn < 600)] - 500
    per_sample = torch.bincount(in_class_1, minlength=100).double().numpy()
    assert chisquare(per_sample).pvalue > 1e-3


def test_no_sampler_is_a_permutation_and_orders_are_deterministic():
    assert torch.equal(torch.sort(_draws("none", 1)).values, torch.arange(len(LABELS)))
    for sampler in ("none", "class_balanced", "sqrt"):
        assert torch.equal(_draws(sampler, 2, seed=7), _draws(sampler, 2, seed=7))
        assert not torch.equal(_draws(sampler, 1, seed=7), _draws(sampler, 1, seed=8))


def test_deferred_resampling_schedule_and_config_rules():
    assert [sampler_at("sqrt", 2, e) for e in range(4)] == ["none", "none", "sqrt", "sqrt"]
    assert sampler_at("class_balanced", None, 0) == "class_balanced"
    with pytest.raises(ConfigError, match=r'^train.drs_epoch: deferred re-sampling needs '
                                          r'data.sampler = "class_balanced" or "sqrt"'):
        load_config(None, ["train.drs_epoch=1"])
    with pytest.raises(ConfigError, match=r"^train.drs_epoch: expected an epoch index below "
                                          r"train.epochs = 3"):
        load_config(None, ["data.sampler=sqrt", "train.drs_epoch=3"])
    with pytest.raises(ConfigError, match=r"^data.sampler: expected one of 'none', "
                                          r"'class_balanced', 'sqrt', got 'balanced'"):
        load_config(None, ["data.sampler=balanced"])
    # combinable with any loss, DRW included
    cfg = load_config(None, ["loss.name=ldam", "model.head=cosine", "data.sampler=sqrt",
                             "train.drs_epoch=1", "train.drw_epoch=2"])
    assert (cfg.data.sampler, cfg.train.drs_epoch, cfg.train.drw_epoch) == ("sqrt", 1, 2)


LONG_TAIL = ["--set", "data.name=digits", "--set", "train.device=cpu",
             "--set", "data.imbalance={profile = 'exp', ratio = 20}", "--set", "train.epochs=3",
             "--set", "data.sampler=class_balanced", "--set", "train.drs_epoch=1",
             "--set", "train.batch_size=32", "--set", "eval.select_metric=balanced_accuracy",
             "--set", "train.num_threads=1"]


@pytest.mark.slow
def test_drs_through_the_command_line(capsys, tmp_path):
    out = tmp_path / "run"
    code = main(["train", *LONG_TAIL, "--set", "loss.name=ldam", "--set", "model.head=cosine",
                 "--out", str(out)])
    printed, err = capsys.readouterr()
    assert code == 0, err
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["sampler"] for r in lines] == ["none", "class_balanced", "class_balanced"]
    assert printed.count("[class_balanced sampling]") == 2
    cfg = load_config(out / "config.toml")
    assert (cfg.data.sampler, cfg.train.drs_epoch) == ("class_balanced", 1)


def test_long_tail_presets_have_drs_variants():
    from classaware.study.runner import plan_runs, validate_runs
    from classaware.study.spec import load_study

    for preset in ("long-tail", "long-tail-exp10", "long-tail-step10", "long-tail-cifar10",
                   "long-tail-cifar100"):
        study = load_study(preset)
        names = [v.name for v in study.variants]
        assert {"ce-drs", "ldam-drs"} <= set(names), preset
        drw = load_config(study.run_config("ldam-drw", 0)).train.drw_epoch
        for name in ("ce-drs", "ldam-drs"):
            cfg = load_config(study.run_config(name, 0))
            assert cfg.data.sampler == "class_balanced" and cfg.train.drs_epoch == drw, preset
        assert load_config(study.run_config("ldam-drs", 0)).loss.name == "ldam"
        assert load_config(study.run_config("ldam-drs", 0)).model.head == "cosine"
        validate_runs(plan_runs(study, "unused"))


# ------------------------------------------------------------------------------ DDP
DDP_KEYS = ["data.name=digits", "data.val_fraction=0.2", "seed=2", "model.name=mlp",
            "model.hidden=[32]", "optim.schedule=constant", "optim.lr=0.1", "train.epochs=3",
            "train.batch_size=64", "train.device=cpu", "train.progress=false",
            "data.imbalance={profile = 'exp', ratio = 10}", "data.sampler=sqrt",
            "train.drs_epoch=1"]


@pytest.mark.slow
def test_torchrun_two_processes_draw_shards_of_the_same_sampled_order(tmp_path):
    ref = run_training(load_config(None, DDP_KEYS), tmp_path / "one", quiet=True)
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CLASSAWARE_DIST_TIMEOUT": "60",
           "PYTHONWARNINGS": "ignore"}
    sets = [a for k in DDP_KEYS for a in ("--set", k)]
    proc = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m",
                           "classaware", "train", *sets, "--out", str(tmp_path / "two"),
                           "--quiet"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "two"
    final = json.loads((run / "final.json").read_text())
    assert final["world_size"] == 2
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    ref_lines = [json.loads(x) for x in (tmp_path / "one" / "metrics.jsonl").read_text()
                 .splitlines()]
    assert [r["sampler"] for r in lines] == ["none", "sqrt", "sqrt"]
    # same order, each rank its half of every batch: the one-process update up to float32
    # summation order (the model has neither batch norm nor dropout)
    w2 = load_checkpoint(run / "checkpoints" / "last.pt")["model"]
    w1 = load_checkpoint(tmp_path / "one" / "checkpoints" / "last.pt")["model"]
    for k in w1:
        assert torch.allclose(w1[k], w2[k], atol=1e-5, rtol=0), k
    for a, b in zip(lines, ref_lines):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["train_accuracy"] == pytest.approx(b["train_accuracy"], abs=1.5 / 1000)
    n_test = sum(ref.final["test"]["per_class_support"])
    assert final["test"]["accuracy"] == pytest.approx(ref.final["test"]["accuracy"],
                                                      abs=1.5 / n_test)
    assert math.isfinite(final["test"]["balanced_accuracy"])
