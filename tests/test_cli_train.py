"""``classaware train`` / ``evaluate`` / ``datasets`` and ``classaware.train``: user errors are one
line on stderr with exit code 2, the resolved config reaches the loop, data overrides reach
``evaluate_run``.  Training itself is tested with the loop; here the loop is replaced where the
test is about the wiring (one small real run checks the whole path once)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import classaware
from classaware.cli import main
from classaware.errors import ConfigError
from classaware.trainer import train
from classaware.trainer.config import dump_config, load_config

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2
    assert err.startswith("classaware: error: ")
    assert err.count("\n") == 1 and "Traceback" not in err
    for f in fragments:
        assert f in err, (f, err)


@pytest.fixture
def fake_loop(monkeypatch):
    """Replace run_training / evaluate_run and record their calls."""
    import classaware.trainer.evaluate as evaluate
    import classaware.trainer.loop as loop

    calls: dict[str, list] = {"run_training": [], "evaluate_run": [], "interrupted": False}

    def run_training(cfg, out_dir, *, resume=False, quiet=False, data=None, callbacks=None):
        calls["run_training"].append(dict(cfg=cfg, out_dir=Path(out_dir), resume=resume,
                                          quiet=quiet))
        return loop.RunResult(Path(out_dir), cfg, {}, interrupted=calls["interrupted"])

    def evaluate_run(run_dir, data_overrides=None, split="test"):
        calls["evaluate_run"].append(dict(run_dir=Path(run_dir), data_overrides=data_overrides,
                                          split=split))
        return {"accuracy": 0.75, "balanced_accuracy": 0.65, "macro_f1": 0.6211,
                "per_class_precision": [8 / 9, 1 / 3], "per_class_recall": [0.8, 0.5],
                "per_class_f1": [0.8421, 0.4], "per_class_support": [10, 2],
                "important_recall": {"dog": 0.5}, "split": split, "num_samples": 12}

    monkeypatch.setattr(loop, "run_training", run_training)
    monkeypatch.setattr(evaluate, "evaluate_run", evaluate_run)
    return calls


def make_run_dir(tmp_path: Path, *, checkpoint: bool = True) -> Path:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    cfg = load_config(None, {"data.name": "digits", "model.name": "mlp"})
    dump_config(cfg, run / "config.toml")
    if checkpoint:
        (run / "checkpoints" / "best.pt").write_bytes(b"")
    (run / "final.json").write_text(json.dumps({"class_names": ["cat", "dog"],
                                                "important_classes": [1]}))
    return run


# ------------------------------------------------------------------------------ train: errors
def test_missing_config_file(capsys, fake_loop):
    code, _, err = run_cli(capsys, "train", "--config", "nope.toml")
    assert_one_line_error(code, err, "'nope.toml'", "no such file", "fmnist-ce")
    assert fake_loop["run_training"] == []


def test_bad_toml_gives_line_and_column(capsys, tmp_path, fake_loop):
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nepochs = 3\nbatch_size = = 4\n")
    code, _, err = run_cli(capsys, "train", "--config", str(bad))
    assert_one_line_error(code, err, "invalid TOML", "line 3", "column")


@pytest.mark.parametrize("sets, fragments", [
    (["optim.weight_decy=0.1"], ["optim.weight_decy: unknown key",
                                  "did you mean 'optim.weight_decay'"]),
    (["train.epochs=many"], ["train.epochs: expected an integer >= 1", "'many'"]),
    (["optim.lr=0"], ["optim.lr: expected a number > 0"]),
    (["loss.name=camri", "loss.important_classes=['Shirt']"],
     ["model.head", 'set model.head = "cosine"']),
    (["loss.name=focal", "loss.margin=0.2"], ["loss.margin", "it takes: gamma"]),
    (["optim.lr"], ["--set 'optim.lr': expected KEY=VALUE"]),
    (["optim.lr=inf"], ["optim.lr: expected a number > 0, got inf (float)"]),
    (["optim.weight_decay=inf"], ["optim.weight_decay: expected a number >= 0, got inf (float)"]),
    (["optim.lr=nan"], ["optim.lr: expected a number > 0, got nan (float)"]),
    (["data.imbalance.ratio=-inf"], ["data.imbalance.ratio: expected a number >= 1, got -inf"]),
])
def test_config_errors_exit_2_with_one_line(capsys, fake_loop, sets, fragments):
    argv = ["train"]
    for s in sets:
        argv += ["--set", s]
    code, out, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, *fragments)
    assert out == "" and fake_loop["run_training"] == []


def test_resume_needs_out(capsys, tmp_path, fake_loop):
    code, _, err = run_cli(capsys, "train", "--resume")
    assert_one_line_error(code, err, "--resume needs --out")
    code, _, err = run_cli(capsys, "train", "--resume", "--out", "does/not/exist")
    assert_one_line_error(code, err, "--resume: 'does/not/exist' does not exist")
    code, _, err = run_cli(capsys, "train", "--resume", "--out", str(tmp_path))
    assert_one_line_error(code, err, "has no config.toml: not a classaware run directory")


def test_argparse_errors_are_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--no-such-option"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unrecognized arguments" in err


# ------------------------------------------------------------------------------ train: wiring
def test_train_passes_the_resolved_config_to_the_loop(capsys, tmp_path, fake_loop):
    out = tmp_path / "r"
    code, _, err = run_cli(capsys, "train", "--config", "fmnist-camri", "--set", "optim.lr=0.01",
                           "--set", "loss.important_classes=['Shirt', 'Coat']", "--set",
                           "train.epochs=2", "--out", str(out), "--quiet")
    assert code == 0, err
    (call,) = fake_loop["run_training"]
    assert call["out_dir"] == out and call["quiet"] is True and call["resume"] is False
    expected = load_config("fmnist-camri", {"optim.lr": 0.01, "train.epochs": 2,
                                            "loss.important_classes": ["Shirt", "Coat"]})
    assert call["cfg"] == expected


def test_interrupted_train_exits_130(capsys, tmp_path, fake_loop):
    fake_loop["interrupted"] = True  # Ctrl-C: the loop saved last.pt and returned early
    code, _, err = run_cli(capsys, "train", "--config", "fmnist-ce", "--out", str(tmp_path / "r"))
    assert code == 130, err


def test_resume_reads_the_run_config(capsys, tmp_path, fake_loop):
    run = tmp_path / "r"
    run.mkdir()
    cfg = load_config("fmnist-ce", ["train.epochs=3"])
    dump_config(cfg, run / "config.toml")
    code, _, err = run_cli(capsys, "train", "--resume", "--out", str(run))
    assert code == 0, err
    (call,) = fake_loop["run_training"]
    assert call["resume"] is True and call["cfg"] == cfg and call["out_dir"] == run


def test_default_out_dir_is_dated_and_named_after_the_loss(monkeypatch, tmp_path, fake_loop):
    monkeypatch.chdir(tmp_path)
    train(None, **{"loss.name": "focal"})
    (call,) = fake_loop["run_training"]
    assert call["out_dir"].parent == Path("runs")
    assert call["out_dir"].name.endswith("-focal") and call["out_dir"].name[:8].isdigit()


def test_torchrun_needs_an_explicit_out_dir(monkeypatch, capsys, fake_loop):
    monkeypatch.setenv("WORLD_SIZE", "2")
    code, _, err = run_cli(capsys, "train", "--set", "train.epochs=1")
    assert_one_line_error(code, err, "under torchrun, pass --out DIR")
    assert fake_loop["run_training"] == []


def test_python_api_overrides(fake_loop, tmp_path):
    r = classaware.train({"optim": {"lr": 0.2}}, out=tmp_path / "x",
                         loss={"name": "cce", "gamma": -0.5}, optim__momentum=0.5,
                         **{"train.epochs": 1})
    cfg = fake_loop["run_training"][0]["cfg"]
    assert (cfg.optim.lr, cfg.optim.momentum, cfg.train.epochs) == (0.2, 0.5, 1)
    assert (cfg.loss.name, cfg.loss.params["gamma"]) == ("cce", -0.5)
    assert r.config is cfg and r.interrupted is False


def test_python_api_fails_before_importing_the_loop(monkeypatch):
    monkeypatch.setitem(sys.modules, "classaware.trainer.loop", None)  # import would fail
    with pytest.raises(ConfigError, match="optim.lr"):
        train(None, optim={"lr": -1.0})
    with pytest.raises(ConfigError, match="--resume needs --out"):
        train(None, resume=True)


def test_print_config_is_the_resolved_toml(capsys, fake_loop):
    code, out, err = run_cli(capsys, "train", "-c", "ldam-drw-cifar10-lt", "--set",
                             "train.drw_epoch=none", "--print-config")
    assert code == 0, err
    assert fake_loop["run_training"] == []
    raw = tomllib.loads(out)
    assert "drw_epoch" not in raw["train"] and raw["loss"]["name"] == "ldam"
    assert load_config(raw) == load_config("ldam-drw-cifar10-lt", ["train.drw_epoch=none"])


# ------------------------------------------------------------------------------ evaluate
def test_evaluate_prints_the_table_and_passes_data_overrides(capsys, tmp_path, fake_loop):
    run = make_run_dir(tmp_path)
    code, out, err = run_cli(capsys, "evaluate", str(run), "--data.dir", "/data/here",
                             "--set", "data.max_test=50", "--split", "val")
    assert code == 0, err
    (call,) = fake_loop["evaluate_run"]
    assert call["run_dir"] == run and call["split"] == "val"
    assert call["data_overrides"] == {"dir": "/data/here", "max_test": 50}
    lines = out.splitlines()
    assert lines[0] == f"{run} - val (12 images)"
    assert any(line.startswith("* dog") and "50.0" in line for line in lines)   # important
    assert any(line.startswith("  cat") and "80.0" in line for line in lines)
    assert "accuracy 75.00%" in out


def test_evaluate_json(capsys, tmp_path, fake_loop):
    run = make_run_dir(tmp_path)
    code, out, _ = run_cli(capsys, "evaluate", str(run), "--json")
    assert code == 0 and json.loads(out)["accuracy"] == 0.75
    assert fake_loop["evaluate_run"][0]["data_overrides"] is None


@pytest.mark.parametrize("problem, fragments", [
    ("missing", ["does not exist"]),
    ("no-checkpoint", ["has no checkpoint"]),
    ("not-a-run", ["no config.toml"]),
    ("non-data-key", ["only takes [data] keys"]),
    ("bad-data-key", ["data.drr: unknown key", "did you mean 'data.dir'"]),
    ("bad-data-value", ["data.max_test"]),
])
def test_evaluate_user_errors(capsys, tmp_path, fake_loop, problem, fragments):
    run = make_run_dir(tmp_path, checkpoint=problem != "no-checkpoint")
    argv = ["evaluate", str(run)]
    if problem == "missing":
        argv = ["evaluate", str(tmp_path / "nothing")]
    elif problem == "not-a-run":
        (tmp_path / "empty").mkdir()
        argv = ["evaluate", str(tmp_path / "empty")]
    elif problem == "non-data-key":
        argv += ["--set", "optim.lr=0.1"]
    elif problem == "bad-data-key":
        argv += ["--set", "data.drr=/x"]
    elif problem == "bad-data-value":
        argv += ["--set", "data.max_test=-5"]
    code, _, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, *fragments)
    assert fake_loop["evaluate_run"] == []


# ------------------------------------------------------------------------------ datasets
def test_datasets_lists_every_dataset(capsys):
    from classaware.data import available_datasets

    code, out, _ = run_cli(capsys, "datasets")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["name", "available", "location", "note"]
    rows = {r["name"]: r for r in available_datasets()}
    assert len(lines) == 1 + len(rows)
    for line in lines[1:]:
        name, avail = line.split()[:2]
        assert avail == ("yes" if rows[name]["available"] else "no")
    assert rows["digits"]["available"]  # scikit-learn's bundled set is always there


# ------------------------------------------------------------------------------ end to end
@pytest.mark.slow
def test_real_train_then_evaluate_on_digits(capsys, tmp_path):
    out = tmp_path / "digits-run"
    code, _, err = run_cli(capsys, "train", "--set", "data.name=digits", "--set",
                           "model.name=mlp", "--set", "model.hidden=[32]", "--set",
                           "train.epochs=1", "--set", "loss.important_classes=[3]",
                           "--set", "train.device=cpu", "--out", str(out), "--quiet")
    assert code == 0, err
    final = json.loads((out / "final.json").read_text())
    assert load_config(out / "config.toml").model.hidden == (32,)
    code, text, err = run_cli(capsys, "evaluate", str(out), "--split", "test")
    assert code == 0, err
    assert any(line.startswith("* 3") for line in text.splitlines())
    # re-evaluation of the best checkpoint reproduces the run's own test metrics
    assert f"accuracy {100 * final['test']['accuracy']:.2f}%" in text


def test_python_m_classaware_user_error_subprocess(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-m", "classaware", "train", "--set", "optim.lr=-1",
                           "--out", str(tmp_path / "never")],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2
    assert proc.stderr == ("classaware: error: optim.lr: expected a number > 0, "
                           "got -1 (int)\n")
    assert proc.stdout == "" and not (tmp_path / "never").exists()


def test_a_config_toml_saved_before_the_typed_schema_still_runs(capsys):
    old = Path(__file__).parent / "fixtures" / "ldam-drw-cifar10-lt.config.toml"
    code, out, err = run_cli(capsys, "train", "--config", str(old), "--print-config")
    assert code == 0, err
    from test_config import restricted  # every old key keeps its value; new keys: defaults

    new = tomllib.loads(out)
    assert restricted(new, tomllib.loads(old.read_text())) == tomllib.loads(old.read_text())
    # keys added since, at their defaults (the old run keeps its behaviour)
    assert (new["data"]["val_from"], new["data"]["allow_empty_classes"]) == ("train", False)
    assert new["eval"]["select"] == "best"


def _named_npz(path: Path) -> Path:
    import numpy as np

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 30)
    x = (rng.normal(size=(90, 4)) + y[:, None]).astype(np.float32)
    np.savez(path, x_train=x, y_train=y, x_test=x[::3], y_test=y[::3],
             class_names=np.array(["Cat", "Dog", "Bird"]))
    return path


def test_class_names_resolve_case_insensitively_from_train_to_evaluate(capsys, tmp_path):
    data = _named_npz(tmp_path / "animals.npz")
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--set", "data.name=arrays", "--set",
                           f"data.path='{data}'", "--set", "model.name=mlp", "--set",
                           "model.hidden=[8]", "--set", "train.epochs=1", "--set",
                           "loss.important_classes=['cat', 'BIRD']", "--out", str(out), "--quiet")
    assert code == 0, err
    final = json.loads((out / "final.json").read_text())
    assert final["important_class_names"] == ["Cat", "Bird"]
    assert set(final["test"]["important_recall"]) == {"Cat", "Bird"}
    code, text, err = run_cli(capsys, "evaluate", str(out))
    assert code == 0, err
    assert [line.split()[1] for line in text.splitlines() if line.startswith("*")] == ["Cat", "Bird"]


def test_an_unknown_class_name_fails_before_training(capsys, tmp_path):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--set", "data.name=digits", "--set",
                           "model.name=mlp", "--set", "loss.important_classes=['eight']",
                           "--out", str(out))
    assert_one_line_error(code, err, "loss.important_classes: unknown class 'eight'; the classes "
                                     "are: '0', '1', '2'")
    assert not (out / "metrics.jsonl").exists() and not (out / "config.toml").exists()
