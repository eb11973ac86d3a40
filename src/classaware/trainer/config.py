"""Run configuration: the typed schema, TOML loading, ``--set`` overrides.

A run is one TOML document with the sections ``[data]``, ``[model]``, ``[loss]``, ``[optim]``,
``[train]``, ``[eval]`` and a top-level ``seed``; ``docs/config.md`` documents every key.
:func:`load_config` resolves a config (defaults <- file/name/dict <- overrides) into a frozen
:class:`RunConfig` — one typed section per table (:class:`~classaware.data.DataConfig`,
:class:`~classaware.models.ModelConfig`, :class:`LossConfig`, :class:`OptimConfig`,
:class:`TrainConfig`, :class:`EvalConfig`) — validating it completely and raising
:class:`~classaware.errors.ConfigError` with a one-line message naming the dotted key, before
anything heavy happens.  Defaults, types, ranges and cross-field rules live here, once: the code
downstream reads attributes (``cfg.optim.lr``) and never re-defaults a key.

Merging (``merge_config``), ``--set`` parsing (``parse_set``) and ``dump_config`` work on plain
dicts (``RunConfig.to_dict()``), so a study can build variant configs as dicts.

Example
-------
>>> from classaware.trainer.config import load_config
>>> cfg = load_config("fmnist-camri", ["optim.lr=0.01", "train.epochs=2"])
>>> cfg.optim.lr, cfg.loss.name, cfg.loss.params["scale"]
(0.01, 'camri', 16.0)
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import importlib.resources
import inspect
import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from classaware._io import atomic_write_text
from classaware.classes import class_list
from classaware.data.config import DataConfig
from classaware.errors import ConfigError
from classaware.models.classifier import ModelConfig
from classaware.schema import (
    FrozenMap,
    Section,
    boolean,
    choice,
    expected,
    integer,
    is_int,
    is_number,
    number,
    optional,
    section,
    sequence,
    setting,
    show,
    tristate,
    unknown_key,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["SECTIONS", "EvalConfig", "LossConfig", "OptimConfig", "RunConfig", "TrainConfig",
           "dump_config", "load_config", "loss_params", "merge_config", "parse_set",
           "shipped_configs"]

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine")
CLASS_WEIGHTS = ("none", "inverse_frequency", "class_balanced", "important")
SELECT_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "important_recall_mean")
AMP_MODES = ("auto", "native", "bf16", "none")
SELECT_RULES = ("best", "last")
#: ``train.num_threads`` at most (the largest machines have a few hundred cores)
MAX_THREADS = 1024
SIMILARITY_KINDS = {"groups": ("kind", "groups", "within"), "ordinal": ("kind", "reduction_factor"),
                    "matrix": ("kind", "matrix")}
#: Loss constructor parameters the trainer fills itself, and those that are not settable.
_TRAINER_FILLED = ("self", "class_counts", "weight", "important_classes")
_NOT_SETTABLE = ("reduction", "ignore_index")
_NULL_WORDS = ("none", "null")
_LOOSE_FLOAT = re.compile(r"[+-]?(\d+\.\d*|\.\d+)([eE][+-]?\d+)?")
#: common other spellings of a key, for "did you mean" hints
_ALIASES = {"learning_rate": "lr", "wd": "weight_decay", "epoch": "epochs", "bs": "batch_size",
            "batch": "batch_size", "optimizer": "name", "scheduler": "schedule",
            "lr_schedule": "schedule", "warmup": "warmup_epochs", "gamma_lr": "factor",
            "important": "important_classes", "important_class": "important_classes"}


# --------------------------------------------------------------------------------------------
# the schema
# --------------------------------------------------------------------------------------------
def _loss_name(key: str, v: Any) -> str:
    from classaware.losses import available

    return choice(available())(key, v)


def _class_weight(key: str, v: Any) -> str | tuple[float, ...]:
    if isinstance(v, (list, tuple)):
        w = sequence(key, v, lambda x: is_number(x) and x >= 0,
                     "a list of non-negative numbers, not all zero", min_len=1)
        if not any(w):
            raise expected(key, "a list of non-negative numbers, not all zero", v)
        return tuple(float(x) for x in w)
    return choice(CLASS_WEIGHTS, "a list of per-class numbers or one of")(key, v)


@dataclass(frozen=True)
class LossConfig(Section):
    """``[loss]``: the harness's keys, plus ``params`` passed to the loss constructor.

    ``params`` holds every other key of the table (``margin``, ``scale``, ``gamma``, ...), checked
    against the chosen loss's signature (see :func:`loss_params`).
    """

    name: str = setting("ce", _loss_name)
    important_classes: tuple[str | int, ...] = setting((), class_list)
    class_weight: str | tuple[float, ...] = setting("none", _class_weight)
    important_weight: float = setting(2.0, number(lo=0.0, lo_open=True))
    beta: float = setting(0.9999, number(0.0, 1.0, hi_open=True))
    params: FrozenMap = dataclasses.field(default_factory=FrozenMap)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None, prefix: str,  # type: ignore[override]
                  **kw: Any) -> LossConfig:
        values = {} if values is None else values
        if not isinstance(values, Mapping):
            raise expected(prefix, "a table", values)
        harness = {f.name for f in dataclasses.fields(cls)} - {"params"}
        obj = super().from_dict({k: v for k, v in values.items() if k in harness}, prefix, **kw)
        params = _check_params(obj.name, {k: v for k, v in values.items() if k not in harness})
        obj = dataclasses.replace(obj, params=params)
        obj._check_loss()
        return obj

    @property
    def spec(self) -> Any:
        """The loss's :class:`~classaware.losses.factory.LossSpec`."""
        from classaware.losses import spec

        return spec(self.name)

    def _check_loss(self) -> None:
        if self.class_weight == "important" and not self.important_classes:
            raise ConfigError('loss.class_weight: "important" needs loss.important_classes')
        if self.class_weight != "none" and not self.spec.takes_weight:
            raise ConfigError(f"loss.class_weight: loss {self.name!r} takes no class weight; "
                              f'set loss.class_weight = "none"')
        if self.name == "camri" and not self.important_classes:
            raise ConfigError("loss.important_classes: CAMRI needs at least one important class, "
                              "e.g. --set \"loss.important_classes=['Shirt']\"")
        _dry_build_loss(self)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out.update(out.pop("params"))
        return out


