"""``classaware compare --executor ray``: a Ray head started here on 127.0.0.1 with 2 CPUs, a
worker killed mid-run, and the same report as local workers; and the one-line error without Ray."""

from __future__ import annotations

import csv
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_study_workers import STUDY  # noqa: E402

pytestmark = pytest.mark.slow


def test_without_ray_the_executor_is_a_one_line_error(tmp_path):
    fake = tmp_path / "noray" / "ray"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "noray")}
    study_file = tmp_path / "tiny.toml"
    study_file.write_text(STUDY)
    p = subprocess.run([sys.executable, "-m", "classaware", "compare", "--config",
                        str(study_file), "--out", str(tmp_path / "o"), "--executor", "ray"],
                       capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr
    assert "pip install 'classaware[ray]'" in p.stderr
    assert not (tmp_path / "o").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_or_skip() -> Path:
    ray = Path(sys.executable).with_name("ray")
    try:
        import ray as _  # noqa: F401
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("Ray is not installed; `make setup` installs classaware[ray]")
        pytest.skip("Ray is not installed (pip install 'classaware[ray]')")
    return ray


def _rows(path: Path) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if not k.endswith("seconds")}
            for r in csv.DictReader(open(path))]


def test_ray_study_survives_a_killed_worker_and_matches_local_workers(tmp_path):
    ray = _ray_or_skip()
    study_file = tmp_path / "tiny.toml"
    study_file.write_text(STUDY.replace("epochs = 3", "epochs = 40").replace(
        "seeds = [0, 1]", "seeds = [0]"))
    port = _free_port()
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Ray's socket paths
    # Ray >= 2.52 authenticates with a token: one of our own, not the user's ~/.ray/auth_token
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    head = subprocess.Popen(
        [str(ray), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port",
         str(port), "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats",
         "--temp-dir", str(temp)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, env=env)
    try:
        out = tmp_path / "on-ray"
        p = subprocess.Popen(
            [sys.executable, "-m", "classaware", "compare", "--config", str(study_file), "--out",
             str(out), "--executor", "ray", "--address", f"127.0.0.1:{port}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        victim = out / "runs" / "ce-seed0"
        deadline = time.monotonic() + 400
        while p.poll() is None and time.monotonic() < deadline:
            if (victim / "checkpoints" / "last.pt").is_file():
                break
            time.sleep(0.02)
        if p.poll() is not None:
            pytest.fail(f"the study ended before a run was mid-way: {p.communicate()[0]}")
        log = out / "logs" / "ce-seed0.log"
        pid = int(log.read_text().split("worker pid ")[1].split()[0])
        os.kill(pid, signal.SIGKILL)  # the Ray worker running the task dies mid-run
        text, _ = p.communicate(timeout=600)
        assert p.returncode == 0, text
        assert f"on Ray (127.0.0.1:{port}" in text
        headers = [x for x in log.read_text().splitlines() if x.startswith("$ classaware train")]
        assert len(headers) == 2 and headers[1].split("#")[0].rstrip().endswith("--resume")
        ray_rows = _rows(out / "report.csv")
        assert sorted(r["run"] for r in ray_rows) == ["ce-seed0", "cosface-seed0"]  # once each
        assert all(r["status"] != "missing" for r in ray_rows)
        assert sorted(x.name for x in (out / "runs").iterdir()) == ["ce-seed0", "cosface-seed0"]
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        shutil.rmtree(temp, ignore_errors=True)

    # the same study with local workers (1 torch thread each, as each Ray task has)
    jobs = str(len(os.sched_getaffinity(0)))
    local = tmp_path / "local"
    q = subprocess.run([sys.executable, "-m", "classaware", "compare", "--config",
                        str(study_file), "--out", str(local), "--jobs", jobs],
                       capture_output=True, text=True, timeout=600)
    assert q.returncode == 0, q.stdout + q.stderr
    assert _rows(local / "report.csv") == ray_rows
