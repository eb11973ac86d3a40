"""A persistent training worker: imports torch once, keeps the data it loaded, trains run after run.

A study starts ``jobs`` of these (``python -m classaware.study.worker``) instead of one
``classaware train`` process per run; a Ray task (:mod:`classaware.study.ray_executor`) calls
:func:`train_one` in Ray's own long-lived worker processes.  Either way one run is trained
exactly as ``classaware train --config C --out D --quiet [--resume]`` trains it, with the same
results (bit-exact on CPU: the run reseeds every generator, and the cached data is the same
tensors ``load_data`` returns for the same config and seed), the same output (appended to the
run's log) and the same exit code (0 finished, 2 a config error printed as
``classaware: error: ...``, 130 interrupted, 1 a crash, with its traceback in the log).

Protocol (one JSON object per line): the study writes ``{"config": C, "out": D, "log": L}`` to
the worker's stdin, the worker answers ``{"rc": N}`` on its stdout when the run has ended.  A run
resumes when ``D/checkpoints/last.pt`` exists and starts from an empty ``D`` otherwise; the study
decides which by what it leaves in ``D``.  SIGINT during a run stops it after the current step
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
import shutil
import signal
import socket
import sys
import traceback
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MAX_CACHED = 2  # data bundles kept per worker (runs are scheduled seed-major: one seed at a time)
_CACHE: OrderedDict[str, Any] = OrderedDict()


def cached_data(cfg: dict[str, Any]) -> Any:
    """The DataBundle of ``load_data(cfg["data"], seed=cfg["seed"])``, loaded once per worker.

    The key is the resolved ``[data]`` section and the run's seed (the seed picks the subset
    and the validation split), so two runs share a bundle only when ``load_data`` would return
    the same tensors for both.  The trainer never writes into the bundle's tensors.
    """
    from classaware.data import load_data
    from classaware.data.config import resolve_data_config

    seed = int(cfg.get("seed", 0))
    key = json.dumps([resolve_data_config(cfg["data"]), seed], sort_keys=True, default=str)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    data = load_data(cfg["data"], seed=seed)
    _CACHE[key] = data
    while len(_CACHE) > MAX_CACHED:
        _CACHE.popitem(last=False)
    return data


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
    """Train the run ``spec`` (``config``, ``out``, ``log``: paths); return the exit code
    ``classaware train`` would.  ``threads`` > 0: torch's intra-op threads, reset after the run
    (a run's ``train.num_threads`` does not leak into the next one)."""
    import torch

    from classaware.cli import guarded
    from classaware.trainer.config import load_config
    from classaware.trainer.loop import run_training

    out = Path(spec["out"])
    if (out / "final.json").is_file():  # finished before a lost answer (a retried Ray task)
        return 0
    resume = (out / "checkpoints" / "last.pt").is_file()
    if not resume and out.exists():  # a start that crashed before its first checkpoint
        shutil.rmtree(out)
    if threads > 0:
        torch.set_num_threads(threads)
    with output_to(Path(spec["log"])):
        print(f"$ classaware train --config {spec['config']} --out {out} --quiet"
              + (" --resume" if resume else "")
              + f"   # worker pid {os.getpid()} on {socket.gethostname()}", flush=True)
        def train() -> int:
            cfg = load_config(str(spec["config"]))
            result = run_training(cfg, out, resume=resume, quiet=True, data=cached_data(cfg))
            return 130 if result.interrupted else 0

        try:
            return guarded(train)
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
