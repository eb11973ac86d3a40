"""Local executor: a pool of persistent worker processes (:mod:`classaware.study.worker`).

Each worker is ``python -m classaware.study.worker`` with ``OMP_NUM_THREADS = threads``, in a
process group of its own (a Ctrl-C in the terminal reaches the study, which then asks each busy
worker once to checkpoint and stop) and with ``PR_SET_PDEATHSIG`` = SIGKILL on Linux (a study
killed with ``kill -9`` leaves no worker writing into its directory).  A worker that dies (a
crash, the OOM killer) fails its run only; the next run gets a new worker.

Every executor has the same four methods, used by :func:`classaware.study.runner.execute_study`:
``start(run)``, ``poll(timeout) -> [(run, exit code)]``, ``interrupt()`` and ``close()``, plus
``capacity`` (the runs it trains at once).
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any


def pdeathsig_hook() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child receive SIGKILL when its parent dies (Linux).

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


@dataclass
class _Worker:
    proc: subprocess.Popen[str]
    stdin: IO[str]
    stdout: IO[str]
    run: Any = None  # the run it trains now, or None when idle


class LocalExecutor:
    """Up to ``capacity`` persistent workers on this machine.

    Parameters
    ----------
    capacity : int
        Workers (runs trained at once).
    threads : int
        ``OMP_NUM_THREADS`` / torch threads of each worker.
    log_dir : Path
        ``log_dir/workers.log`` collects what a worker prints outside a run (start-up errors).
    python : str, optional
        The interpreter (default: this one).
    """

    def __init__(self, capacity: int, threads: int, log_dir: Path, python: str | None = None
                 ) -> None:
        self.capacity = capacity
        self.threads = threads
        self.log_dir = Path(log_dir)
        self.python = python or sys.executable
        self.workers: list[_Worker] = []  # alive
        self.procs: list[subprocess.Popen[str]] = []  # every worker started
        self.sel = selectors.DefaultSelector()

    def warm(self, n: int) -> None:
        """Start ``n`` workers now (they import torch while the study checks its runs)."""
        while len(self.workers) < min(n, self.capacity):
            self._spawn()

    def _spawn(self) -> _Worker:
        env = dict(os.environ)
        t = str(self.threads)
        env.update(OMP_NUM_THREADS=t, MKL_NUM_THREADS=t, PYTHONHASHSEED="0")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / "workers.log", "ab") as err:
            proc = subprocess.Popen(
                [self.python, "-m", "classaware.study.worker"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=err, env=env, text=True, bufsize=1,
                start_new_session=True, preexec_fn=pdeathsig_hook())
        assert proc.stdin is not None and proc.stdout is not None
        w = _Worker(proc, proc.stdin, proc.stdout)
        self.workers.append(w)
        self.procs.append(proc)
        self.sel.register(w.stdout, selectors.EVENT_READ, w)
        return w

    def start(self, run: Any) -> None:
        """Train ``run`` (a :class:`~classaware.study.runner.PlannedRun`) on an idle worker."""
        w = next((w for w in self.workers if w.run is None), None) or self._spawn()
        w.run = run
        spec = {"config": str(run.config_path), "out": str(run.run_dir), "log": str(run.log_path)}
        try:
            w.stdin.write(json.dumps(spec) + "\n")
            w.stdin.flush()
        except OSError:  # it died while idle: its answer is the end of its output
            pass

    def poll(self, timeout: float) -> list[tuple[Any, int]]:
        """Runs that ended within ``timeout`` seconds, with their exit codes."""
        done = []
        for key, _ in self.sel.select(timeout):
            w: _Worker = key.data
            line = w.stdout.readline()
            if line:
                run, w.run = w.run, None
                if run is not None:
                    done.append((run, int(json.loads(line)["rc"])))
                continue
            self._drop(w)  # end of output: the worker died
            if w.run is not None:
                rc = w.proc.wait()
                with open(w.run.log_path, "a") as log:
                    log.write(f"classaware: the worker process died (exit {rc})\n")
                done.append((w.run, rc if rc else 1))
        return done

    def _drop(self, w: _Worker) -> None:
        self.sel.unregister(w.stdout)
        self.workers.remove(w)
        for f in (w.stdin, w.stdout):
            try:
                f.close()
            except OSError:
                pass

    def interrupt(self) -> None:
        """Ask every busy worker to checkpoint and stop its run (SIGINT, once)."""
        for w in self.workers:
            if w.run is not None and w.proc.poll() is None:
                try:
                    w.proc.send_signal(signal.SIGINT)
                except OSError:
                    pass

    def busy(self) -> int:
        return sum(w.run is not None for w in self.workers)

    def close(self, grace: float = 10.0) -> None:
        """End every worker: end of input, then SIGKILL after ``grace`` seconds."""
        for w in list(self.workers):
            self._drop(w)
        deadline = time.monotonic() + grace
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.sel.close()
        log = self.log_dir / "workers.log"
        with contextlib.suppress(OSError):
            if log.stat().st_size == 0:  # nothing to say: leave no trace
                log.unlink()
                self.log_dir.rmdir()  # only when empty

    def kill(self) -> None:
        """End every worker at once (SIGKILL)."""
        for p in self.procs:
            if p.poll() is None:
                p.kill()
