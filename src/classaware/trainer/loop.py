"""The training loop: ``run_training(cfg, out_dir)`` and ``evaluate_run(run_dir)``.

One run, top to bottom (read :func:`run_training` like a script):

1. seed python, numpy and torch (``seed``); the batch order and the augmentation of epoch ``e``
   come from a ``torch.Generator`` seeded with ``SeedSequence([seed, e])``;
2. load the data (``classaware.data.load_data``), resolve the important classes to indices;
3. build the model (``classaware.models.build_model``), the loss (``classaware.losses.create``
   with the class counts / important classes / class weight it needs), the optimizer and the
   per-epoch learning-rate schedule (``classaware.trainer.optim``);
4. normalise with the per-channel (images) or per-feature (vectors) mean and standard deviation
   of the training set: ``x_hat = (x - mean) / std`` (stored in every checkpoint);
5. per epoch: set the lr, switch the loss weight to ``class_balanced(counts, drw_beta)`` from
   epoch ``drw_epoch`` on (DRW), shuffle with ``randperm``, make each batch by indexing the
   in-memory tensors, augment it on tensors (random crop + flip), forward under bf16 autocast on
   CUDA, backward, step.  The running loss and the training confusion matrix accumulate on the
   device and are read once per ``log_interval`` steps (tqdm postfix) and at the end of the epoch;
6. evaluate on validation from one confusion matrix (``classaware.metrics``), append one JSON
   line to ``metrics.jsonl``, save ``checkpoints/last.pt`` atomically and ``checkpoints/best.pt``
   when ``eval.select_metric`` improves on validation (training metrics when there is no
   validation split; never test);
7. at the end: reload ``best.pt``, evaluate validation and test, write ``outputs.npz`` and then
   ``final.json`` (atomically, last), print the per-class table.

Epochs are 0-based in the code and in the config (``milestones``, ``drw_epoch``); the ``epoch``
field of ``metrics.jsonl`` and ``best_epoch`` count completed epochs (1-based).

Ctrl-C (SIGINT) asks the loop to stop after the current step: it saves ``last.pt`` (mid-epoch
state included) and returns; ``--resume`` continues from that exact step, and a resumed run ends
with the same weights as an uninterrupted one on CPU.  A second Ctrl-C stops at once.

Example
-------
>>> from classaware.trainer.config import load_config          # doctest: +SKIP
>>> cfg = load_config({"data": {"name": "digits"}, "model": {"name": "mlp"}})  # doctest: +SKIP
>>> result = run_training(cfg, "runs/digits", quiet=True)      # doctest: +SKIP
>>> result.final["test"]["balanced_accuracy"]                   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from classaware.errors import ConfigError
from classaware.trainer import distributed as dist_utils
from classaware.trainer.augment import augment_batch, resolve_augment
from classaware.trainer.checkpoint import (
    atomic_save_npz,
    atomic_write_json,
    clean_tmp,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from classaware.trainer.optim import LRSchedule, build_optimizer

CHECKPOINT_FORMAT = 1


@dataclass
class RunResult:
    """What a finished (or interrupted) run hands back.

    run_dir : the run directory; config : the resolved config; final : the content of
    ``final.json`` (empty when the run was interrupted before it finished).
    """

    run_dir: Path
    config: dict
    final: dict

    @property
    def interrupted(self) -> bool:
        return not self.final


# ----------------------------------------------------------------------------------------------
# small helpers


def seed_everything(seed: int) -> None:
    """Seed python's ``random``, numpy's global generator and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - the global state other code may use
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    """Seed of the data generator (batch order, augmentation) for ``epoch``."""
    return int(np.random.SeedSequence([int(seed) % 2**32, int(epoch)]).generate_state(1)[0])


def resolve_device(spec: object) -> torch.device:
    """``"auto"`` → CUDA when available else CPU; ``"cpu"``, ``"cuda"``, ``"cuda:N"``."""
    spec = "auto" if spec is None else str(spec)
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError as exc:
        raise ConfigError(f"train.device: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device = 'cuda' but CUDA is not available here (use 'auto' or 'cpu')")
    return dev


def _flag(value: object, auto: bool) -> bool:
    if isinstance(value, str) and value.lower() == "auto":
        return auto
    return bool(value)


