"""Every state a run directory can be left in is usable, through ``classaware train``:
``--resume`` continues from the newest checkpoint that loads, or starts the run again when there
is none; a finished run is left as it is; an unusable ``--out`` and a full disk are one line.

Tiny real runs: scikit-learn's digits with an MLP (about a second per run on one core).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from classaware._io import atomic_write
from classaware.cli import main
from classaware.trainer import loop
from classaware.trainer.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow

ARGS = ["--set", "data.name=digits", "--set", "model.name=mlp", "--set", "model.hidden=[32]",
        "--set", "train.epochs=3", "--set", "train.progress=false", "--set", "seed=1",
        "--set", "optim.schedule=constant"]


def train(capsys, out: Path, *extra: str) -> tuple[int, str, str]:
    code = main(["train", *ARGS, *extra, "--out", str(out)])
    text, err = capsys.readouterr()
    return code, text, err


def one_line(err: str) -> str:
    assert err.startswith("classaware: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def lines(run: Path) -> list[dict]:
    out = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        for k in ("seconds", "train_seconds"):
            rec.pop(k)
        out.append(rec)
    return out


def same_weights(a: Path, b: Path) -> bool:
    wa = load_checkpoint(a / "checkpoints" / "last.pt")["model"]
    wb = load_checkpoint(b / "checkpoints" / "last.pt")["model"]
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run = tmp_path_factory.mktemp("ref") / "run"
    assert main(["train", *ARGS, "--quiet", "--out", str(run)]) == 0
    return run


class _Full:
    """A file object whose device is full after ``limit`` bytes (what torch.save writes to)."""

    def __init__(self, f, limit: int) -> None:
        self.f, self.left = f, limit

    def write(self, b) -> int:
        if len(b) > self.left:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.left -= len(b)
        return self.f.write(b)

    def flush(self) -> None:
        self.f.flush()


def disk_full_at(monkeypatch, name: str, epoch: int) -> None:
    """The atomic write of checkpoints/<name> at the end of ``epoch`` meets a full disk (through
    the real atomic_write and torch.save, which reports it as a RuntimeError)."""
    real = loop.save_checkpoint

    def save(path, state):
        if Path(path).name == name and state["epoch"] == epoch and state["step"] == 0:
            return atomic_write(path, lambda f: torch.save(state, _Full(f, 1000)))
        return real(path, state)

    monkeypatch.setattr(loop, "save_checkpoint", save)


def test_full_disk_after_best_pt_then_resume_is_exact(capsys, monkeypatch, tmp_path, reference):
    run = tmp_path / "run"
    disk_full_at(monkeypatch, "last.pt", 1)  # epoch 1: metrics line and best.pt, then no last.pt
    code, _, err = train(capsys, run)
    assert code == 2
    assert "no space left on device" in one_line(err) and "checkpoints/last.pt" in err
    assert "--resume" in err
    assert (run / "checkpoints" / "best.pt").is_file()
    assert not (run / "checkpoints" / "last.pt").exists()
    assert not list((run / "checkpoints").glob("*.tmp-*"))  # the half-written file is gone
    assert [r["epoch"] for r in lines(run)] == [1]
    monkeypatch.undo()
    # a new run refuses the directory and says what to do; --resume continues from best.pt
    code, _, err = train(capsys, run)
    assert code == 2 and "already holds a run; use --resume" in one_line(err)
    code, text, err = train(capsys, run, "--resume")
    assert code == 0, err
    assert f"resuming {run} at epoch 2" in text
    assert same_weights(run, reference) and lines(run) == lines(reference)
    assert json.loads((run / "final.json").read_text())["test"] == \
        json.loads((reference / "final.json").read_text())["test"]


def test_crash_between_metrics_and_checkpoints_later_epoch(capsys, monkeypatch, tmp_path,
                                                           reference):
    # epoch 2's metrics line is written, then its checkpoints fail: resume from epoch 1's last.pt,
    # metrics.jsonl loses the orphan line (rewritten atomically) and the run ends as the reference
    run = tmp_path / "run"
    disk_full_at(monkeypatch, "best.pt", 2)
    disk_full_at(monkeypatch, "last.pt", 2)
    code, _, err = train(capsys, run)
    assert code == 2 and "no space left on device" in one_line(err)
    if (run / "checkpoints" / "best.pt").exists():
        assert load_checkpoint(run / "checkpoints" / "best.pt")["epoch"] <= 2
    monkeypatch.undo()
    code, text, err = train(capsys, run, "--resume")
    assert code == 0, err
    assert same_weights(run, reference) and lines(run) == lines(reference)


def test_a_kill_while_metrics_jsonl_is_rewritten_loses_nothing(capsys, monkeypatch, tmp_path):
    run = tmp_path / "run"
    assert train(capsys, run, "--set", "train.epochs=2")[0] == 0
    before = (run / "metrics.jsonl").read_bytes()

    def killed(path, text):  # the rewrite dies half-way (as a kill at that instant would)
        def write(f):
            f.write(text.encode()[: len(text) // 2])
            raise KeyboardInterrupt
        atomic_write(path, write)

    monkeypatch.setattr(loop, "atomic_write_text", killed)
    code, _, err = train(capsys, run, "--resume", "--set", "train.epochs=3")
    assert code == 130
    assert (run / "metrics.jsonl").read_bytes() == before
    assert not list(run.glob("*.tmp-*"))


def test_unreadable_newest_checkpoint_is_set_aside(capsys, tmp_path, reference):
    run = tmp_path / "run"
    assert train(capsys, run, "--set", "train.epochs=2")[0] == 0
    last = run / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:200])  # truncated
    (run / "final.json").unlink()               # the run did not finish
    code, text, err = train(capsys, run, "--resume", "--set", "train.epochs=3")
    assert code == 0, err
    assert "checkpoints/last.pt cannot be read (truncated or corrupt?)" in text
    assert "moved aside to last.pt.unreadable" in text
    assert (run / "checkpoints" / "last.pt.unreadable").stat().st_size == 200  # kept
    best_epoch = load_checkpoint(run / "checkpoints" / "best.pt")["epoch"]
    assert f"resuming {run} at epoch" in text and best_epoch >= 1
    assert json.loads((run / "final.json").read_text())["epochs"] == 3


def test_no_loadable_checkpoint_starts_again(capsys, tmp_path, reference):
    run = tmp_path / "run"
    assert train(capsys, run)[0] == 0
    for name in ("last.pt", "best.pt"):
        (run / "checkpoints" / name).write_bytes(b"not a checkpoint")
    (run / "final.json").unlink()
    code, text, err = train(capsys, run, "--resume")
    assert code == 0, err
    assert "no checkpoint to resume from; starting the run again from epoch 1" in text
    assert same_weights(run, reference) and lines(run) == lines(reference)


def test_corrupt_checkpoint_in_evaluate_is_one_line(capsys, tmp_path, reference):
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    best = run / "checkpoints" / "best.pt"
    best.write_bytes(best.read_bytes()[:100])
    code = main(["evaluate", str(run)])
    err = capsys.readouterr().err
    assert code == 2
    assert f"checkpoint {best} cannot be read (truncated or corrupt?)" in one_line(err)


def test_resume_of_a_finished_run_does_nothing(capsys, tmp_path, reference):
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    final = (run / "final.json").read_bytes()
    stamp = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    code = main(["train", "--out", str(run), "--resume"])  # the run's own config.toml
    text, err = capsys.readouterr()
    assert code == 0, err
    best = json.loads(final)["best_epoch"]
    assert text == (f"classaware: {run} is finished (3 epochs, best epoch {best}): nothing to "
                    "do; to train it longer, resume it with --set train.epochs=N (N > 3)\n")
    assert "resuming" not in text and "test (" not in text  # no training, no re-testing
    assert (run / "final.json").read_bytes() == final
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == stamp


def test_a_finished_run_is_not_shortened_and_can_be_extended(capsys, tmp_path):
    run = tmp_path / "run"
    assert train(capsys, run)[0] == 0
    final = (run / "final.json").read_bytes()
    code = main(["train", "--out", str(run), "--resume", "--set", "train.epochs=2"])
    err = capsys.readouterr().err
    assert code == 2
    assert (f"train.epochs = 2, but {run} has trained 3 epochs: a run cannot be shortened"
            in one_line(err))
    assert (run / "final.json").read_bytes() == final
    code = main(["train", "--out", str(run), "--resume", "--set", "train.epochs=4", "-q"])
    assert code == 0, capsys.readouterr().err
    got = json.loads((run / "final.json").read_text())
    assert got["epochs"] == 4 and [r["epoch"] for r in lines(run)] == [1, 2, 3, 4]
    assert 1 <= got["best_epoch"] <= 4


@pytest.mark.parametrize("case", ["file", "under-file", "immutable", "read-only"])
def test_an_unusable_out_is_one_line(capsys, tmp_path, case):
    target = tmp_path / "out"
    cleanup = None
    if case == "file":
        target.write_text("x")
        want = f"--out: '{target}' is a file, not a directory"
    elif case == "under-file":
        (tmp_path / "f").write_text("x")
        target = tmp_path / "f" / "run"
        want = f"--out: '{target}' is under '{tmp_path / 'f'}', a file, not a directory"
    elif case == "immutable":  # root ignores permissions, not the immutable attribute
        target.mkdir()
        if subprocess.run(["chattr", "+i", str(target)], capture_output=True).returncode:
            pytest.skip("chattr +i is not available on this file system")
        cleanup = ["chattr", "-i", str(target)]
        want = f"--out: cannot write in '{target}': Operation not permitted"
    else:
        target.mkdir()
        if os.geteuid() != 0:
            target.chmod(0o555)
            want = f"--out: cannot write in '{target}': Permission denied"
        elif subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(target)],
                            capture_output=True).returncode == 0:
            cleanup = ["umount", str(target)]
            want = f"--out: cannot write in '{target}': Read-only file system"
        else:
            pytest.skip("as root, a read-only directory needs a read-only mount (not possible here)")
    try:
        code, text, err = train(capsys, target)
        assert code == 2 and one_line(err) == f"classaware: error: {want}\n"
        assert text == ""
    finally:
        if cleanup:
            subprocess.run(cleanup, check=True)


def _mount_tmpfs(path: Path, size: int) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def test_a_real_full_disk(tmp_path):
    """A tmpfs just big enough for config.toml, metrics.jsonl and best.pt: the disk fills while
    last.pt is written (epoch 1); the message names it; after more space, --resume finishes."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1] / "src"))
    argv = [sys.executable, "-m", "classaware", "train", *ARGS, "--set", "model.hidden=[512]",
            "--quiet", "--out"]
    ref = tmp_path / "ref"
    subprocess.run([*argv, str(ref)], check=True, env=env, capture_output=True, timeout=300)
    size = (ref / "checkpoints" / "best.pt").stat().st_size
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, size + 96 * 1024):
        pytest.skip("cannot mount a tmpfs here (needs root): the simulated full disk above "
                    "covers the same path")
    try:
        run = disk / "run"
        proc = subprocess.run([*argv, str(run)], env=env, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr == (f"classaware: error: '{run / 'checkpoints' / 'last.pt'}': no "
                               "space left on device; free some space, then continue with "
                               "--resume\n")
        assert (run / "checkpoints" / "best.pt").is_file()
        subprocess.run(["mount", "-o", f"remount,size={8 * size}", str(disk)], check=True)
        proc = subprocess.run([*argv[:-2], "--out", str(run), "--resume"], env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert f"resuming {run} at epoch 2" in proc.stdout
        assert json.loads((run / "final.json").read_text())["test"] == \
            json.loads((ref / "final.json").read_text())["test"]
    finally:
        subprocess.run(["umount", str(disk)], check=True)
