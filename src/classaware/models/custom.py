"""Your own backbone: a factory named by ``model.name = "package.module:factory"``, a module
passed from Python, and ``model.init`` weights loaded from a local file.

A backbone maps a batch of inputs ``[N, *input_shape]`` to features ``[N, D]``; classaware finds
``D`` with one dry forward of two zero inputs (in eval mode, without gradients) and adds the
head.  Every problem — a module that does not import, a factory that raises or returns
something else than an ``nn.Module``, an output that is not ``[N, D]``, a weights file that
does not fit — is one :class:`~classaware.errors.ConfigError` line naming the key, raised while
the model is built, before the first training step.  Nothing is ever downloaded.

Example
-------
>>> import torch
>>> from torch import nn
>>> feature_dim(nn.Sequential(nn.Flatten(), nn.Linear(64, 16)), (64,), key="model.name")
16
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from classaware.errors import ConfigError
from classaware.schema import filepath, thaw

__all__ = ["FACTORY_RE", "build_factory", "feature_dim", "import_factory", "is_factory_name",
           "load_init", "weights_path"]

#: ``package.module:attribute`` (the attribute may be dotted: ``module:Class.create``)
FACTORY_RE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


def is_factory_name(name: str) -> bool:
    """True when ``name`` has the ``package.module:factory`` form."""
    return bool(FACTORY_RE.match(name))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def import_factory(name: str, key: str = "model.name") -> Callable[..., Any]:
    """The callable named ``"package.module:factory"``.

    The module is imported as Python would, with the current directory added at the end of
    ``sys.path`` (so ``mymodels.py`` next to where ``classaware`` runs is found, as
    ``uvicorn main:app`` finds ``main.py``).  Any failure is a ConfigError naming ``key``.
    """
    module_name, _, attr = name.partition(":")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.append(cwd)
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, SyntaxError, anything the module raises on import
        raise ConfigError(f"{key}: cannot import {module_name!r} for {name!r} ({_first_line(exc)});"
                          f" the module must be importable from PYTHONPATH or the current "
                          f"directory") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{key}: module {module_name!r} has no attribute {attr!r} "
                              f"(from {name!r})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"{key}: {name!r} is not callable (a {type(obj).__name__}); name a "
                          "function or class that returns an nn.Module")
    return obj


def build_factory(name: str, kwargs: Mapping[str, Any], input_shape: tuple[int, ...]
                  ) -> nn.Module:
    """Call the factory ``name`` with ``model.kwargs`` (plus ``input_shape`` when its signature
    names a parameter of that name) and check that it returns an ``nn.Module``."""
    factory = import_factory(name)
    kw = {k: thaw(v) for k, v in kwargs.items()}
    try:
        sig: inspect.Signature | None = inspect.signature(factory)
    except (TypeError, ValueError):  # a builtin without a signature: call it as is
        sig = None
    if sig is not None:
        if "input_shape" in sig.parameters and "input_shape" not in kw:
            kw["input_shape"] = tuple(input_shape)
        try:
            sig.bind(**kw)
        except TypeError as exc:
            raise ConfigError(f"model.kwargs: {name!r} cannot be called with {sorted(kw)} "
                              f"({exc})") from None
    try:
        module = factory(**kw)
    except Exception as exc:
        raise ConfigError(f"model.name: the factory {name!r} raised {_first_line(exc)}") from None
    if not isinstance(module, nn.Module):
        raise ConfigError(f"model.name: the factory {name!r} returned an object of type "
                          f"{type(module).__name__}, expected a torch.nn.Module")
    return module


def feature_dim(backbone: nn.Module, input_shape: tuple[int, ...], *, key: str) -> int:
    """``D`` of a backbone, from one dry forward of ``zeros(2, *input_shape)``.

    Eval mode and no gradients, so batch-norm statistics and the random state are untouched
    (the module's mode is restored).  Raises ConfigError naming ``key`` when the forward fails
    or its output is not a float tensor ``[2, D]``.
    """
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            out = backbone(torch.zeros(2, *input_shape))
    except Exception as exc:
        raise ConfigError(f"{key}: the backbone fails on inputs of shape [N, "
                          f"{', '.join(map(str, input_shape))}] ({_first_line(exc)})") from None
    finally:
        backbone.train(was_training)
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 2 \
            or out.shape[1] < 1 or not out.is_floating_point():
        got = (f"a tensor of shape {list(out.shape)}" if isinstance(out, torch.Tensor)
               else f"a {type(out).__name__}")
        raise ConfigError(f"{key}: the backbone must map inputs [N, "
                          f"{', '.join(map(str, input_shape))}] to float features [N, D]; "
                          f"for N = 2 it returned {got}")
    return int(out.shape[1])


def weights_path(key: str, v: Any) -> str:
    """The ``model.init`` checker: a path, stored absolute (so ``evaluate`` and ``--resume``
    find it from any working directory)."""
    return str(Path(filepath(key, v)).expanduser().resolve())


def _state_dict_of(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """A plain state dict from what ``torch.load`` returned: the dict itself, or its
    ``"state_dict"``/``"model"`` entry; a ``module.`` prefix every key shares (DDP) is stripped,
    and of a classaware model (``backbone.*`` and ``head.*`` keys, e.g. a run's ``best.pt``)
    the backbone is kept."""
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
            break
    if not isinstance(obj, Mapping) or not obj or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise ConfigError(f"model.init: {path} does not hold a state dict (a mapping of parameter "
                          "names to tensors, e.g. torch.save(backbone.state_dict(), path))")
    state = dict(obj)
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    if any(k.startswith("backbone.") for k in state) and all(
            k.startswith(("backbone.", "head.")) for k in state):
        state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    return state


def load_init(backbone: nn.Module, path: str | Path, *, strict: bool = True) -> str:
    """Load the state dict in ``path`` (a local file, never a URL) into ``backbone``.

    ``strict``: every key must match (else a ConfigError listing the missing and unexpected
    keys); with ``strict=False`` the matching keys are loaded and the returned note lists the
    others.  A shape mismatch is always an error.  Returns a one-line note for the run header.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"model.init: {str(path)!r} "
                          f"{'is not a file' if path.exists() else 'does not exist'}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"model.init: cannot read {path} as a torch state dict "
                          f"({_first_line(exc)})") from None
    state = _state_dict_of(obj, path)
    own = backbone.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and own[k].shape != state[k].shape]
    listing = (f"missing keys {_few(missing)}, unexpected keys {_few(unexpected)}")
    if shapes:
        k = shapes[0]
        raise ConfigError(f"model.init: {path}: {len(shapes)} tensor(s) differ in shape, e.g. "
                          f"{k!r}: {list(state[k].shape)} in the file, {list(own[k].shape)} in "
                          "the backbone")
    if strict and (missing or unexpected):
        raise ConfigError(f"model.init: {path} does not match the backbone: {listing}; set "
                          "model.init_strict = false to load the matching keys")
    if len(missing) == len(own):
        raise ConfigError(f"model.init: {path} shares no key with the backbone ({listing})")
    backbone.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    note = f"model.init: loaded {len(own) - len(missing)} of {len(own)} tensors from {path}"
    return note + (f"; {listing}" if missing or unexpected else "")


def _few(keys: list[str], n: int = 5) -> str:
    if not keys:
        return "[]"
    shown = ", ".join(repr(k) for k in keys[:n])
    return f"[{shown}{f', ... ({len(keys)} in all)' if len(keys) > n else ''}]"