class Normalizer:
    """``x_hat = (x.float() - mean) / std`` per channel (images) or per feature (vectors).

    ``mean`` and ``std`` are computed on the training set (``std`` of a constant channel is 1).
    """

    def __init__(self, mean: Tensor, std: Tensor) -> None:
        self.mean = mean.float()
        self.std = std.float()
        self._inv = 1.0 / self.std

    @classmethod
    def fit(cls, x: Tensor) -> Normalizer:
        dims = [0] + list(range(2, x.dim()))          # all but the channel / feature dim
        s = torch.zeros(x.shape[1], dtype=torch.float64)
        s2 = torch.zeros_like(s)
        for chunk in torch.split(x, 1024):
            c = chunk.double()
            s += c.sum(dims)
            s2 += (c * c).sum(dims)
        count = max(1, x.numel() // max(1, x.shape[1]))
        mean = s / count
        std = (s2 / count - mean * mean).clamp_min(0).sqrt()
        std = torch.where(std > 1e-8, std, torch.ones_like(std))
        return cls(mean, std)

    def to(self, device: torch.device, ndim: int) -> Normalizer:
        shape = (1, -1) + (1,) * (ndim - 2)
        out = Normalizer(self.mean.to(device).view(shape), self.std.to(device).view(shape))
        return out

    def __call__(self, x: Tensor) -> Tensor:
        return (x.float() - self.mean) * self._inv

    def state_dict(self) -> dict:
        return {"mean": self.mean.flatten().cpu(), "std": self.std.flatten().cpu()}

    @classmethod
    def from_state(cls, state: dict) -> Normalizer:
        return cls(torch.as_tensor(state["mean"]), torch.as_tensor(state["std"]))


class _StopRequest:
    """SIGINT handler: the first Ctrl-C asks the loop to stop after the current step."""

    def __init__(self, verbose: bool) -> None:
        self.requested = False
        self.verbose = verbose
        self._old: Any = None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:  # second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.requested = True
        print("\nclassaware: stopping after this step and saving checkpoints/last.pt "
              "(Ctrl-C again to abort at once)", file=sys.stderr, flush=True)

    def __enter__(self) -> _StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def _jsonable(obj: Any) -> Any:
    """Tensors/arrays → lists, numpy scalars → python, NaN/inf → None."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (Tensor, np.ndarray)):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(_jsonable(record)) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _truncate_jsonl(path: Path, max_epoch: int) -> None:
    """Keep the lines of epochs ``<= max_epoch`` (a crash may have written one past last.pt)."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if int(json.loads(line)["epoch"]) <= max_epoch:
                keep.append(line)
        except (ValueError, KeyError, TypeError):
            continue
    path.write_text("".join(k + "\n" for k in keep), encoding="utf-8")


def select_value(metrics: dict, name: str, important: list[int]) -> float:
    """The model-selection score ``name`` read from a metrics dict (higher is better).

    ``important_recall_mean`` is the mean recall of the important classes; any other name must
    be a number in ``metrics`` (``accuracy``, ``balanced_accuracy``, ``macro_f1``, ...).
    """
    if name == "important_recall_mean":
        recall = metrics["per_class_recall"]
        vals = [recall[i] for i in important]
        vals = [float(v) for v in vals if v is not None]
        return float(np.mean(vals)) if vals else float("nan")
    if name not in metrics or not isinstance(metrics[name], (int, float)):
        raise ConfigError(f"eval.select_metric: {name!r} is not a metric "
                          "(accuracy, balanced_accuracy, macro_f1, important_recall_mean, ...)")
    return float(metrics[name])


def _as_tensor(a: Any, dtype: torch.dtype | None = None) -> Tensor:
    t = a if isinstance(a, Tensor) else torch.as_tensor(np.asarray(a))
    return t.to(dtype) if dtype is not None and t.dtype != dtype else t


def _data_fits_on(device: torch.device, nbytes: int) -> bool:
    if device.type != "cuda":
        return True
    try:
        free, _total = torch.cuda.mem_get_info(device)
    except Exception:  # pragma: no cover
        return False
    return nbytes < 0.4 * free


# ----------------------------------------------------------------------------------------------
# the pieces a run (and evaluate_run) is built from


@dataclass
class _Setup:
    data: Any
    class_names: list[str]
    counts: list[int]
    important: list[int]
    model: nn.Module
    x: dict[str, Tensor]
    y: dict[str, Tensor]
    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool


def _load_data(cfg: dict) -> Any:
    from classaware.data import load_data

    return load_data(cfg["data"], seed=int(cfg.get("seed", 0)))


def _resolve_classes(cfg: dict, class_names: list[str]) -> list[int]:
    from classaware.trainer.config import resolve_classes

    return [int(i) for i in resolve_classes(cfg, class_names)]


def _build(cfg: dict, data: Any, device: torch.device) -> _Setup:
    """Model, device-placed tensors and numeric options shared by training and evaluation."""
    from classaware.models import build_model

    tc = cfg.get("train", {})
    class_names = list(data.class_names)
    counts = [int(c) for c in data.train_class_counts]
    important = _resolve_classes(cfg, class_names)
    model = build_model(cfg["model"], tuple(data.input_shape), len(class_names))

    is_image = getattr(data, "kind", "image") == "image" and len(data.input_shape) == 3
    # "auto": on for image models on every device (1.2-1.7x faster on this CPU, see docs/training.md)
    channels_last = is_image and _flag(tc.get("channels_last", "auto"), True)
    amp = str(tc.get("amp", "auto")).lower()
    if amp not in ("auto", "bf16", "none", "true", "false"):
        raise ConfigError(f"train.amp must be 'auto', 'bf16' or 'none', got {amp!r}")
    use_bf16 = amp in ("bf16", "true") or (
        amp == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported())
    amp_dtype = torch.bfloat16 if use_bf16 else None

    x = {s: _as_tensor(getattr(data, f"x_{s}")) for s in ("train", "val", "test")}
    y = {s: _as_tensor(getattr(data, f"y_{s}"), torch.int64) for s in ("train", "val", "test")}
    nbytes = sum(t.numel() * t.element_size() for t in (*x.values(), *y.values()))
    data_device = device if _data_fits_on(device, nbytes) else torch.device("cpu")
    x = {k: v.to(data_device) for k, v in x.items()}
    y = {k: v.to(data_device) for k, v in y.items()}

    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return _Setup(data, class_names, counts, important, model, x, y, device, amp_dtype,
                  channels_last)


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _build_loss(cfg: dict, class_names: list[str], counts: list[int], important: list[int],
                device: torch.device) -> tuple[nn.Module, Any, Tensor | None, int | None]:
    """(loss module, spec, DRW weight or None, drw_epoch or None)."""
    from classaware.losses import create, spec
    from classaware.trainer.config import class_weight_values, loss_kwargs

    name = cfg["loss"]["name"]
    s = spec(name)
    kwargs = dict(loss_kwargs(cfg, class_names, counts))
    weight = class_weight_values(cfg, class_names, counts)
    if weight is not None:
        if not s.takes_weight:
            raise ConfigError(f"loss.class_weight: loss {name!r} takes no class weight")
        kwargs["weight"] = torch.as_tensor(weight, dtype=torch.float32)
    try:
        loss_fn = create(name, **kwargs)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"loss: {exc}") from None
    loss_fn.to(device)

    tc = cfg.get("train", {})
    drw_epoch = tc.get("drw_epoch")
    drw_weight = None
    if drw_epoch is not None:
        if not s.takes_weight:
            raise ConfigError(f"train.drw_epoch: loss {name!r} takes no class weight, so DRW "
                              "cannot re-weight it")
        from classaware.weights import class_balanced

        beta = float(tc.get("drw_beta", 0.9999))
        drw_weight = _as_tensor(class_balanced(counts, beta), torch.float32).to(device)
        drw_epoch = int(drw_epoch)
    return loss_fn, s, drw_weight, drw_epoch