def _betas(key: str, v: Any) -> tuple[float, float]:
    ok = sequence(key, v, lambda b: is_number(b) and 0 <= b < 1,
                  "two numbers in [0, 1), e.g. [0.9, 0.999]", length=2)
    return float(ok[0]), float(ok[1])


def _milestones(key: str, v: Any) -> tuple[int, ...]:
    ms = sequence(key, v, lambda m: is_int(m) and m >= 1, "a list of epoch indices (integers >= 1)")
    if any(b <= a for a, b in zip(ms, ms[1:])):
        raise expected(key, "strictly increasing epochs", v)
    return ms


@dataclass(frozen=True)
class OptimConfig(Section):
    """``[optim]``: the optimizer and the per-epoch learning-rate schedule (``optim.lr_at``)."""

    name: str = setting("sgd", choice(OPTIMIZERS, "an optimizer among"))
    lr: float = setting(0.05, number(lo=0.0, lo_open=True))
    momentum: float = setting(0.9, number(0.0, 1.0, hi_open=True))
    nesterov: bool = setting(False, boolean)
    weight_decay: float = setting(5e-4, number(lo=0.0))
    betas: tuple[float, float] = setting((0.9, 0.999), _betas)
    schedule: str = setting("cosine", choice(SCHEDULES, "a schedule among"))
    milestones: tuple[int, ...] = setting((), _milestones)
    factor: float = setting(0.1, number(0.0, 1.0, lo_open=True))
    warmup_epochs: int = setting(0, integer(lo=0))
    min_lr: float = setting(0.0, number(lo=0.0))

    def _check(self, prefix: str) -> None:
        if self.name == "sgd" and self.nesterov and self.momentum == 0:
            raise ConfigError("optim.nesterov: Nesterov momentum needs optim.momentum > 0")
        if self.min_lr >= self.lr:
            raise ConfigError(f"optim.min_lr: expected a number in [0, optim.lr = {self.lr:g}), "
                              f"got {self.min_lr:g}")


