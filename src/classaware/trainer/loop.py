"""The training loop: ``run_training(cfg, out_dir)``, one run read top to bottom.

:func:`run_training` is a short sequence of named steps over one :class:`TrainState`:

1. **prepare** the run directory (created and probed for writing; a fresh run refuses a
   directory that holds one; ``resume`` continues from the newest checkpoint that loads, leaves
   a finished run as it is, or starts again when there is nothing to continue: :func:`_prepare`);
2. **build**: load the data (or take the preloaded ``data``), resolve the important classes,
   seed python/numpy/torch with ``seed``, build the loss, the model, the optimizer
   (:mod:`.build`, :mod:`.optim`), fit the normaliser ``x_hat = (x - mean) / std`` (per channel
   for images, per feature for vectors) on the training set;
3. **restore** the chosen checkpoint when resuming (weights, optimizer, random states, the
   partial epoch's totals), so a resumed run ends with the same weights as an uninterrupted one
   (CPU, bit for bit);
4. per epoch, **train one epoch**: set the lr (``optim.lr_at``), switch the loss weight to
   ``class_balanced(counts, drw_beta)`` from epoch ``drw_epoch`` on (DRW), draw the epoch's
   order from a generator seeded with ``SeedSequence([seed, epoch])`` (a permutation, or the
   ``data.sampler``'s class re-sampling from epoch ``drs_epoch`` on: DRS), take each batch
   from the batch source (:func:`_batches`: in-memory tensors indexed, or lazy data read by
   ``data.workers`` DataLoader processes — the same tensors either way), augment the batch on
   tensors, forward (bf16 autocast where ``train.amp`` resolves to it), backward, step; the
   running loss and training confusion matrix stay on the device and are read once per
   ``log_interval`` steps;
5. **end the epoch**: a non-finite training loss stops the run (``final.json`` records the
   divergence, :class:`~classaware.errors.TrainingDiverged`); else evaluate on validation from
   one confusion matrix (training metrics when there is no validation split; never test) and
   append one JSON line to ``metrics.jsonl``;
6. **select and checkpoint**: ``best.pt`` (the run's model: when ``eval.select_metric``
   improves, or every epoch with ``eval.select = "last"``), ``last.pt`` every
   ``checkpoint_every`` epochs (one builder, :func:`_checkpoint`, for both; both resumable);
7. **finish**: reload ``best.pt``, evaluate validation and test, write ``outputs.npz`` then
   ``final.json`` (atomically, last), print the per-class table.

The effective batch is ``min(train.batch_size, N_train)``.

Epochs are 0-based in the code and in the config (``milestones``, ``drw_epoch``); the ``epoch``
field of ``metrics.jsonl`` and ``best_epoch`` count completed epochs (1-based).

Ctrl-C (SIGINT), or a :class:`Callback` calling ``state.request_stop()``, stops the loop after the
current step: it saves ``last.pt`` (mid-epoch state included) and returns a result with
``interrupted=True``; ``--resume`` continues from that exact step.  A second Ctrl-C stops at once.

Example
-------
>>> from classaware.trainer.config import load_config          # doctest: +SKIP
>>> cfg = load_config({"data": {"name": "digits"}, "model": {"name": "mlp"}})  # doctest: +SKIP
>>> result = run_training(cfg, "runs/digits", quiet=True)      # doctest: +SKIP
>>> result.final["test"]["balanced_accuracy"]                   # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from classaware._io import atomic_save_npz, atomic_write_json, atomic_write_text, clean_tmp
from classaware.data.lazy import is_lazy, read_batches
from classaware.data.sampler import epoch_order, sampler_at
from classaware.errors import ConfigError, TrainingDiverged
from classaware.trainer import distributed as dist_utils
from classaware.trainer.augment import augment_batch, resolve_augment
from classaware.trainer.build import (
    Normalizer,
    RunParts,
    auto_flag,
    build_parts,
    epoch_seed,
    resolve_device,
    seed_everything,
)
from classaware.trainer.checkpoint import (
    load_checkpoint,
    newest,
    resume_candidates,
    rng_state,
    run_dir_problem,
    save_checkpoint,
    set_rng_state,
)
from classaware.trainer.config import RunConfig, dump_config, load_config
from classaware.trainer.evaluate import (
    autocast,
    evaluate_run,
    evaluate_split,
    jsonable,
    metrics_of,
    select_value,
)
from classaware.trainer.optim import build_optimizer, lr_at, set_lr

__all__ = ["Callback", "RunResult", "TrainState", "evaluate_run", "run_training"]

CHECKPOINT_FORMAT = 1


@dataclass
class RunResult:
    """What a finished (or interrupted) run hands back.

    ``run_dir``: the run directory; ``config``: the resolved :class:`RunConfig`; ``final``: the
    content of ``final.json`` (empty when interrupted, and on ranks > 0 under torchrun);
    ``interrupted``: the run stopped (Ctrl-C or a stop request) before its last epoch — set
    on every rank.
    """

    run_dir: Path
    config: RunConfig
    final: dict
    interrupted: bool = False


class Callback:
    """Hooks of :func:`run_training` (``callbacks=[...]``); subclass and override what you need.

    ``on_step_end(state)`` runs after every optimizer step, with ``state.epoch`` the 0-based
    epoch being trained and ``state.step`` the number of steps done in it;
    ``on_epoch_end(state, record)`` runs after an epoch's line of ``metrics.jsonl`` (``record``)
    is written and before its checkpoints (``state.epoch`` is then the number of completed
    epochs; a stop requested here saves ``last.pt`` of this epoch).
    A callback may call ``state.request_stop()`` to stop as Ctrl-C does; an exception it raises
    aborts the run like a crash (``last.pt`` keeps the last saved state).
    """

    def on_step_end(self, state: TrainState) -> None:
        """After every training step."""

    def on_epoch_end(self, state: TrainState, record: dict) -> None:
        """After every completed epoch."""


@dataclass
class TrainState:
    """Everything a run carries from step to step (what ``last.pt`` saves, and the built parts)."""

    cfg: RunConfig
    run_dir: Path
    info: dist_utils.DistInfo
    parts: RunParts
    optimizer: torch.optim.Optimizer
    train_model: nn.Module
    norm_cpu: Normalizer
    data_gen: torch.Generator
    steps_per_epoch: int
    batch_size: int                     # train.batch_size, capped at the training-set size
    augment: tuple[int, bool]           # (crop_padding, flip)
    base_weight: Tensor | None          # the loss weight before DRW
    ones: Tensor                        # index_add_ source for the training confusion matrix
    callbacks: Sequence[Callback] = ()
    quiet: bool = False
    epoch: int = 0                      # epoch being trained (0-based) = epochs completed
    step: int = 0                       # steps done in that epoch
    best: dict = field(default_factory=dict)
    accum: dict | None = None           # a resumed partial epoch's totals (rank 0)
    resume_gen_state: Tensor | None = None
    elapsed: float = 0.0
    stop_requested: bool = False        # asked on this rank (Ctrl-C, a callback): any moment
    stopping: bool = False              # agreed by every rank (_agree_on_stop): steers the loop
    norm: Normalizer | None = None      # norm_cpu on the device

    def set_norm(self, norm_cpu: Normalizer) -> None:
        self.norm_cpu = norm_cpu
        self.norm = norm_cpu.to(self.parts.device, self.parts.x["train"].dim())

    def request_stop(self) -> None:
        """Stop after the current step, as Ctrl-C does (last.pt saved, ``interrupted``)."""
        self.stop_requested = True

    def say(self, *args: Any) -> None:
        if self.info.is_main and not self.quiet:
            print(*args, flush=True)


class _StopRequest:
    """SIGINT handler: the first Ctrl-C asks the loop to stop after the current step."""

    def __init__(self, state: TrainState) -> None:
        self.state = state
        self._old: Any = None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.state.stop_requested:  # second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.state.request_stop()
        print("\nclassaware: stopping after this step and saving checkpoints/last.pt "
              "(Ctrl-C again to abort at once)", file=sys.stderr, flush=True)

    def __enter__(self) -> _StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


# ----------------------------------------------------------------------------------------------
# the run


def run_training(cfg: RunConfig | Mapping[str, Any], out_dir: str | Path, *, resume: bool = False,
                 quiet: bool = False, data: Any = None,
                 callbacks: Sequence[Callback] | None = None,
                 model: nn.Module | None = None) -> RunResult:
    """Train one run described by ``cfg`` into ``out_dir``.

    Parameters
    ----------
    cfg : RunConfig (or a dict, resolved with ``load_config``)
        The resolved config (``classaware.trainer.config.load_config``).
    out_dir : path
        The run directory (created).  Without ``resume`` it must not hold a run already.
    resume : bool
        Continue from the newest checkpoint of ``out_dir`` that loads (exactly where it
        stopped), leave a finished run as it is, or start again (see :func:`_prepare`).
    quiet : bool
        No progress bar, no per-epoch lines, no final table.
    data : DataBundle or DatasetSource, optional
        The data already loaded, ``classaware.data.load_data(cfg.data, seed=cfg.seed)`` (a
        process that trains many runs loads it once); the run is bit-identical to one that
        loads it itself.  Or your own Datasets, ``classaware.data.from_datasets(train, test,
        class_names)``: split with ``cfg.data``'s keys, recorded as ``data.name = "python"``.
    callbacks : sequence of Callback, optional
        Hooks called after every step and every epoch (see :class:`Callback`).
    model : nn.Module, optional
        Your own backbone (inputs to features ``[N, D]``; the head is added): trained in place,
        and holding the selected (best) weights at the end.  Recorded as
        ``model.name = "python"``.

    Returns
    -------
    RunResult
        ``final`` is the content of ``final.json``; ``interrupted`` tells a stopped run.

    Raises
    ------
    ConfigError
        A run directory that cannot be used, data or settings that cannot train.
    OSError
        A file-system failure (a full disk, ...), naming the file being written.
    TrainingDiverged
        A non-finite training loss (``final.json`` records it).
    """
    cfg = load_config(cfg)
    cfg = dataclasses.replace(cfg, data=cfg.data.resolved())  # config.toml records where the data is
    device = resolve_device(cfg.train.device)
    info = dist_utils.setup(device.type)
    if info.enabled and device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
    if cfg.train.num_threads > 0:
        torch.set_num_threads(cfg.train.num_threads)
    try:
        run_dir = Path(out_dir)
        plan = dist_utils.broadcast_object(
            _prepare(run_dir, cfg, resume) if info.is_main else None, info)
        assert isinstance(plan, _Plan)
        if plan.error is not None:
            raise plan.error
        if info.is_main:
            for note in plan.notes:
                print(f"classaware: {note}", flush=True)
        if plan.final is not None:  # a finished run: nothing to do, nothing re-tested
            return RunResult(run_dir, cfg, plan.final if info.is_main else {}, False)
        st = _build_state(cfg, run_dir, (data, model), device, info, callbacks or (), quiet)
        cfg = st.cfg  # "auto" resolved, "python" recorded
        if resume:
            _restore(st, plan)
        _write_run_files(st)
        with _StopRequest(st):
            while st.epoch < cfg.train.epochs and not st.stopping:
                t0 = time.perf_counter()
                trained = _train_epoch(st)
                if trained is None:  # stopped mid-epoch; last.pt holds the partial epoch
                    break
                _end_epoch(st, *trained, t0)
        interrupted = st.epoch < cfg.train.epochs
        final: dict = {}
        if interrupted and info.is_main:
            print(f"classaware: interrupted; checkpoints/last.pt saved. Continue with:\n"
                  f"  classaware train --out {run_dir} --resume", file=sys.stderr, flush=True)
        elif info.is_main:
            final = _finish(st)
        dist_utils.barrier(info)
        return RunResult(run_dir, cfg, final, interrupted)
    finally:
        dist_utils.teardown(info)


@dataclass
class _Plan:
    """What the prepare step found in the run directory (rank 0 decides, every rank follows)."""

    error: Exception | None = None      # raised on every rank
    final: dict | None = None           # a finished run's final.json: nothing to do
    state: dict | None = None           # the checkpoint to resume from (None: start again)
    best_on_disk: int | None = None     # the epoch whose model checkpoints/best.pt holds
    notes: list[str] = field(default_factory=list)  # lines to print


def _prepare(run_dir: Path, cfg: RunConfig, resume: bool) -> _Plan:
    """Step 1 (rank 0): check the run directory and decide where the run starts.

    One rule for every state a run directory can be left in: ``--resume`` continues from the
    newest checkpoint that loads (``last.pt`` or ``best.pt``; an unreadable one is moved
    aside), or starts the run again when there is none; a finished run (``final.json``) is left
    as it is when ``train.epochs`` is its epoch count, extended when larger, and a smaller
    ``train.epochs`` is refused (a run cannot be shortened).
    """
    try:
        problem = run_dir_problem(run_dir, resume=resume)
        if problem or not resume:
            return _Plan(error=ConfigError(problem) if problem else None)
        final = _read_final(run_dir)
        done = int(final["epochs"]) if final else 0
        if final and final.get("diverged"):
            return _Plan(error=TrainingDiverged(f"{run_dir} has diverged: "
                                                f"{final['diverged']['message']}"))
        if final and cfg.train.epochs == done:
            return _Plan(final=final, notes=[
                f"{run_dir} is finished ({_plural(done, 'epoch')}, best epoch "
                f"{final['best_epoch']}): nothing to do; to train it longer, resume it with "
                f"--set train.epochs=N (N > {done})"])
        states, notes = resume_candidates(run_dir)
        state = newest(states)
        done = max(done, int(state["epoch"]) if state else 0)
        if cfg.train.epochs < done:
            return _Plan(error=ConfigError(
                f"train.epochs = {cfg.train.epochs}, but {run_dir} has trained "
                f"{_plural(done, 'epoch')}: a run cannot be shortened; train "
                f"{_plural(cfg.train.epochs, 'epoch')} in a new run (another --out)"))
        if state is None:
            notes.append(f"{run_dir}: no checkpoint to resume from; starting the run again "
                         "from epoch 1")
        best = states.get("best.pt")
        return _Plan(state=state, notes=notes,
                     best_on_disk=int(best["epoch"]) if best is not None else None)
    except (ConfigError, OSError) as exc:
        return _Plan(error=exc)


def _read_final(run_dir: Path) -> dict | None:
    """``final.json`` of ``run_dir`` (None when absent or unreadable: the run is not finished)."""
    try:
        final = json.loads((run_dir / "final.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return final if isinstance(final, dict) and "epochs" in final else None


def _plural(n: int, word: str) -> str:
    """``"1 epoch"``, ``"3 epochs"``."""
    return f"{n} {word}" + ("" if n == 1 else "s")


def _build_state(cfg: RunConfig, run_dir: Path, given: tuple[Any, nn.Module | None],
                 device: torch.device, info: dist_utils.DistInfo, callbacks: Sequence[Callback],
                 quiet: bool) -> TrainState:
    """Data, seeds, loss, model, optimizer, normaliser and the fresh training state.

    ``given``: the ``data=`` and ``model=`` of :func:`run_training` (None: from the config).
    """
    from classaware.data.lazy import DatasetSource

    data, backbone = given
    if data is None or isinstance(data, DatasetSource):
        from classaware.data import load_data

        data = load_data(cfg.data, seed=cfg.seed, source=data)
    seed_everything(cfg.seed)
    parts = build_parts(cfg, data, device, backbone=backbone)
    cfg = parts.cfg
    x_train = parts.x["train"]
    n_train = x_train.shape[0]
    if n_train == 0:
        raise ConfigError("the training set is empty")
    # the effective batch: never more than the training set (nothing is sized by the setting)
    batch_size = min(cfg.train.batch_size, n_train)
    _check_batch_norm(cfg, parts.model, batch_size, n_train, info.world_size)
    _check_selection(cfg, parts)
    steps = math.ceil(n_train / batch_size)
    if steps > 1 and n_train - (steps - 1) * batch_size < 2 * info.world_size:
        steps -= 1  # a last batch too small for batch norm (per rank) is dropped
    train_model: nn.Module = parts.model
    if cfg.train.compile:
        train_model = torch.compile(parts.model)
    if info.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        train_model = DDP(train_model, device_ids=[device.index] if device.type == "cuda"
                          else None)
    augment = resolve_augment(cfg.train, dataset=cfg.data.name, kind=getattr(data, "kind", "image"),
                              input_shape=tuple(data.input_shape))
    ones = torch.ones(batch_size, dtype=torch.int64, device=device)
    st = TrainState(cfg, run_dir, info, parts, build_optimizer(parts.model.parameters(), cfg.optim),
                    train_model, Normalizer.fit(x_train, workers=cfg.data.workers),
                    torch.Generator(device=x_train.device), steps, batch_size, augment,
                    getattr(parts.loss_fn, "weight", None), ones, callbacks, quiet,
                    best={"score": -math.inf, "epoch": 0,
                          "split": "val" if parts.x["val"].shape[0] > 0 else "train"})
    st.set_norm(st.norm_cpu)
    return st


def _check_batch_norm(cfg: RunConfig, model: nn.Module, batch_size: int, n_train: int,
                      world_size: int) -> None:
    """Batch norm needs at least 2 images per batch (and rank) to compute its statistics."""
    per_rank = batch_size // world_size
    if per_rank >= 2 or not any(isinstance(m, nn.modules.batchnorm._BatchNorm)
                                for m in model.modules()):
        return
    need = 2 * world_size
    where = " per rank" if world_size > 1 else ""
    if n_train < need:
        raise ConfigError(f"data: the training set has {_plural(n_train, 'image')}, but model "
                          f"{cfg.model.name!r} uses batch norm, which needs at least 2 per "
                          f"batch{where}")
    raise ConfigError(f"train.batch_size: model {cfg.model.name!r} uses batch norm, which needs "
                      f"at least 2 images per batch{where}; set train.batch_size >= {need} "
                      f"(got {cfg.train.batch_size})")


def _check_selection(cfg: RunConfig, parts: RunParts) -> None:
    """Selection by the important classes' validation recall needs each of them in validation."""
    if cfg.eval.select != "best" or cfg.eval.select_metric != "important_recall_mean":
        return
    y_val = parts.y["val"]
    if y_val.shape[0] == 0:
        return  # selected on the training metrics
    counts = torch.bincount(y_val.cpu(), minlength=len(parts.class_names)).tolist()
    absent = [parts.class_names[i] for i in parts.important if counts[i] == 0]
    if absent:
        raise ConfigError(f"eval.select_metric: \"important_recall_mean\" needs validation "
                          f"images of every important class, and {', '.join(map(repr, absent))} "
                          "has none; choose another select_metric, or data.val_from = \"train\"")


