import os

from classaware.cli import main

code = main()
if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:  # a torchrun worker, whatever the outcome
    from classaware.trainer.distributed import exit_worker

    exit_worker(code)  # skips the interpreter finalization that torch's DDP can abort
raise SystemExit(code)
