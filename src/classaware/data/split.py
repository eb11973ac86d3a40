"""Stratified subsampling, stratified splits and the LDAM-DRW long-tail recipe (numpy only).

Every function takes the labels ``y`` (int array, values in ``[0, num_classes)``) and a
``numpy.random.Generator`` and returns *sorted* index arrays, so the original order of the
samples is kept and results depend only on the generator's seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "allocate",
    "balanced_holdout",
    "class_counts",
    "imbalance_counts",
    "imbalance_subsample",
    "stratified_split",
    "stratified_subsample",
]


def class_counts(y: np.ndarray, num_classes: int) -> np.ndarray:
    """Number of samples of each class: ``np.bincount(y, minlength=num_classes)``."""
    return np.bincount(np.asarray(y, dtype=np.int64), minlength=num_classes)[:num_classes]


def allocate(counts: Sequence[int] | np.ndarray, total: int, *, min_one: bool = True) -> np.ndarray:
    """Split ``total`` picks over classes in proportion to ``counts`` (largest remainder).

    Class ``c`` gets ``floor(total * n_c / N)`` plus one for the ``total - sum(floors)`` classes
    with the largest fractional parts (ties: lower class index first), so the result sums to
    exactly ``min(total, N)`` and never exceeds ``counts``.  With ``min_one`` every non-empty
    class gets at least one pick when ``total`` allows it (taken from the largest allocation).

    Examples
    --------
    >>> allocate([50, 30, 20], 10).tolist()
    [5, 3, 2]
    >>> allocate([98, 1, 1], 10).tolist()
    [8, 1, 1]
    """
    counts = np.asarray(counts, dtype=np.int64)
    n = int(counts.sum())
    total = int(min(max(total, 0), n))
    if n == 0 or total == 0:
        return np.zeros_like(counts)
    quota = counts * total / n
    alloc = np.floor(quota).astype(np.int64)
    rest = total - int(alloc.sum())
    if rest > 0:
        frac = quota - alloc
        order = np.lexsort((np.arange(len(counts)), -frac))  # largest fraction, then lowest index
        alloc[order[:rest]] += 1
    if min_one and total >= int((counts > 0).sum()):
        for c in np.flatnonzero((alloc == 0) & (counts > 0)):
            donor = int(np.argmax(alloc))
            alloc[donor] -= 1
            alloc[c] += 1
    return alloc


def _pick(y: np.ndarray, per_class: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices with ``per_class[c]`` random samples of each class ``c``."""
    chosen = []
    for c, k in enumerate(per_class.tolist()):
        if k <= 0:
            continue
        idx = np.flatnonzero(y == c)
        chosen.append(rng.permutation(idx)[:k])
    if not chosen:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def stratified_subsample(y: np.ndarray, total: int, num_classes: int,
                         rng: np.random.Generator) -> np.ndarray:
    """Indices of a stratified random subset of ``total`` samples (all of them if fewer).

    Per-class sizes come from :func:`allocate` (proportional, every class kept when possible).

    Examples
    --------
    >>> y = np.repeat(np.arange(3), [60, 30, 10])
    >>> idx = stratified_subsample(y, 10, 3, np.random.default_rng(0))
    >>> np.bincount(y[idx]).tolist()
    [6, 3, 1]
    """
    y = np.asarray(y)
    if total >= len(y):
        return np.arange(len(y), dtype=np.int64)
    return _pick(y, allocate(class_counts(y, num_classes), total), rng)


