"""Persistent study workers through ``classaware compare``: the same runs as one ``classaware
train`` process per run (bit-exact), SIGTERM, seed-major order, progress, failures."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from test_study_runner import STUDY as BASE_STUDY  # noqa: E402

pytestmark = pytest.mark.slow

STUDY = BASE_STUDY.replace("seeds = [0]", "seeds = [0, 1]").replace("epochs = 4", "epochs = 3")
RUNS = ["ce-seed0", "cosface-seed0", "ce-seed1", "cosface-seed1"]  # seed-major


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "classaware", *args]


def _final_without_time(path: Path) -> dict:
    final = json.loads(path.read_text())
    final.pop("seconds")
    return final


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


def test_workers_match_one_train_process_per_run(tmp_path):
    study_file = tmp_path / "tiny.toml"
    study_file.write_text(STUDY)
    out = tmp_path / "study"
    # one worker trains all four runs, two of them on cached data (same seed)
    p = subprocess.run(_cmd("compare", "--config", str(study_file), "--out", str(out),
                            "--jobs", "1"), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    order = [line.split("] ")[1].split(":")[0] for line in p.stdout.splitlines()
             if line.startswith("[")]
    assert order == RUNS  # seed-major: both variants of seed 0 first
    worker_pids = {(out / "logs" / f"{r}.log").read_text().split("worker pid ")[1].split()[0]
                   for r in RUNS}
    assert len(worker_pids) == 1  # the same process trained every run
    threads = str(len(os.sched_getaffinity(0)))  # what the study gives its single worker
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
           "PYTHONHASHSEED": "0"}
    for run in RUNS:
        alone = tmp_path / "alone" / run
        q = subprocess.run(_cmd("train", "--config", str(out / "configs" / f"{run}.toml"),
                                "--out", str(alone), "--quiet"),
                           capture_output=True, text=True, timeout=300, env=env)
        assert q.returncode == 0, q.stderr
        mine = out / "runs" / run
        assert _final_without_time(mine / "final.json") == _final_without_time(alone / "final.json")
        for ck in ("best.pt", "last.pt"):
            a, b = _weights(mine / "checkpoints" / ck), _weights(alone / "checkpoints" / ck)
            assert a.keys() == b.keys()
            for k in a:
                assert torch.equal(a[k], b[k]), (run, ck, k)
        with np.load(mine / "outputs.npz") as a, np.load(alone / "outputs.npz") as b:
            for k in a.files:
                assert np.array_equal(a[k], b[k]), (run, k)


def _wait_for(cond, proc, timeout=240.0) -> bool:
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return False


def test_sigterm_checkpoints_writes_the_report_and_a_rerun_resumes(tmp_path):
    study_file = tmp_path / "tiny.toml"
    study_file.write_text(STUDY.replace("epochs = 3", "epochs = 60"))
    out = tmp_path / "study"
    args = _cmd("compare", "--config", str(study_file), "--out", str(out), "--jobs", "1")
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    third = out / "runs" / RUNS[2]
    assert _wait_for(lambda: (third / "metrics.jsonl").is_file()
                     and (third / "metrics.jsonl").read_text().count("\n") >= 2, p), \
        "the third run never got going"
    p.send_signal(signal.SIGTERM)
    text, _ = p.communicate(timeout=120)
    assert p.returncode == 143, text
    assert "SIGTERM" in text and "run the same command again to resume" in text
    rows = {r["run"]: r["status"] for r in csv.DictReader(open(out / "report.csv"))}
    assert rows["ce-seed0"] != "missing" and rows["cosface-seed0"] != "missing"  # seed 0 whole
    assert rows["ce-seed1"] == "missing" and rows["cosface-seed1"] == "missing"
    assert (third / "checkpoints" / "last.pt").is_file() and not (third / "final.json").exists()
    assert "interrupted" in (out / "logs" / f"{RUNS[2]}.log").read_text()

    q = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert q.returncode == 0, q.stdout + q.stderr
    assert q.stdout.count("finished earlier, reused") == 2
    assert f"{RUNS[2]}: resumed" in q.stdout and f"{RUNS[3]}: trained" in q.stdout
    assert "--quiet --resume" in (out / "logs" / f"{RUNS[2]}.log").read_text()
    rows = {r["run"]: r["status"] for r in csv.DictReader(open(out / "report.csv"))}
    assert "missing" not in rows.values() and len(rows) == 4


def test_a_dead_worker_fails_its_run_only(tmp_path):
    study_file = tmp_path / "tiny.toml"
    study_file.write_text(STUDY.replace("epochs = 3", "epochs = 60").replace(
        "seeds = [0, 1]", "seeds = [0]"))
    out = tmp_path / "study"
    args = _cmd("compare", "--config", str(study_file), "--out", str(out), "--jobs", "1")
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    first = out / "runs" / "ce-seed0"
    assert _wait_for(lambda: (first / "checkpoints" / "last.pt").is_file(), p)
    pid = int((out / "logs" / "ce-seed0.log").read_text().split("worker pid ")[1].split()[0])
    os.kill(pid, signal.SIGKILL)  # the worker dies mid-run (as under the OOM killer)
    text, _ = p.communicate(timeout=300)
    assert p.returncode == 1, text
    assert "ce-seed0: FAILED (exit -9)" in text
    assert "cosface-seed0: trained" in text  # the next run got a new worker
    assert "the worker process died" in (out / "logs" / "ce-seed0.log").read_text()
    assert "failed runs: ce-seed0" in text
    q = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert q.returncode == 0, q.stdout + q.stderr
    assert "ce-seed0: resumed" in q.stdout


def test_progress_bar_shows_the_epoch_of_each_running_run(tmp_path):
    import fcntl
    import pty
    import struct
    import termios

    study_file = tmp_path / "tiny.toml"
    study_file.write_text(STUDY.replace("epochs = 3", "epochs = 40").replace(
        "seeds = [0, 1]", "seeds = [0]"))
    master, slave = pty.openpty()
    # a terminal 200 columns wide (a new pty is 0 x 0, where tqdm draws nothing)
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    p = subprocess.Popen(_cmd("compare", "--config", str(study_file), "--out",
                              str(tmp_path / "o"), "--jobs", "2"),
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    p.communicate(timeout=120)
    os.close(master)
    assert p.returncode == 0
    text = seen.decode(errors="replace")
    assert "runs:" in text and "/40" in text
    assert "ce-seed0 epoch " in text and "cosface-seed0 epoch " in text
