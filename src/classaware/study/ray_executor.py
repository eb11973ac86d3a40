"""Ray executor: every (variant, seed) of a study as one Ray task (``--executor ray``).

``classaware compare ... --executor ray [--address ADDR] [--gpus-per-run G] [--cpus-per-run C]``
connects to the Ray cluster at ``ADDR`` (``ray start --head`` prints it; ``auto`` finds the
local one) or, without ``--address``, starts a local Ray instance on this machine's cores.  Each
run is a task reserving ``C`` CPUs (its torch threads) and ``G`` GPUs; it calls
:func:`classaware.study.worker.train_one` in one of Ray's long-lived worker processes, so a run
is trained exactly as with local workers and a worker keeps the data it loaded for the next
run.  The study directory must be on a path every node sees (a shared file system): the tasks
write the run directories and logs there, and the study process reads them.

A task whose worker process dies (a node lost, the OOM killer, ``kill -9``) is retried by Ray up
to :data:`MAX_RETRIES` times; the retry resumes from the run's ``checkpoints/last.pt``, so every
run ends up in the study once.  On SIGINT/SIGTERM the study cancels its tasks (the trainer
checkpoints and stops) and the next ``compare`` resumes them.

Ray is optional: ``pip install 'classaware[ray]'``.
"""

from __future__ import annotations

import time
from typing import Any

from classaware.errors import ConfigError

MAX_RETRIES = 3
INSTALL_HINT = ("--executor ray: Ray is not installed; install it with "
                "pip install 'classaware[ray]' (or pip install ray)")


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return ray


def _task(spec: dict[str, Any], threads: int) -> int:
    """The body of one Ray task (a module-level function: Ray imports it on the workers)."""
    from classaware.study.worker import train_one

    return train_one(spec, threads)


class RayExecutor:
    """Runs as Ray tasks, at most ``capacity`` submitted at once (Ray queues what does not fit).

    Parameters
    ----------
    capacity : int
        Runs submitted at once.
    address : str, optional
        A running cluster (``HOST:PORT``, ``auto`` or ``ray://HOST:PORT``); None starts a local
        Ray instance for the study's lifetime.
    gpus_per_run, cpus_per_run : the resources each task reserves (``cpus_per_run`` is also its
        number of torch threads).
    """

    def __init__(self, capacity: int, *, address: str | None = None, gpus_per_run: float = 0.0,
                 cpus_per_run: int = 1) -> None:
        if gpus_per_run < 0:
            raise ConfigError(f"--gpus-per-run: expected a number >= 0, got {gpus_per_run}")
        if cpus_per_run < 1:
            raise ConfigError(f"--cpus-per-run: expected an int >= 1, got {cpus_per_run}")
        ray = _import_ray()
        self.ray = ray
        self.capacity = capacity
        self.threads = cpus_per_run
        env = {"PYTHONHASHSEED": "0", "OMP_NUM_THREADS": str(cpus_per_run),
               "MKL_NUM_THREADS": str(cpus_per_run)}
        kwargs: dict[str, Any] = {"log_to_driver": False, "runtime_env": {"env_vars": env},
                                  "logging_level": "ERROR"}
        if address is None:
            kwargs.update(include_dashboard=False, object_store_memory=100 * 2**20)
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise ConfigError(f"--address {address}: cannot connect to a Ray cluster: "
                              f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                              ) from None
        cpus = int(ray.cluster_resources().get("CPU", 0))
        self.where = f" on Ray ({address or 'local'}, {cpus} CPU(s), {cpus_per_run} per run)"
        self.remote = ray.remote(num_cpus=cpus_per_run, num_gpus=gpus_per_run,
                                 max_retries=MAX_RETRIES)(_task)
        self.refs: dict[Any, Any] = {}

    def start(self, run: Any) -> None:
        spec = {"config": str(run.config_path.resolve()), "out": str(run.run_dir.resolve()),
                "log": str(run.log_path.resolve())}
        self.refs[self.remote.remote(spec, self.threads)] = run

    def poll(self, timeout: float) -> list[tuple[Any, int]]:
        if not self.refs:
            time.sleep(min(timeout, 0.05))
            return []
        ready, rest = self.ray.wait(list(self.refs), num_returns=1, timeout=timeout)
        if ready and rest:
            more, _ = self.ray.wait(rest, num_returns=len(rest), timeout=0)
            ready += more
        return [self._result(ref) for ref in ready]

    def _result(self, ref: Any) -> tuple[Any, int]:
        run = self.refs.pop(ref)
        try:
            return run, int(self.ray.get(ref))
        except self.ray.exceptions.TaskCancelledError:
            return run, 130
        except self.ray.exceptions.RayError as exc:  # the task's worker died MAX_RETRIES + 1 times
            with open(run.log_path, "a") as log:
                log.write(f"classaware: the Ray task failed: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}\n")
            return run, 1

    def interrupt(self) -> None:
        """Cancel every task: a running one gets KeyboardInterrupt (it checkpoints and stops)."""
        for ref in list(self.refs):
            self.ray.cancel(ref, force=False)

    def kill(self) -> None:
        for ref in list(self.refs):
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - already finished
                pass

    def close(self) -> None:
        self.ray.shutdown()