@torch.no_grad()
def _predict(model: nn.Module, x: Tensor, norm: Normalizer, setup: _Setup, batch_size: int,
             want_features: bool) -> tuple[Tensor, Tensor | None]:
    """Raw head outputs (float32, [N, C]) and, for cosine heads, features [N, D]."""
    was_training = model.training
    model.eval()
    outs, feats = [], []
    try:
        for start in range(0, x.shape[0], batch_size):
            xb = norm(x[start:start + batch_size].to(setup.device, non_blocking=True))
            if setup.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with _autocast(setup.device, setup.amp_dtype):
                if want_features:
                    f = model.features(xb)
                    out = model.head(f)
                    feats.append(f.float())
                else:
                    out = model(xb)
            outs.append(out.float())
    finally:
        model.train(was_training)
    c = getattr(model, "num_classes", None) or len(setup.class_names)
    out = torch.cat(outs) if outs else torch.zeros(0, c, device=setup.device)
    feat = (torch.cat(feats) if feats else None) if want_features else None
    return out, feat


def _head_weight(model: nn.Module) -> Tensor:
    return model.head.weight.detach().float()


def _metrics(cm: Tensor, setup: _Setup, cfg: dict) -> dict:
    from classaware.metrics import metrics_from_confusion

    thresholds = tuple(cfg.get("eval", {}).get("shot_thresholds", (100, 20)))
    return metrics_from_confusion(cm.cpu(), class_names=setup.class_names,
                                  important=setup.important, train_counts=setup.counts,
                                  shot_thresholds=thresholds)


