"""Run every (variant, seed) of a study, resumably, on local workers or a Ray cluster.

Layout of a study directory ``DIR``::

    DIR/study.json                 the study as run (settings, variants, seeds)
    DIR/configs/<run>.toml         the train config of each run (``classaware train --config``)
    DIR/runs/<variant>-seed<k>/    the run directories (see docs/ARCHITECTURE.md)
    DIR/logs/<run>.log             what the run printed (its warnings, errors, tracebacks)
    DIR/.study.lock                held (flock) while a study process works in DIR

Resume rule, per run: the run is **done** when ``runs/<run>/final.json`` exists and
``configs/<run>.toml`` equals the run's config (it is reused, never retrained); it is
**resumed** when the config is equal and ``checkpoints/last.pt`` exists; otherwise it starts
**fresh**: the study first prints which finished or started runs it retrains and why, then
removes the run directory, writes the config and trains.  A resume that fails is retried once
from scratch.  A failed run does not stop the study; a config error (exit code 2 with a
``classaware: error:`` line) does, since it would fail every run.

Before anything trains, every run's config is resolved by the trainer's ``load_config`` and
checked against its data (:func:`preflight`): each distinct data config is loaded once, the
model is built on the data's input shape and the important classes are resolved.

Runs are scheduled **seed-major** (every variant of seed 0, then seed 1, ...), so a study stopped
early has complete paired seeds.  Executors (:mod:`classaware.study.pool`, the default, and
:mod:`classaware.study.ray_executor`) train one run exactly as ``classaware train --config
configs/<run>.toml --out runs/<run> --quiet [--resume]`` does, in persistent worker processes
that load each dataset once; each local worker gets ``OMP_NUM_THREADS = max(1, cores // jobs)``.
Workers die with the study process (``PR_SET_PDEATHSIG`` on Linux), so a study killed with
``kill -9`` leaves no orphan writing into ``DIR``; running the same command again completes it.
On SIGINT (and, in ``classaware compare``, SIGTERM) each running run checkpoints and stops.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from classaware.errors import ConfigError
from classaware.study.spec import Study

if TYPE_CHECKING:  # pragma: no cover
    from classaware.trainer.config import RunConfig

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
    """What :func:`execute_study` did: per run ``"reused"``, ``"trained"``, ``"resumed"``,
    ``"diverged"`` (a non-finite training loss, recorded in its final.json) or ``"failed"``
    (``"stopped"`` for a run an interruption left unfinished), and the wall time."""

    runs: list[PlannedRun]
    status: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def failed(self) -> list[str]:
        return [n for n, s in self.status.items() if s == "failed"]


def plan_runs(study: Study, out: str | Path) -> list[PlannedRun]:
    """The runs of ``study`` in ``out``, in report order: variants in study order, seeds in
    order within each (they are *trained* seed-major: see :func:`schedule`)."""
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


def schedule(runs: list[PlannedRun]) -> list[PlannedRun]:
    """``runs`` in training order: seed-major (all variants of the first seed, then the next)."""
    seeds = list(dict.fromkeys(r.seed for r in runs))
    return sorted(runs, key=lambda r: seeds.index(r.seed))  # stable: variants keep their order


def _touched(run: PlannedRun, study: Study | None) -> set[str]:
    """Dotted keys the run's variant sets itself."""
    if study is None:
        return set()
    from classaware.study.spec import _touched_keys

    out: set[str] = set()
    for key, value in study.variant(run.variant).overrides:
        out |= _touched_keys(key, value)
    return out