def _device(key: str, v: Any) -> str:
    if not (isinstance(v, str) and re.fullmatch(r"auto|cpu|cuda(:\d+)?", v.lower())):
        raise expected(key, '"auto", "cpu", "cuda" or "cuda:N"', v)
    return v.lower()


@dataclass(frozen=True)
class TrainConfig(Section):
    """``[train]``: epochs, batches, DRW, augmentation, device and speed options, logging."""

    epochs: int = setting(3, integer(lo=1))
    batch_size: int = setting(128, integer(lo=1))
    eval_batch_size: int = setting(1024, integer(lo=1))
    drw_epoch: int | None = setting(None, optional(integer(lo=0)))
    drw_beta: float = setting(0.9999, number(0.0, 1.0, hi_open=True))
    drs_epoch: int | None = setting(None, optional(integer(lo=0)))
    augment: bool | str = setting("auto", tristate)
    crop_padding: int = setting(4, integer(lo=0))
    hflip: bool | str = setting("auto", tristate)
    device: str = setting("auto", _device)
    compile: bool = setting(False, boolean)
    channels_last: bool | str = setting("auto", tristate)
    amp: str = setting("auto", choice(AMP_MODES))
    log_interval: int = setting(50, integer(lo=1))
    progress: bool | str = setting("auto", tristate)
    num_threads: int = setting(0, integer(lo=0, hi=MAX_THREADS))
    checkpoint_every: int = setting(1, integer(lo=1))

    def _check(self, prefix: str) -> None:
        if self.drw_epoch is not None and self.drw_epoch >= self.epochs:
            raise ConfigError(f"train.drw_epoch: expected an epoch index below train.epochs = "
                              f"{self.epochs} (DRW would never start), got {self.drw_epoch}; "
                              "lower it, or set train.drw_epoch=none to switch DRW off")
        if self.drs_epoch is not None and self.drs_epoch >= self.epochs:
            raise ConfigError(f"train.drs_epoch: expected an epoch index below train.epochs = "
                              f"{self.epochs} (re-sampling would never start), got "
                              f"{self.drs_epoch}; lower it, or set train.drs_epoch=none")


def _shots(key: str, v: Any) -> tuple[int, int]:
    what = "[many, few]: two integers with many >= few >= 0"
    many, few = sequence(key, v, lambda t: is_int(t) and t >= 0, what, length=2)
    if many < few:
        raise expected(key, what, v)
    return many, few


@dataclass(frozen=True)
class EvalConfig(Section):
    """``[eval]``: model selection and the shot buckets.

    ``select = "best"``: the model of the epoch with the highest ``select_metric`` on
    validation (training metrics without a validation split); ``"last"``: the last epoch's.
    """

    select: str = setting("best", choice(SELECT_RULES, "a rule among"))
    select_metric: str = setting("accuracy", choice(SELECT_METRICS, "a metric among"))
    shot_thresholds: tuple[int, int] = setting((100, 20), _shots)
    test: bool = setting(True, boolean)


def _seed(key: str, v: Any) -> int:
    if not is_int(v) or not 0 <= v < 2**64:
        raise expected(key, "an integer >= 0 (and < 2**64)", v)
    return v


