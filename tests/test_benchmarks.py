"""The overhead benchmarks through their command lines, at tiny sizes (their numbers are timing)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(),
                                reason="needs Debian's dataset-fashion-mnist")


def run_bench(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args],
                          capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)


def test_study_overhead_prints_the_ratio_to_the_floor():
    # the main job's preset (bf16 autocast included, in the study and in the bare loop)
    proc = run_bench("study_overhead.py", "--seeds", "1", "--epochs", "1", "--max-train", "400",
                     "--losses", "ce,camri-m0.2-s16")
    assert proc.returncode == 0, proc.stderr
    ratio = re.search(r"^ratio study / floor = ([\d.]+)  \(2 runs, 2 workers\)$", proc.stdout, re.M)
    assert ratio and float(ratio.group(1)) > 0, proc.stdout
    parts = dict(re.findall(r"^(\S.*?\S)\s{2,}([\d.]+)\s+[\d.]+$", proc.stdout, re.M))
    assert {"floor: bare training steps", "harness training steps",
            "study wall time"} <= set(parts), proc.stdout


def test_train_overhead_compares_the_harness_with_the_bare_loop():
    proc = run_bench("train_overhead.py", "--max-train", "600", "--epochs", "1", "--reps", "1")
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^training images/s\s+\d+\s+\d+\s+-?[\d.]+%$", proc.stdout, re.M), proc.stdout
