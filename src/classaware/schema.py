"""Typed, frozen config sections and the one set of value checks behind every config message.

A section is a frozen dataclass whose fields are declared with :func:`setting` (a default and a
*checker*) or :func:`section` (a nested section).  :meth:`Section.from_dict` builds one from a
mapping: it rejects unknown keys (with a "did you mean" hint), fills defaults, runs each
checker, then the section's own cross-field rule (``_check``).  Every problem is one
:class:`~classaware.errors.ConfigError` line in one format::

    <dotted.key>: expected <what>, got <value> (<type>)

A checker is ``check(key, value) -> value`` (normalised: lists become tuples, ints become floats
where a number is expected, names are lower-cased); it raises ConfigError naming ``key``.
Numbers are finite: NaN and ±inf are rejected everywhere.

Example
-------
>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Demo(Section):
...     lr: float = setting(0.1, number(lo=0.0, lo_open=True))
>>> Demo.from_dict({"lr": 1}, "optim").lr
1.0
>>> Demo.from_dict({"lr": 0}, "optim")
Traceback (most recent call last):
...
classaware.errors.ConfigError: optim.lr: expected a number > 0, got 0 (int)
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from os import PathLike
from typing import Any, TypeVar

from classaware.errors import ConfigError

__all__ = ["FrozenMap", "Section", "boolean", "choice", "expected", "filepath", "freeze",
           "integer", "is_int", "is_number", "number", "optional", "section", "sequence",
           "setting", "show", "text", "thaw", "tristate", "unknown_key"]

Checker = Callable[[str, Any], Any]
S = TypeVar("S", bound="Section")
_MISSING = object()


# ------------------------------------------------------------------------------ messages
def show(value: Any) -> str:
    """``repr(value) (type)``, cut to 60 characters."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def expected(key: str, what: str, value: Any) -> ConfigError:
    """``ConfigError("<key>: expected <what>, got <value> (<type>)")``."""
    return ConfigError(f"{key}: expected {what}, got {show(value)}")


def unknown_key(dotted: str, known: Iterable[str], elsewhere: Iterable[str] = (),
                aliases: Mapping[str, str] | None = None) -> str:
    """``"<dotted>: unknown key; did you mean '<closest>'?"``.

    The closest of ``known`` (the keys of the same table; an alias such as ``learning_rate``
    for ``lr`` counts), else the same leaf key in another section (``elsewhere``: every dotted
    key of the config), else the closest dotted key; else the known keys are listed.
    """
    parts = dotted.split(".")
    leaf, prefix = parts[-1], ".".join(parts[:-1])
    known, elsewhere = list(known), list(elsewhere)
    msg = f"{dotted}: unknown {'section or key' if len(parts) == 1 else 'key'}"
    close = difflib.get_close_matches(leaf, known, n=1, cutoff=0.6)
    if aliases and aliases.get(leaf) in known:
        close = [aliases[leaf]]
    same_leaf = [d for d in elsewhere if d.split(".")[-1] == leaf and d != dotted]
    fuzzy = difflib.get_close_matches(dotted, elsewhere, n=1, cutoff=0.75)
    if close:
        return msg + f"; did you mean {(prefix + '.' if prefix else '') + close[0]!r}?"
    if same_leaf or fuzzy:
        return msg + f"; did you mean {(same_leaf or fuzzy)[0]!r}?"
    return msg + (f" (known: {', '.join(known)})" if known else "")


# ------------------------------------------------------------------------------ checkers
def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    """An int or a finite float (never a bool, NaN or ±inf)."""
    return is_int(v) or (isinstance(v, float) and math.isfinite(v))


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _range(lo: Any, hi: Any, lo_open: bool = False, hi_open: bool = False) -> str:
    if lo is not None and hi is not None:
        return f" in {'(' if lo_open else '['}{_fmt(lo)}, {_fmt(hi)}{')' if hi_open else ']'}"
    if lo is not None:
        return f" {'>' if lo_open else '>='} {_fmt(lo)}"
    if hi is not None:
        return f" {'<' if hi_open else '<='} {_fmt(hi)}"
    return ""


def _inside(v: float, lo: Any, hi: Any, lo_open: bool, hi_open: bool) -> bool:
    return not ((lo is not None and (v < lo or (lo_open and v == lo)))
                or (hi is not None and (v > hi or (hi_open and v == hi))))


def integer(lo: int | None = None, hi: int | None = None) -> Checker:
    """An int (not a bool) in ``[lo, hi]``."""
    what = "an integer" + _range(lo, hi)

    def check(key: str, v: Any) -> int:
        if not is_int(v) or not _inside(v, lo, hi, False, False):
            raise expected(key, what, v)
        return v
    return check


def number(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
           hi_open: bool = False, what: str = "a number") -> Checker:
    """A finite int or float in the interval, returned as a float."""
    what += _range(lo, hi, lo_open, hi_open)

    def check(key: str, v: Any) -> float:
        if not is_number(v) or not _inside(v, lo, hi, lo_open, hi_open):
            raise expected(key, what, v)
        return float(v)
    return check


