"""The one rule that turns class names (or indices) into class indices, used everywhere.

``resolve_classes(items, class_names, key=...)``: an integer is an index (``0 <= i < C``); a
string matches a class name exactly, else case-insensitively when exactly one name matches
(``"shirt"`` is ``"Shirt"``; with classes ``"Cat"`` and ``"cat"``, ``"CAT"`` is ambiguous). An
unknown or ambiguous name, an index out of range or a class listed twice is a
:class:`~classaware.errors.ConfigError` naming ``key`` and listing the valid names.  The config's
important classes, SimLoss groups, ``data.class_order``, the metrics and the study report all
call it, so a name that trains is a name that reports.

Example
-------
>>> resolve_classes(["shirt", 0], ["T-shirt/top", "Shirt"], key="loss.important_classes")
[1, 0]
"""

from __future__ import annotations

import difflib
import operator
import re
from collections.abc import Iterable, Sequence
from typing import Any

from classaware.errors import ConfigError
from classaware.schema import expected, is_int

__all__ = ["class_label", "class_list", "resolve_class", "resolve_classes"]


def _index(item: Any) -> int | None:
    """``item`` as an int index (Python or numpy integer, not bool), else None."""
    if isinstance(item, (bool, str)):
        return None
    try:
        return operator.index(item)
    except TypeError:
        return None


_PLAIN = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def class_label(name: str) -> str:
    """A class name as it is shown inside a label or a sentence: as it is when it is one plain
    word, quoted otherwise, so that it cannot be misread (``recall '8' (%)``, ``recall
    'Speed limit (30km/h)' (%)``, but ``recall Shirt (%)``).

    >>> class_label("Shirt"), class_label("8"), class_label("T-shirt/top")
    ('Shirt', "'8'", "'T-shirt/top'")
    """
    name = str(name)
    return name if _PLAIN.fullmatch(name) else repr(name)


def resolve_class(item: str | int, class_names: Sequence[str], *, key: str) -> int:
    """The index of one class name or index (see the module docstring for the rule)."""
    names = [str(n) for n in class_names]
    idx = _index(item)
    if idx is not None:
        if not 0 <= idx < len(names):
            raise ConfigError(f"{key}: class index {idx} out of range: the data has {len(names)} "
                              f"classes (0..{len(names) - 1})")
        return idx
    if not isinstance(item, str):
        raise ConfigError(f"{key}: expected class names or indices, got {item!r} "
                          f"({type(item).__name__})")
    if item in names:
        return names.index(item)
    folded = [i for i, n in enumerate(names) if n.lower() == item.lower()]
    if len(folded) == 1:
        return folded[0]
    if folded:
        what = f"ambiguous class {item!r} (matches {', '.join(repr(names[i]) for i in folded)})"
    else:
        close = difflib.get_close_matches(item, names, n=1)
        what = f"unknown class {item!r}" + (f"; did you mean {close[0]!r}?" if close else "")
    raise ConfigError(f"{key}: {what}; the classes are: {', '.join(map(repr, names))}")


def resolve_classes(items: str | int | Iterable[str | int] | None, class_names: Sequence[str], *,
                    key: str) -> list[int]:
    """Class names or indices (or a single one; None = none) as a list of distinct indices.

    Raises
    ------
    ConfigError
        Unknown or ambiguous name, index out of range, a class listed twice; the message names
        ``key`` and lists the valid class names.
    """
    if items is None:
        return []
    if isinstance(items, str) or _index(items) is not None:
        items = [items]  # type: ignore[list-item]
    out: list[int] = []
    for item in items:  # type: ignore[union-attr]
        idx = resolve_class(item, class_names, key=key)
        if idx in out:
            raise ConfigError(f"{key}: class {str(class_names[idx])!r} is listed twice")
        out.append(idx)
    return out


def class_list(key: str, value: Any, *, min_len: int = 0) -> tuple[str | int, ...]:
    """Config checker: class names or indices (integers >= 0), each once; one becomes a 1-tuple.

    Only the form is checked here; names are matched against the data by
    :func:`resolve_classes` once the data is loaded.
    """
    if isinstance(value, str) or is_int(value):
        value = [value]
    if not isinstance(value, (list, tuple)) or len(value) < min_len or not all(
            isinstance(c, str) or (is_int(c) and c >= 0) for c in value):
        least = f"at least {min_len} " if min_len > 1 else ""
        raise expected(key, f"a list of {least}class names or indices (integers >= 0)", value)
    if len(set(value)) != len(value):
        raise ConfigError(f"{key}: a class is listed twice in {list(value)!r}")
    return tuple(value)
