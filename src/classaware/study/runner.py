"""Run every (variant, seed) of a study as a ``classaware train`` subprocess, resumably.

Layout of a study directory ``DIR``::

    DIR/study.json                 the study as run (settings, variants, seeds)
    DIR/configs/<run>.toml         the train config of each run (what is passed to --config)
    DIR/runs/<variant>-seed<k>/    the run directories (see docs/ARCHITECTURE.md)
    DIR/logs/<run>.log             stdout + stderr of each training process
    DIR/.study.lock                held (flock) while a study process works in DIR

Resume rule, per run: the run is **done** when ``runs/<run>/final.json`` exists and
``configs/<run>.toml`` equals the run's config (it is reused, never retrained); it is
**resumed** (``train --resume``) when the config is equal and ``checkpoints/last.pt`` exists;
otherwise it starts **fresh** (its run directory is removed first, then the config is written,
then training starts). A resume that fails is retried once from scratch. Training processes die
with the study process (``PR_SET_PDEATHSIG`` on Linux), so a study killed with ``kill -9`` leaves
no orphan writing into ``DIR``; running the same command again completes it.

Each worker gets ``OMP_NUM_THREADS = max(1, cores // jobs)`` (torch's intra-op threads).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from classaware.errors import ConfigError
from classaware.study.spec import Study

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass
class PlannedRun:
    """One (variant, seed) of a study and where its files go."""

    name: str
    variant: str
    seed: int
    config: dict[str, Any]
    run_dir: Path
    config_path: Path
    log_path: Path


@dataclass
class StudyRunOutcome:
    """What :func:`execute_study` did: per run ``"reused"``, ``"trained"``, ``"resumed"`` or
    ``"failed"``, and the wall time."""

    runs: list[PlannedRun]
    status: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def failed(self) -> list[str]:
        return [n for n, s in self.status.items() if s == "failed"]


def plan_runs(study: Study, out: str | Path) -> list[PlannedRun]:
    """The runs of ``study`` in ``out``: variants in study order, seeds in order within each."""
    root = Path(out)
    runs = []
    for v in study.variants:
        for s in study.seeds:
            name = study.run_name(v.name, s)
            runs.append(PlannedRun(
                name=name, variant=v.name, seed=s, config=study.run_config(v.name, s),
                run_dir=root / "runs" / name, config_path=root / "configs" / f"{name}.toml",
                log_path=root / "logs" / f"{name}.log",
            ))
    return runs


def validate_runs(runs: list[PlannedRun]) -> None:
    """Resolve every run's config with the trainer's ``load_config`` (ConfigError naming the run)."""
    try:
        from classaware.trainer import load_config
    except ImportError:  # pragma: no cover - the trainer is part of the package
        return
    seen: set[str] = set()
    for r in runs:
        key = json.dumps({k: v for k, v in r.config.items() if k != "seed"}, sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        try:
            load_config(r.config)
        except ConfigError as exc:
            raise ConfigError(f"variant {r.variant!r}: {exc}") from None


def _read_config(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError):
        return None


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _toml(cfg: dict[str, Any]) -> str:
    import tomli_w

    return tomli_w.dumps(cfg)


def run_state(run: PlannedRun) -> str:
    """``"done"``, ``"resume"`` or ``"fresh"`` (see the module docstring)."""
    stored = _read_config(run.config_path)
    same = stored is not None and stored == json.loads(json.dumps(run.config))
    if not same:
        return "fresh"
    if (run.run_dir / "final.json").is_file():
        return "done"
    if (run.run_dir / "checkpoints" / "last.pt").is_file():
        return "resume"
    return "fresh"


def _worker_threads(jobs: int) -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, jobs))


def _pdeathsig_hook() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child receive SIGKILL when the study process dies.

    libc is loaded here, in the parent, so that the hook run between fork and exec only makes
    one system call (no import, no lock).
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):  # pragma: no cover - unusual libc
        return None
    sig = int(signal.SIGKILL)

    def hook() -> None:  # pragma: no cover - runs in the child
        prctl(1, sig)  # PR_SET_PDEATHSIG

    return hook


class _Lock:
    """An exclusive flock on ``DIR/.study.lock`` (released by the kernel if the process dies)."""

    def __init__(self, root: Path) -> None:
        self.path = root / ".study.lock"
        self.fh: Any = None

    def __enter__(self) -> _Lock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.path, "a+")
        try:
            import fcntl

            fcntl.flock(self.fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # pragma: no cover - not POSIX
            pass
        except OSError:
            self.fh.close()
            raise ConfigError(f"{self.path.parent}: another study is running in this directory") from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fh is not None:
            self.fh.close()


def execute_study(study: Study, out: str | Path, *, jobs: int = 1,
                  echo: Callable[[str], None] = print,
                  on_done: Callable[[PlannedRun, str], None] | None = None,
                  python: str | None = None) -> StudyRunOutcome:
    """Train every run of ``study`` that is not done yet, ``jobs`` processes at a time.

    ``on_done(run, status)`` is called (in the study process) after each run finishes, in
    completion order, with ``status`` one of ``"reused"``, ``"trained"``, ``"resumed"``,
    ``"failed"``.  Reused runs are reported first, in study order.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"--jobs: expected an int >= 1, got {jobs!r}")
    root = Path(out)
    runs = plan_runs(study, root)
    validate_runs(runs)
    t0 = time.perf_counter()
    outcome = StudyRunOutcome(runs=runs)
    with _Lock(root):
        _write_atomic(root / "study.json", json.dumps(
            {"study": study.settings(), "source": study.source,
             "variants": [{"name": v.name, "overrides": [list(o) for o in v.overrides]}
                          for v in study.variants],
             "base": study.base}, indent=2, sort_keys=True, default=str) + "\n")
        todo: deque[tuple[PlannedRun, str]] = deque()
        for r in runs:
            state = run_state(r)
            if state == "done":
                outcome.status[r.name] = "reused"
                if on_done:
                    on_done(r, "reused")
            else:
                todo.append((r, state))
        total = len(todo)
        if total:
            echo(f"training {total} run(s) of {len(runs)} with {min(jobs, total)} worker(s) "
                 f"-> {root / 'runs'}")
        env = dict(os.environ)
        threads = str(_worker_threads(jobs))
        env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, PYTHONHASHSEED="0")
        active: dict[str, tuple[PlannedRun, str, subprocess.Popen[bytes], Any, float]] = {}
        finished = 0
        try:
            while todo or active:
                while todo and len(active) < jobs:
                    r, state = todo.popleft()
                    active[r.name] = _start(r, state, env, python)
                for name in list(active):
                    r, state, proc, log, started = active[name]
                    rc = proc.poll()
                    if rc is None:
                        continue
                    log.close()
                    del active[name]
                    if rc != 0 and state == "resume":
                        echo(f"  {r.name}: resume failed (exit {rc}); retrying from scratch")
                        active[name] = _start(r, "fresh", env, python)
                        continue
                    finished += 1
                    secs = time.perf_counter() - started
                    if rc == 0 and (r.run_dir / "final.json").is_file():
                        status = "resumed" if state == "resume" else "trained"
                        echo(f"[{finished}/{total}] {r.name}: {status} in {secs:.1f} s")
                    else:
                        status = "failed"
                        tail = _tail(r.log_path, 12)
                        if rc == 2 and tail and tail[-1].startswith("classaware: error:"):
                            # a user-fixable problem (data not found, bad value): the same
                            # for every run, so stop here with its one-line message
                            _stop_all([a[2] for a in active.values()])
                            active.clear()
                            raise ConfigError(
                                f"run {r.name}: {tail[-1][len('classaware: error:'):].strip()}")
                        echo(f"[{finished}/{total}] {r.name}: FAILED (exit {rc}); log: {r.log_path}")
                        for line in tail:
                            echo(f"    {line}")
                    outcome.status[r.name] = status
                    if on_done:
                        on_done(r, status)
                if active:
                    time.sleep(0.05)
        except BaseException:
            _stop_all([a[2] for a in active.values()])
            raise
    outcome.status = {r.name: outcome.status.get(r.name, "failed") for r in runs}
    outcome.seconds = time.perf_counter() - t0
    return outcome


def _start(r: PlannedRun, state: str, env: dict[str, str], python: str | None
           ) -> tuple[PlannedRun, str, subprocess.Popen[bytes], Any, float]:
    if state == "fresh":
        if r.run_dir.exists():
            shutil.rmtree(r.run_dir)
        _write_atomic(r.config_path, _toml(r.config))
    r.run_dir.parent.mkdir(parents=True, exist_ok=True)
    r.log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [python or sys.executable, "-m", "classaware", "train", "--config", str(r.config_path),
           "--out", str(r.run_dir), "--quiet"]
    if state == "resume":
        cmd.append("--resume")
    log = open(r.log_path, "ab")
    log.write(f"$ {' '.join(cmd)}\n".encode())
    log.flush()
    kwargs: dict[str, Any] = {}
    hook = _pdeathsig_hook()
    if hook is not None:
        kwargs["preexec_fn"] = hook  # Popen is only called from the study's main thread
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=env, **kwargs)
    return r, state, proc, log, time.perf_counter()


def _stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGINT)  # the trainer saves a checkpoint and stops
            except OSError:
                pass
    deadline = time.monotonic() + 10
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _tail(path: Path, n: int) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-n:]
    except OSError:
        return []
