"""Real studies on scikit-learn's digits: parallel runs, reuse, and resume after kill -9."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from classaware.study.runner import explain_state, plan_runs, run_state, schedule
from classaware.study.spec import load_study

pytestmark = pytest.mark.slow

STUDY = """
[study]
name = "tiny"
seeds = [0]
important = ["3"]
target_recalls = [0.8, 0.95]

[data]
name = "digits"
val_fraction = 0.2

[model]
name = "mlp"
hidden = [32]

[optim]
name = "adam"
lr = 0.01
weight_decay = 0.0

[train]
epochs = 4
batch_size = 64

[[variants]]
name = "ce"
"loss.name" = "ce"

[[variants]]
name = "cosface"
loss = { name = "cosface", margin = 0.2, scale = 16.0 }
"""


def _compare(study_file: Path, out: Path, extra: tuple[str, ...] | list[str] = (), **kw):
    cmd = [sys.executable, "-m", "classaware", "compare", "--config", str(study_file),
           "--out", str(out), "--jobs", "2", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, **kw)


def _csv_without_timing(path: Path) -> list[dict[str, str]]:
    rows = list(csv.DictReader(open(path)))
    return [{k: v for k, v in r.items() if not k.endswith("seconds")} for r in rows]


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has stopped writing


def test_kill9_then_rerun_gives_the_same_report(tmp_path):
    study_file = tmp_path / "tiny.toml"
    study_file.write_text(STUDY)

    # 1. uninterrupted
    ref = tmp_path / "ref"
    p = _compare(study_file, ref)
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0, out
    assert "report: " in out and "Comparison on the test set" in out

    # 2. the same study, killed with SIGKILL while a run is in the middle of training
    dirs = [tmp_path / "killed" / "runs" / n for n in ("ce-seed0", "cosface-seed0")]
    p = _compare(study_file, tmp_path / "killed")
    mid_run = False
    deadline = time.monotonic() + 240
    while p.poll() is None and time.monotonic() < deadline:
        if any((d / "checkpoints" / "last.pt").exists() and not (d / "final.json").exists()
               for d in dirs):
            workers = _children(p.pid)
            os.kill(p.pid, signal.SIGKILL)  # the study process only: its workers must die too
            mid_run = True
            break
        time.sleep(0.01)
    p.communicate(timeout=60)
    assert mid_run, "the study finished before it could be killed mid-run"
    assert workers, "the study had no worker processes"
    for _ in range(100):  # PR_SET_PDEATHSIG: no orphan keeps writing into the study dir
        if not any(map(_alive, workers)):
            break
        time.sleep(0.05)
    assert not any(map(_alive, workers))
    assert not all((d / "final.json").exists() for d in dirs)

    # 3. the same command again completes the study
    p = _compare(study_file, tmp_path / "killed")
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0, out
    assert _csv_without_timing(tmp_path / "killed" / "report.csv") == _csv_without_timing(
        ref / "report.csv")

    # 4. and once more: everything is reused, nothing retrained
    mtimes = {d: (d / "final.json").stat().st_mtime_ns for d in dirs}
    p = _compare(study_file, tmp_path / "killed")
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0, out
    assert out.count("finished earlier, reused") == 2
    assert "training " not in out
    assert {d: (d / "final.json").stat().st_mtime_ns for d in dirs} == mtimes

    # 5. a changed config: the study says which finished run it retrains and why, first
    p = _compare(study_file, tmp_path / "killed", extra=["--losses", "ce", "--set",
                                                          "optim.lr=0.02"])
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0, out
    why = "ce-seed0: finished with another config (optim.lr 0.01 -> 0.02); retraining it from scratch"
    assert why in out and out.index(why) < out.index("training 1 run(s) of 1")


def test_run_state_reuse_resume_and_changed_config(tmp_path):
    study_file = tmp_path / "tiny.toml"
    study_file.write_text(STUDY)
    study = load_study(study_file)
    runs = {r.name: r for r in plan_runs(study, tmp_path)}
    r = runs["ce-seed0"]
    assert run_state(r) == "fresh"
    import tomli_w

    r.config_path.parent.mkdir(parents=True)
    r.config_path.write_text(tomli_w.dumps(r.config))
    (r.run_dir / "checkpoints").mkdir(parents=True)
    (r.run_dir / "checkpoints" / "last.pt").write_bytes(b"x")
    assert run_state(r) == "resume"
    (r.run_dir / "final.json").write_text("{}")
    assert run_state(r) == "done"
    # another learning rate: the finished run no longer counts
    changed = load_study(study_file, sets=[("optim.lr", 0.02)])
    r2 = {x.name: x for x in plan_runs(changed, tmp_path)}["ce-seed0"]
    assert run_state(r2) == "fresh"
    state, why = explain_state(r2)
    assert why == "finished with another config (optim.lr 0.01 -> 0.02)"


def test_schedule_is_seed_major(tmp_path):
    study_file = tmp_path / "tiny.toml"
    study_file.write_text(STUDY.replace("seeds = [0]", "seeds = [3, 1]"))
    runs = plan_runs(load_study(study_file), tmp_path)
    assert [r.name for r in runs] == ["ce-seed3", "ce-seed1", "cosface-seed3", "cosface-seed1"]
    assert [r.name for r in schedule(runs)] == ["ce-seed3", "cosface-seed3", "ce-seed1",
                                                "cosface-seed1"]


def test_bad_variant_fails_before_training(tmp_path):
    study_file = tmp_path / "bad.toml"
    study_file.write_text(STUDY.replace('margin = 0.2', 'margn = 0.2'))
    p = subprocess.run([sys.executable, "-m", "classaware", "compare", "--config", str(study_file),
                        "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert "cosface" in p.stderr and "margn" in p.stderr
    assert "Traceback" not in p.stderr
    assert p.stdout == ""  # the config error comes before any "training ..." line
    assert not (tmp_path / "o" / "runs").exists()
