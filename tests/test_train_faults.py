"""Bad settings and degenerate data through ``classaware train``: one line and a non-zero exit
(2, or 3 for a diverged run), never a traceback, never a silent "result"; plus ``eval.select``,
resource bounds and the wording of the run header."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from classaware.cli import main
from classaware.trainer import loop
from classaware.trainer.checkpoint import load_checkpoint
from classaware.trainer.config import load_config

pytestmark = pytest.mark.slow

DIGITS = ["--set", "data.name=digits", "--set", "model.name=mlp", "--set", "model.hidden=[16]",
          "--set", "train.progress=false"]


def train(capsys, out: Path, *sets: str) -> tuple[int, str, str]:
    argv = ["train", *DIGITS]
    for s in sets:
        argv += ["--set", s]
    code = main([*argv, "--out", str(out)])
    text, err = capsys.readouterr()
    return code, text, err


def error_line(code: int, err: str, expected_code: int = 2) -> str:
    assert code == expected_code, err
    assert err.startswith("classaware: error: ") and err.count("\n") == 1, err
    return err[len("classaware: error: "):-1]


# ------------------------------------------------------------------------------ divergence
def test_divergence_stops_the_run_with_one_line_and_exit_3(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "classaware", "train", *DIGITS,
                           "--set", "optim.lr=1e4", "--set", "train.epochs=3", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr == ("classaware: error: training diverged in epoch 1 of 3: the training "
                           "loss is nan; lower optim.lr (it is 10000) or optim.weight_decay "
                           "(0.0005) and train it again in a new run\n")
    final = json.loads((out / "final.json").read_text())
    assert final["diverged"]["epoch"] == 1 and final["diverged"]["train_loss"] == "nan"
    assert final["val"] is None and final["test"] is None  # no result to be read as one
    assert not (out / "checkpoints" / "best.pt").exists()  # no NaN model is ever "best"
    assert not (out / "outputs.npz").exists()
    # the run is over: --resume says so again, with the same exit code
    proc = subprocess.run([sys.executable, "-m", "classaware", "train", "--out", str(out),
                           "--resume"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3
    assert proc.stderr.startswith(f"classaware: error: {out} has diverged: training diverged "
                                  "in epoch 1 of 3") and proc.stderr.count("\n") == 1


class _PoisonAt(loop.Callback):
    """NaN weights from the first step of ``epoch`` on (a divergence after good epochs)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_step_end(self, state) -> None:
        if state.epoch == self.epoch and state.step == 1:
            with torch.no_grad():
                next(state.parts.model.parameters()).fill_(float("nan"))


def test_a_later_divergence_keeps_the_last_finite_model(tmp_path):
    from classaware.errors import TrainingDiverged

    cfg = load_config(None, {"data.name": "digits", "model.name": "mlp", "train.epochs": 4,
                             "train.progress": False})
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match="training diverged in epoch 3 of 4"):
        loop.run_training(cfg, out, quiet=True, callbacks=[_PoisonAt(2)])
    final = json.loads((out / "final.json").read_text())
    assert final["diverged"]["epoch"] == 3 and final["epochs"] == 2
    assert 1 <= final["best_epoch"] <= 2
    for name in ("best.pt", "last.pt"):
        state = load_checkpoint(out / "checkpoints" / name)
        assert state["epoch"] <= 2
        assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert [json.loads(s)["epoch"] for s in (out / "metrics.jsonl").read_text().splitlines()] \
        == [1, 2]


# ------------------------------------------------------------------------------ settings
def test_batch_norm_with_batch_size_1(capsys, tmp_path):
    code, _, err = train(capsys, tmp_path / "r", "data.as_images=true", "model.name=small_cnn",
                         "train.batch_size=1", "train.epochs=1")
    assert error_line(code, err) == ("train.batch_size: model 'small_cnn' uses batch norm, which "
                                     "needs at least 2 images per batch; set "
                                     "train.batch_size >= 2 (got 1)")
    assert not (tmp_path / "r" / "config.toml").exists()


