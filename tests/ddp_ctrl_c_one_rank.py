"""``torchrun ... tests/ddp_ctrl_c_one_rank.py CONFIG OUT``: a run in which Ctrl-C reaches rank 1
alone, in the middle of its first validation (used by tests/test_ddp.py).

A signal lands on each rank at its own moment; this makes the worst moment deterministic: rank 1
has passed the last stop agreement of the epoch and rank 0 has not seen any signal.  The ranks
must still stop together after that epoch (exit 130 each) instead of waiting in different
collectives.
"""

from __future__ import annotations

import os
import signal
import sys

from classaware.trainer import distributed, loop
from classaware.trainer.config import load_config

_evaluate_split = loop.evaluate_split
_sent = []


def _evaluate_split_with_ctrl_c(model, split, *args, **kwargs):
    if os.environ.get("RANK") == "1" and split == "val" and not _sent:
        _sent.append(True)
        signal.raise_signal(signal.SIGINT)  # the loop's SIGINT handler: rank 1's flag only
    return _evaluate_split(model, split, *args, **kwargs)


if __name__ == "__main__":
    loop.evaluate_split = _evaluate_split_with_ctrl_c
    result = loop.run_training(load_config(sys.argv[1]), sys.argv[2], quiet=True)
    distributed.exit_worker(130 if result.interrupted else 0)