def _restore(st: TrainState, plan: _Plan) -> None:
    """Continue from the checkpoint the prepare step chose (weights, optimizer, normaliser,
    random states, progress), or from nothing (the run starts again); ``metrics.jsonl`` keeps
    the lines of the epochs done (rewritten atomically)."""
    state = plan.state
    if state is not None:
        if list(state["class_names"]) != st.parts.class_names:
            raise ConfigError("--resume: the data's classes differ from the checkpoint's")
        st.parts.model.load_state_dict(state["model"])
        st.optimizer.load_state_dict(state["optimizer"])
        st.set_norm(Normalizer.from_state(state["normalization"]))
        st.epoch, st.step = int(state["epoch"]), int(state["step"])
        st.best, st.accum = dict(state["best"]), state.get("accum")
        st.elapsed = float(state.get("seconds", 0.0))
        set_rng_state(state["rng"])  # the data generator is set when its epoch starts
        st.resume_gen_state = state["rng"].get("data_generator")
    if st.info.is_main:
        _truncate_jsonl(st.run_dir / "metrics.jsonl", st.epoch)
        if state is not None:
            _reconcile_best(st, plan.best_on_disk)
    if state is not None:
        st.best = dist_utils.broadcast_object(st.best, st.info)
        st.say(f"classaware: resuming {st.run_dir} at epoch {st.epoch + 1}"
               + (f", step {st.step}" if st.step else ""))


