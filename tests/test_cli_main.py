"""The top-level ``classaware`` command line: ``--version``, ``--help``, exit codes."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

import classaware

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "classaware", *args], capture_output=True,
                          text=True, timeout=120)


def pyproject_version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_version_prints_the_package_version():
    proc = cli("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"classaware {importlib.metadata.version('classaware')}\n"
    assert proc.stdout.split()[1] == pyproject_version()  # pyproject.toml is its one home
    assert classaware.__version__ == pyproject_version()


def test_version_from_a_source_tree_reads_pyproject(monkeypatch):
    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    assert classaware._version() == pyproject_version()


def test_help_says_what_each_command_does_and_what_a_bare_call_runs():
    proc = cli("--help")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    commands = out.split("commands:")[1].split("examples:")[0]
    for name in ("train", "evaluate", "datasets", "compare"):
        line = next(x for x in commands.splitlines() if x.strip().startswith(name + " "))
        assert len(line.split()) > 3, line  # the command and a sentence about it
    text = " ".join(out.split())  # argparse wraps lines
    assert "A bare `classaware` runs the demo study" in text
    assert "important-class-demo" in text and "about 3 minutes on 2 CPU cores" in text
    assert "runs/demo-important-class/report.html" in text
    assert "--version" in out
    assert "dispatcher" not in out


@pytest.mark.parametrize("args", [("bogus",), ("--bogus",), ("train", "--bogus")])
def test_bad_top_level_arguments_are_one_line_and_exit_2(args):
    proc = cli(*args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith("classaware: error: ") and proc.stderr.count("\n") == 1