def test_a_huge_batch_size_is_capped_at_the_training_set(capsys, tmp_path):
    # a per-batch buffer of 2**62 elements cannot be allocated: finishing proves none is made
    code, text, err = train(capsys, tmp_path / "r", f"train.batch_size={2**62}", "train.epochs=1",
                            "train.eval_batch_size=4611686018427387904")
    assert code == 0, err
    n_train = json.loads((tmp_path / "r" / "final.json").read_text())["train_class_counts"]
    assert f"1 epoch, batch {sum(n_train)} (the training set) on cpu" in text.splitlines()[0]


def test_num_threads_and_seed_bounds(capsys, tmp_path):
    code, _, err = train(capsys, tmp_path / "r", "train.num_threads=10000")
    assert error_line(code, err) == ("train.num_threads: expected an integer in [0, 1024], got "
                                     "10000 (int)")
    code, _, err = train(capsys, tmp_path / "r", f"seed={2**64}")
    assert error_line(code, err).startswith("seed: expected an integer >= 0 (and < 2**64)")
    code, _, err = train(capsys, tmp_path / "r", f"seed={2**64 - 1}", "train.epochs=1")
    assert code == 0, err


def test_eval_select_last(capsys, tmp_path):
    code, text, err = train(capsys, tmp_path / "r", "eval.select=last", "train.epochs=3",
                            "optim.lr=0.5")
    assert code == 0, err
    final = json.loads((tmp_path / "r" / "final.json").read_text())
    assert final["select"] == "last" and final["best_epoch"] == 3
    assert load_checkpoint(tmp_path / "r" / "checkpoints" / "best.pt")["epoch"] == 3
    assert "test (best epoch 3, the last epoch's model):" in text
    records = [json.loads(s) for s in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert [r["select"]["best_epoch"] for r in records] == [1, 2, 3]
    assert {r["select"]["rule"] for r in records} == {"last"}
    code, _, err = train(capsys, tmp_path / "r2", "eval.select=first")
    assert error_line(code, err).startswith("eval.select: expected a rule among 'best', 'last'")


# ------------------------------------------------------------------------------ degenerate data
def test_classes_without_training_images_are_named_and_refused(capsys, tmp_path):
    code, _, err = train(capsys, tmp_path / "r", "data.max_train=5", "train.epochs=1")
    msg = error_line(code, err)
    assert msg.startswith("data: no training images for class '0', '2', '7', '8', '9' (after "
                          "data.max_train = 5)")
    assert "data.allow_empty_classes = true" in msg
    # opted in: plain cross entropy trains; what needs every class's count says which class lacks
    code, _, err = train(capsys, tmp_path / "ok", "data.max_train=5", "train.epochs=1",
                         "data.allow_empty_classes=true", "train.batch_size=2")
    assert code == 0, err
    counts = json.loads((tmp_path / "ok" / "final.json").read_text())["train_class_counts"]
    assert counts.count(0) == 5
    for sets, key in ((["loss.class_weight=inverse_frequency"], "loss.class_weight"),
                      (["train.drw_epoch=0"], "train.drw_epoch"),
                      (["loss.name=ldam", "model.head=cosine"], "loss")):
        code, _, err = train(capsys, tmp_path / "w", "data.max_train=5", "train.epochs=1",
                             "data.allow_empty_classes=true", *sets)
        msg = error_line(code, err)
        assert msg.startswith(key + ":") and "class '0', '2', '7', '8', '9' has no training " \
            "images" in msg, msg


def _npz(path: Path, x_train, y_train, x_test, y_test) -> Path:
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


def test_a_one_class_dataset(capsys, tmp_path):
    data = _npz(tmp_path / "one.npz", np.ones((20, 3), "f4"), np.zeros(20, int),
                np.ones((4, 3), "f4"), np.zeros(4, int))
    code, _, err = train(capsys, tmp_path / "r", "data.name=arrays", f"data.path='{data}'")
    assert error_line(code, err) == (f"data: {data} has 1 class ('0'); a classifier needs at "
                                     "least 2")


def test_zero_by_zero_images(capsys, tmp_path):
    data = _npz(tmp_path / "z.npz", np.zeros((20, 1, 0, 0), "u1"), np.arange(20) % 2,
                np.zeros((4, 1, 0, 0), "u1"), np.arange(4) % 2)
    code, _, err = train(capsys, tmp_path / "r", "data.name=arrays", f"data.path='{data}'",
                         "model.name=small_cnn")
    assert error_line(code, err) == f"data: {data} has images of 0×0 pixels (1 channel)"
    root = tmp_path / "folder"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        (root / c / "ok.ppm").write_bytes(b"P6 2 2 255\n" + bytes(12))
    (root / "b" / "empty.ppm").write_bytes(b"P6 0 0 255\n")
    code, _, err = train(capsys, tmp_path / "r", "data.name=imagefolder",
                         f"data.path='{root}'", "model.name=small_cnn")
    assert error_line(code, err) == f"{root / 'b' / 'empty.ppm'}: empty image (0×0 pixels)"


def test_a_truncated_npz(capsys, tmp_path):
    data = _npz(tmp_path / "d.npz", np.ones((20, 3), "f4"), np.arange(20) % 2,
                np.ones((4, 3), "f4"), np.arange(4) % 2)
    data.write_bytes(data.read_bytes()[:300])
    code, _, err = train(capsys, tmp_path / "r", "data.name=arrays", f"data.path='{data}'")
    assert error_line(code, err).startswith(f"data.path: {data} is not a readable .npz file "
                                            "(truncated or corrupt?)")


# ------------------------------------------------------------------------------ paths
def test_paths_of_the_wrong_kind_and_missing_data_dir(capsys, tmp_path):
    folder, afile = tmp_path / "folder", tmp_path / "file.csv"
    folder.mkdir()
    afile.write_text("a,label\n1,0\n")
    code, _, err = train(capsys, tmp_path / "r", "data.name=csv", f"data.path='{folder}'")
    assert error_line(code, err) == f"data.path: '{folder}' is a folder, expected a .csv file"
    code, _, err = train(capsys, tmp_path / "r", "data.name=imagefolder", f"data.path='{afile}'")
    assert error_line(code, err) == (f"data.path: '{afile}' is a file, expected a folder holding "
                                     "one sub-folder of images per class")
    missing = tmp_path / "nowhere"
    code, _, err = train(capsys, tmp_path / "r", "data.name=fashion-mnist",
                         f"data.dir='{missing}'")
    assert error_line(code, err) == (f"data.dir: '{missing}' does not exist (expected the folder "
                                     "where datasets are looked for first)")
    code = main(["datasets", "--data.dir", str(missing)])
    assert error_line(code, capsys.readouterr().err).startswith("data.dir:")


def test_a_relative_data_path_is_stored_resolved(capsys, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    rng = np.random.default_rng(0)
    y = np.arange(60) % 3
    _npz(work / "d.npz", (rng.normal(size=(60, 4)) + y[:, None]).astype("f4"), y,
         rng.normal(size=(9, 4)).astype("f4"), np.arange(9) % 3)
    monkeypatch.chdir(work)
    code, _, err = train(capsys, Path("run"), "data.name=arrays", "data.path='d.npz'",
                         "train.epochs=1")
    assert code == 0, err
    cfg = load_config(work / "run" / "config.toml")
    assert cfg.data.path == str(work / "d.npz")
    monkeypatch.chdir(tmp_path)  # evaluate from another directory
    code = main(["evaluate", str(work / "run")])
    assert code == 0, capsys.readouterr().err


def test_the_header_says_1_epoch(capsys, tmp_path):
    code, text, err = train(capsys, tmp_path / "r", "train.epochs=1")
    assert code == 0, err
    assert ", 1 epoch, batch 128 on cpu" in text.splitlines()[0]
    assert "1 epochs" not in text


def test_python_m_classaware_train_exit_codes(tmp_path):
    # the same rules from a real process: a bad --out is exit 2 and one line
    (tmp_path / "f").write_text("x")
    proc = subprocess.run([sys.executable, "-m", "classaware", "train", *DIGITS,
                           "--out", str(tmp_path / "f")], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2
    assert proc.stderr == f"classaware: error: --out: '{tmp_path / 'f'}' is a file, not a directory\n"