def _reconcile_best(st: TrainState, best_on_disk: int | None) -> None:
    """Make ``best.pt`` hold the model ``st.best`` names (rank 0, after a restore).

    It does unless a crash or an unreadable file got in between: when the restored state *is*
    the best model (the end of the best epoch) it is written again; otherwise that model is
    lost and selection starts again with the next epoch (said in one line).
    """
    want = int(st.best["epoch"])
    if want == 0 or best_on_disk == want:
        return
    if want == st.epoch and st.step == 0:
        save_checkpoint(st.run_dir / "checkpoints" / "best.pt", _checkpoint(st))
        return
    print(f"classaware: checkpoints/best.pt does not hold the model of best epoch {want}; "
          f"model selection starts again with epoch {st.epoch + 1}", flush=True)
    st.best = {"score": -math.inf, "epoch": 0, "split": st.best["split"]}


def _write_run_files(st: TrainState) -> None:
    """``config.toml`` and a clean directory (rank 0), then the run's header line."""
    if st.info.is_main:
        ckpt_dir = st.run_dir / "checkpoints"
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        clean_tmp(ckpt_dir)
        clean_tmp(st.run_dir)
        dump_config(st.cfg, st.run_dir / "config.toml")
        (st.run_dir / "final.json").unlink(missing_ok=True)
    cfg, x, info = st.cfg, st.parts.x, st.info
    capped = st.batch_size < cfg.train.batch_size
    st.say(f"classaware: {cfg.data.name} ({x['train'].shape[0]} train, {x['val'].shape[0]} val, "
           f"{x['test'].shape[0]} test{_data_note(st)}), {st.parts.model_note}/{cfg.model.head}, "
           f"loss {cfg.loss.name}, {_plural(cfg.train.epochs, 'epoch')}, batch {st.batch_size}"
           + (" (the training set)" if capped else "") + f" on {st.parts.device}"
           + (f" x{info.world_size} ranks" if info.enabled else "")
           + (", bf16 autocast" if st.parts.amp_dtype is not None else ""))
    if st.parts.model.init_note:
        st.say(f"classaware: {st.parts.model.init_note}")
    meta = getattr(st.parts.data, "meta", {}) or {}
    if meta.get("val_short"):
        names = st.parts.class_names
        short = ", ".join(f"{names[c]!r} {n}" for c, n in meta["val_short"].items())
        st.say(f"classaware: validation: {meta['val_per_class']} images per class from those the "
               f"imbalance leaves unused; fewer where it leaves fewer: {short}")


