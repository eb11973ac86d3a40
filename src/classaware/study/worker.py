"""A persistent training worker: imports torch once, keeps the data it loaded, trains run after run.

A study starts ``jobs`` of these (``python -m classaware.study.worker``) instead of one
``classaware train`` process per run; a Ray task (:mod:`classaware.study.ray_executor`) calls
:func:`train_one` in Ray's own long-lived worker processes.  Either way one run is trained
exactly as ``classaware train --config C --out D --quiet [--resume]`` trains it, with the same
results (bit-exact on CPU: the run reseeds every generator, and the cached data is the same
tensors ``load_data`` returns for the same config and seed), the same output (appended to the
run's log) and the same exit code (0 finished, 2 a config error printed as
``classaware: error: ...``, 3 diverged, 130 interrupted, 1 a crash, with its traceback in the log).

Protocol (one JSON object per line): the study writes ``{"config": C, "out": D, "log": L}`` to
the worker's stdin, the worker answers ``{"rc": N}`` on its stdout when the run has ended.  Every
run is trained with ``--resume`` (it continues from the newest checkpoint in ``D``, or starts
when there is none); the study empties ``D`` first when the run's config changed.  SIGINT during a run stops it after the current step
with a checkpoint (the trainer's rule); SIGINT or end of input while idle ends the worker.

Example
-------
>>> import subprocess, sys, json                                    # doctest: +SKIP
>>> w = subprocess.Popen([sys.executable, "-m", "classaware.study.worker"],
...                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
>>> w.stdin.write(json.dumps({"config": "c.toml", "out": "runs/a", "log": "a.log"}) + "\\n")
>>> w.stdin.flush(); json.loads(w.stdout.readline())                 # doctest: +SKIP
{'rc': 0}
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MAX_CACHED = 2  # data bundles kept per worker (runs are scheduled seed-major: one seed at a time)


@contextlib.contextmanager
def output_to(log_path: Path) -> Iterator[None]:
    """Send this process's stdout and stderr (file descriptors 1 and 2) to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def train_one(spec: dict[str, Any], threads: int = 0) -> int:
    """Train the run ``spec`` (``config``, ``out``, ``log``: paths) in this process; return the
    exit code ``classaware train`` gives.

    It *is* ``classaware train --config C --out D --quiet --resume`` (the same function, so the
    same rules for every state a run directory can be in, the same messages and exit codes),
    with the process's data cache on (:func:`classaware.data.set_data_cache`: it lasts for the
    life of the worker, so each data config and seed is loaded once).  ``--resume`` is always given:
    it continues a run from its newest checkpoint, leaves a finished one as it is (a Ray task
    retried after it finished) and starts an empty one.  ``threads`` > 0: torch's intra-op
    threads, reset after the run (a run's ``train.num_threads`` does not leak into the next).
    """
    import torch

    from classaware.cli import main as cli_main
    from classaware.data import set_data_cache

    argv = ["train", "--config", str(spec["config"]), "--out", str(spec["out"]), "--quiet",
            "--resume"]
    set_data_cache(MAX_CACHED)
    if threads > 0:
        torch.set_num_threads(threads)
    with output_to(Path(spec["log"])):
        print(f"$ classaware {' '.join(argv)}   # worker pid {os.getpid()} on "
              f"{socket.gethostname()}", flush=True)
        try:
            return cli_main(argv)
        except Exception:  # a crash fails this run, not the worker: its traceback is in the log
            traceback.print_exc()
            return 1
        finally:
            if threads > 0:
                torch.set_num_threads(threads)


def main() -> int:
    """The worker loop (see the module docstring)."""
    reply = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray prints go where stderr goes, never into the answers
    threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
    signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGINT))
    try:
        import classaware.trainer.loop  # noqa: F401 - torch and the trainer, once, before any run

        for line in sys.stdin:
            if line.strip():
                rc = train_one(json.loads(line), threads)
                reply.write(json.dumps({"rc": rc}) + "\n")
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
