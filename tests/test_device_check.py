"""``benchmarks/device_check.sh`` and the benchmarks it runs, through their command lines.

The script's GPU path cannot run here; what can is: its one-line failures (no CUDA, a missing
module, missing data, bad arguments), each with its exit code and nothing heavy started, and
the two Python benchmarks it calls, at tiny sizes on the CPU.  The whole ``--dry-run`` (every
part on the CPU) takes minutes and is run by hand (docs/training.md).
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "device_check.sh"
FMNIST = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
          "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def run_script(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k != "OUT"}
    full.update({"PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": "", **env})
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          env=full, timeout=timeout, cwd=ROOT)


def assert_one_line(proc: subprocess.CompletedProcess, code: int, *fragments: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stdout == ""
    assert proc.stderr.startswith("device_check: ") and proc.stderr.count("\n") == 1, proc.stderr
    for f in fragments:
        assert f in proc.stderr, (f, proc.stderr)


def test_without_cuda_it_stops_in_one_line_before_anything_runs(tmp_path):
    proc = run_script()
    assert_one_line(proc, 1, "no CUDA device", "--dry-run")
    # with OUT set, the same line is also the whole of $OUT/device_check.log
    logged = run_script(OUT=str(tmp_path / "out"))
    assert logged.returncode == 1
    assert logged.stdout + logged.stderr == proc.stderr
    assert (tmp_path / "out" / "device_check.log").read_text() == proc.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["device_check.log"]


def test_a_python_without_torch_is_named_in_one_line(tmp_path):
    bare = tmp_path / "python-without-site"  # no site-packages: torch, numpy, tqdm are missing
    bare.write_text(f"#!/bin/sh\nexec {sys.executable} -S \"$@\"\n")
    bare.chmod(0o755)
    proc = run_script(PYTHON=str(bare), DEVCHECK_DATA=str(tmp_path / "no-wheels-here"))
    assert_one_line(proc, 1, "cannot import: torch numpy tqdm tomli_w", "installs nothing")


def test_pure_python_wheels_in_the_data_folder_are_used(tmp_path):
    wheels = tmp_path / "data" / "wheels"
    wheels.mkdir(parents=True)
    import zipfile

    for name in ("tqdm", "tomli_w"):  # stand-ins: importable, nothing else
        with zipfile.ZipFile(wheels / f"{name}-0-py3-none-any.whl", "w") as z:
            z.writestr(f"{name}/__init__.py", "")
    bare = tmp_path / "python-without-site"
    bare.write_text(f"#!/bin/sh\nexec {sys.executable} -S \"$@\"\n")
    bare.chmod(0o755)
    proc = run_script(PYTHON=str(bare), DEVCHECK_DATA=str(tmp_path / "data"))
    assert_one_line(proc, 1, "cannot import: torch numpy")
    assert "tqdm" not in proc.stderr.split("cannot import:")[1].split("—")[0]


def test_missing_data_says_how_to_fill_it(tmp_path):
    proc = run_script("--dry-run", DEVCHECK_DATA=str(tmp_path / "nothing-here"))
    assert_one_line(proc, 1, "Fashion-MNIST is not in", "fashion-mnist",
                    "cp /usr/share/datasets/fashion-mnist/*-ubyte.gz")


@pytest.mark.parametrize("args, env, fragment", [
    (("--jobs", "0"), {}, "--jobs must be a positive integer"),
    (("--bogus",), {}, "unknown argument '--bogus'"),
    (("--dry-run",), {"DEVCHECK_LIMITS": "60 x"}, "DEVCHECK_LIMITS wants 4 positive integers"),
])
def test_bad_arguments_exit_2(tmp_path, args, env, fragment):
    data = tmp_path / "data" / "fashion-mnist"
    data.mkdir(parents=True)
    for name in FMNIST:
        (data / name).write_bytes(b"x")
    proc = run_script(*args, DEVCHECK_DATA=str(tmp_path / "data"), **env)
    assert_one_line(proc, 2, fragment)


def test_help_is_the_header():
    proc = run_script("--help")
    assert proc.returncode == 0
    assert proc.stdout.startswith("The GPU device check")
    assert "--dry-run" in proc.stdout and "cp /usr/share/datasets/fashion-mnist" in proc.stdout


# ---- the Python benchmarks the script runs --------------------------------------------------


def run_bench(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args],
                          capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)


def test_loss_benchmark_prints_a_ratio_per_loss_size_and_dtype():
    # what part (a) of the script runs, at tiny sizes on the CPU
    losses = ["ce", "camri", "ldam", "simloss", "focal"]
    proc = run_bench("losses.py", "--device", "cpu", "--dtypes", "float32,bfloat16",
                     "--no-literal", "--no-step", "--sizes", "4x10,2x100000",
                     "--losses", ",".join(losses), "--reps", "1", "--warmup", "0")
    assert proc.returncode == 0, proc.stderr
    sections = re.split(r"^## ", proc.stdout, flags=re.M)[1:]
    assert [s.splitlines()[0] for s in sections] == ["cpu float32", "cpu bfloat16"]
    for section in sections:
        rows = {tuple(c.strip() for c in line.split("|")[1:3]): line.split("|")
                for line in section.splitlines()
                if line.startswith("| ") and re.match(r"\| \w+ \| \d+x\d+ ", line)}
        # simloss is left out where its C x C matrix would not fit; every other pair has a row
        want = {(n, s) for n in losses for s in ("4x10", "2x100000")} - {("simloss", "2x100000")}
        assert set(rows) == want, sorted(rows)
        for cells in rows.values():
            # times are positive; a ratio is a finite number (its value is timing, and a
            # preempted CE sample at --reps 1 can make it round to 0.00, so it is not asserted)
            assert float(cells[3]) > 0 and float(cells[4]) > 0, cells
            assert math.isfinite(float(cells[5])), cells
            assert cells[6].strip() == "\u2014", cells  # --no-literal: no literal column
    # no size of the targets was measured: it says so instead of "every loss is within"
    assert "No target checked: the targets are set at 256x1000 and 64x10000" in proc.stdout


@pytest.mark.parametrize("args, fragment", [
    (("--dtypes", "float16"), "--dtypes"),
    (("--losses", "nope"), "unknown loss"),
    (("--sizes", "10"), "--sizes wants NxC"),
    (("--device", "cuda"), "CUDA is not available"),
])
def test_loss_benchmark_bad_arguments_exit_2(args, fragment):
    proc = run_bench("losses.py", *args)
    assert proc.returncode == 2 and fragment in proc.stderr, proc.stderr
    assert proc.stdout == "" and "Traceback" not in proc.stderr


def test_train_throughput_runs_with_one_epoch():
    # --epochs 1 used to end in "StatisticsError: no median for empty data"
    proc = run_bench("train_throughput.py", "--device", "cpu", "--workloads", "small_cnn",
                     "--n", "16", "--batch-size", "8", "--epochs", "1", "--skip", "compile")
    assert proc.returncode == 0, proc.stderr
    assert "epoch 1 (includes warm-up)" in proc.stdout
    rows = re.findall(r"^  (\S+(?: \S+)?) +(\d+) images/s +\( *([\d.]+)x baseline\)",
                      proc.stdout, flags=re.M)
    assert [r[0] for r in rows] == ["baseline", "channels_last", "amp bf16", "all"]
    assert rows[0][2] == "1.00"


def test_train_throughput_rejects_zero_epochs():
    proc = run_bench("train_throughput.py", "--epochs", "0")
    assert proc.returncode == 2 and "--epochs must be >= 1" in proc.stderr
