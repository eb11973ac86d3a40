"""DDP through the command line a user runs: ``torchrun --standalone --nproc_per_node 2 -m
classaware train ...`` (2 CPU processes, gloo) against one process with the same global batch.

Checked through the run directory torchrun's workers wrote (they share one ``--out``):

- a finished run exits 0 (torchrun exits 0 only when every rank did) and leaves config.toml,
  metrics.jsonl with exactly one line per epoch (rank 1 writes nothing), checkpoints/best.pt and
  last.pt, outputs.npz and final.json, nothing else;
- its weights and metrics are one process's (tolerance below);
- Ctrl-C: SIGINT to torchrun (a terminal sends it to torchrun alone, which starts its workers in
  sessions of their own and forwards the signal to each) stops every rank at the same step; rank 0
  saves checkpoints/last.pt mid-run and no final.json; ``--resume`` under torchrun then exits 0 with
  the weights of the uninterrupted run.  torchrun itself exits 1 after a signal (its own
  ``SignalException``); each worker returns 130.

No port is chosen here: ``--standalone`` makes torchrun bind its rendezvous store to port 0 (the
kernel picks a free one and torchrun keeps the socket bound), and the workers reach that store
(``TORCHELASTIC_USE_AGENT_STORE``).  Nothing is picked, released and used later.

No wall-clock limit decides a result: a launch gets ``LAUNCH_TIMEOUT`` (a net for a real hang,
far above what a loaded 2-core machine needs), and a launch that hits it first makes every
worker print its Python stacks (``PYTHONFAULTHANDLER`` + SIGABRT), which the failure shows.

Tolerance: every rank trains on its half of each global batch of the same seeded permutation;
DDP averages the ranks' gradients and the trainer scales each rank's weighted-mean loss by
``W * sum(local weights) / sum(global weights)`` (``distributed.global_mean_scale``), so the
update is the one-process update of the global batch, DRW weights included, up to float32
summation order.  After 4 epochs (3 with DRW): weights ``atol = 1e-5``, training loss
``rel = 1e-5``, accuracy / balanced accuracy / macro-F1 within one sample of the split.  The model
has no batch norm and no dropout (per-rank batch statistics of batch norm would differ; dropout
masks come from each rank's own RNG).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from classaware.trainer.checkpoint import load_checkpoint
from classaware.trainer.config import load_config
from classaware.trainer.loop import run_training

pytestmark = pytest.mark.slow

TORCHRUN = Path(sys.executable).with_name("torchrun")
LAUNCH_TIMEOUT = 900  # s; one launch takes ~10 s on 2 idle cores, ~1-2 min on a loaded machine
EPOCHS = 4
CONFIG = f"""\
seed = 2
[data]
name = "digits"
val_fraction = 0.2
[model]
name = "mlp"
hidden = [32]
[loss]
name = "ce"
[optim]
name = "sgd"
lr = 0.1
schedule = "constant"
[train]
epochs = {EPOCHS}
batch_size = 32
drw_epoch = 1
log_interval = 4
device = "cpu"
progress = false
"""
RUN_FILES = ["checkpoints", "config.toml", "final.json", "metrics.jsonl", "outputs.npz"]


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ddp") / "digits-mlp.toml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def reference(config_file, tmp_path_factory) -> Path:
    """The same config trained by one process."""
    run_dir = tmp_path_factory.mktemp("ddp") / "one-process"
    run_training(load_config(str(config_file)), run_dir, quiet=True)
    return run_dir


def _launch(log_dir: Path, *train_args: object) -> subprocess.Popen:
    cmd = [str(TORCHRUN), "--standalone", "--nproc_per_node", "2", "-m", "classaware", "train",
           *map(str, train_args)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1",
           "CLASSAWARE_DIST_TIMEOUT": "300"}  # a lost rank fails the collective, never hangs it
    n = len(list(log_dir.glob("torchrun-*.out")))
    out = open(log_dir / f"torchrun-{n}.out", "w+", encoding="utf-8")  # files: a full pipe
    err = open(log_dir / f"torchrun-{n}.err", "w+", encoding="utf-8")  # can never block a rank
    proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
    proc.logs = (out, err)  # type: ignore[attr-defined]
    return proc


def _children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and \
                    int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    return kids


def _wait(proc: subprocess.Popen) -> tuple[int, str, str]:
    """torchrun's exit code, stdout and stderr; a hung launch fails with every worker's stacks."""
    try:
        proc.wait(timeout=LAUNCH_TIMEOUT)
        hung = False
    except subprocess.TimeoutExpired:
        hung = True
        for pid in _children(proc.pid):  # the workers: faulthandler prints their stacks
            os.kill(pid, signal.SIGABRT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    out, err = proc.logs  # type: ignore[attr-defined]
    texts = []
    for f in (out, err):
        f.seek(0)
        texts.append(f.read())
        f.close()
    if hung:
        pytest.fail(f"torchrun still running after {LAUNCH_TIMEOUT} s; worker stacks:\n{texts[1]}")
    return proc.returncode, texts[0], texts[1]


def _torchrun(log_dir: Path, *train_args: object) -> tuple[int, str, str]:
    return _wait(_launch(log_dir, *train_args))


def _lines(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _assert_finished_like_one_process(run: Path, ref: Path) -> None:
    assert sorted(p.name for p in run.iterdir()) == RUN_FILES
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    final = json.loads((run / "final.json").read_text())
    ref_final = json.loads((ref / "final.json").read_text())
    assert final["world_size"] == 2 and final["epochs"] == EPOCHS
    lines, ref_lines = _lines(run), _lines(ref)
    assert [r["epoch"] for r in lines] == list(range(1, EPOCHS + 1))  # one line each: rank 0's
    assert [r["drw"] for r in lines] == [False] + [True] * (EPOCHS - 1)

    # same weights and metrics as one process with the same global batch
    w2 = load_checkpoint(run / "checkpoints" / "last.pt")["model"]
    w1 = load_checkpoint(ref / "checkpoints" / "last.pt")["model"]
    assert w1.keys() == w2.keys()
    for k in w1:
        assert torch.allclose(w1[k], w2[k], atol=1e-5, rtol=0), k
    n_test = sum(ref_final["test"]["per_class_support"])
    for key in ("accuracy", "balanced_accuracy", "macro_f1"):
        assert final["test"][key] == pytest.approx(ref_final["test"][key], abs=1.5 / n_test)
    for a, b in zip(lines, ref_lines):  # the all-reduced training sums and val confusion matrices
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        n_val = sum(map(sum, b["val"]["confusion_matrix"]))
        assert sum(map(sum, a["val"]["confusion_matrix"])) == n_val  # every val row counted once
        assert a["val"]["accuracy"] == pytest.approx(b["val"]["accuracy"], abs=1.5 / n_val)


def test_torchrun_two_processes_exit_0_and_match_one_process(tmp_path, config_file, reference):
    run = tmp_path / "run"
    code, out, err = _torchrun(tmp_path, "--config", config_file, "--out", run, "--quiet")
    assert code == 0, err
    assert "ChildFailedError" not in err
    _assert_finished_like_one_process(run, reference)


def test_torchrun_ctrl_c_saves_and_resume_finishes_the_same_run(tmp_path, config_file,
                                                                reference):
    run = tmp_path / "run"
    proc = _launch(tmp_path, "--config", config_file, "--out", run, "--quiet")
    metrics = run / "metrics.jsonl"
    while proc.poll() is None and not (metrics.exists() and metrics.read_text().strip()):
        time.sleep(0.01)  # Ctrl-C once epoch 1 is written: EPOCHS - 1 epochs are still to go
    proc.send_signal(signal.SIGINT)
    code, out, err = _wait(proc)
    assert code != 0, "the run finished before Ctrl-C reached it"  # torchrun: SignalException
    assert "ChildFailedError" not in err, err  # no worker failed on its own
    assert "KeyboardInterrupt" not in err, err  # the first Ctrl-C stops cleanly, no traceback
    assert "classaware: interrupted; checkpoints/last.pt saved" in err, err
    assert not (run / "final.json").exists()
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert (state["epoch"], state["step"]) < (EPOCHS, 0)  # mid-run ...
    assert [r["epoch"] for r in _lines(run)] == list(range(1, state["epoch"] + 1))  # ... in step

    code, out, err = _torchrun(tmp_path, "--out", run, "--resume", "--quiet")
    assert code == 0, err
    _assert_finished_like_one_process(run, reference)


def test_ctrl_c_reaching_one_rank_in_validation_stops_every_rank(tmp_path, config_file):
    """The worst moment for a signal: rank 1 alone, after the epoch's last step agreement (here
    forced in its first validation by tests/ddp_ctrl_c_one_rank.py).  Before the ranks agreed at
    the end of the epoch too, rank 1 stopped and rank 0 trained on: a gloo timeout."""
    script = Path(__file__).with_name("ddp_ctrl_c_one_rank.py")
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [str(TORCHRUN), "--standalone", "--nproc_per_node", "2", str(script), str(config_file),
         str(run)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "CLASSAWARE_DIST_TIMEOUT": "60"})
    out, err = proc.communicate(timeout=LAUNCH_TIMEOUT)
    # a worker that returns 130 is a "failure" to torchrun: it reports the exit code, stops the
    # other rank and exits 1
    assert proc.returncode == 1 and "exitcode  : 130" in err, err
    assert "Timed out" not in err and "Connection closed" not in err, err
    assert "classaware: interrupted; checkpoints/last.pt saved" in err
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert (state["epoch"], state["step"]) == (1, 0)  # both ranks stopped after epoch 1
    assert [r["epoch"] for r in _lines(run)] == [1]
    assert not (run / "final.json").exists()
