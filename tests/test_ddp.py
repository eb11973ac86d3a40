"""DistributedDataParallel on 2 CPU processes (gloo) vs 1 process with the same global batch.

Each rank gets its own ``out_dir`` here (in real use torchrun gives every rank the same
``--out``), so that "only rank 0 writes" is observable: rank 1's directory must never appear.

Tolerance: every rank trains on its half of each global batch of the same seeded permutation;
DDP averages the ranks' gradients and the trainer scales each rank's weighted-mean loss by
``W * sum(local weights) / sum(global weights)`` (``distributed.global_mean_scale``), so the
update is the one-process update of the global batch, DRW weights included, up to float32
summation order.  Stated tolerance after 3 epochs (2 with DRW): weights ``atol = 1e-5``,
training loss ``rel = 1e-5``, accuracy / balanced accuracy / macro-F1 within one sample of the
split.  The model has no batch norm and no dropout (per-rank batch statistics of batch norm
would differ; dropout masks come from each rank's own RNG).
"""

from __future__ import annotations

import faulthandler
import json
import os
import socket
import time
import warnings

import pytest
import torch
import torch.multiprocessing as mp

from classaware.trainer.checkpoint import load_checkpoint
from classaware.trainer.config import load_config
from classaware.trainer.loop import run_training

pytestmark = pytest.mark.slow


def _cfg(epochs: int) -> dict:
    return load_config({
        "seed": 2,
        "data": {"name": "digits", "val_fraction": 0.2},
        "model": {"name": "mlp", "hidden": [32]},
        "loss": {"name": "ce"},
        "optim": {"name": "sgd", "lr": 0.1, "schedule": "constant"},
        "train": {"epochs": epochs, "batch_size": 64, "progress": False, "drw_epoch": 1,
                  "device": "cpu", "log_interval": 4},
    })


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free ports (all sockets held open while choosing, so none repeats)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _worker(rank: int, world: int, ports: list[int], root: str) -> None:
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
                       "MASTER_ADDR": "127.0.0.1",
                       "CLASSAWARE_DIST_TIMEOUT": "60"})  # a lost rank fails, never hangs
    torch.set_num_threads(1)
    # a worker still running after 120 s prints every thread's stack to stderr and exits, so a
    # hang shows where it is in the test's captured output instead of stalling the suite
    faulthandler.dump_traceback_later(120, exit=True)
    out = os.path.join(root, f"rank{rank}")
    # 2 epochs (DRW switches on at epoch index 1), then --resume to 3 epochs
    os.environ["MASTER_PORT"] = str(ports[0])
    run_training(_cfg(2), out, quiet=True)
    if rank == 0:
        assert load_checkpoint(os.path.join(out, "checkpoints", "last.pt"))["epoch"] == 2
    os.environ["MASTER_PORT"] = str(ports[1])
    run_training(_cfg(3), out, resume=True, quiet=True)


def _run_two_ranks(root) -> None:
    """2 gloo processes (run + resume); raises if a worker fails or hangs."""
    ctx = mp.start_processes(_worker, args=(2, _free_ports(2), str(root)), nprocs=2,
                             join=False, start_method="spawn")
    deadline = time.monotonic() + 180  # the two processes take ~10 s
    while not ctx.join(timeout=5):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            raise TimeoutError("the 2-process DDP run did not finish within 180 s")


def test_two_processes_match_one_and_only_rank0_writes(tmp_path):
    ref_dir = tmp_path / "single"
    ref = run_training(_cfg(3), ref_dir, quiet=True)

    # A worker that stalls (seen in about 1 of 10 fresh-clone suite runs, never in a collective:
    # the process-group timeout did not fire) prints its stack and exits after 120 s; that run
    # is retried ONCE in a fresh directory with fresh ports, with a warning.  A failure that
    # repeats, or any exception raised inside a worker, fails the test.
    try:
        _run_two_ranks(tmp_path / "try1")
        root = tmp_path / "try1"
    except (TimeoutError, mp.ProcessExitedException) as exc:
        warnings.warn(f"2-process DDP run stalled, retrying once: {exc}", stacklevel=1)
        _run_two_ranks(tmp_path / "try2")
        root = tmp_path / "try2"
    assert not (root / "rank1").exists()  # (b) rank 0 alone wrote files

    run = root / "rank0"
    final = json.loads((run / "final.json").read_text())
    assert final["world_size"] == 2
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3]
    assert [r["drw"] for r in lines] == [False, True, True]

    # (a) same weights and metrics as one process with the same global batch
    w2 = load_checkpoint(run / "checkpoints" / "last.pt")["model"]
    w1 = load_checkpoint(ref_dir / "checkpoints" / "last.pt")["model"]
    for k in w1:
        assert torch.allclose(w1[k], w2[k], atol=1e-5, rtol=0), k
    n_test = sum(ref.final["test"]["per_class_support"])
    for key in ("accuracy", "balanced_accuracy", "macro_f1"):
        assert final["test"][key] == pytest.approx(ref.final["test"][key], abs=1.5 / n_test)
    ref_lines = [json.loads(x) for x in (ref_dir / "metrics.jsonl").read_text().splitlines()]
    for a, b in zip(lines, ref_lines):  # the all-reduced validation confusion matrices
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        n_val = sum(map(sum, b["val"]["confusion_matrix"]))
        assert sum(map(sum, a["val"]["confusion_matrix"])) == n_val  # every val row counted once
        assert a["val"]["accuracy"] == pytest.approx(b["val"]["accuracy"], abs=1.5 / n_val)