def _data_note(st: TrainState) -> str:
    """How the training samples are read (lazy data only)."""
    if not is_lazy(st.parts.x["train"]):
        return ""
    workers = st.cfg.data.workers
    return "; read per batch" + (f" by {workers} worker(s)" if workers else "")


# ----------------------------------------------------------------------------------------------
# one epoch


@dataclass
class _Totals:
    """Running loss sum, sample count and training confusion matrix of an epoch (on device)."""

    loss_sum: Tensor
    seen: int
    cm: Tensor

    def all_reduced(self, info: dist_utils.DistInfo) -> _Totals:
        """The totals summed over ranks (in place for the tensors)."""
        seen = torch.tensor(self.seen, device=self.cm.device)
        for t in (self.loss_sum, seen, self.cm):
            dist_utils.all_reduce_sum(t, info)
        return _Totals(self.loss_sum, int(seen.item()), self.cm)


def _train_epoch(st: TrainState) -> tuple[dict, Tensor] | None:
    """Train epoch ``st.epoch``: its record's training half and the training confusion matrix,
    or None when stopped mid-epoch (``last.pt`` then holds the partial epoch)."""
    cfg, info, parts = st.cfg, st.info, st.parts
    t0 = time.perf_counter()
    lr = set_lr(st.optimizer, lr_at(cfg.optim, cfg.train.epochs, st.epoch))
    drw_epoch = cfg.train.drw_epoch
    drw_on = drw_epoch is not None and st.epoch >= drw_epoch
    if drw_epoch is not None:
        parts.loss_fn.weight = parts.drw_weight if drw_on else st.base_weight
    st.data_gen.manual_seed(epoch_seed(cfg.seed, st.epoch))
    sampler = sampler_at(cfg.data.sampler, cfg.train.drs_epoch, st.epoch)
    order = epoch_order(parts.y["train"], len(parts.class_names), sampler, st.data_gen)
    c = len(parts.class_names)
    tot = _Totals(torch.zeros((), dtype=torch.float64, device=parts.device), 0,
                  torch.zeros(c * c, dtype=torch.int64, device=parts.device))
    if st.step:  # resumed mid-epoch: rank 0 carries the all-reduced totals of the steps done
        if st.accum is not None and info.is_main:
            tot.loss_sum += st.accum["loss_sum"]
            tot.seen += int(st.accum["seen"])
            tot.cm += st.accum["cm"].to(parts.device)
        st.data_gen.set_state(st.resume_gen_state)
    st.train_model.train()
    bar = _progress_bar(st)
    log_interval = cfg.train.log_interval
    batches = _batches(st, order)
    while st.step < st.steps_per_epoch:
        _train_step(st, *next(batches), tot)
        st.step += 1
        for cb in st.callbacks:
            cb.on_step_end(st)
        if bar is not None:
            bar.update(1)
        at_log = st.step % log_interval == 0 or st.step == st.steps_per_epoch
        if at_log:
            _show_progress(bar, tot, c)
        if at_log or not info.enabled:
            _agree_on_stop(st)
        if st.stopping:
            break
    batches.close()  # a stopped epoch's DataLoader workers end here
    if bar is not None:
        bar.close()
    if st.step < st.steps_per_epoch:  # stopped: save the partial epoch, over all ranks
        st.elapsed += time.perf_counter() - t0
        tot = tot.all_reduced(info)
        if info.is_main:
            save_checkpoint(st.run_dir / "checkpoints" / "last.pt", _checkpoint(
                st, accum={"loss_sum": tot.loss_sum.cpu(), "seen": tot.seen, "cm": tot.cm.cpu()}))
        return None
    tot = tot.all_reduced(info)
    n_seen = max(1, tot.seen)
    record = {"epoch": st.epoch + 1, "lr": lr, "train_loss": tot.loss_sum.item() / n_seen,
              "train_accuracy": tot.cm.view(c, c).diagonal().sum().item() / n_seen,
              "drw": drw_on, "sampler": sampler, "train_seconds": time.perf_counter() - t0}
    return record, tot.cm.view(c, c)