def boolean(key: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise expected(key, "true or false", v)
    return v


def tristate(key: str, v: Any) -> bool | str:
    """``true``, ``false`` or ``"auto"`` (any case)."""
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() == "auto":
        return "auto"
    raise expected(key, 'true, false or "auto"', v)


def choice(options: Iterable[str], what: str = "one of") -> Checker:
    """One of ``options`` (case-insensitive, returned lower-case), with a "did you mean"."""
    options = tuple(options)

    def check(key: str, v: Any) -> str:
        if isinstance(v, str) and v.lower() in options:
            return v.lower()
        close = difflib.get_close_matches(v, options, n=1) if isinstance(v, str) else []
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{expected(key, f'{what} ' + ', '.join(map(repr, options)), v)}{hint}")
    return check


def text(key: str, v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise expected(key, "a non-empty string", v)
    return v


def filepath(key: str, v: Any) -> str:
    """A non-empty string or ``os.PathLike``, returned as a string."""
    if not isinstance(v, (str, PathLike)) or str(v) == "":
        raise expected(key, "a path (string)", v)
    return str(v)


def sequence(key: str, v: Any, ok: Callable[[Any], bool], what: str, *,
             length: int | None = None, min_len: int = 0) -> tuple:
    """``v`` as a tuple when it is a list (or tuple) whose items all pass ``ok``."""
    if (not isinstance(v, (list, tuple)) or len(v) < min_len
            or (length is not None and len(v) != length) or not all(ok(x) for x in v)):
        raise expected(key, what, v)
    return tuple(v)


def optional(check: Checker) -> Checker:
    """``check``, or None ("absent"; ``--set key=none`` clears such a key)."""
    return lambda key, v: None if v is None else check(key, v)


# ------------------------------------------------------------------------------ frozen values
class FrozenMap(Mapping):
    """A read-only, hashable mapping (its values frozen by :func:`freeze`)."""

    __slots__ = ("_d",)

    def __init__(self, items: Mapping[str, Any] | Iterable[tuple[str, Any]] = ()) -> None:
        object.__setattr__(self, "_d", {k: freeze(v) for k, v in dict(items).items()})

    def __getitem__(self, key: str) -> Any:
        return self._d[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __hash__(self) -> int:
        return hash(tuple(self._d.items()))

    def __repr__(self) -> str:
        return f"FrozenMap({self._d!r})"

    def __reduce__(self) -> tuple:
        return FrozenMap, (self._d,)


def freeze(v: Any) -> Any:
    """Lists/tuples → tuples, mappings → :class:`FrozenMap`, recursively."""
    if isinstance(v, (list, tuple)):
        return tuple(freeze(x) for x in v)
    if isinstance(v, Mapping) and not isinstance(v, FrozenMap):
        return FrozenMap(v)
    return v


def thaw(v: Any) -> Any:
    """The inverse of :func:`freeze` (tuples → lists, mappings and sections → dicts)."""
    if isinstance(v, Section):
        return v.to_dict()
    if isinstance(v, (list, tuple)):
        return [thaw(x) for x in v]
    if isinstance(v, Mapping):
        return {k: thaw(x) for k, x in v.items()}
    return v


# ------------------------------------------------------------------------------ sections
def setting(default: Any, check: Checker) -> Any:
    """A section field: its default and the checker a given value goes through."""
    return dataclasses.field(default=default, metadata={"check": check})


def section(cls: type[Section]) -> Any:
    """A nested section field (a TOML sub-table such as ``[data.imbalance]``)."""
    return dataclasses.field(default_factory=cls, metadata={"section": cls})


class Section:
    """Base of the frozen config sections: ``from_dict`` (validating) and ``to_dict``."""

    @classmethod
    def from_dict(cls: type[S], values: Mapping[str, Any] | None, prefix: str, *,
                  elsewhere: Iterable[str] = (), aliases: Mapping[str, str] | None = None) -> S:
        """Build and validate the section ``prefix`` from ``values`` (None = the defaults)."""
        values = {} if values is None else values
        if not isinstance(values, Mapping):
            raise expected(prefix, "a table", values)
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        for k in values:
            if k not in fields:
                dotted = f"{prefix}.{k}" if prefix else str(k)
                raise ConfigError(unknown_key(dotted, fields, elsewhere, aliases))
        out = {}
        for name, f in fields.items():
            key, v = f"{prefix}.{name}" if prefix else name, values.get(name, _MISSING)
            if "section" in f.metadata:
                out[name] = f.metadata["section"].from_dict(
                    None if v is _MISSING else v, key, elsewhere=elsewhere, aliases=aliases)
            elif v is not _MISSING:
                out[name] = f.metadata["check"](key, v)
        obj = cls(**out)
        obj._check(prefix)
        return obj

    def _check(self, prefix: str) -> None:
        """The section's cross-field rules (raise ConfigError naming the key)."""

    def to_dict(self) -> dict[str, Any]:
        """The section as plain dicts and lists (None where a key is absent)."""
        return {f.name: thaw(getattr(self, f.name))
                for f in dataclasses.fields(self)}  # type: ignore[arg-type]