def _evaluate_split(model: nn.Module, split: str, norm: Normalizer, setup: _Setup, cfg: dict,
                    info: dist_utils.DistInfo | None = None) -> dict:
    """Metrics (+ angles for cosine heads) of ``split``; sharded over ranks under DDP."""
    x, y = setup.x[split], setup.y[split]
    c = len(setup.class_names)
    bs = int(cfg.get("train", {}).get("eval_batch_size", 1024))
    from classaware.metrics import confusion_matrix

    cosine = getattr(model, "head_type", "linear") == "cosine"
    info = info or dist_utils.DistInfo()
    lo, hi = dist_utils.shard_range(x.shape[0], info.rank, info.world_size)
    out, feat = _predict(model, x[lo:hi], norm, setup, bs, cosine)
    targets = y[lo:hi].to(setup.device)
    cm = confusion_matrix(targets, out.argmax(1), c)
    cm = dist_utils.all_reduce_sum(cm, info)
    result = {"metrics": _metrics(cm, setup, cfg), "outputs": out, "targets": targets}
    if cosine:
        from classaware.metrics import angle_stats

        feat_all = dist_utils.all_gather_rows(feat, info)
        tgt_all = dist_utils.all_gather_rows(targets, info)
        result["angles"] = angle_stats(feat_all.cpu(), _head_weight(model).cpu(), tgt_all.cpu(), c)
    return result


# ----------------------------------------------------------------------------------------------
# the run


