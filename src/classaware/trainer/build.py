"""What a run is built from: config + data → device, tensors, important classes, loss, model.

:func:`build_parts` is shared by training (:func:`~classaware.trainer.loop.run_training`) and
re-evaluation (:func:`~classaware.trainer.evaluate.evaluate_run`).  It resolves the important
classes first (``classaware.classes.resolve_classes``: a bad class name fails before anything
heavy is built), then the loss, then the model.

Example
-------
>>> from classaware.data import load_data
>>> from classaware.trainer.config import load_config
>>> cfg = load_config({"data": {"name": "digits"}, "model": {"name": "mlp"},
...                    "loss": {"important_classes": ["3"]}})
>>> parts = build_parts(cfg, load_data(cfg.data, seed=cfg.seed), torch.device("cpu"))
>>> parts.important, parts.model.head_type
([3], 'linear')
"""

from __future__ import annotations

import functools
import inspect
import random
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from classaware.classes import resolve_classes
from classaware.errors import ConfigError
from classaware.schema import thaw

if TYPE_CHECKING:  # pragma: no cover
    from classaware.data.lazy import LazySplit
    from classaware.trainer.config import LossConfig, RunConfig

__all__ = ["Normalizer", "RunParts", "build_loss", "build_parts", "class_weight_values",
           "effective_config", "epoch_seed", "loss_kwargs", "resolve_device", "seed_everything"]


def seed_everything(seed: int) -> None:
    """Seed python's ``random``, numpy's global generator and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - the global state other code may use
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    """Seed of the data generator (batch order, augmentation) for ``epoch``."""
    return int(np.random.SeedSequence([int(seed) % 2**32, int(epoch)]).generate_state(1)[0])


def resolve_device(spec: str) -> torch.device:
    """``"auto"`` → CUDA when available else CPU; ``"cpu"``, ``"cuda"``, ``"cuda:N"``."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(spec)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: 'cuda' but CUDA is not available here (use 'auto' or "
                          "'cpu')")
    return dev


def auto_flag(value: bool | str, auto: bool) -> bool:
    """A ``true``/``false``/``"auto"`` setting, with ``auto`` standing for ``"auto"``."""
    return auto if value == "auto" else bool(value)


