"""Class-similarity matrices for :class:`classaware.losses.SimLoss`.

Each function returns a float64 tensor ``S`` [C, C] with entries in [0, 1] and ones on the
diagonal: ``S[i, j]`` is how much credit a prediction of class ``j`` earns when the truth is
``i`` (Kobs et al., 2020).  float64 so that a float64 computation uses S exactly; SimLoss uses
it in the input's compute dtype (float32 for float32 and half input).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from classaware.classes import resolve_class

__all__ = ["from_embeddings", "from_groups", "ordinal"]


def _check_num_classes(num_classes: object) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int):
        raise TypeError(f"num_classes must be an int, got {type(num_classes).__name__}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    return num_classes


def _check_fraction(value: object, name: str, *, upper_inclusive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    ok = 0.0 <= value <= 1.0 if upper_inclusive else 0.0 <= value < 1.0
    if not ok:
        interval = "[0, 1]" if upper_inclusive else "[0, 1)"
        raise ValueError(f"{name} must lie in {interval}, got {value}")
    return value


def ordinal(num_classes: int, reduction_factor: float) -> Tensor:
    r"""Similarity of ordered classes: ``S[i, j] = r ** |i - j|``.

    Neighbouring classes (ages, ratings, severity grades) share credit that decays
    geometrically with their distance.  ``r = 0`` gives the identity (plain cross entropy).

    Parameters
    ----------
    num_classes : int
        C, >= 1.
    reduction_factor : float
        r, in [0, 1).

    Examples
    --------
    >>> from classaware.similarity import ordinal
    >>> ordinal(3, 0.5)
    tensor([[1.0000, 0.5000, 0.2500],
            [0.5000, 1.0000, 0.5000],
            [0.2500, 0.5000, 1.0000]], dtype=torch.float64)
    """
    c = _check_num_classes(num_classes)
    r = _check_fraction(reduction_factor, "reduction_factor", upper_inclusive=False)
    idx = torch.arange(c, dtype=torch.float64)
    dist = (idx[:, None] - idx[None, :]).abs()
    return torch.pow(torch.tensor(r, dtype=torch.float64), dist)


def from_groups(
    groups: Iterable[Iterable[int | str]],
    num_classes: int,
    within: float = 0.5,
    *,
    class_names: Sequence[str] | None = None,
) -> Tensor:
    r"""Similarity from groups of interchangeable classes.

    ``S[i, i] = 1``; ``S[i, j] = within`` when ``i != j`` belong to the same group; 0 otherwise.

    Parameters
    ----------
    groups : iterable of iterables
        Each group lists class indices (or class names when ``class_names`` is given).  A class
        may appear in at most one group; classes in no group are similar only to themselves.
    num_classes : int
        C, >= 1.
    within : float, default 0.5
        Similarity of two classes of the same group, in [0, 1].
    class_names : sequence of str, optional
        Names of the C classes, to allow names in ``groups`` (matched by
        :func:`classaware.classes.resolve_class`: exact, else case-insensitive).

    Examples
    --------
    >>> from classaware.similarity import from_groups
    >>> from_groups([[0, 2]], 3, within=0.5)
    tensor([[1.0000, 0.0000, 0.5000],
            [0.0000, 1.0000, 0.0000],
            [0.5000, 0.0000, 1.0000]], dtype=torch.float64)
    """
    c = _check_num_classes(num_classes)
    w = _check_fraction(within, "within", upper_inclusive=True)
    if class_names is not None and len(class_names) != c:
        raise ValueError(
            f"class_names has {len(class_names)} entries but num_classes is {c}"
        )
    if isinstance(groups, (str, bytes)) or not isinstance(groups, Iterable):
        raise TypeError(f"groups must be an iterable of class-index groups, got {groups!r}")
    sim = torch.eye(c, dtype=torch.float64)
    seen: dict[int, int] = {}
    for g_idx, group in enumerate(groups):
        if isinstance(group, (str, bytes)) or not isinstance(group, Iterable):
            raise TypeError(f"groups[{g_idx}] must be an iterable of class indices, got {group!r}")
        members: list[int] = []
        for item in group:
            if isinstance(item, str):
                if class_names is None:
                    raise TypeError(
                        f"groups[{g_idx}] holds the class name {item!r}; pass class_names "
                        "to use names, or give class indices"
                    )
                item = resolve_class(item, class_names, key=f"groups[{g_idx}]")
            elif isinstance(item, bool) or not isinstance(item, int):
                raise TypeError(
                    f"groups[{g_idx}] must hold int class indices, got {type(item).__name__}"
                )
            if not 0 <= item < c:
                raise ValueError(f"groups[{g_idx}]: class index {item} is outside [0, {c})")
            if item in seen:
                where = "twice in the same group" if seen[item] == g_idx else (
                    f"in groups {seen[item]} and {g_idx}"
                )
                raise ValueError(f"groups overlap: class {item} appears {where}")
            seen[item] = g_idx
            members.append(item)
        for i in members:
            for j in members:
                if i != j:
                    sim[i, j] = w
    return sim


def from_embeddings(embeddings: Tensor | Sequence[Sequence[float]], lower_bound: float = 0.5) -> Tensor:
    r"""Similarity from class embeddings (e.g. word vectors of the class names).

    .. math:: S_{ij} = \max\!\Big(0, \frac{\cos(e_i, e_j) - b}{1 - b}\Big), \qquad S_{ii} = 1

    Cosine similarities at or below ``b`` give no credit; the rest are rescaled to (0, 1].

    Parameters
    ----------
    embeddings : Tensor [C, D]
        One row per class, no zero rows.
    lower_bound : float, default 0.5
        b, in [-1, 1).

    Examples
    --------
    >>> import torch
    >>> from classaware.similarity import from_embeddings
    >>> from_embeddings(torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]), lower_bound=0.5)
    tensor([[1.0000, 0.4142, 0.0000],
            [0.4142, 1.0000, 0.4142],
            [0.0000, 0.4142, 1.0000]], dtype=torch.float64)
    """
    if isinstance(lower_bound, bool) or not isinstance(lower_bound, (int, float)):
        raise TypeError(f"lower_bound must be a real number, got {type(lower_bound).__name__}")
    b = float(lower_bound)
    if not (-1.0 <= b < 1.0) or math.isnan(b):
        raise ValueError(f"lower_bound must lie in [-1, 1), got {lower_bound}")
    emb = embeddings.detach() if isinstance(embeddings, Tensor) else torch.as_tensor(embeddings)
    if emb.dim() != 2 or emb.shape[0] < 1 or emb.shape[1] < 1:
        raise ValueError(
            f"embeddings must be a 2-D [C, D] tensor with C, D >= 1, got shape {tuple(emb.shape)}"
        )
    emb = emb.to(torch.float64)
    if not bool(torch.isfinite(emb).all()):
        raise ValueError("embeddings must be finite")
    norms = emb.norm(dim=1)
    if bool((norms == 0).any()):
        bad = torch.nonzero(norms == 0).flatten().tolist()
        raise ValueError(f"embeddings has zero rows (no direction) for classes {bad}")
    unit = emb / norms[:, None]
    cos = (unit @ unit.T).clamp(-1.0, 1.0)
    sim = ((cos - b) / (1.0 - b)).clamp(0.0, 1.0)
    sim.fill_diagonal_(1.0)
    return sim