def _batches(st: TrainState, order: Tensor) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """The batch source: for steps ``st.step ..`` of the epoch, this rank's shard of each
    global batch of ``order`` as ``(x, y, the global batch's indices)``.

    In-memory inputs are indexed; lazy ones are read by ``data.workers`` DataLoader processes
    (a generator seeded from the run seed, epoch and first step), in the same order.
    """
    parts, info, bs = st.parts, st.info, st.batch_size
    y_train = parts.y["train"]
    steps = range(st.step, st.steps_per_epoch)
    glob = [order[s * bs:(s + 1) * bs] for s in steps]
    local = [dist_utils.shard_batch(g, info.rank, info.world_size) for g in glob]
    xs = read_batches(parts.x["train"], local, workers=st.cfg.data.workers,
                      seed=epoch_seed(st.cfg.seed, st.epoch) + st.step,
                      pin_memory=parts.device.type == "cuda")
    for g, idx, xb in zip(glob, local, xs):
        yield xb, y_train[idx], g


def _train_step(st: TrainState, xb: Tensor, yb: Tensor, idx_global: Tensor,
                tot: _Totals) -> None:
    """One optimizer step on this rank's batch ``xb, yb`` of the global batch ``idx_global``."""
    parts, info = st.parts, st.info
    crop_padding, flip = st.augment
    if crop_padding or flip:
        xb = augment_batch(xb, crop_padding=crop_padding, flip=flip, generator=st.data_gen)
    xb = st.norm(xb.to(parts.device, non_blocking=True))
    yb = yb.to(parts.device, non_blocking=True)
    if parts.channels_last:
        xb = xb.contiguous(memory_format=torch.channels_last)
    with autocast(parts):
        out = st.train_model(xb)
    loss = parts.loss_fn(out.float(), yb)
    st.optimizer.zero_grad(set_to_none=True)
    batch_weight: float = yb.shape[0]
    if info.enabled:
        # DDP averages gradients over ranks; rescale each rank's (weighted) mean so the average
        # is the weighted mean of the whole global batch
        loss = loss * dist_utils.global_mean_scale(
            yb, parts.y["train"][idx_global].to(parts.device, non_blocking=True),
            getattr(parts.loss_fn, "weight", None), info.world_size)
        batch_weight = idx_global.shape[0] / info.world_size
    loss.backward()
    st.optimizer.step()
    # running statistics on the device, no host sync; summed over ranks: the global batch's
    # mean loss x its size
    c = len(parts.class_names)
    tot.loss_sum.add_(loss.detach(), alpha=batch_weight)
    tot.seen += yb.shape[0]
    tot.cm.index_add_(0, yb * c + out.detach().argmax(1), st.ones[:yb.shape[0]])