@dataclass(frozen=True)
class RunConfig(Section):
    """A resolved run configuration: ``seed`` and one typed section per TOML table.

    ``RunConfig()`` is the defaults; ``to_dict()`` the plain form written to ``config.toml``.
    """

    seed: int = setting(0, _seed)
    data: DataConfig = section(DataConfig)
    model: ModelConfig = section(ModelConfig)
    loss: LossConfig = section(LossConfig)
    optim: OptimConfig = section(OptimConfig)
    train: TrainConfig = section(TrainConfig)
    eval: EvalConfig = section(EvalConfig)

    def _check(self, prefix: str) -> None:
        loss, train = self.loss, self.train
        integer(lo=0, hi=train.epochs)("optim.warmup_epochs", self.optim.warmup_epochs)
        if train.drw_epoch is not None and not loss.spec.takes_weight:
            raise ConfigError(f"train.drw_epoch: DRW re-weights the loss, but loss {loss.name!r} "
                              "takes no class weight; set train.drw_epoch=none or choose another "
                              "loss")
        if train.drs_epoch is not None and self.data.sampler == "none":
            raise ConfigError('train.drs_epoch: deferred re-sampling needs data.sampler = '
                              '"class_balanced" or "sqrt" (the sampler it switches to)')
        if self.eval.select_metric == "important_recall_mean" and not loss.important_classes:
            raise ConfigError('eval.select_metric: "important_recall_mean" needs '
                              "loss.important_classes")
        if loss.spec.input == "cosine" and self.model.head != "cosine":
            raise ConfigError(f"model.head: loss {loss.name!r} is a margin loss on cosines; set "
                              f'model.head = "cosine" (got {self.model.head!r})')


#: the TOML tables of a run config, in order (``seed`` is the one top-level key)
SECTIONS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(RunConfig)
                                  if "section" in f.metadata)


def _all_dotted() -> list[str]:
    """``seed`` and every ``section.key`` (for "did you mean" hints across sections)."""
    out = []
    for f in dataclasses.fields(RunConfig):
        sub = f.metadata.get("section")
        out += [f"{f.name}.{g.name}" for g in dataclasses.fields(sub)] if sub else [f.name]
    return [d for d in out if d != "loss.params"]