def validate_runs(runs: list[PlannedRun], study: Study | None = None) -> list[RunConfig]:
    """Resolve every run's config with the trainer's ``load_config``; returns them.

    A ConfigError names the variant; when the bad key is one the variant sets itself, it also
    says how to change it from the command line (``--set VARIANT:key=value``).
    """
    from classaware.trainer import load_config

    resolved: dict[str, RunConfig] = {}  # the runs of a variant differ only in their seed
    out = []
    for r in runs:
        key = json.dumps({k: v for k, v in r.config.items() if k != "seed"}, sort_keys=True,
                         default=str)
        if key not in resolved:
            try:
                resolved[key] = load_config(r.config)
            except ConfigError as exc:
                msg = str(exc)
                bad = msg.split(":", 1)[0].strip()
                hint = ""
                if bad in _touched(r, study):
                    hint = (f" ({bad} is set by variant {r.variant!r}: change it with "
                            f"--set {r.variant}:{bad}=VALUE)")
                raise ConfigError(f"variant {r.variant!r}: {msg}{hint}") from None
        out.append(replace(resolved[key], seed=int(r.config.get("seed", 0))))
    return out


def preflight(runs: list[PlannedRun], configs: list[RunConfig]) -> None:
    """Check every run against its data before anything trains (ConfigError naming the run).

    Each distinct ``[data]`` config is loaded once (with the first run's seed: the input shape
    and the class names do not depend on it); then each run's model is built on the data's
    input shape (``model.name = "auto"`` resolved, a factory imported and called) and its
    important classes are resolved to the data's class names.
    """
    from classaware.classes import resolve_classes
    from classaware.data import load_data
    from classaware.models import build_model

    data: dict[Any, tuple[tuple[int, ...], list[str]]] = {}
    models_seen: set[Any] = set()
    for r, cfg in zip(runs, configs):
        try:
            if cfg.data not in data:
                bundle = load_data(cfg.data, seed=cfg.seed)
                data[cfg.data] = (tuple(bundle.input_shape), list(bundle.class_names))
            shape, names = data[cfg.data]
            resolve_classes(cfg.loss.important_classes, names, key="loss.important_classes")
            if (cfg.data, cfg.model) not in models_seen:
                build_model(cfg.model, shape, len(names))
                models_seen.add((cfg.data, cfg.model))
        except ConfigError as exc:
            raise ConfigError(f"variant {r.variant!r}: {exc}") from None
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"variant {r.variant!r}: model: {exc}") from None


def _read_config(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError):
        return None


def _write_text(path: Path, text: str) -> None:
    from classaware._io import atomic_write_text

    atomic_write_text(path, text)


def _toml(cfg: dict[str, Any]) -> str:
    import tomli_w

    return tomli_w.dumps(cfg)


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def explain_state(run: PlannedRun) -> tuple[str, str]:
    """``(state, why)``: ``state`` as :func:`run_state`; ``why`` says, for a fresh run whose
    directory holds something, why that is thrown away (empty otherwise)."""
    stored = _read_config(run.config_path)
    new = json.loads(json.dumps(run.config))
    has_final = (run.run_dir / "final.json").is_file()
    # either checkpoint can be resumed (the trainer continues from the newest that loads)
    has_ckpt = any((run.run_dir / "checkpoints" / f).is_file() for f in ("last.pt", "best.pt"))
    if stored == new:
        if has_final:
            return "done", ""
        if has_ckpt:
            return "resume", ""
        return "fresh", "no checkpoint to resume from" if run.run_dir.exists() else ""
    if not (has_final or has_ckpt):
        return "fresh", ""
    what = "finished" if has_final else "started"
    if stored is None:
        return "fresh", f"{what} with a config that is missing or unreadable"
    a, b = _flat(stored), _flat(new)
    diff = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    shown = ", ".join(f"{k} {a.get(k, '(unset)')!r} -> {b.get(k, '(unset)')!r}" for k in diff[:3])
    more = f" and {len(diff) - 3} more" if len(diff) > 3 else ""
    return "fresh", f"{what} with another config ({shown}{more})"


def run_state(run: PlannedRun) -> str:
    """``"done"``, ``"resume"`` or ``"fresh"`` (see the module docstring)."""
    return explain_state(run)[0]


