"""Run configuration: defaults, TOML loading, ``--set`` overrides and validation.

A run is one TOML document with the sections ``[data]``, ``[model]``, ``[loss]``, ``[optim]``,
``[train]``, ``[eval]`` and a top-level ``seed``; ``docs/config.md`` documents every key.
:func:`load_config` resolves a config (defaults <- file/name/dict <- overrides) and validates it
completely, raising :class:`~classaware.errors.ConfigError` with a one-line message naming the
dotted key, before anything heavy happens.

Example
-------
>>> from classaware.trainer.config import load_config
>>> cfg = load_config("fmnist-camri", ["optim.lr=0.01", "train.epochs=2"])
>>> cfg["optim"]["lr"], cfg["loss"]["name"]
(0.01, 'camri')
"""

from __future__ import annotations

import copy
import difflib
import importlib.resources
import inspect
import math
import os
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from classaware.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "DEFAULTS",
    "LOSS_KEYS",
    "SECTIONS",
    "class_weight_values",
    "dump_config",
    "load_config",
    "loss_kwargs",
    "loss_params",
    "lr_at",
    "parse_set",
    "resolve_classes",
    "shipped_configs",
]

SECTIONS = ("data", "model", "loss", "optim", "train", "eval")

#: Defaults of the sections this module owns (``[data]``/``[model]`` come from
#: ``classaware.data.DATA_DEFAULTS`` / ``classaware.models.MODEL_DEFAULTS``).  ``None`` means
#: "absent" (TOML has no null; such keys are left out of a dumped config).
DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "loss": {
        "name": "ce",
        "important_classes": [],
        "class_weight": "none",
        "important_weight": 2.0,
        "beta": 0.9999,
    },
    "optim": {
        "name": "sgd",
        "lr": 0.05,
        "momentum": 0.9,
        "nesterov": False,
        "weight_decay": 5e-4,
        "betas": [0.9, 0.999],
        "schedule": "cosine",
        "milestones": [],
        "factor": 0.1,
        "warmup_epochs": 0,
        "min_lr": 0.0,
    },
    "train": {
        "epochs": 3,
        "batch_size": 128,
        "eval_batch_size": 1024,
        "drw_epoch": None,
        "drw_beta": 0.9999,
        "augment": "auto",
        "crop_padding": 4,
        "hflip": "auto",
        "device": "auto",
        "compile": False,
        "channels_last": "auto",
        "amp": "auto",
        "log_interval": 50,
        "progress": "auto",
        "num_threads": 0,
        "checkpoint_every": 1,
    },
    "eval": {
        "select_metric": "accuracy",
        "shot_thresholds": [100, 20],
        "test": True,
    },
}

#: The harness's own ``[loss]`` keys; any other key goes to the loss constructor.
LOSS_KEYS = ("name", "important_classes", "class_weight", "important_weight", "beta")
#: Loss constructor parameters the trainer fills itself (or that are not settable).
_TRAINER_FILLED = ("self", "class_counts", "weight", "important_classes")
_NOT_SETTABLE = ("reduction", "ignore_index")

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine")
CLASS_WEIGHTS = ("none", "inverse_frequency", "class_balanced", "important")
SELECT_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "important_recall_mean")
AMP_MODES = ("auto", "bf16", "none")
SIMILARITY_KINDS = {
    "groups": ("kind", "groups", "within"),
    "ordinal": ("kind", "reduction_factor"),
    "matrix": ("kind", "matrix"),
}
_NULL_WORDS = ("none", "null")
_LOOSE_FLOAT = re.compile(r"[+-]?(\d+\.\d*|\.\d+)([eE][+-]?\d+)?")
#: common other spellings of a key, for "did you mean" hints
_ALIASES = {"learning_rate": "lr", "wd": "weight_decay", "epoch": "epochs", "bs": "batch_size",
            "batch": "batch_size", "optimizer": "name", "scheduler": "schedule",
            "lr_schedule": "schedule", "warmup": "warmup_epochs", "gamma_lr": "factor",
            "important": "important_classes", "important_class": "important_classes"}


# --------------------------------------------------------------------------------------------
# loading and merging
# --------------------------------------------------------------------------------------------
def _section_defaults() -> dict[str, Any]:
    """All defaults, including ``[data]`` and ``[model]`` from their packages."""
    from classaware.data import DATA_DEFAULTS
    from classaware.models import MODEL_DEFAULTS

    out = copy.deepcopy(DEFAULTS)
    out["data"] = copy.deepcopy(dict(DATA_DEFAULTS))
    out["model"] = copy.deepcopy(dict(MODEL_DEFAULTS))
    return {k: out[k] for k in ("seed", *SECTIONS)}


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