def _agree_on_stop(st: TrainState) -> None:
    """``st.stopping``: true on every rank once one rank asked to stop (a collective: called at
    the same step on every rank).  The loop branches on ``stopping`` only, never on a rank's own
    ``stop_requested``, which a signal sets on each rank at its own moment (between two
    collectives on one rank and not yet on the other, the ranks would wait in different
    collectives)."""
    st.stopping = st.stopping or dist_utils.any_rank(st.stop_requested, st.info)


def _progress_bar(st: TrainState) -> Any:
    if not (st.info.is_main and not st.quiet
            and auto_flag(st.cfg.train.progress, sys.stderr.isatty())):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=st.steps_per_epoch, initial=st.step, leave=False,
                desc=f"epoch {st.epoch + 1}/{st.cfg.train.epochs}", dynamic_ncols=True)


def _show_progress(bar: Any, tot: _Totals, c: int) -> None:
    if bar is not None:
        n_seen = max(1, tot.seen)
        bar.set_postfix(loss=f"{tot.loss_sum.item() / n_seen:.4f}",
                        acc=f"{tot.cm.view(c, c).diagonal().sum().item() / n_seen:.3f}")


# ----------------------------------------------------------------------------------------------
# end of an epoch: evaluate, select, write, checkpoint


def _end_epoch(st: TrainState, record: dict, train_cm: Tensor, t0: float) -> None:
    """Validation (or training) metrics, model selection, ``metrics.jsonl``, callbacks,
    checkpoints."""
    cfg, parts = st.cfg, st.parts
    if not math.isfinite(record["train_loss"]):
        _diverged(st, record)
    select = cfg.eval.select_metric
    if st.best["split"] == "val":
        ev = evaluate_split(parts.model, "val", st.norm, parts, cfg, st.info)
        record["val"] = ev["metrics"]
        if "angles" in ev:
            record["angles"] = ev["angles"]
        score = select_value(ev["metrics"], select, parts.important)
    else:
        train_metrics = metrics_of(train_cm, parts, cfg)
        record["val"] = None
        record["train"] = {k: train_metrics[k] for k in ("balanced_accuracy", "macro_f1")}
        score = select_value(train_metrics, select, parts.important)
    # "best": strictly better (the first epoch always counts); "last": every epoch
    improved = (cfg.eval.select == "last" or st.best["epoch"] == 0
                or (math.isfinite(score) and score > st.best["score"]))
    if improved:
        st.best = {"score": score, "epoch": st.epoch + 1, "split": st.best["split"]}
    record["select"] = {"rule": cfg.eval.select, "metric": select, "split": st.best["split"],
                        "value": score, "best_epoch": st.best["epoch"]}
    st.elapsed += time.perf_counter() - t0
    record["seconds"] = time.perf_counter() - t0
    st.epoch, st.step = st.epoch + 1, 0
    if st.info.is_main:
        _append_jsonl(st.run_dir / "metrics.jsonl", record)
    for cb in st.callbacks:
        cb.on_epoch_end(st, record)
    _agree_on_stop(st)
    if st.info.is_main:
        ckpt_dir = st.run_dir / "checkpoints"
        if improved:  # resumable too: --resume continues from the newest checkpoint
            save_checkpoint(ckpt_dir / "best.pt", _checkpoint(st))
        if (st.epoch % cfg.train.checkpoint_every == 0 or st.epoch == cfg.train.epochs
                or st.stopping):
            save_checkpoint(ckpt_dir / "last.pt", _checkpoint(st))
    val = record["val"]
    st.say(f"epoch {st.epoch}/{cfg.train.epochs}  lr {record['lr']:.4g}  loss "
           f"{record['train_loss']:.4f}  acc {record['train_accuracy']:.4f}"
           + (f"  val acc {val['accuracy']:.4f} bacc {val['balanced_accuracy']:.4f}" if val else "")
           + f"  {record['seconds']:.1f}s" + ("  *" if improved else "")
           + ("  [DRW]" if record["drw"] else "")
           + (f"  [{record['sampler']} sampling]" if record["sampler"] != "none" else ""))


