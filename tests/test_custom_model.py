"""Your own model: ``model.name = "auto"``, ``"package.module:factory"`` (+ ``model.kwargs``),
a backbone instance from Python, ``model.init`` weights — through ``classaware train`` /
``evaluate`` / ``--resume`` (subprocesses and ``classaware.cli.main``) and ``classaware.train``.

The factories live in a module file written into a temporary folder (``ca_test_nets.py``): the
subprocesses find it through ``PYTHONPATH`` or as a file in their working directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import classaware
from classaware.cli import main
from classaware.errors import ConfigError
from classaware.models import build_model, resolve_model_name
from classaware.trainer.checkpoint import load_checkpoint
from classaware.trainer.config import load_config
from classaware.trainer.loop import Callback, run_training

NETS = '''
import math
import torch
from torch import nn


class Net(nn.Module):
    """Flatten -> Linear(width) -> ReLU: features [N, width]."""

    def __init__(self, input_shape, width=16):
        super().__init__()
        self.fc = nn.Linear(math.prod(input_shape), width)

    def forward(self, x):
        return torch.relu(self.fc(torch.flatten(x, 1)))


def make(input_shape, width=16):
    return Net(input_shape, width)


def fixed(width=8):              # no input_shape parameter: digits' 64 features
    return nn.Sequential(nn.Flatten(), nn.Linear(64, width))


def broken(width=8):
    raise ValueError(f"width {width} is not supported")


def not_a_module():
    return 42


class Cube(nn.Module):
    def forward(self, x):
        return x.reshape(x.shape[0], 8, 8)


def cube():
    return Cube()


ANSWER = 42
'''

DIGITS = ["--set", "data.name=digits", "--set", "train.device=cpu", "--set", "train.epochs=1",
          "--set", "optim.lr=0.1", "--set", "train.num_threads=1"]


@pytest.fixture(scope="module")
def nets_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("nets")
    (d / "ca_test_nets.py").write_text(NETS)
    sys.path.insert(0, str(d))
    yield d
    sys.path.remove(str(d))
    sys.modules.pop("ca_test_nets", None)


def _env(*paths: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, paths)),
            "PYTHONWARNINGS": "ignore"}


def _cli(*argv: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "classaware", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    assert err.startswith("classaware: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for f in fragments:
        assert f in err, (f, err)


# ------------------------------------------------------------------------------ "auto"
def test_auto_picks_a_model_from_the_input_shape():
    assert resolve_model_name({}, (64,), "features") == "mlp"
    assert resolve_model_name({"name": "auto"}, (1, 28, 28)) == "small_cnn"
    assert resolve_model_name({}, (1, 8, 8), "image") == "small_cnn"
    assert resolve_model_name({}, (1, 32, 32), "image") == "small_cnn"
    assert resolve_model_name({}, (3, 32, 32), "image") == "resnet32"
    assert resolve_model_name({}, (3, 28, 28), "image") == "small_cnn"
    assert resolve_model_name({"name": "camri_cnn"}, (64,)) == "camri_cnn"  # not "auto": as is
    with pytest.raises(ConfigError, match=r'^model.name: "auto" has no built-in model for '
                                          r"3×64×64 images.*data.image_size = 32"):
        resolve_model_name({}, (3, 64, 64), "image")
    # a key that only fits some backbones is checked for the one "auto" chose
    with pytest.raises(ConfigError, match=r"^model.embedding_dim: mlp \(auto: feature vectors"):
        resolve_model_name({"embedding_dim": 32}, (64,), "features")
    assert build_model({"embedding_dim": 32}, (1, 28, 28), 3).feature_dim == 32


def test_train_digits_with_the_default_model_then_evaluate(capsys, tmp_path):
    out = tmp_path / "run"
    code = main(["train", *DIGITS, "--out", str(out)])
    printed, err = capsys.readouterr()
    assert code == 0, err
    assert "mlp (auto for input [64])/linear" in printed.splitlines()[0]
    assert load_config(out / "config.toml").model.name == "mlp"  # evaluate rebuilds this
    assert main(["evaluate", str(out), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    final = json.loads((out / "final.json").read_text())
    assert again["accuracy"] == final["test"]["accuracy"] and final["model"] == "mlp"


@pytest.mark.slow
def test_compare_on_digits_with_the_default_model(capsys, tmp_path):
    out = tmp_path / "study"
    code = main(["compare", "--losses", "ce,camri", "--set", 'data.name="digits"', "--set",
                 "loss.important_classes=['3']", "--set", "train.epochs=1", "--set",
                 "train.num_threads=1", "--seeds", "1", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert (out / "report.csv").is_file()
    for run, head in (("ce-seed0", "linear"), ("camri-seed0", "cosine")):
        model = load_config(out / "runs" / run / "config.toml").model
        assert (model.name, model.head) == ("mlp", head)


# ------------------------------------------------------------------------------ factories
@pytest.mark.slow
def test_factory_trains_evaluates_and_resumes_through_the_cli(nets_dir, tmp_path):
    run = tmp_path / "run"
    env = _env(nets_dir)
    proc = _cli("train", *DIGITS, "--set", "model.name=ca_test_nets:make", "--set",
                "model.kwargs={width = 12}", "--set", "train.epochs=2", "--set",
                "loss.important_classes=[3]", "--out", str(run), "--quiet", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    saved = load_config(run / "config.toml").model
    assert (saved.name, dict(saved.kwargs)) == ("ca_test_nets:make", {"width": 12})
    best = load_checkpoint(run / "checkpoints" / "best.pt")["model"]
    assert best["backbone.fc.weight"].shape == (12, 64) and best["head.weight"].shape == (10, 12)
    final = json.loads((run / "final.json").read_text())

    # evaluate (another working directory) rebuilds the factory's model from config.toml
    proc = _cli("evaluate", str(run), "--json", cwd=nets_dir.parent, env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["accuracy"] == final["test"]["accuracy"]

    # --resume of a run stopped after its first epoch ends with the uninterrupted weights
    class StopAfterFirstEpoch(Callback):
        def on_epoch_end(self, state, record):
            state.request_stop()

    part = tmp_path / "part"
    cfg = load_config(run / "config.toml")
    assert run_training(cfg, part, quiet=True, callbacks=[StopAfterFirstEpoch()]).interrupted
    proc = _cli("train", "--resume", "--out", str(part), "--quiet", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    resumed = load_checkpoint(part / "checkpoints" / "last.pt")["model"]
    full = load_checkpoint(run / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(resumed[k], full[k]) for k in full)


@pytest.mark.slow
def test_the_console_script_finds_a_factory_file_in_the_working_directory(tmp_path):
    (tmp_path / "ca_cwd_nets.py").write_text(NETS)
    script = Path(sys.executable).with_name("classaware")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([str(script), "train", *DIGITS, "--set", "model.name=ca_cwd_nets:fixed",
                           "--out", "run", "--quiet"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "run" / "final.json").is_file()


@pytest.mark.parametrize(("name", "extra", "fragments"), [
    ("no_such_module_xyz:make", [], ("model.name: cannot import 'no_such_module_xyz'",
                                     "PYTHONPATH")),
    ("ca_test_nets:nope", [], ("model.name: module 'ca_test_nets' has no attribute 'nope'",)),
    ("ca_test_nets:ANSWER", [], ("model.name: 'ca_test_nets:ANSWER' is not callable",)),
    ("ca_test_nets:broken", [], ("model.name: the factory 'ca_test_nets:broken' raised "
                                 "ValueError: width 8 is not supported",)),
    ("ca_test_nets:not_a_module", [], ("returned an object of type int, expected a "
                                       "torch.nn.Module",)),
    ("ca_test_nets:cube", [], ("model.name: the backbone must map inputs [N, 64] to float "
                               "features [N, D]; for N = 2 it returned a tensor of shape "
                               "[2, 8, 8]",)),
    ("ca_test_nets:fixed", ["--set", "model.kwargs={depth = 3}"],
     ("model.kwargs: 'ca_test_nets:fixed' cannot be called with ['depth']",)),
    ("ca_test_nets:fixed", ["--set", "model.dropout=0.5"],
     ("model.dropout: ca_test_nets:fixed takes no model.dropout",)),
])
def test_factory_errors_are_one_line_naming_the_key_before_training(
        nets_dir, capsys, tmp_path, name, extra, fragments):
    out = tmp_path / "run"
    code = main(["train", *DIGITS, "--set", f"model.name={name}", *extra, "--out", str(out),
                 "--quiet"])
    err = capsys.readouterr().err
    _one_line_error(code, err, *fragments)
    # the run directory (and its checkpoints/ folder) is created and probed for writing first;
    # nothing was trained or saved
    assert not (out / "metrics.jsonl").exists() and not list((out / "checkpoints").glob("*.pt"))


def test_kwargs_need_a_factory_and_a_factory_name_keeps_its_case():
    with pytest.raises(ConfigError, match=r'^model.kwargs: only for model.name = '
                                          r'"package.module:factory"'):
        load_config(None, {"model.kwargs": {"width": 3}})
    with pytest.raises(ConfigError, match=r"^model.name: expected a backbone name or "
                                          r'"package.module:factory"'):
        load_config(None, {"model.name": "my nets:make"})
    with pytest.raises(ConfigError, match=r"^model.kwargs: expected a table"):
        load_config(None, {"model.name": "a:b", "model.kwargs": {"f": object()}})
    assert load_config(None, {"model.name": "My.Nets:Make"}).model.name == "My.Nets:Make"


# ------------------------------------------------------------------------------ model.init
def _digits_cfg(**model):
    return load_config({"data": {"name": "digits"}, "model": model,
                        "train": {"epochs": 1, "device": "cpu", "progress": False}})


def test_init_loads_a_state_dict_strictly_or_lists_the_keys(nets_dir, tmp_path):
    import ca_test_nets

    torch.manual_seed(11)
    source = ca_test_nets.Net((64,), 12)
    weights = tmp_path / "w.pt"
    torch.save(source.state_dict(), weights)
    model = build_model({"name": "ca_test_nets:make", "kwargs": {"width": 12},
                         "init": str(weights)}, (64,), 10)
    assert torch.equal(model.backbone.fc.weight, source.fc.weight)
    assert model.init_note == f"model.init: loaded 2 of 2 tensors from {weights}"

    extra = tmp_path / "extra.pt"
    torch.save({"state_dict": {**source.state_dict(), "proj.weight": torch.zeros(3)}}, extra)
    cfg = {"name": "ca_test_nets:make", "kwargs": {"width": 12}, "init": str(extra)}
    with pytest.raises(ConfigError, match=r"^model.init: .* does not match the backbone: "
                                          r"missing keys \[\], unexpected keys "
                                          r"\['proj.weight'\]; set model.init_strict = false"):
        build_model(cfg, (64,), 10)
    loose = build_model({**cfg, "init_strict": False}, (64,), 10)
    assert torch.equal(loose.backbone.fc.bias, source.fc.bias)
    assert "unexpected keys ['proj.weight']" in loose.init_note

    wrong = tmp_path / "wrong.pt"
    torch.save(ca_test_nets.Net((64,), 5).state_dict(), wrong)
    with pytest.raises(ConfigError, match=r"^model.init: .*differ in shape, e.g. 'fc.weight': "
                                          r"\[5, 64\] in the file, \[12, 64\] in the backbone"):
        build_model({**cfg, "init": str(wrong)}, (64,), 10)
    with pytest.raises(ConfigError, match=r"^model.init: '.*nothing.pt' does not exist"):
        build_model({**cfg, "init": str(tmp_path / "nothing.pt")}, (64,), 10)


@pytest.mark.slow
def test_a_run_starts_from_the_init_weights_and_another_run_from_its_best_pt(capsys, tmp_path):
    # run 1: a built-in MLP; run 2 starts from run 1's best.pt (its backbone) with a tiny lr,
    # so its final weights are run 1's up to the tiny update
    first = tmp_path / "first"
    assert main(["train", *DIGITS, "--set", "model.hidden=[16]", "--out", str(first),
                 "--quiet"]) == 0
    best = first / "checkpoints" / "best.pt"
    second = tmp_path / "second"
    code = main(["train", *DIGITS, "--set", "model.hidden=[16]", "--set", f"model.init='{best}'",
                 "--set", "optim.lr=1e-9", "--set", "optim.weight_decay=0", "--set",
                 "optim.momentum=0", "--out", str(second)])
    printed, err = capsys.readouterr()
    assert code == 0, err
    assert f"classaware: model.init: loaded 2 of 2 tensors from {best}" in printed
    a = load_checkpoint(best)["model"]
    b = load_checkpoint(second / "checkpoints" / "last.pt")["model"]
    assert torch.allclose(a["backbone.net.1.weight"], b["backbone.net.1.weight"], atol=1e-6)
    assert load_config(second / "config.toml").model.init == str(best.resolve())
    # evaluate does not need the init file any more (the checkpoint holds the weights)
    best.rename(tmp_path / "moved.pt")
    assert main(["evaluate", str(second)]) == 0


# ------------------------------------------------------------------------------ instances
@pytest.mark.slow
def test_a_backbone_instance_from_python(nets_dir, capsys, tmp_path):
    import ca_test_nets

    from classaware.trainer.evaluate import evaluate_run

    torch.manual_seed(0)
    backbone = ca_test_nets.Net((64,), 10)
    out = tmp_path / "run"
    result = classaware.train({"data": {"name": "digits"}, "train": {"device": "cpu"}},
                              model=backbone, out=out, quiet=True, train={"epochs": 2})
    assert result.config.model.name == "python" and not result.interrupted
    assert load_config(out / "config.toml").model.name == "python"
    best = load_checkpoint(out / "checkpoints" / "best.pt")["model"]
    assert torch.equal(backbone.fc.weight, best["backbone.fc.weight"])  # trained in place
    capsys.readouterr()

    # the command line cannot rebuild it: one line saying how to
    code = main(["evaluate", str(out)])
    _one_line_error(code, capsys.readouterr().err, 'model.name: "python" means the backbone is '
                                                   "passed from Python")
    again = evaluate_run(out, model=ca_test_nets.Net((64,), 10))
    assert again["accuracy"] == result.final["test"]["accuracy"]
    with pytest.raises(ConfigError, match="^model: expected a \\[model\\] table"):
        classaware.train(None, model=42)


def test_an_instance_whose_output_is_not_features_fails_before_training(tmp_path):
    with pytest.raises(ConfigError, match=r"^model.name: the backbone fails on inputs of shape "
                                          r"\[N, 64\] \(RuntimeError: "):
        classaware.train({"data": {"name": "digits"}}, model=nn.Linear(3, 4), out=tmp_path / "r",
                         quiet=True)
    assert not (tmp_path / "r" / "metrics.jsonl").exists()