class Normalizer:
    """``x_hat = (x.float() - mean) / std`` per channel (images) or per feature (vectors).

    ``mean`` and ``std`` are computed on the training set (``std`` of a constant channel is 1).
    """

    def __init__(self, mean: Tensor, std: Tensor) -> None:
        self.mean = mean.float()
        self.std = std.float()
        self._inv = 1.0 / self.std

    @classmethod
    def fit(cls, x: Tensor | LazySplit, *, workers: int = 0) -> Normalizer:
        """Mean and std of ``x`` (a tensor on any device, or a lazy split read in chunks by
        ``workers`` processes), summed in float64 (exact for uint8 pixels)."""
        from classaware.data.lazy import iter_chunks

        dims = [0] + list(range(2, x.dim()))          # all but the channel / feature dim
        s = torch.zeros(x.shape[1], dtype=torch.float64)
        s2 = torch.zeros_like(s)
        for chunk in iter_chunks(x, 1024, workers=workers):
            c = chunk.cpu().double()
            s += c.sum(dims)
            s2 += (c * c).sum(dims)
        count = max(1, x.shape.numel() // max(1, x.shape[1]))
        mean = s / count
        std = (s2 / count - mean * mean).clamp_min(0).sqrt()
        std = torch.where(std > 1e-8, std, torch.ones_like(std))
        return cls(mean, std)

    def to(self, device: torch.device, ndim: int) -> Normalizer:
        shape = (1, -1) + (1,) * (ndim - 2)
        return Normalizer(self.mean.to(device).view(shape), self.std.to(device).view(shape))

    def __call__(self, x: Tensor) -> Tensor:
        return (x.float() - self.mean) * self._inv

    def state_dict(self) -> dict:
        return {"mean": self.mean.flatten().cpu(), "std": self.std.flatten().cpu()}

    @classmethod
    def from_state(cls, state: dict) -> Normalizer:
        return cls(torch.as_tensor(state["mean"]), torch.as_tensor(state["std"]))


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


@dataclass
class RunParts:
    """The pieces of a run built from its config and data (see :func:`build_parts`).

    ``x[split]`` is a tensor (in memory, on the device when it fits) or a
    :class:`~classaware.data.lazy.LazySplit` (read per batch); ``y[split]`` always a tensor.
    ``cfg`` is the run's effective config: ``model.name = "auto"`` resolved, and ``"python"``
    for a backbone or Datasets passed from Python (what ``config.toml`` records).
    """

    data: Any
    class_names: list[str]
    counts: list[int]
    important: list[int]
    loss_fn: nn.Module
    drw_weight: Tensor | None
    model: nn.Module
    x: dict[str, Any]
    y: dict[str, Tensor]
    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool
    cfg: RunConfig
    model_note: str       # the model's name, and how "auto" chose it (the run header)


def effective_config(cfg: RunConfig, data: Any, backbone: nn.Module | None) -> RunConfig:
    """``cfg`` as the run uses it: ``model.name`` resolved from the data's shape
    (``"auto"``), or ``"python"`` for a backbone instance; ``data.name = "python"`` for Datasets
    passed from Python."""
    model = cfg.model
    if backbone is not None:
        model = replace(model, name="python")
    model = model.resolved(tuple(data.input_shape), getattr(data, "kind", None))
    data_cfg = replace(cfg.data, name="python") if data.name == "python" else cfg.data
    return replace(cfg, model=model, data=data_cfg)


def build_parts(cfg: RunConfig, data: Any, device: torch.device, *,
                backbone: nn.Module | None = None, load_weights: bool = True) -> RunParts:
    """Important classes, loss, model and device-placed tensors of ``cfg`` on ``data``.

    ``backbone``: your own module instance (``model.name`` becomes ``"python"``);
    ``load_weights``: load ``model.init`` (re-evaluation passes False).
    """
    from classaware.data.lazy import is_lazy
    from classaware.models import build_model

    given, cfg = cfg, effective_config(cfg, data, backbone)
    model_note = cfg.model.name + (f" (auto for input {list(data.input_shape)})"
                                   if given.model.name == "auto" else "")
    class_names = [str(n) for n in data.class_names]
    counts = [int(c) for c in data.train_class_counts]
    important = resolve_classes(cfg.loss.important_classes, class_names,
                                key="loss.important_classes")
    loss_fn, drw_weight = build_loss(cfg, class_names, counts, important, device)
    model = build_model(cfg.model, tuple(data.input_shape), len(class_names), backbone=backbone,
                        load_weights=load_weights)

    is_image = getattr(data, "kind", "image") == "image" and len(data.input_shape) == 3
    # "auto": on for image models on every device (1.2-1.7x faster on a CPU, docs/training.md)
    channels_last = is_image and auto_flag(cfg.train.channels_last, True)
    raw_x = {s: getattr(data, f"x_{s}") for s in ("train", "val", "test")}
    x = {s: v if is_lazy(v) else _as_tensor(v) for s, v in raw_x.items()}
    y = {s: _as_tensor(getattr(data, f"y_{s}"), torch.int64) for s in ("train", "val", "test")}
    lazy = any(is_lazy(v) for v in x.values())
    nbytes = sum(t.numel() * t.element_size() for t in (*x.values(), *y.values())
                 if not is_lazy(t))
    # lazy inputs are read on the CPU: their labels and batch order stay there too
    data_device = device if not lazy and _data_fits_on(device, nbytes) else torch.device("cpu")
    x = {k: v if is_lazy(v) else v.to(data_device) for k, v in x.items()}
    y = {k: v.to(data_device) for k, v in y.items()}
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return RunParts(data, class_names, counts, important, loss_fn, drw_weight, model, x, y,
                    device, amp_dtype(cfg.train.amp, device), channels_last, cfg, model_note)


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``train.amp`` on ``device``: bfloat16, or None (no autocast).

    ``"bf16"``: always; ``"auto"``: on a CUDA device that supports bf16 (on a CPU it stays off,
    so CPU runs stay float32); ``"native"``: as ``"auto"``, and also on a CPU that runs bf16
    natively (:func:`cpu_has_native_bf16`) — elsewhere a CPU emulates bf16 and is slower than
    float32 (8x for small_cnn with oneDNN limited to AVX2, docs/training.md); ``"none"``: never.

    Examples
    --------
    >>> amp_dtype("none", torch.device("cpu")) is None
    True
    >>> amp_dtype("bf16", torch.device("cpu"))
    torch.bfloat16
    """
    cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if (amp == "bf16" or (amp in ("auto", "native") and cuda_bf16)
            or (amp == "native" and device.type == "cpu" and cpu_has_native_bf16())):
        return torch.bfloat16
    return None


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU has bf16 arithmetic in hardware, from the kernel's CPU flags.

    x86: ``avx512_bf16`` or ``amx_bf16``; Arm: the ``bf16`` feature.  False where the flags cannot
    be read (a system without ``/proc/cpuinfo``), so ``train.amp = "native"`` stays float32 there.
    """
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return bool({"avx512_bf16", "amx_bf16", "bf16"} & set(value.split()))
    except OSError:
        pass
    return False


def loss_kwargs(loss: LossConfig, class_names: list[str], class_counts: list[int],
                important: list[int]) -> dict[str, Any]:
    """Keyword arguments for ``classaware.losses.create(loss.name, **kw)``.

    ``loss.params``, plus ``important_classes`` (indices) for losses that take them,
    ``class_counts`` for losses with ``needs_counts`` and ``similarity`` (a C×C float tensor)
    for SimLoss.  ``weight`` is not included: see :func:`class_weight_values`.
    """
    init = inspect.signature(loss.spec.cls.__init__).parameters
    kw = {k: thaw(v) for k, v in loss.params.items()}
    if "important_classes" in init:
        kw["important_classes"] = list(important)
    if loss.spec.needs_counts or "class_counts" in init:
        kw["class_counts"] = list(class_counts)
    if "similarity" in kw:
        kw["similarity"] = _similarity_matrix(kw["similarity"], class_names)
    return kw


def _similarity_matrix(table: dict[str, Any], class_names: list[str]) -> Tensor:
    from classaware import similarity

    c = len(class_names)
    if table["kind"] == "ordinal":
        return similarity.ordinal(c, table["reduction_factor"])
    if table["kind"] == "groups":
        groups = [resolve_classes(g, class_names, key="loss.similarity.groups")
                  for g in table["groups"]]
        # no "within": from_groups' own default
        within = {"within": table["within"]} if "within" in table else {}
        return similarity.from_groups(groups, c, **within)
    m = torch.tensor(table["matrix"], dtype=torch.float32)
    if m.shape != (c, c):
        raise ConfigError(f"loss.similarity.matrix: expected {c}×{c} (the data has {c} classes), "
                          f"got {m.shape[0]}×{m.shape[1]}")
    return m


def class_weight_values(loss: LossConfig, class_names: list[str], class_counts: list[int],
                        important: list[int]) -> list[float] | None:
    """The per-class loss weight from ``loss.class_weight`` (None for ``"none"``).

    ``inverse_frequency``: n_j^(−1) normalised to sum to C; ``class_balanced``:
    (1 − β)/(1 − β^n_j) normalised to sum to C (β = ``loss.beta``); ``important``:
    ``important_weight`` for the important classes, 1 elsewhere; a list is used as given
    (its length must be C).
    """
    from classaware import weights

    cw, c = loss.class_weight, len(class_names)
    if isinstance(cw, tuple):
        if len(cw) != c:
            raise ConfigError(f"loss.class_weight: expected {c} weights (one per class), "
                              f"got {len(cw)}")
        return list(cw)
    if cw == "none":
        return None
    if cw == "important":
        return [loss.important_weight if i in important else 1.0 for i in range(c)]
    w = (weights.inverse_frequency(list(class_counts)) if cw == "inverse_frequency"
         else weights.class_balanced(list(class_counts), beta=loss.beta))
    return [float(x) for x in w.tolist()]


def _check_counts(cfg: RunConfig, class_names: list[str], counts: list[int]) -> None:
    """What is computed from the training counts needs every class in training (a class kept
    without images by ``data.allow_empty_classes`` has no weight or margin)."""
    empty = [class_names[i] for i, n in enumerate(counts) if n == 0]
    if not empty:
        return
    users = []
    if cfg.loss.class_weight in ("inverse_frequency", "class_balanced"):
        users.append(f"loss.class_weight = {cfg.loss.class_weight!r}")
    if cfg.train.drw_epoch is not None:
        users.append("train.drw_epoch (DRW's class-balanced weights)")
    if cfg.loss.spec.needs_counts:
        users.append(f"loss {cfg.loss.name!r}")
    if users:
        raise ConfigError(f"{users[0].split(' ')[0]}: {' and '.join(users)} "
                          f"{'is' if len(users) == 1 else 'are'} computed from the training "
                          f"counts, and class {', '.join(map(repr, empty))} has no training "
                          "images; give every class a training image or choose settings that "
                          "do not use the counts")


def build_loss(cfg: RunConfig, class_names: list[str], counts: list[int], important: list[int],
               device: torch.device) -> tuple[nn.Module, Tensor | None]:
    """The loss module on ``device`` and the DRW weight (None without ``train.drw_epoch``)."""
    from classaware.losses import create
    from classaware.weights import class_balanced

    _check_counts(cfg, class_names, counts)
    kwargs = loss_kwargs(cfg.loss, class_names, counts, important)
    weight = class_weight_values(cfg.loss, class_names, counts, important)
    if weight is not None:
        kwargs["weight"] = torch.as_tensor(weight, dtype=torch.float32)
    try:
        loss_fn = create(cfg.loss.name, **kwargs).to(device)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"loss: {exc}") from None
    drw_weight = None
    if cfg.train.drw_epoch is not None:
        drw = class_balanced(counts, cfg.train.drw_beta)
        drw_weight = _as_tensor(drw, torch.float32).to(device)
    return loss_fn, drw_weight