def _read_config_source(config: str | Path) -> tuple[dict[str, Any], str]:
    """Read a TOML file or a shipped config by name; returns (dict, description)."""
    path = Path(config).expanduser()
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config file {str(path)!r}: {exc}") from None
        return _read_toml_text(text, f"config file {str(path)!r}"), str(path)
    if path.is_dir():
        raise ConfigError(f"config {str(config)!r} is a directory, expected a TOML file or a "
                          f"shipped config name ({', '.join(shipped_configs())})")
    name = str(config)
    stem = name[:-5] if name.endswith(".toml") else name
    if "/" not in stem and "\\" not in stem:
        res = importlib.resources.files("classaware") / "configs" / f"{stem}.toml"
        if res.is_file():
            return _read_toml_text(res.read_text(encoding="utf-8"), f"shipped config {stem!r}"), (
                f"shipped config {stem!r}")
    shipped = shipped_configs()
    close = difflib.get_close_matches(stem, shipped, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"config {name!r}: no such file and no shipped config of that name "
                      f"(shipped: {', '.join(shipped)}){hint}")


def _loss_param_keys(section: Mapping[str, Any]) -> list[str]:
    return [k for k in section if k not in LOSS_KEYS]


def merge_config(base: dict[str, Any], layer: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``layer`` into ``base`` in place (and return it): tables key by key, other values replace.

    A layer that changes ``loss.name`` drops the loss parameters of the previous layers (they
    belong to the previous loss); ``important_classes``/``class_weight``/... are kept.
    """
    for key, value in layer.items():
        if key == "loss" and isinstance(value, Mapping) and isinstance(base.get("loss"), dict):
            old = base["loss"]
            if "name" in value and str(value["name"]).lower() != str(old.get("name")).lower():
                for k in _loss_param_keys(old):
                    del old[k]
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            merge_config(base[key], value)
        else:
            base[key] = copy.deepcopy(dict(value) if isinstance(value, Mapping) else value)
    return base


def _check_table(name: str, value: Any) -> None:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name}: expected a table (section), got {_show(value)}")


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
    if isinstance(overrides, Mapping):
        items = list(overrides.items())
    else:
        items = [parse_set(s) for s in overrides]
    layers = []
    for key, value in items:
        if not isinstance(key, str) or not key or any(not p for p in key.split(".")):
            raise ConfigError(f"override {key!r}: expected a dotted key such as 'optim.lr'")
        parts = key.split(".")
        # "none"/"null" clears a key whose default is None (TOML has no null)
        if isinstance(value, str) and value.lower() in _NULL_WORDS and _lookup(defaults,
                                                                               parts) is None:
            value = None
        layer: dict[str, Any] = {}
        node = layer
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
        layers.append(layer)
    return layers


_MISSING = object()


def _lookup(tree: Mapping[str, Any], parts: list[str]) -> Any:
    """The value at the dotted path ``parts`` of ``tree``, or ``_MISSING``."""
    node: Any = tree
    for p in parts:
        if not isinstance(node, Mapping) or p not in node:
            return _MISSING
        node = node[p]
    return node


def load_config(config: Mapping[str, Any] | str | Path | None = None,
                overrides: Mapping[str, Any] | Iterable[str] | None = None) -> dict[str, Any]:
    """Resolve and validate a run configuration.

    Parameters
    ----------
    config : dict, str, Path or None
        A TOML file, the name of a shipped config (``"fmnist-camri"``, see
        :func:`shipped_configs`), a dict with the same structure, or None (defaults only).
    overrides : mapping or iterable of str, optional
        Applied in order after ``config``: a mapping of dotted keys (``{"optim.lr": 0.01}``) or
        section names (``{"loss": {"name": "camri"}}``) to values, or ``--set`` strings
        ``"key=value"`` whose value is parsed as TOML (a string when it is not valid TOML).

    Returns
    -------
    dict
        The resolved config: every key of every section, defaults filled in.

    Raises
    ------
    ConfigError
        Unreadable or invalid TOML, unknown section/key, wrong type or bad value; the message
        names the dotted key and what was expected.

    Example
    -------
    >>> cfg = load_config(None, {"loss": {"name": "focal", "gamma": 1.0}, "train.epochs": 1})
    >>> cfg["loss"]["gamma"], cfg["train"]["epochs"]
    (1.0, 1)
    """
    defaults = _section_defaults()
    cfg = copy.deepcopy(defaults)
    if config is not None:
        if isinstance(config, (str, Path)):
            layer, _ = _read_config_source(config)
        elif isinstance(config, Mapping):
            layer = dict(config)
        else:
            raise ConfigError(f"config: expected a TOML file path, a shipped config name or a dict, "
                              f"got {type(config).__name__}")
        _check_layer(layer, defaults)
        merge_config(cfg, layer)
    for layer in _overrides_to_layers(overrides, defaults):
        _check_layer(layer, defaults)
        merge_config(cfg, layer)
    validate_config(cfg, defaults)
    return cfg


def _check_layer(layer: Mapping[str, Any], defaults: Mapping[str, Any]) -> None:
    """Early structural check: unknown top-level keys and sections that are not tables."""
    for key, value in layer.items():
        if key not in defaults:
            raise ConfigError(_unknown_key_message(key, defaults))
        if key in SECTIONS:
            _check_table(key, value)


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------
def _show(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def _all_dotted(defaults: Mapping[str, Any]) -> list[str]:
    out = []
    for section, value in defaults.items():
        if isinstance(value, Mapping):
            out.extend(f"{section}.{k}" for k in value)
        else:
            out.append(section)
    return out


def _unknown_key_message(dotted: str, defaults: Mapping[str, Any],
                         known: Iterable[str] | None = None, extra: str = "") -> str:
    """``'<key>: unknown key; did you mean ...?'`` with the closest key of its section."""
    parts = dotted.split(".")
    leaf = parts[-1]
    if known is None:
        known = list(defaults) if len(parts) == 1 else []
    known = list(known)
    prefix = ".".join(parts[:-1])
    what = "section or key" if len(parts) == 1 else "key"
    msg = f"{dotted}: unknown {what}"
    close = difflib.get_close_matches(leaf, known, n=1, cutoff=0.6)
    if _ALIASES.get(leaf) in known:
        close = [_ALIASES[leaf]]
    elsewhere = [d for d in _all_dotted(defaults) if d.split(".")[-1] == leaf and d != dotted]
    if close:
        msg += f"; did you mean {(prefix + '.' if prefix else '') + close[0]!r}?"
    elif elsewhere:
        msg += f"; did you mean {elsewhere[0]!r}?"
    else:
        fuzzy = difflib.get_close_matches(dotted, _all_dotted(defaults), n=1, cutoff=0.75)
        if fuzzy:
            msg += f"; did you mean {fuzzy[0]!r}?"
        elif known:
            msg += f" (known: {', '.join(known)})"
    return msg + extra


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class _Section:
    """Typed access to one section with one-line errors naming the dotted key."""

    def __init__(self, cfg: dict[str, Any], name: str) -> None:
        self.d = cfg[name]
        self.name = name

    def key(self, k: str) -> str:
        return f"{self.name}.{k}"

    def fail(self, k: str, expected: str, value: Any = ...) -> None:
        v = self.d.get(k) if value is ... else value
        raise ConfigError(f"{self.key(k)}: expected {expected}, got {_show(v)}")

    def number(self, k: str, *, lo: float | None = None, hi: float | None = None,
               lo_open: bool = False, hi_open: bool = False) -> float:
        v = self.d[k]
        rng = _range_text(lo, hi, lo_open, hi_open)
        if not _is_number(v) or (isinstance(v, float) and math.isnan(v)):
            self.fail(k, "a number" + rng)
        v = float(v)
        if (lo is not None and (v < lo or (lo_open and v == lo))) or (
                hi is not None and (v > hi or (hi_open and v == hi))):
            self.fail(k, "a number" + rng)
        self.d[k] = v
        return v

    def integer(self, k: str, *, lo: int | None = None, hi: int | None = None) -> int:
        v = self.d[k]
        rng = _range_text(lo, hi, False, False)
        if not _is_int(v):
            self.fail(k, "an integer" + rng)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            self.fail(k, "an integer" + rng)
        return v

    def boolean(self, k: str) -> bool:
        if not isinstance(self.d[k], bool):
            self.fail(k, "true or false")
        return self.d[k]

    def choice(self, k: str, choices: Iterable[str], what: str = "one of") -> str:
        choices = list(choices)
        v = self.d[k]
        if isinstance(v, str) and v.lower() in choices:
            self.d[k] = v.lower()
            return self.d[k]
        close = difflib.get_close_matches(str(v), choices, n=1) if isinstance(v, str) else []
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{self.key(k)}: expected {what} {', '.join(map(repr, choices))}, "
                          f"got {_show(v)}{hint}")

    def tristate(self, k: str) -> bool | str:
        v = self.d[k]
        if isinstance(v, bool):
            return v
        if isinstance(v, str) and v.lower() == "auto":
            self.d[k] = "auto"
            return "auto"
        self.fail(k, 'true, false or "auto"')
        return v  # pragma: no cover


def _range_text(lo: Any, hi: Any, lo_open: bool, hi_open: bool) -> str:
    if lo is not None and hi is not None:
        return f" in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    if lo is not None:
        return f" {'>' if lo_open else '>='} {lo:g}"
    if hi is not None:
        return f" {'<' if hi_open else '<='} {hi:g}"
    return ""


def _check_unknown(cfg: Mapping[str, Any], defaults: Mapping[str, Any]) -> None:
    for section in SECTIONS:
        _check_table(section, cfg[section])
        if section == "loss":
            continue  # loss parameters depend on the chosen loss: checked in _validate_loss
        _check_unknown_in(cfg[section], defaults[section], section, defaults)


def _check_unknown_in(value: Mapping[str, Any], default: Mapping[str, Any], prefix: str,
                      defaults: Mapping[str, Any]) -> None:
    for k, v in value.items():
        dotted = f"{prefix}.{k}"
        if k not in default:
            raise ConfigError(_unknown_key_message(dotted, defaults, known=list(default)))
        if isinstance(default[k], Mapping):
            if not isinstance(v, Mapping):
                raise ConfigError(f"{dotted}: expected a table, got {_show(v)}")
            _check_unknown_in(v, default[k], dotted, defaults)


def validate_config(cfg: dict[str, Any], defaults: Mapping[str, Any] | None = None) -> None:
    """Validate a merged config in place (normalising ints to floats where floats are expected).

    Raises ConfigError on the first problem found; see ``docs/config.md`` for the rules.
    """
    if defaults is None:
        defaults = _section_defaults()
    for key in cfg:
        if key not in defaults:
            raise ConfigError(_unknown_key_message(key, defaults))
    _check_unknown(cfg, defaults)
    if not _is_int(cfg["seed"]) or cfg["seed"] < 0:
        raise ConfigError(f"seed: expected an integer >= 0, got {_show(cfg['seed'])}")
    _validate_delegated(cfg, "data")
    _validate_delegated(cfg, "model")
    _validate_train(cfg)
    _validate_optim(cfg)
    _validate_eval(cfg)
    _validate_loss(cfg)


def _validate_delegated(cfg: dict[str, Any], section: str) -> None:
    if section == "data":
        from classaware.data import validate_data_config as check
    else:
        from classaware.models import validate_model_config as check
    try:
        check(cfg[section])
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        msg = str(exc)
        raise ConfigError(msg if msg.startswith(f"{section}.") else f"{section}: {msg}") from None


def _validate_train(cfg: dict[str, Any]) -> None:
    s = _Section(cfg, "train")
    epochs = s.integer("epochs", lo=1)
    s.integer("batch_size", lo=1)
    s.integer("eval_batch_size", lo=1)
    if s.d["drw_epoch"] is not None:
        drw = s.integer("drw_epoch", lo=0)
        if drw >= epochs:
            raise ConfigError(f"train.drw_epoch: expected an epoch index below train.epochs = "
                              f"{epochs} (DRW would never start), got {drw}; lower it, or set "
                              f"train.drw_epoch=none to switch DRW off")
    s.number("drw_beta", lo=0.0, hi=1.0, hi_open=True)
    s.tristate("augment")
    s.integer("crop_padding", lo=0)
    s.tristate("hflip")
    dev = s.d["device"]
    if not (isinstance(dev, str) and re.fullmatch(r"auto|cpu|cuda(:\d+)?", dev.lower())):
        s.fail("device", '"auto", "cpu", "cuda" or "cuda:N"')
    s.d["device"] = dev.lower()
    s.boolean("compile")
    s.tristate("channels_last")
    s.choice("amp", AMP_MODES)
    s.integer("log_interval", lo=1)
    s.tristate("progress")
    s.integer("num_threads", lo=0)
    s.integer("checkpoint_every", lo=1)


def _validate_optim(cfg: dict[str, Any]) -> None:
    s = _Section(cfg, "optim")
    name = s.choice("name", OPTIMIZERS, "an optimizer among")
    lr = s.number("lr", lo=0.0, lo_open=True)
    momentum = s.number("momentum", lo=0.0, hi=1.0, hi_open=True)
    nesterov = s.boolean("nesterov")
    if name == "sgd" and nesterov and momentum == 0:
        raise ConfigError("optim.nesterov: Nesterov momentum needs optim.momentum > 0")
    s.number("weight_decay", lo=0.0)
    betas = s.d["betas"]
    if (not isinstance(betas, list) or len(betas) != 2
            or not all(_is_number(b) and 0 <= b < 1 for b in betas)):
        s.fail("betas", "two numbers in [0, 1), e.g. [0.9, 0.999]")
    s.d["betas"] = [float(b) for b in betas]
    s.choice("schedule", SCHEDULES, "a schedule among")
    ms = s.d["milestones"]
    if not isinstance(ms, list) or not all(_is_int(m) and m >= 1 for m in ms):
        s.fail("milestones", "a list of epoch indices (integers >= 1)")
    if any(b <= a for a, b in zip(ms, ms[1:])):
        s.fail("milestones", "strictly increasing epochs")
    s.number("factor", lo=0.0, hi=1.0, lo_open=True)
    epochs = cfg["train"]["epochs"]
    s.integer("warmup_epochs", lo=0, hi=epochs)
    min_lr = s.number("min_lr", lo=0.0)
    if min_lr >= lr:
        raise ConfigError(f"optim.min_lr: expected a number in [0, optim.lr = {lr:g}), "
                          f"got {min_lr:g}")


def _validate_eval(cfg: dict[str, Any]) -> None:
    s = _Section(cfg, "eval")
    s.choice("select_metric", SELECT_METRICS, "a metric among")
    st = s.d["shot_thresholds"]
    if (not isinstance(st, list) or len(st) != 2 or not all(_is_int(t) and t >= 0 for t in st)
            or st[0] < st[1]):
        s.fail("shot_thresholds", "[many, few]: two integers with many >= few >= 0")
    s.boolean("test")


def _class_list(key: str, value: Any) -> list[str | int]:
    """Normalise a list of class names/indices (a single one becomes a one-element list)."""
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not all(
            isinstance(c, str) or (_is_int(c) and c >= 0) for c in value):
        raise ConfigError(f"{key}: expected a list of class names or indices (integers >= 0), "
                          f"got {_show(value)}")
    if len(set(value)) != len(value):
        raise ConfigError(f"{key}: a class is listed twice in {value!r}")
    return value


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


def _accepts_sequence(p: inspect.Parameter) -> bool:
    ann = p.annotation if isinstance(p.annotation, str) else repr(p.annotation)
    return any(t in ann for t in ("Sequence", "list", "tuple", "Iterable"))


def _check_param_type(key: str, p: inspect.Parameter, value: Any) -> Any:
    default = p.default
    if _accepts_sequence(p) and isinstance(value, list):
        if not all(_is_number(v) for v in value):
            raise ConfigError(f"{key}: expected a number or a list of numbers, got {_show(value)}")
        return [float(v) for v in value]
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {_show(value)}")
    elif isinstance(default, float):
        if not _is_number(value):
            alt = " or a list of numbers" if _accepts_sequence(p) else ""
            raise ConfigError(f"{key}: expected a number{alt}, got {_show(value)}")
        return float(value)
    elif isinstance(default, int):
        if not _is_int(value):
            raise ConfigError(f"{key}: expected an integer, got {_show(value)}")
    elif isinstance(default, str) and not isinstance(value, str):
        raise ConfigError(f"{key}: expected a string, got {_show(value)}")
    return value


def _validate_similarity(value: Any) -> None:
    key = "loss.similarity"
    example = ('{kind = "groups", groups = [["Shirt", "T-shirt/top"]], within = 0.5} or '
               '{kind = "ordinal", reduction_factor = 0.5}')
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key}: expected a table such as {example}, got {_show(value)}")
    kind = value.get("kind")
    if kind not in SIMILARITY_KINDS:
        raise ConfigError(f"{key}.kind: expected one of {', '.join(map(repr, SIMILARITY_KINDS))}, "
                          f"got {_show(kind)}")
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
            raise ConfigError(f"{key}.groups: expected a list of groups, each a list of at least "
                              f"two class names or indices, got {_show(groups)}")
        for g in groups:
            _class_list(f"{key}.groups", g)
        within = value.get("within", 0.5)
        if not _is_number(within) or not 0 <= within <= 1:
            raise ConfigError(f"{key}.within: expected a number in [0, 1], got {_show(within)}")
    elif kind == "ordinal":
        r = value["reduction_factor"]
        if not _is_number(r) or not 0 <= r < 1:
            raise ConfigError(f"{key}.reduction_factor: expected a number in [0, 1), got {_show(r)}")
    else:
        m = value["matrix"]
        n = len(m) if isinstance(m, list) else 0
        if not n or not all(isinstance(row, list) and len(row) == n and all(
                _is_number(x) and 0 <= x <= 1 for x in row) for row in m):
            raise ConfigError(f"{key}.matrix: expected a square C×C list of lists of numbers in "
                              f"[0, 1], got {_show(m)}")


def _validate_loss(cfg: dict[str, Any]) -> None:
    from classaware.losses import available, spec

    s = _Section(cfg, "loss")
    d = s.d
    for k in LOSS_KEYS:
        if k not in d:  # a section replaced wholesale by a dict without them
            d[k] = copy.deepcopy(DEFAULTS["loss"][k])
    name = d["name"]
    known = available()
    if not isinstance(name, str) or name.lower() not in known:
        close = difflib.get_close_matches(str(name), known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"loss.name: expected one of {', '.join(known)}, got {_show(name)}{hint}")
    name = d["name"] = name.lower()
    sp = spec(name)
    d["important_classes"] = _class_list("loss.important_classes", d["important_classes"])
    important = d["important_classes"]

    params = loss_params(name)
    for k in _loss_param_keys(d):
        if d[k] is None and k in params:  # None (Python API): the loss's own default
            del d[k]
            continue
        if k not in params:
            takes = ", ".join(params) if params else "no parameters"
            extra = ""
            if k in _NOT_SETTABLE:
                extra = " (the trainer sets it)"
            elif k in _TRAINER_FILLED:
                extra = " (the trainer fills it from the data"
                extra += "; use loss.class_weight)" if k == "weight" else ")"
            close = difflib.get_close_matches(k, list(params), n=1)
            hint = f"; did you mean 'loss.{close[0]}'?" if close else ""
            raise ConfigError(f"loss.{k}: loss {name!r} does not take {k!r}{extra}; it takes: "
                              f"{takes}{hint}")
        if k == "similarity":
            _validate_similarity(d[k])
        else:
            d[k] = _check_param_type(f"loss.{k}", params[k], d[k])
    if "similarity" in params and "similarity" not in d:
        raise ConfigError('loss.similarity: required for simloss, e.g. {kind = "ordinal", '
                          'reduction_factor = 0.5} or {kind = "groups", groups = [[...]], within = 0.5}')

    cw = d["class_weight"]
    if isinstance(cw, list):
        if not cw or not all(_is_number(w) and w >= 0 for w in cw) or not any(w > 0 for w in cw):
            s.fail("class_weight", "a list of non-negative numbers, not all zero")
        d["class_weight"] = [float(w) for w in cw]
    else:
        s.choice("class_weight", CLASS_WEIGHTS, "a list of per-class numbers or one of")
    s.number("important_weight", lo=0.0, lo_open=True)
    s.number("beta", lo=0.0, hi=1.0, hi_open=True)
    if d["class_weight"] == "important" and not important:
        raise ConfigError('loss.class_weight: "important" needs loss.important_classes')
    if d["class_weight"] != "none" and not sp.takes_weight:
        raise ConfigError(f"loss.class_weight: loss {name!r} takes no class weight; "
                          f'set loss.class_weight = "none"')
    if cfg["train"]["drw_epoch"] is not None and not sp.takes_weight:
        raise ConfigError(f"train.drw_epoch: DRW re-weights the loss, but loss {name!r} takes no "
                          f"class weight; set train.drw_epoch=none or choose another loss")
    if name == "camri" and not important:
        raise ConfigError("loss.important_classes: CAMRI needs at least one important class, "
                          "e.g. --set \"loss.important_classes=['Shirt']\"")
    if cfg["eval"]["select_metric"] == "important_recall_mean" and not important:
        raise ConfigError('eval.select_metric: "important_recall_mean" needs '
                          "loss.important_classes")
    head = cfg["model"].get("head")
    if sp.input == "cosine" and head != "cosine":
        raise ConfigError(f"model.head: loss {name!r} is a margin loss on cosines; set "
                          f'model.head = "cosine" (got {head!r})')
    _dry_build_loss(name, d, params, important)


def _dry_build_loss(name: str, d: Mapping[str, Any], params: Mapping[str, Any],
                    important: list[Any]) -> None:
    """Build the loss once with placeholder data so its own value checks run before training."""
    from classaware.losses import create, spec

    sp = spec(name)
    kw = {k: d[k] for k in params if k in d and k != "similarity"}
    init = inspect.signature(sp.cls.__init__).parameters
    if "important_classes" in init:
        kw["important_classes"] = list(range(len(important)))
    if "class_counts" in init:
        kw["class_counts"] = [100, 10, 1]
    if "similarity" in init:
        return  # needs the number of classes; checked by _validate_similarity
    try:
        create(name, **kw)
    except (ValueError, TypeError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        key = next((k for k in kw if re.match(rf"{re.escape(k)}\b", msg)), None)
        where = f"loss.{key}" if key and key in params else "loss"
        raise ConfigError(f"{where}: {msg}") from None


# --------------------------------------------------------------------------------------------
# helpers for the training loop
# --------------------------------------------------------------------------------------------
def _resolve_class_list(key: str, items: Iterable[str | int], class_names: list[str]) -> list[int]:
    out: list[int] = []
    lower = {}
    for i, n in enumerate(class_names):
        lower.setdefault(n.lower(), []).append(i)
    for c in items:
        if _is_int(c):
            if not 0 <= c < len(class_names):
                raise ConfigError(f"{key}: class index {c} out of range: the data has "
                                  f"{len(class_names)} classes (0..{len(class_names) - 1})")
            idx = c
        elif c in class_names:
            idx = class_names.index(c)
        elif len(lower.get(str(c).lower(), [])) == 1:
            idx = lower[str(c).lower()][0]
        else:
            close = difflib.get_close_matches(str(c), class_names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{key}: unknown class {c!r}{hint}; the classes are: "
                              f"{', '.join(map(repr, class_names))}")
        if idx in out:
            raise ConfigError(f"{key}: class {class_names[idx]!r} is listed twice")
        out.append(idx)
    return out


def resolve_classes(cfg: Mapping[str, Any], class_names: list[str]) -> list[int]:
    """``loss.important_classes`` as class indices, given the data's class names.

    Names match exactly, else case-insensitively when that is unambiguous; integers are
    indices. Raises ConfigError listing the valid names for an unknown one.

    Example
    -------
    >>> resolve_classes({"loss": {"important_classes": ["Shirt", 0]}}, ["T-shirt/top", "Shirt"])
    [1, 0]
    """
    return _resolve_class_list("loss.important_classes",
                               _class_list("loss.important_classes",
                                           cfg["loss"].get("important_classes", [])),
                               list(class_names))


def loss_kwargs(cfg: Mapping[str, Any], class_names: list[str],
                class_counts: list[int]) -> dict[str, Any]:
    """Keyword arguments for ``classaware.losses.create(cfg["loss"]["name"], **kw)``.

    The loss parameters of ``[loss]``, plus ``important_classes`` (indices) for losses that
    take them, ``class_counts`` for losses with ``needs_counts`` and ``similarity`` (a C×C float
    tensor) for SimLoss. ``weight`` is not included: see :func:`class_weight_values`.

    Example
    -------
    >>> cfg = load_config("fmnist-camri")
    >>> names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
    ...          "Sneaker", "Bag", "Ankle boot"]
    >>> kw = loss_kwargs(cfg, names, [6000] * 10)
    >>> kw["important_classes"]
    [6]
    """
    from classaware.losses import spec

    loss = cfg["loss"]
    name = loss["name"]
    sp = spec(name)
    init = inspect.signature(sp.cls.__init__).parameters
    params = loss_params(name)
    kw = {k: copy.deepcopy(loss[k]) for k in params if k in loss}
    if "important_classes" in init:
        kw["important_classes"] = resolve_classes(cfg, class_names)
    if sp.needs_counts or "class_counts" in init:
        kw["class_counts"] = list(class_counts)
    if "similarity" in kw:
        kw["similarity"] = _similarity_matrix(kw["similarity"], list(class_names))
    return kw


def _similarity_matrix(table: Mapping[str, Any], class_names: list[str]) -> Any:
    import torch

    from classaware import similarity

    c = len(class_names)
    kind = table["kind"]
    if kind == "ordinal":
        return similarity.ordinal(c, table["reduction_factor"])
    if kind == "groups":
        groups = [_resolve_class_list("loss.similarity.groups", g, class_names)
                  for g in table["groups"]]
        return similarity.from_groups(groups, c, within=table.get("within", 0.5))
    m = torch.tensor(table["matrix"], dtype=torch.float32)
    if m.shape != (c, c):
        raise ConfigError(f"loss.similarity.matrix: expected {c}×{c} (the data has {c} classes), "
                          f"got {m.shape[0]}×{m.shape[1]}")
    return m


def class_weight_values(cfg: Mapping[str, Any], class_names: list[str],
                        class_counts: list[int]) -> list[float] | None:
    """The per-class loss weight from ``loss.class_weight`` (None for ``"none"``).

    ``inverse_frequency``: n_j^(−1) normalised to sum to C; ``class_balanced``:
    (1 − β)/(1 − β^n_j) normalised to sum to C (β = ``loss.beta``); ``important``:
    ``important_weight`` for the important classes, 1 elsewhere; a list is used as given
    (its length must be C).

    Example
    -------
    >>> cfg = load_config(None, {"loss.class_weight": "important", "loss.important_classes": [1]})
    >>> class_weight_values(cfg, ["a", "b", "c"], [5, 5, 5])
    [1.0, 2.0, 1.0]
    """
    loss = cfg["loss"]
    cw = loss["class_weight"]
    c = len(class_names)
    if isinstance(cw, list):
        if len(cw) != c:
            raise ConfigError(f"loss.class_weight: expected {c} weights (one per class), "
                              f"got {len(cw)}")
        return [float(w) for w in cw]
    if cw == "none":
        return None
    if cw == "important":
        imp = set(resolve_classes(cfg, class_names))
        return [float(loss["important_weight"]) if i in imp else 1.0 for i in range(c)]
    from classaware import weights

    if cw == "inverse_frequency":
        w = weights.inverse_frequency(list(class_counts))
    else:
        w = weights.class_balanced(list(class_counts), beta=loss["beta"])
    return [float(x) for x in (w.tolist() if hasattr(w, "tolist") else w)]


def lr_at(cfg: Mapping[str, Any], epoch: int) -> float:
    """Learning rate of 0-based ``epoch`` under ``[optim]`` (constant within an epoch).

    ``warm(i) = (i + 1)/W`` for ``i < W = warmup_epochs`` else 1;
    constant: ``lr·warm(i)``; step: ``lr·warm(i)·factor^#{m in milestones: i >= m}``;
    cosine: ``lr·warm(i)`` for ``i < W``, else
    ``min_lr + (lr − min_lr)·½·(1 + cos(π·(i − W)/(E − W)))`` with ``E = train.epochs``.

    Example
    -------
    >>> cfg = load_config("ldam-drw-cifar10-lt")
    >>> [round(lr_at(cfg, i), 6) for i in (0, 4, 159, 160, 179, 180)]
    [0.02, 0.1, 0.1, 0.001, 0.001, 1e-05]
    """
    o = cfg["optim"]
    base = float(o["lr"])
    w = int(o.get("warmup_epochs", 0))
    warm = (epoch + 1) / w if epoch < w else 1.0
    schedule = o.get("schedule", "constant")
    if schedule == "step":
        passed = sum(1 for m in o.get("milestones", []) if epoch >= m)
        return base * warm * float(o.get("factor", 0.1)) ** passed
    if schedule == "cosine":
        if epoch < w:
            return base * warm
        span = max(int(cfg["train"]["epochs"]) - w, 1)
        min_lr = float(o.get("min_lr", 0.0))
        return min_lr + (base - min_lr) * 0.5 * (1.0 + math.cos(math.pi * (epoch - w) / span))
    return base * warm


def _drop_none(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_drop_none(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def dump_config(cfg: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``cfg`` as TOML to ``path`` (``RUN_DIR/config.toml``).

    TOML has no null: keys whose value is None ("absent", e.g. ``train.drw_epoch``) are left
    out; :func:`load_config` on the file restores them from the defaults, so
    ``load_config(dump_config(cfg, p)) == cfg`` for a resolved ``cfg``. Tuples become lists and
    paths strings.
    Written atomically (temporary file + rename).
    """
    import tomli_w

    path = Path(path)
    data = _drop_none(cfg)
    top = {k: v for k, v in data.items() if not isinstance(v, Mapping)}
    tables = {k: v for k, v in data.items() if isinstance(v, Mapping)}
    text = tomli_w.dumps({**top, **tables})
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path