def run_training(cfg: dict, out_dir: str | Path, *, resume: bool = False,
                 quiet: bool = False, data: Any = None) -> RunResult:
    """Train one run described by the resolved config ``cfg`` into ``out_dir``.

    Parameters
    ----------
    cfg : dict
        The resolved, validated config (``classaware.trainer.config.load_config``).
    out_dir : path
        The run directory (created).  Without ``resume`` it must not hold a run already.
    resume : bool
        Continue from ``out_dir/checkpoints/last.pt`` (exactly where it stopped).
    quiet : bool
        No progress bar, no per-epoch lines, no final table.
    data : DataBundle, optional
        The data ``load_data(cfg["data"], seed=cfg["seed"])`` returns, already loaded (a study
        worker's cache); None loads it.  It is read, never written.

    Returns
    -------
    RunResult
        ``final`` is the content of ``final.json``; empty if the run was stopped by Ctrl-C.
    """
    tc, ec, oc = cfg.get("train", {}), cfg.get("eval", {}), cfg.get("optim", {})
    seed = int(cfg.get("seed", 0))
    epochs = int(tc.get("epochs", 5))
    batch_size = int(tc.get("batch_size", 128))
    log_interval = max(1, int(tc.get("log_interval", 50)))
    checkpoint_every = max(1, int(tc.get("checkpoint_every", 1)))
    select_metric = str(ec.get("select_metric", "accuracy"))
    run_dir = Path(out_dir)
    ckpt_dir = run_dir / "checkpoints"

    device = resolve_device(tc.get("device", "auto"))
    info = dist_utils.setup(device.type)
    if info.enabled and device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
    main = info.is_main
    say = (lambda *a: print(*a, flush=True)) if (main and not quiet) else (lambda *a: None)
    if int(tc.get("num_threads", 0) or 0) > 0:
        torch.set_num_threads(int(tc["num_threads"]))

    try:
        # ---- the run directory (only rank 0 looks at it; the verdict is shared) -------------
        problem = None
        if main and resume and not (ckpt_dir / "last.pt").is_file():
            problem = f"--resume: no checkpoint at {ckpt_dir / 'last.pt'}"
        elif main and not resume and ((run_dir / "metrics.jsonl").exists()
                                      or (ckpt_dir / "last.pt").exists()):
            problem = (f"{run_dir} already holds a run; use --resume to continue it or choose "
                       "another --out")
        problem = dist_utils.broadcast_object(problem, info)
        if problem:
            raise ConfigError(str(problem))

        # ---- seed, data, model, loss, optimizer ----------------------------------------------
        seed_everything(seed)
        data = _load_data(cfg) if data is None else data
        setup = _build(cfg, data, device)
        model, C = setup.model, len(setup.class_names)
        loss_fn, loss_spec, drw_weight, drw_epoch = _build_loss(
            cfg, setup.class_names, setup.counts, setup.important, device)
        if loss_spec.input == "cosine" and getattr(model, "head_type", None) != "cosine":
            raise ConfigError(f"loss {cfg['loss']['name']!r} needs model.head = 'cosine'")
        base_weight = getattr(loss_fn, "weight", None)
        optimizer = build_optimizer(model.parameters(), oc)
        schedule = LRSchedule(oc, epochs=epochs)
        crop_padding, flip = resolve_augment(tc, dataset=cfg["data"].get("name", ""),
                                             kind=getattr(data, "kind", "image"),
                                             input_shape=tuple(data.input_shape))
        x_train, y_train = setup.x["train"], setup.y["train"]
        n_train = x_train.shape[0]
        if n_train == 0:
            raise ConfigError("the training set is empty")
        steps_per_epoch = math.ceil(n_train / batch_size)
        last = n_train - (steps_per_epoch - 1) * batch_size
        if steps_per_epoch > 1 and last < 2 * info.world_size:
            steps_per_epoch -= 1  # a last batch too small for batch norm (per rank) is dropped
        has_val = setup.x["val"].shape[0] > 0
        norm_cpu = Normalizer.fit(x_train.cpu())
        norm = norm_cpu.to(device, x_train.dim())
        data_gen = torch.Generator(device=x_train.device)

        train_model: nn.Module = model
        if bool(tc.get("compile", False)):
            train_model = torch.compile(model)
        if info.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            train_model = DDP(train_model, device_ids=[device.index] if device.type == "cuda"
                              else None)

        # ---- state: fresh or resumed ---------------------------------------------------------
        start_epoch, start_step = 0, 0
        best = {"score": -math.inf, "epoch": 0, "split": "val" if has_val else "train"}
        accum: dict | None = None
        resume_gen_state: Tensor | None = None
        elapsed = 0.0
        if resume:
            state = load_checkpoint(ckpt_dir / "last.pt") if main else None
            state = dist_utils.broadcast_object(state, info)
            assert isinstance(state, dict)
            if list(state["class_names"]) != setup.class_names:
                raise ConfigError("--resume: the data's classes differ from the checkpoint's")
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            norm_cpu = Normalizer.from_state(state["normalization"])
            norm = norm_cpu.to(device, x_train.dim())
            start_epoch, start_step = int(state["epoch"]), int(state["step"])
            best = dict(state["best"])
            accum = state.get("accum")
            elapsed = float(state.get("seconds", 0.0))
            set_rng_state(state["rng"])  # the data generator is set when its epoch starts
            resume_gen_state = state["rng"].get("data_generator")
            if main:
                _truncate_jsonl(run_dir / "metrics.jsonl", start_epoch)
            say(f"classaware: resuming {run_dir} at epoch {start_epoch + 1}"
                + (f", step {start_step}" if start_step else ""))
        if main:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            clean_tmp(ckpt_dir)
            clean_tmp(run_dir)
            _write_config(cfg, run_dir / "config.toml")
            (run_dir / "final.json").unlink(missing_ok=True)

        def checkpoint(epoch: int, step: int, acc: dict | None) -> dict:
            return {
                "format": CHECKPOINT_FORMAT, "epoch": epoch, "step": step,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(), "best": best, "accum": acc,
                "rng": rng_state(data_gen), "normalization": norm_cpu.state_dict(),
                "seconds": elapsed, "class_names": setup.class_names,
                "train_class_counts": setup.counts, "head_type": getattr(model, "head_type", None),
                "config": cfg,
            }

        # ---- train ---------------------------------------------------------------------------
        progress = tc.get("progress", "auto")
        show_bar = main and not quiet and _flag(progress, sys.stderr.isatty())
        ones = torch.ones(batch_size, dtype=torch.int64, device=device)
        say(f"classaware: {cfg['data'].get('name')} ({n_train} train, "
            f"{setup.x['val'].shape[0]} val, {setup.x['test'].shape[0]} test), "
            f"{cfg['model'].get('name')}/{getattr(model, 'head_type', '?')}, loss "
            f"{cfg['loss']['name']}, {epochs} epochs on {device}"
            + (f" x{info.world_size} ranks" if info.enabled else ""))
        stopped = False
        with _StopRequest(verbose=not quiet) as stop:
            for epoch in range(start_epoch, epochs):
                t0 = time.perf_counter()
                lr = schedule.apply(optimizer, epoch)
                drw_on = drw_epoch is not None and epoch >= drw_epoch
                if drw_epoch is not None:
                    loss_fn.weight = drw_weight if drw_on else base_weight
                data_gen.manual_seed(epoch_seed(seed, epoch))
                perm = torch.randperm(n_train, generator=data_gen, device=x_train.device)
                loss_sum = torch.zeros((), dtype=torch.float64, device=device)
                seen = 0  # images this rank trained on this epoch (known on the host)
                cm = torch.zeros(C * C, dtype=torch.int64, device=device)
                step = 0
                if epoch == start_epoch and start_step:
                    step = start_step
                    if accum is not None and main:  # rank 0 carries the all-reduced totals
                        loss_sum += accum["loss_sum"]
                        seen += int(accum["seen"])
                        cm += accum["cm"].to(device)
                    data_gen.set_state(resume_gen_state)
                train_model.train()
                bar = None
                if show_bar:
                    from tqdm.auto import tqdm

                    bar = tqdm(total=steps_per_epoch, initial=step, leave=False,
                               desc=f"epoch {epoch + 1}/{epochs}", dynamic_ncols=True)
                while step < steps_per_epoch:
                    idx_global = perm[step * batch_size:(step + 1) * batch_size]
                    idx = dist_utils.shard_batch(idx_global, info.rank, info.world_size)
                    xb, yb = x_train[idx], y_train[idx]
                    if crop_padding or flip:
                        xb = augment_batch(xb, crop_padding=crop_padding, flip=flip,
                                           generator=data_gen)
                    xb = norm(xb.to(device, non_blocking=True))
                    yb = yb.to(device, non_blocking=True)
                    if setup.channels_last:
                        xb = xb.contiguous(memory_format=torch.channels_last)
                    with _autocast(device, setup.amp_dtype):
                        out = train_model(xb)
                    loss = loss_fn(out.float(), yb)
                    optimizer.zero_grad(set_to_none=True)
                    if info.enabled:
                        # DDP averages gradients over ranks; rescale each rank's (weighted) mean
                        # so the average is the weighted mean of the whole global batch
                        loss_w = getattr(loss_fn, "weight", None)
                        loss_scale = dist_utils.global_mean_scale(
                            yb, y_train[idx_global].to(device, non_blocking=True), loss_w,
                            info.world_size)
                        loss = loss * loss_scale
                        loss.backward()
                        batch_weight = idx_global.shape[0] / info.world_size
                    else:
                        loss.backward()
                        batch_weight = yb.shape[0]
                    optimizer.step()
                    # running statistics: on the device, no host sync
                    # summed over ranks: the global batch's mean loss x its size
                    loss_sum.add_(loss.detach(), alpha=batch_weight)
                    seen += yb.shape[0]
                    cm.index_add_(0, yb * C + out.detach().argmax(1), ones[:yb.shape[0]])
                    step += 1
                    _after_step_hook(epoch, step)
                    if bar is not None:
                        bar.update(1)
                    if step % log_interval == 0 or step == steps_per_epoch:
                        if bar is not None:
                            n_seen = max(1, seen)
                            bar.set_postfix(loss=f"{loss_sum.item() / n_seen:.4f}",
                                            acc=f"{cm.view(C, C).diagonal().sum().item() / n_seen:.3f}")
                        if info.enabled:  # agree on stopping (every rank at the same step)
                            flag = torch.tensor([float(stop.requested)], device=device)
                            stop.requested = bool(dist_utils.all_reduce_sum(flag, info).item())
                    if stop.requested and (not info.enabled or step % log_interval == 0
                                           or step == steps_per_epoch):
                        break
                if bar is not None:
                    bar.close()
                if stop.requested and step < steps_per_epoch:
                    elapsed += time.perf_counter() - t0
                    seen_t = torch.tensor(seen, device=device)
                    for t in (loss_sum, seen_t, cm):  # the partial epoch's totals over all ranks
                        dist_utils.all_reduce_sum(t, info)
                    acc = {"loss_sum": loss_sum.cpu(), "seen": int(seen_t.item()), "cm": cm.cpu()}
                    if main:
                        save_checkpoint(ckpt_dir / "last.pt", checkpoint(epoch, step, acc))
                    stopped = True
                    break

                # ---- end of epoch: training metrics, validation, checkpoints -----------------
                dist_utils.all_reduce_sum(loss_sum, info)
                dist_utils.all_reduce_sum(cm, info)
                seen_t = dist_utils.all_reduce_sum(torch.tensor(seen, device=device), info)
                n_seen = max(1, int(seen_t.item()))
                train_cm = cm.view(C, C)
                train_loss = loss_sum.item() / n_seen
                train_acc = train_cm.diagonal().sum().item() / n_seen
                train_seconds = time.perf_counter() - t0  # the steps, synchronised by .item()
                record: dict[str, Any] = {"epoch": epoch + 1, "lr": lr, "train_loss": train_loss,
                                          "train_accuracy": train_acc, "drw": drw_on,
                                          "train_seconds": train_seconds}
                if has_val:
                    ev = _evaluate_split(model, "val", norm, setup, cfg, info)
                    record["val"] = ev["metrics"]
                    if "angles" in ev:
                        record["angles"] = ev["angles"]
                    score = select_value(ev["metrics"], select_metric, setup.important)
                else:
                    train_metrics = _metrics(train_cm, setup, cfg)
                    record["val"] = None
                    record["train"] = {k: train_metrics[k] for k in
                                       ("balanced_accuracy", "macro_f1") if k in train_metrics}
                    score = select_value(train_metrics, select_metric, setup.important)
                improved = math.isfinite(score) and score > best["score"] or best["epoch"] == 0
                if improved:
                    best = {"score": score, "epoch": epoch + 1, "split": best["split"]}
                record["select"] = {"metric": select_metric, "split": best["split"],
                                    "value": score, "best_epoch": best["epoch"]}
                elapsed += time.perf_counter() - t0
                record["seconds"] = time.perf_counter() - t0
                if main:
                    _append_jsonl(run_dir / "metrics.jsonl", record)
                    if improved:
                        save_checkpoint(ckpt_dir / "best.pt", {
                            "format": CHECKPOINT_FORMAT, "model": model.state_dict(),
                            "normalization": norm_cpu.state_dict(), "epoch": epoch + 1,
                            "score": score, "select_metric": select_metric,
                            "class_names": setup.class_names,
                            "head_type": getattr(model, "head_type", None)})
                    if (epoch + 1) % checkpoint_every == 0 or epoch + 1 == epochs or \
                            stop.requested:
                        save_checkpoint(ckpt_dir / "last.pt", checkpoint(epoch + 1, 0, None))
                val_txt = ""
                if has_val:
                    m = record["val"]
                    val_txt = (f"  val acc {m['accuracy']:.4f} bacc {m['balanced_accuracy']:.4f}")
                say(f"epoch {epoch + 1}/{epochs}  lr {lr:.4g}  loss {train_loss:.4f}  "
                    f"acc {train_acc:.4f}{val_txt}  {record['seconds']:.1f}s"
                    + ("  *" if improved else "") + ("  [DRW]" if drw_on else ""))
                if stop.requested:
                    stopped = epoch + 1 < epochs
                    break

        if stopped:
            if main:
                print(f"classaware: interrupted; checkpoints/last.pt saved. Continue with:\n"
                      f"  classaware train --out {run_dir} --resume", file=sys.stderr, flush=True)
            dist_utils.barrier(info)
            return RunResult(run_dir, cfg, {})

        # ---- final evaluation with the best model (rank 0) -----------------------------------
        final: dict = {}
        if main:
            best_state = load_checkpoint(ckpt_dir / "best.pt")
            model.load_state_dict(best_state["model"])
            final = _finish(model, norm, setup, cfg, run_dir, best, elapsed, info, quiet)
        dist_utils.barrier(info)
        return RunResult(run_dir, cfg, final)
    finally:
        dist_utils.teardown(info)