def stratified_split(y: np.ndarray, fraction: float, num_classes: int,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into ``(rest, held_out)`` with ``held_out`` ≈ ``fraction`` of every class.

    ``round(fraction * N)`` samples are held out, spread over the classes by :func:`allocate`;
    every class keeps at least one sample in ``rest`` (a class with a single sample is never
    held out).  The two index sets are disjoint and together cover ``range(N)``.

    Examples
    --------
    >>> y = np.repeat(np.arange(2), [80, 20])
    >>> rest, val = stratified_split(y, 0.1, 2, np.random.default_rng(0))
    >>> np.bincount(y[val]).tolist(), len(rest)
    ([8, 2], 90)
    """
    y = np.asarray(y)
    n = len(y)
    if fraction <= 0 or n == 0:
        return np.arange(n, dtype=np.int64), np.zeros(0, dtype=np.int64)
    counts = class_counts(y, num_classes)
    held = allocate(counts, int(round(fraction * n)), min_one=False)
    held = np.minimum(held, np.maximum(counts - 1, 0))
    held_idx = _pick(y, held, rng)
    mask = np.ones(n, dtype=bool)
    mask[held_idx] = False
    return np.flatnonzero(mask).astype(np.int64), held_idx


def imbalance_counts(counts: Sequence[int] | np.ndarray, profile: str, ratio: float,
                     order: Sequence[int] | None = None) -> list[int]:
    """Per-class training sizes of the LDAM-DRW long-tail recipe.

    With ``C`` classes ranked by ``order`` (default: label order) and
    ``n_max = max(counts)``, the class at rank ``i`` keeps

    * ``exp``:  ``n_i = int(n_max * ratio ** (-i / (C - 1)))``
    * ``step``: ``n_i = n_max`` for ``i < C // 2``, else ``int(n_max / ratio)``
    * ``none``: every sample

    clipped to ``[1, counts[c]]`` (a class never disappears, nor gets more than it has).

    Returns
    -------
    list[int]
        The size for every class, indexed by class (not by rank).

    Examples
    --------
    >>> imbalance_counts([6000] * 10, "exp", 100)
    [6000, 3596, 2156, 1292, 774, 464, 278, 166, 100, 60]
    >>> imbalance_counts([100] * 4, "step", 10, order=[3, 2, 1, 0])
    [10, 10, 100, 100]
    """
    counts = [int(c) for c in counts]
    num = len(counts)
    order = list(range(num)) if order is None else [int(c) for c in order]
    if sorted(order) != list(range(num)):
        raise ValueError(f"order must be a permutation of range({num}), got {order}")
    if profile == "none" or num <= 1:
        return counts
    if profile not in ("exp", "step"):
        raise ValueError(f"profile must be 'exp', 'step' or 'none', got {profile!r}")
    if not ratio >= 1:
        raise ValueError(f"ratio must be >= 1, got {ratio!r}")
    n_max = max(counts)
    out = list(counts)
    for rank, c in enumerate(order):
        # the release's own expressions (imb_factor = 1 / ratio), so the counts match it exactly
        if profile == "exp":
            target = int(n_max * (1.0 / ratio) ** (rank / (num - 1.0)))
        else:
            target = n_max if rank < num // 2 else int(n_max * (1.0 / ratio))
        out[c] = min(counts[c], max(target, 1))
    return out


def imbalance_subsample(y: np.ndarray, num_classes: int, profile: str, ratio: float,
                        order: Sequence[int] | None, rng: np.random.Generator) -> np.ndarray:
    """Indices kept by :func:`imbalance_counts` (a random subset of each class).

    Examples
    --------
    >>> y = np.repeat(np.arange(3), 100)
    >>> idx = imbalance_subsample(y, 3, "exp", 100, None, np.random.default_rng(0))
    >>> np.bincount(y[idx]).tolist()
    [100, 10, 1]
    """
    y = np.asarray(y)
    if profile == "none":
        return np.arange(len(y), dtype=np.int64)
    keep = imbalance_counts(class_counts(y, num_classes), profile, ratio, order)
    return _pick(y, np.asarray(keep, dtype=np.int64), rng)


def balanced_holdout(y: np.ndarray, exclude: np.ndarray, per_class: int, num_classes: int,
                     rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of ``per_class`` random samples of every class among those not in ``exclude``.

    A class with fewer than ``per_class`` samples outside ``exclude`` gives all it has (so the
    result is balanced over the classes that can afford it, and disjoint from ``exclude``).

    Examples
    --------
    >>> y = np.repeat(np.arange(3), 10)
    >>> kept = imbalance_subsample(y, 3, "exp", 10, None, np.random.default_rng(0))
    >>> val = balanced_holdout(y, kept, 4, 3, np.random.default_rng(1))
    >>> np.bincount(y[kept]).tolist(), np.bincount(y[val]).tolist(), bool(np.intersect1d(kept, val).size)
    ([10, 3, 1], [0, 4, 4], False)
    """
    y = np.asarray(y)
    free = np.ones(len(y), dtype=bool)
    free[np.asarray(exclude, dtype=np.int64)] = False
    idx_free = np.flatnonzero(free)
    take = np.minimum(class_counts(y[idx_free], num_classes), max(0, int(per_class)))
    return idx_free[_pick(y[idx_free], take, rng)]
