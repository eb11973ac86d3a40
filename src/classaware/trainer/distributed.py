"""DistributedDataParallel plumbing: ``torchrun --nproc_per_node N -m classaware train ...``.

torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and ``MASTER_ADDR/PORT``; when
``WORLD_SIZE > 1`` the trainer calls :func:`setup` which initialises the default process group
(``nccl`` on CUDA, ``gloo`` on CPU).  The data split is done by :func:`shard_batch`: every rank
draws the same seeded permutation per epoch, the global batch (``train.batch_size``) is cut
into ``world_size`` interleaved parts, and rank ``r`` trains on part ``r``.  DDP averages the
gradients over ranks, so with equal part sizes the update is the one-process update of the
global batch.  Only rank 0 writes files (:func:`is_main`).  ``CLASSAWARE_DIST_TIMEOUT`` (seconds,
default 1800 as in PyTorch) bounds every collective, so a rank that never arrives becomes an
error instead of a hang.

Example
-------
>>> import torch
>>> shard_batch(torch.arange(10), rank=1, world_size=3)
tensor([1, 4, 7])
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import NoReturn

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialised_here: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def setup(device_type: str) -> DistInfo:
    """Initialise the process group from torchrun's environment (no-op for one process)."""
    world = env_world_size()
    if world <= 1:
        return DistInfo()
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, False)
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
    timeout = float(os.environ.get("CLASSAWARE_DIST_TIMEOUT", "1800"))
    dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout))
    return DistInfo(rank, world, local_rank, True)


def teardown(info: DistInfo) -> None:
    if info.initialised_here and dist.is_initialized():
        dist.destroy_process_group()


def exit_worker(code: int) -> NoReturn:
    """End a torchrun worker now with ``code``, without Python's interpreter finalization.

    Call it once the run is written (every file is fsync'ed before ``run_training`` returns).
    Why: in torch 2.13, DDP keeps the gloo process group alive after ``destroy_process_group()``,
    so its worker threads are still running when the interpreter finalizes.  A worker thread that
    frees the last collective's work then drops a Python reference (the work's saved
    ``ThreadLocalState``) and needs the GIL while the interpreter is torn down: CPython makes that
    thread exit inside a ``noexcept`` destructor, and the process aborts ("terminate called without
    an active exception", exit -6) after a run that finished; the thread can also wait for the
    GIL forever.  It is a race with the exit, lost more often on a loaded machine.  ``os._exit``
    skips the finalization, so the race cannot happen; stdout and stderr are flushed first.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken: nothing left to save
            pass
    os._exit(code)


def is_main(info: DistInfo | None) -> bool:
    return info is None or info.is_main


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_reduce_sum(t: Tensor, info: DistInfo) -> Tensor:
    """Sum ``t`` over ranks in place (identity for one process)."""
    if info.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def any_rank(flag: bool, info: DistInfo) -> bool:
    """True on every rank when ``flag`` is true on at least one (``flag`` for one process).

    A collective: every rank must call it at the same point.  The loop steers its stop/continue
    branches by this agreed value only, never by a rank's own Ctrl-C flag, which a signal can
    set on one rank between two collectives and not yet on the other.
    """
    if not info.enabled:
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0])
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def broadcast_object(obj: object, info: DistInfo) -> object:
    """Rank 0's ``obj`` on every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shard_batch(idx: Tensor, rank: int, world_size: int) -> Tensor:
    """Rank ``rank``'s part of the global batch ``idx``: ``idx[rank::world_size]``."""
    if world_size <= 1:
        return idx
    return idx[rank::world_size]


def global_mean_scale(local_targets: Tensor, global_targets: Tensor, weight: Tensor | None,
                      world_size: int) -> Tensor:
    """Factor that turns a rank's (weighted) mean loss into its share of the global mean.

    Every loss reduces with the weighted mean ``sum_i w_i l_i / sum_i w_i`` (``w_i = 1`` without
    class weights).  DDP averages the ranks' gradients, so multiplying rank ``r``'s mean by
    ``W * sum_{i in r} w_i / sum_{i in batch} w_i`` makes that average exactly the gradient of
    the global batch's weighted mean, for unequal shards and for DRW weights alike.  Computed on
    the device from the targets every rank already has (no communication, no host sync).
    """
    if weight is None:
        return torch.tensor(world_size * local_targets.shape[0] / max(1, global_targets.shape[0]),
                            device=local_targets.device)
    w = weight.to(local_targets.device)
    total = w[global_targets].sum()
    return world_size * w[local_targets].sum() / torch.where(total != 0, total,
                                                            torch.ones_like(total))


def shard_range(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Contiguous ``[start, stop)`` of ``n`` items for evaluation on ``rank``."""
    per = -(-n // max(world_size, 1))
    start = min(n, rank * per)
    return start, min(n, start + per)


def all_gather_rows(t: Tensor, info: DistInfo) -> Tensor:
    """Concatenate every rank's ``t`` (rows may differ per rank) in rank order."""
    if not info.enabled:
        return t
    n = torch.tensor([t.shape[0]], device=t.device)
    sizes = [torch.zeros_like(n) for _ in range(info.world_size)]
    dist.all_gather(sizes, n)
    sizes_i = [int(s.item()) for s in sizes]
    m = max(sizes_i)
    pad = torch.zeros((m - t.shape[0], *t.shape[1:]), dtype=t.dtype, device=t.device)
    buf = torch.cat([t, pad])
    parts = [torch.empty_like(buf) for _ in range(info.world_size)]
    dist.all_gather(parts, buf.contiguous())
    return torch.cat([p[:s] for p, s in zip(parts, sizes_i)])