def _after_step_hook(epoch: int, step: int) -> None:
    """Called after every training step; tests replace it to simulate Ctrl-C or a crash."""


def _write_config(cfg: dict, path: Path) -> None:
    from classaware.trainer.config import dump_config

    dump_config(cfg, path)  # atomic (tmp + rename); None values are left out


def _finish(model: nn.Module, norm: Normalizer, setup: _Setup, cfg: dict, run_dir: Path,
            best: dict, elapsed: float, info: dist_utils.DistInfo, quiet: bool) -> dict:
    """Evaluate val + test with the best weights; write outputs.npz, then final.json; print."""
    cosine = getattr(model, "head_type", "linear") == "cosine"
    one = dist_utils.DistInfo()  # rank 0 alone: no collectives
    splits = ["val"] + (["test"] if cfg.get("eval", {}).get("test", True) else [])
    results, arrays = {}, {}
    c = len(setup.class_names)
    for split in ("val", "test"):
        if split in splits and setup.x[split].shape[0] > 0:
            results[split] = _evaluate_split(model, split, norm, setup, cfg, one)
            arrays[f"{split}_outputs"] = results[split]["outputs"].cpu().numpy()
            arrays[f"{split}_targets"] = results[split]["targets"].cpu().numpy()
        else:
            arrays[f"{split}_outputs"] = np.zeros((0, c), dtype=np.float32)
            arrays[f"{split}_targets"] = np.zeros((0,), dtype=np.int64)
    atomic_save_npz(run_dir / "outputs.npz", **arrays)
    lc = cfg["loss"]
    final = {
        "class_names": setup.class_names,
        "train_class_counts": setup.counts,
        "important_classes": setup.important,
        "important_class_names": [setup.class_names[i] for i in setup.important],
        "best_epoch": best["epoch"],
        "best_score": best["score"],
        "select_metric": cfg.get("eval", {}).get("select_metric", "accuracy"),
        "selected_on": best["split"],
        "head_type": getattr(model, "head_type", None),
        "loss": lc["name"],
        "loss_config": lc,
        "model": cfg["model"].get("name"),
        "dataset": cfg["data"].get("name"),
        "epochs": int(cfg.get("train", {}).get("epochs", 0)),
        "seconds": elapsed,
        "world_size": info.world_size,
        "val": results["val"]["metrics"] if "val" in results else None,
        "test": results["test"]["metrics"] if "test" in results else None,
    }
    if cosine:
        final["angles"] = {s: results[s].get("angles") if s in results else None
                           for s in ("val", "test")}
    final = _jsonable(final)
    atomic_write_json(run_dir / "final.json", final)
    if not quiet:
        from classaware.metrics import format_table

        for split in ("test", "val"):
            if final.get(split):
                print(f"\n{split} (best epoch {best['epoch']}, selected on {best['split']} "
                      f"{final['select_metric']}):")
                print(format_table(final[split], setup.class_names, important=setup.important))
                break
        print(f"run written to {run_dir}", flush=True)
    return final