def _checkpoint(st: TrainState, *, accum: dict | None = None) -> dict:
    """The one checkpoint builder (``best.pt`` and ``last.pt``): the model and everything
    ``--resume`` needs (optimizer, random states, progress, a stopped epoch's partial totals)."""
    model = st.parts.model
    return {
        "format": CHECKPOINT_FORMAT, "epoch": st.epoch, "model": model.state_dict(),
        "normalization": st.norm_cpu.state_dict(), "best": st.best,
        "select_metric": st.cfg.eval.select_metric, "class_names": st.parts.class_names,
        "head_type": getattr(model, "head_type", None), "step": st.step,
        "optimizer": st.optimizer.state_dict(), "accum": accum, "rng": rng_state(st.data_gen),
        "seconds": st.elapsed, "train_class_counts": st.parts.counts, "config": st.cfg.to_dict()}


def _append_jsonl(path: Path, record: dict) -> None:
    import os

    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(jsonable(record)) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _truncate_jsonl(path: Path, max_epoch: int) -> None:
    """Keep the lines of epochs ``<= max_epoch`` (a crash may have written one past last.pt);
    rewritten atomically, so a kill at that moment loses nothing."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if int(json.loads(line)["epoch"]) <= max_epoch:
                keep.append(line)
        except (ValueError, KeyError, TypeError):
            continue
    atomic_write_text(path, "".join(k + "\n" for k in keep))


# ----------------------------------------------------------------------------------------------
# the end of a run (rank 0)


def _finish(st: TrainState) -> dict:
    """Evaluate val + test with the selected weights; write outputs.npz, then final.json; print."""
    cfg, parts, model = st.cfg, st.parts, st.parts.model
    model.load_state_dict(load_checkpoint(st.run_dir / "checkpoints" / "best.pt")["model"])
    one = dist_utils.DistInfo()  # rank 0 alone: no collectives
    results, arrays = {}, {}
    c = len(parts.class_names)
    for split in ("val", "test"):
        if (split == "val" or cfg.eval.test) and parts.x[split].shape[0] > 0:
            results[split] = evaluate_split(model, split, st.norm, parts, cfg, one)
            arrays[f"{split}_outputs"] = results[split]["outputs"].cpu().numpy()
            arrays[f"{split}_targets"] = results[split]["targets"].cpu().numpy()
        else:
            arrays[f"{split}_outputs"] = np.zeros((0, c), dtype=np.float32)
            arrays[f"{split}_targets"] = np.zeros((0,), dtype=np.int64)
    atomic_save_npz(st.run_dir / "outputs.npz", **arrays)
    final = _final_record(st)
    final.update({s: results[s]["metrics"] if s in results else None for s in ("val", "test")})
    if getattr(model, "head_type", "linear") == "cosine":
        final["angles"] = {s: results[s].get("angles") if s in results else None
                           for s in ("val", "test")}
    final = jsonable(final)
    atomic_write_json(st.run_dir / "final.json", final)
    if not st.quiet:
        from classaware.metrics import format_table

        split = "test" if final.get("test") else "val"
        if final.get(split):
            rule = (f"selected on {st.best['split']} {final['select_metric']}"
                    if cfg.eval.select == "best" else "the last epoch's model")
            print(f"\n{split} (best epoch {st.best['epoch']}, {rule}):")
            print(format_table(final[split], parts.class_names, important=parts.important))
        print(f"run written to {st.run_dir}", flush=True)
    return final


def _final_record(st: TrainState) -> dict:
    """What ``final.json`` says about the run besides its metrics."""
    cfg, parts, best = st.cfg, st.parts, st.best
    return {
        "class_names": parts.class_names, "train_class_counts": parts.counts,
        "important_classes": parts.important,
        "important_class_names": [parts.class_names[i] for i in parts.important],
        "best_epoch": best["epoch"], "best_score": best["score"], "select": cfg.eval.select,
        "select_metric": cfg.eval.select_metric, "selected_on": best["split"],
        "head_type": getattr(parts.model, "head_type", None), "loss": cfg.loss.name,
        "loss_config": cfg.loss.to_dict(), "model": cfg.model.name, "dataset": cfg.data.name,
        "epochs": st.epoch, "seconds": st.elapsed, "world_size": st.info.world_size}


def _diverged(st: TrainState, record: dict) -> None:
    """A non-finite epoch loss: record it in final.json (rank 0; no metrics, no test) and stop
    with :class:`TrainingDiverged` on every rank.  The checkpoints keep the last finite state."""
    cfg, loss = st.cfg, record["train_loss"]
    msg = (f"training diverged in epoch {st.epoch + 1} of {cfg.train.epochs}: the training loss "
           f"is {loss}; lower optim.lr (it is {cfg.optim.lr:g}"
           + (f"; {record['lr']:g} in this epoch" if record["lr"] != cfg.optim.lr else "") + ")"
           + (f" or optim.weight_decay ({cfg.optim.weight_decay:g})"
              if cfg.optim.weight_decay * record["lr"] >= 1 else "")
           + " and train it again in a new run")
    if st.info.is_main:
        final = _final_record(st)
        final.update(val=None, test=None, diverged={
            "epoch": st.epoch + 1, "train_loss": str(loss), "lr": record["lr"], "message": msg})
        atomic_write_json(st.run_dir / "final.json", jsonable(final))
    raise TrainingDiverged(msg)