def worker_threads(jobs: int) -> int:
    """Torch threads of each of ``jobs`` local workers: ``max(1, cores // jobs)``."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, jobs))


_HELD: dict[Path, list[Any]] = {}  # lock path -> [file, depth]: re-entrant within the process


@contextlib.contextmanager
def study_lock(root: str | Path) -> Iterator[None]:
    """Hold an exclusive flock on ``root/.study.lock`` (released by the kernel if the process
    dies).  Re-entrant in one process: ``classaware compare`` holds it while it trains and
    while it writes the report.  Another process gets a ConfigError."""
    path = (Path(root) / ".study.lock").resolve()
    if path in _HELD:
        _HELD[path][1] += 1
        try:
            yield
        finally:
            _HELD[path][1] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+")
    try:
        import fcntl

        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except ImportError:  # pragma: no cover - not POSIX
        pass
    except OSError:
        fh.close()
        raise ConfigError(f"{path.parent}: another study is running in this directory") from None
    _HELD[path] = [fh, 1]
    try:
        yield
    finally:
        del _HELD[path]
        fh.close()


def _tail(path: Path, n: int) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-n:]
    except OSError:
        return []


def _epochs_done(run: PlannedRun) -> int:
    try:
        return (run.run_dir / "metrics.jsonl").read_bytes().count(b"\n")
    except OSError:
        return 0


class _Progress:
    """A tqdm bar over the runs, its postfix the current epoch of each running run (a tty only).

    Without a bar, lines go to ``echo``; with one, they are written above it.
    """

    def __init__(self, total: int, enabled: bool, echo: Callable[[str], None]) -> None:
        self.echo = echo
        self.bar: Any = None
        if enabled and total:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc="runs", unit="run", dynamic_ncols=True,
                            leave=False)

    def say(self, msg: str) -> None:
        if self.bar is None:
            self.echo(msg)
        else:
            self.bar.write(msg)

    def outside(self) -> contextlib.AbstractContextManager[Any]:
        """A context in which others may print (the bar is cleared, then redrawn)."""
        return contextlib.nullcontext() if self.bar is None else self.bar.external_write_mode()

    def update(self, finished: int, active: list[PlannedRun]) -> None:
        if self.bar is None:
            return
        parts = []
        for r in active:
            if not r.run_dir.exists():  # queued (Ray) or not started yet
                continue
            total = int(r.config.get("train", {}).get("epochs", 0) or 0)
            now = min(_epochs_done(r) + 1, total) if total else _epochs_done(r) + 1
            parts.append(f"{r.name} epoch {now}/{total or '?'}")
        self.bar.n = finished
        self.bar.set_postfix_str(", ".join(parts), refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _Loop:
    """Feeds ``todo`` to an executor, at most ``executor.capacity`` at a time, and records
    what each run did (see :func:`execute_study`)."""

    def __init__(self, executor: Any, todo: list[tuple[PlannedRun, str]], outcome: StudyRunOutcome,
                 progress: _Progress, on_done: Callable[[PlannedRun, str], None] | None) -> None:
        self.ex = executor
        self.pending = list(todo)
        self.total = len(todo)
        self.outcome = outcome
        self.progress = progress
        self.on_done = on_done
        self.active: dict[str, tuple[PlannedRun, str, float]] = {}
        self.finished = 0

    def run(self) -> None:
        while self.pending or self.active:
            while self.pending and len(self.active) < self.ex.capacity:
                self._start(*self.pending.pop(0))
            for run, rc in self.ex.poll(0.5):
                self._ended(run, rc)
            self.progress.update(self.finished, [a[0] for a in self.active.values()])

    def _start(self, run: PlannedRun, state: str) -> None:
        if state == "fresh":
            if run.run_dir.exists():
                shutil.rmtree(run.run_dir)
            _write_text(run.config_path, _toml(run.config))
        run.run_dir.parent.mkdir(parents=True, exist_ok=True)
        run.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.ex.start(run)
        self.active[run.name] = (run, state, time.perf_counter())

    def _ended(self, run: PlannedRun, rc: int, *, stopping: bool = False) -> None:
        _, state, started = self.active.pop(run.name)
        if rc != 0 and state == "resume" and not stopping:
            self.progress.say(f"  {run.name}: resume failed (exit {rc}); retrying from scratch")
            self._start(run, "fresh")
            return
        secs = time.perf_counter() - started
        if rc == 0 and (run.run_dir / "final.json").is_file():
            status = "resumed" if state == "resume" else "trained"
            self.finished += 1
            self.progress.say(f"[{self.finished}/{self.total}] {run.name}: {status} in {secs:.1f} s")
        elif rc == 3 and (run.run_dir / "final.json").is_file():  # recorded in final.json
            status = "diverged"
            self.finished += 1
            tail = _tail(run.log_path, 1)
            self.progress.say(f"[{self.finished}/{self.total}] {run.name}: DIVERGED after "
                              f"{secs:.1f} s" + (f": {tail[-1]}" if tail else ""))
        elif stopping:
            status = "stopped"
        else:
            status = "failed"
            self.finished += 1
            tail = _tail(run.log_path, 12)
            if rc == 2 and tail and tail[-1].startswith("classaware: error:"):
                # a user-fixable problem (data not found, bad value): the same for every run,
                # so the study stops here with its one-line message
                self.outcome.status[run.name] = status
                raise ConfigError(f"run {run.name}: {tail[-1][len('classaware: error:'):].strip()}")
            self.progress.say(f"[{self.finished}/{self.total}] {run.name}: FAILED (exit {rc}); "
                              f"log: {run.log_path}")
            for line in tail:
                self.progress.say(f"    {line}")
        self.outcome.status[run.name] = status
        if self.on_done and status not in ("stopped", "diverged"):
            with self.progress.outside():
                self.on_done(run, status)

    def stop(self, grace: float = 30.0) -> None:
        """Ask the running runs to checkpoint and stop; wait up to ``grace`` seconds for them
        (a second interrupt, or the deadline, ends their workers at once)."""
        self.pending.clear()
        self.ex.interrupt()
        deadline = time.monotonic() + grace
        try:
            while self.active and time.monotonic() < deadline:
                for run, rc in self.ex.poll(0.5):
                    self._ended(run, rc, stopping=True)
        except KeyboardInterrupt:
            pass
        if self.active:
            self.ex.kill()
            for run, _, _ in self.active.values():
                self.outcome.status[run.name] = "stopped"
            self.active.clear()


def _executor(kind: str, capacity: int, root: Path, options: dict[str, Any]) -> Any:
    if kind == "local":
        from classaware.study.pool import LocalExecutor

        return LocalExecutor(capacity, worker_threads(capacity), root / "logs",
                             python=options.get("python"))
    if kind == "ray":
        from classaware.study.ray_executor import RayExecutor

        return RayExecutor(capacity, address=options.get("address"),
                           gpus_per_run=float(options.get("gpus_per_run") or 0),
                           cpus_per_run=int(options.get("cpus_per_run") or 1))
    raise AssertionError(kind)  # checked by _check_args


def _check_args(jobs: int | None, executor: str) -> None:
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise ConfigError(f"--jobs: expected an int >= 1, got {jobs!r}")
    if executor not in ("local", "ray"):
        raise ConfigError(f"--executor: expected 'local' or 'ray', got {executor!r}")


def _write_study_json(study: Study, root: Path) -> None:
    _write_text(root / "study.json", json.dumps(
        {"study": study.settings(), "source": study.source,
         "variants": [{"name": v.name, "overrides": [list(o) for o in v.overrides]}
                      for v in study.variants],
         "base": study.base}, indent=2, sort_keys=True, default=str) + "\n")


def execute_study(study: Study, out: str | Path, *, jobs: int | None = None,
                  echo: Callable[[str], None] = print,
                  on_done: Callable[[PlannedRun, str], None] | None = None,
                  python: str | None = None, executor: str = "local",
                  progress: bool | None = None, **executor_options: Any) -> StudyRunOutcome:
    """Train every run of ``study`` that is not done yet, ``jobs`` at a time.

    ``jobs``: runs trained at once (default 1 with local workers; on Ray, as many as the
    cluster fits).  ``executor``: ``"local"`` (persistent worker processes on this machine) or
    ``"ray"`` (one Ray task per run; ``address``, ``gpus_per_run``, ``cpus_per_run`` in
    ``executor_options``).  ``on_done(run, status)`` is called (in the study process) after
    each run finishes, in completion order, with ``status`` one of ``"reused"``,
    ``"trained"``, ``"resumed"``, ``"failed"``; reused runs come first, in study order.
    ``progress``: a bar over the runs with each running run's epoch (default: when stderr is a
    terminal).  On KeyboardInterrupt the running runs checkpoint and stop, then it is re-raised.
    """
    _check_args(jobs, executor)
    root = Path(out)
    runs = plan_runs(study, root)
    configs = validate_runs(runs, study)
    cfg_of = {r.name: c for r, c in zip(runs, configs)}
    t0 = time.perf_counter()
    outcome = StudyRunOutcome(runs=runs)
    with study_lock(root):
        states = {r.name: explain_state(r) for r in runs}
        todo = [(r, states[r.name][0]) for r in schedule(runs) if states[r.name][0] != "done"]
        capacity = jobs or (1 if executor == "local" else max(1, len(todo)))
        options = {"python": python, **executor_options}
        ex = None
        if todo and executor == "local":  # workers import torch while the runs are checked
            ex = _executor(executor, capacity, root, options)
            ex.warm(len(todo))
        try:
            preflight([r for r, _ in todo], [cfg_of[r.name] for r, _ in todo])
            if todo and ex is None:  # Ray: connected only once the runs are known to be good
                ex = _executor(executor, capacity, root, options)
            _write_study_json(study, root)
            echo(f"study {study.name}: {len(study.variants)} variant(s) x {len(study.seeds)} "
                 f"seed(s), baseline {study.baseline} -> {root}")
            for r in runs:
                if states[r.name][0] == "done":
                    outcome.status[r.name] = "reused"
                    if on_done:
                        on_done(r, "reused")
            if todo:
                _announce(todo, states, len(runs), ex, root, echo)
                _train_all(ex, todo, outcome, on_done, progress, echo)
        finally:
            if ex is not None:
                ex.close()
    outcome.status = {r.name: outcome.status.get(r.name, "failed") for r in runs}
    outcome.seconds = time.perf_counter() - t0
    return outcome


def _train_all(ex: Any, todo: list[tuple[PlannedRun, str]], outcome: StudyRunOutcome,
               on_done: Callable[[PlannedRun, str], None] | None, progress: bool | None,
               echo: Callable[[str], None]) -> None:
    bar = _Progress(len(todo), sys.stderr.isatty() if progress is None else progress, echo)
    loop = _Loop(ex, todo, outcome, bar, on_done)
    try:
        loop.run()
    except BaseException:
        loop.stop()  # the running runs checkpoint and stop
        raise
    finally:
        bar.close()


def _announce(todo: list[tuple[PlannedRun, str]], states: dict[str, tuple[str, str]], n: int,
              ex: Any, root: Path, echo: Callable[[str], None]) -> None:
    """Say what is retrained from scratch and why (before anything is removed), then what runs."""
    for r, _ in todo:
        why = states[r.name][1]
        if why:
            echo(f"  {r.name}: {why}; retraining it from scratch")
    where = getattr(ex, "where", "")
    echo(f"training {len(todo)} run(s) of {n} with {min(ex.capacity, len(todo))} "
         f"worker(s){where} -> {root / 'runs'}")