# ----------------------------------------------------------------------------------------------
# re-evaluation of a saved run


def evaluate_run(run_dir: str | Path, data_overrides: dict | None = None,
                 split: str = "test") -> dict:
    """Re-evaluate the best model of ``run_dir`` on ``split`` of its (optionally overridden) data.

    Rebuilds the model from ``run_dir/config.toml`` and ``checkpoints/best.pt`` (its stored
    normalisation included); ``data_overrides`` are merged into the ``[data]`` section (for
    example another ``dir`` or ``imbalance``).  Returns the metrics dict of
    :func:`classaware.metrics.metrics_from_confusion`, plus ``split``, ``num_samples`` and, for
    cosine heads, ``angles``.
    """
    from classaware.trainer.config import load_config

    run_dir = Path(run_dir)
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    cfg_path = run_dir / "config.toml"
    if not cfg_path.is_file():
        raise ConfigError(f"{run_dir} is not a run directory (no config.toml)")
    ckpt_path = run_dir / "checkpoints" / "best.pt"
    if not ckpt_path.is_file():
        ckpt_path = run_dir / "checkpoints" / "last.pt"
    if not ckpt_path.is_file():
        raise ConfigError(f"{run_dir} has no checkpoint (checkpoints/best.pt)")
    overrides = {"data": dict(data_overrides)} if data_overrides else {}
    cfg = load_config(str(cfg_path), overrides)
    device = resolve_device(cfg.get("train", {}).get("device", "auto"))
    seed_everything(int(cfg.get("seed", 0)))
    data = _load_data(cfg)
    setup = _build(cfg, data, device)
    state = load_checkpoint(ckpt_path)
    if list(state["class_names"]) != setup.class_names:
        raise ConfigError(f"the data's classes {setup.class_names} differ from the model's "
                          f"{list(state['class_names'])}")
    setup.model.load_state_dict(state["model"])
    norm = Normalizer.from_state(state["normalization"]).to(device, setup.x["train"].dim())
    res = _evaluate_split(setup.model, split, norm, setup, cfg)
    out = dict(res["metrics"])
    out["split"] = split
    out["num_samples"] = int(setup.x[split].shape[0])
    if "angles" in res:
        out["angles"] = res["angles"]
    return _jsonable(out)