# --------------------------------------------------------------------------------------------
# the open-ended loss parameters
# --------------------------------------------------------------------------------------------
def loss_params(name: str) -> dict[str, inspect.Parameter]:
    """The constructor parameters of loss ``name`` that a config may set (``[loss]`` keys).

    Everything in the loss class's ``__init__`` except what the trainer fills (``class_counts``,
    ``weight``, ``important_classes``), ``reduction``/``ignore_index``, and parameters fixed by
    the loss spec (``balanced_softmax``'s ``tau``).
    """
    from classaware.losses import spec

    sp = spec(name)
    fixed = {k for k, _ in getattr(sp, "defaults", ())}
    sig = inspect.signature(sp.cls.__init__)
    return {k: p for k, p in sig.parameters.items()
            if k not in _TRAINER_FILLED and k not in _NOT_SETTABLE and k not in fixed
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def _check_params(name: str, given: Mapping[str, Any]) -> FrozenMap:
    params = loss_params(name)
    out: dict[str, Any] = {}
    for k, v in given.items():
        if k not in params:
            extra = " (the trainer sets it)" if k in _NOT_SETTABLE else ""
            if k in _TRAINER_FILLED:
                extra = " (the trainer fills it from the data" + (
                    "; use loss.class_weight)" if k == "weight" else ")")
            close = difflib.get_close_matches(k, list(params), n=1)
            hint = f"; did you mean 'loss.{close[0]}'?" if close else ""
            raise ConfigError(f"loss.{k}: loss {name!r} does not take {k!r}{extra}; it takes: "
                              f"{', '.join(params) if params else 'no parameters'}{hint}")
        if v is not None:  # None (Python API): the loss's own default
            out[k] = (_check_similarity(v) if k == "similarity"
                      else _check_param(f"loss.{k}", params[k], v))
    if "similarity" in params and "similarity" not in out:
        raise ConfigError('loss.similarity: required for simloss, e.g. {kind = "ordinal", '
                          'reduction_factor = 0.5} or {kind = "groups", groups = [[...]], within = 0.5}')
    return FrozenMap(out)


def _check_param(key: str, p: inspect.Parameter, value: Any) -> Any:
    """A loss parameter against the type of its default (a list where the annotation allows)."""
    default = p.default
    ann = p.annotation if isinstance(p.annotation, str) else repr(p.annotation)
    seq = any(t in ann for t in ("Sequence", "list", "tuple", "Iterable"))
    if seq and isinstance(value, (list, tuple)):
        return tuple(float(v) for v in sequence(key, value, is_number,
                                                "a number or a list of numbers"))
    if isinstance(default, bool):
        return boolean(key, value)
    if isinstance(default, float):
        return number(what="a number" + (" or a list of numbers" if seq else ""))(key, value)
    if isinstance(default, int) and not is_int(value):
        raise expected(key, "an integer", value)
    if isinstance(default, str) and not isinstance(value, str):
        raise expected(key, "a string", value)
    return value


def _check_similarity(value: Any) -> Any:
    key = "loss.similarity"
    if not isinstance(value, Mapping):
        raise expected(key, 'a table such as {kind = "groups", groups = [["Shirt", "T-shirt/top"]], '
                       'within = 0.5} or {kind = "ordinal", reduction_factor = 0.5}', value)
    kind = value.get("kind")
    if kind not in SIMILARITY_KINDS:
        raise expected(f"{key}.kind", f"one of {', '.join(map(repr, SIMILARITY_KINDS))}", kind)
    allowed = SIMILARITY_KINDS[kind]
    for k in value:
        if k not in allowed:
            raise ConfigError(f"{key}.{k}: unknown key for kind = {kind!r} (it takes: "
                              f"{', '.join(allowed)})")
    for k in allowed:
        if k not in value and k != "within":
            raise ConfigError(f"{key}.{k}: required for kind = {kind!r}")
    if kind == "groups":
        groups = value["groups"]
        if not isinstance(groups, list) or not groups or not all(
                isinstance(g, list) and len(g) >= 2 for g in groups):
            raise expected(f"{key}.groups", "a list of groups, each a list of at least two class "
                           "names or indices", groups)
        for g in groups:
            class_list(f"{key}.groups", g)
        if "within" in value:
            number(0.0, 1.0)(f"{key}.within", value["within"])
    elif kind == "ordinal":
        number(0.0, 1.0, hi_open=True)(f"{key}.reduction_factor", value["reduction_factor"])
    else:
        m = value["matrix"]
        n = len(m) if isinstance(m, list) else 0
        if not n or not all(isinstance(row, list) and len(row) == n and all(
                is_number(x) and 0 <= x <= 1 for x in row) for row in m):
            raise expected(f"{key}.matrix", "a square C×C list of lists of numbers in [0, 1]", m)
    return value


def _dry_build_loss(loss: LossConfig) -> None:
    """Build the loss once with placeholder data so its own value checks run before training."""
    from classaware.losses import create

    init = inspect.signature(loss.spec.cls.__init__).parameters
    if "similarity" in init:
        return  # needs the number of classes; checked by _check_similarity
    kw: dict[str, Any] = {k: list(v) if isinstance(v, tuple) else v
                          for k, v in loss.params.items()}
    if "important_classes" in init:
        kw["important_classes"] = list(range(len(loss.important_classes)))
    if "class_counts" in init:
        kw["class_counts"] = [100, 10, 1]
    try:
        create(loss.name, **kw)
    except (ValueError, TypeError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        key = next((k for k in kw if re.match(rf"{re.escape(k)}\b", msg)), None)
        raise ConfigError(f"{f'loss.{key}' if key in loss.params else 'loss'}: {msg}") from None


# --------------------------------------------------------------------------------------------
# sources, merging, overrides
# --------------------------------------------------------------------------------------------
def shipped_configs() -> list[str]:
    """Names of the train configs shipped in ``classaware/configs`` (``fmnist-ce``, ...)."""
    root = importlib.resources.files("classaware") / "configs"
    try:
        return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))
    except (FileNotFoundError, NotADirectoryError):  # pragma: no cover - broken install
        return []


def _read_toml_text(text: str, where: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: invalid TOML: {exc}") from None


def _read_config_source(config: str | Path) -> dict[str, Any]:
    """Read a TOML file or a shipped config by name."""
    path = Path(config).expanduser()
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config file {str(path)!r}: {exc}") from None
        return _read_toml_text(text, f"config file {str(path)!r}")
    if path.is_dir():
        raise ConfigError(f"config {str(config)!r} is a directory, expected a TOML file or a "
                          f"shipped config name ({', '.join(shipped_configs())})")
    name = str(config)
    stem = name[:-5] if name.endswith(".toml") else name
    if "/" not in stem and "\\" not in stem:
        res = importlib.resources.files("classaware") / "configs" / f"{stem}.toml"
        if res.is_file():
            return _read_toml_text(res.read_text(encoding="utf-8"), f"shipped config {stem!r}")
    shipped = shipped_configs()
    close = difflib.get_close_matches(stem, shipped, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"config {name!r}: no such file and no shipped config of that name "
                      f"(shipped: {', '.join(shipped)}){hint}")


def merge_config(base: dict[str, Any], layer: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``layer`` into ``base`` in place (and return it): tables key by key, other values replace.

    A layer that changes ``loss.name`` drops the loss parameters of the previous layers (they
    belong to the previous loss); ``important_classes``/``class_weight``/... are kept.
    """
    harness = {f.name for f in dataclasses.fields(LossConfig)}
    for key, value in layer.items():
        if key == "loss" and isinstance(value, Mapping) and isinstance(base.get("loss"), dict):
            old = base["loss"]
            if "name" in value and str(value["name"]).lower() != str(old.get("name")).lower():
                for k in [k for k in old if k not in harness]:
                    del old[k]
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            merge_config(base[key], value)
        else:
            base[key] = copy.deepcopy(dict(value) if isinstance(value, Mapping) else value)
    return base


def parse_set(item: str) -> tuple[str, Any]:
    """Parse one ``--set key=value``: the value is read as a TOML value, else kept as a string.

    Examples
    --------
    >>> parse_set("optim.lr=0.01")
    ('optim.lr', 0.01)
    >>> parse_set("loss.important_classes=['Shirt']")
    ('loss.important_classes', ['Shirt'])
    >>> parse_set("loss.name=camri")
    ('loss.name', 'camri')
    """
    if not isinstance(item, str) or "=" not in item:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. optim.lr=0.01")
    key, _, raw = item.partition("=")
    key, raw = key.strip(), raw.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE with a dotted key, e.g. optim.lr=0.01")
    try:
        parsed = tomllib.loads(f"v = {raw}") if raw else {"v": ""}
        if set(parsed) != {"v"}:  # "1\nx = 2": more than one value is not one TOML value
            raise tomllib.TOMLDecodeError("not a single value")
        value = parsed["v"]
    except tomllib.TOMLDecodeError:
        # numbers TOML rejects but nobody means as a string: ".5", "5.", "1.e-3"
        value = float(raw) if _LOOSE_FLOAT.fullmatch(raw) else raw
    return key, value


def _overrides_to_layers(overrides: Mapping[str, Any] | Iterable[str] | None,
                         defaults: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Turn overrides (dotted-key mapping, section dicts or ``key=value`` strings) into layers."""
    if overrides is None:
        return []
    if isinstance(overrides, str):
        overrides = [overrides]
    items = list(overrides.items()) if isinstance(overrides, Mapping) else [
        parse_set(s) for s in overrides]
    layers = []
    for key, value in items:
        if not isinstance(key, str) or not key or any(not p for p in key.split(".")):
            raise ConfigError(f"override {key!r}: expected a dotted key such as 'optim.lr'")
        parts = key.split(".")
        node: Any = defaults  # "none"/"null" clears a key whose default is None (TOML has no null)
        for p in parts:
            node = node.get(p, ...) if isinstance(node, Mapping) else ...
        if isinstance(value, str) and value.lower() in _NULL_WORDS and node is None:
            value = None
        layer: dict[str, Any] = {}
        leaf = layer
        for p in parts[:-1]:
            leaf = leaf.setdefault(p, {})
        leaf[parts[-1]] = value
        layers.append(layer)
    return layers


def _check_layer(layer: Mapping[str, Any]) -> None:
    """Early structural check: unknown top-level keys and sections that are not tables."""
    top = [f.name for f in dataclasses.fields(RunConfig)]
    for key, value in layer.items():
        if key not in top:
            raise ConfigError(unknown_key(str(key), top, _all_dotted(), _ALIASES))
        if key in SECTIONS and not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a table (section), got {show(value)}")


def load_config(config: RunConfig | Mapping[str, Any] | str | Path | None = None,
                overrides: Mapping[str, Any] | Iterable[str] | None = None) -> RunConfig:
    """Resolve and validate a run configuration.

    Parameters
    ----------
    config : RunConfig, dict, str, Path or None
        A TOML file, the name of a shipped config (``"fmnist-camri"``, see
        :func:`shipped_configs`), a dict with the same structure, a resolved config, or None
        (defaults only).
    overrides : mapping or iterable of str, optional
        Applied in order after ``config``: a mapping of dotted keys (``{"optim.lr": 0.01}``) or
        section names (``{"loss": {"name": "camri"}}``) to values, or ``--set`` strings
        ``"key=value"`` whose value is parsed as TOML (a string when it is not valid TOML).

    Returns
    -------
    RunConfig
        The resolved config: every key of every section, defaults filled in, frozen.

    Raises
    ------
    ConfigError
        Unreadable or invalid TOML, unknown section/key, wrong type or bad value; the message
        names the dotted key and what was expected.

    Example
    -------
    >>> cfg = load_config(None, {"loss": {"name": "focal", "gamma": 1.0}, "train.epochs": 1})
    >>> cfg.loss.params["gamma"], cfg.train.epochs
    (1.0, 1)
    """
    if isinstance(config, RunConfig) and not overrides:
        return config
    defaults = RunConfig().to_dict()
    cfg = copy.deepcopy(defaults)
    if isinstance(config, RunConfig):
        config = config.to_dict()
    if config is not None:
        if isinstance(config, (str, Path)):
            layer = _read_config_source(config)
        elif isinstance(config, Mapping):
            layer = dict(config)
        else:
            raise ConfigError(f"config: expected a TOML file path, a shipped config name or a dict, "
                              f"got {type(config).__name__}")
        _check_layer(layer)
        merge_config(cfg, layer)
    for layer in _overrides_to_layers(overrides, defaults):
        _check_layer(layer)
        merge_config(cfg, layer)
    return RunConfig.from_dict(cfg, "", elsewhere=_all_dotted(), aliases=_ALIASES)


def _drop_none(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_drop_none(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def dump_config(cfg: RunConfig | Mapping[str, Any], path: str | Path) -> Path:
    """Write ``cfg`` as TOML to ``path`` (``RUN_DIR/config.toml``), atomically.

    TOML has no null: keys whose value is None ("absent", e.g. ``train.drw_epoch``) are left
    out; :func:`load_config` on the file restores them from the defaults, so
    ``load_config(dump_config(cfg, p)) == cfg`` for a resolved ``cfg``. Tuples become lists and
    paths strings.
    """
    import tomli_w

    data = _drop_none(cfg.to_dict() if isinstance(cfg, RunConfig) else cfg)
    top = {k: v for k, v in data.items() if not isinstance(v, Mapping)}
    tables = {k: v for k, v in data.items() if isinstance(v, Mapping)}
    atomic_write_text(path, tomli_w.dumps({**top, **tables}))
    return Path(path)
