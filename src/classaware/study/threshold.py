"""Threshold moving: the trivial competitor of every class-aware loss.

For a trained model with outputs ``o`` (logits or cosines, ``[N, C]``) and an important class
``k``, add a bias ``b`` to column ``k`` only and predict

    ŷ_i(b) = argmax_j (o_ij + b·[j = k])

Class ``k`` is predicted for sample ``i`` exactly when ``b > m_i`` with the *critical bias*
``m_i = max_{j≠k} o_ij − o_ik`` (ties are broken towards the other classes), so the recall of
``k``, ``R(b) = |{i : y_i = k, m_i < b}| / |{i : y_i = k}|``, is a non-decreasing step function of
``b``.  :func:`choose_bias` picks, on the VALIDATION set, the smallest grid bias whose recall
reaches a target; :func:`apply_bias` evaluates that bias on the TEST set.

The default grid (:func:`bias_grid`) holds ``m_i + δ`` for every validation sample of class
``k`` (so the smallest grid bias reaching a target is the exact infimum plus ``δ``), ``0`` and
an evenly spaced grid over the same range for smooth curves.

Example
-------
>>> import numpy as np
>>> out = np.array([[0.0, 1.0], [0.0, 2.0], [3.0, 0.0]])   # class 0 needs b > 1, b > 2
>>> y = np.array([0, 0, 1])
>>> b = choose_bias(out, y, 0, 0.5, bias_grid(out, y, 0))
>>> bool(1.0 < b < 1.01)
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Curve:
    """Class ``k``'s recall and precision and the accuracy at each bias (arrays as long as ``bias``;
    recall is NaN when class ``k`` has no sample, precision NaN when nothing is predicted ``k``)."""

    bias: np.ndarray
    recall: np.ndarray
    precision: np.ndarray
    accuracy: np.ndarray


@dataclass(frozen=True)
class Point:
    """Recall and precision of class ``k`` and the accuracy at one bias (NaN as in :class:`Curve`)."""

    bias: float
    recall: float
    precision: float
    accuracy: float


@dataclass(frozen=True)
class OperatingPoint:
    """A target recall, the validation recall of the bias chosen for it on validation, and the
    :class:`Point` of that bias on test (both ``None`` when the target is unreachable on val)."""

    target: float
    val_recall: float | None = None
    test: Point | None = None


def _check(outputs: Any, targets: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    o = np.asarray(outputs, dtype=np.float64)
    y = np.asarray(targets)
    if o.ndim != 2:
        raise ValueError(f"outputs: expected a 2-d array [N, C], got shape {o.shape}")
    if y.ndim != 1 or y.shape[0] != o.shape[0]:
        raise ValueError(f"targets: expected shape ({o.shape[0]},), got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"targets: expected integer class indices, got dtype {y.dtype}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k < o.shape[1]:
        raise ValueError(f"k: expected a class index in [0, {o.shape[1]}), got {k!r}")
    if o.shape[1] < 2:
        raise ValueError("outputs: need at least 2 classes")
    return o, y.astype(np.int64)


def critical_bias(outputs: Any, k: int) -> np.ndarray:
    """``m_i = max_{j≠k} o_ij − o_ik``: class ``k`` is predicted iff the bias exceeds ``m_i``."""
    o = np.asarray(outputs, dtype=np.float64)
    others = np.delete(o, k, axis=1)
    return others.max(axis=1) - o[:, k]


def sweep(outputs: Any, targets: Any, k: int, biases: Any) -> Curve:
    """Recall, precision of class ``k`` and accuracy for each bias in ``biases``.

    With ``m_i`` the critical bias, ``ŷ_i(b) = k`` if ``b > m_i`` else ``argmax_{j≠k} o_ij``.
    """
    o, y = _check(outputs, targets, k)
    b = np.asarray(biases, dtype=np.float64).reshape(-1)
    m = critical_bias(o, k)
    others = np.delete(o, k, axis=1)
    alt = others.argmax(axis=1)
    alt = alt + (alt >= k)  # index in the full class list
    pred_k = b[:, None] > m[None, :]  # [B, N]
    is_k = y == k
    tp = (pred_k & is_k[None, :]).sum(axis=1)
    n_k = int(is_k.sum())
    n_pred = pred_k.sum(axis=1)
    alt_right = (alt == y) & ~is_k  # correct when not predicted k
    correct = tp + ((~pred_k) & alt_right[None, :]).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = tp / n_k if n_k else np.full(b.shape, np.nan)
        precision = np.where(n_pred > 0, tp / np.maximum(n_pred, 1), np.nan)
    return Curve(bias=b, recall=np.asarray(recall, dtype=np.float64),
                 precision=precision.astype(np.float64), accuracy=correct / max(len(y), 1))


def bias_grid(outputs: Any, targets: Any, k: int, *, num: int = 201,
              delta: float | None = None) -> np.ndarray:
    """Sorted bias grid: ``m_i + δ`` for each sample of class ``k``, ``0``, and ``num`` even steps.

    ``δ`` defaults to ``1e-6`` times the spread of the outputs (at least ``1e-9``), small enough
    not to cross another critical value in practice.
    """
    o, y = _check(outputs, targets, k)
    m = critical_bias(o, k)
    if delta is None:
        spread = float(np.ptp(o)) if o.size else 1.0
        delta = max(1e-6 * spread, 1e-9)
    mk = m[y == k]
    pts = [np.zeros(1)]
    if mk.size:
        lo, hi = float(mk.min()) - delta, float(mk.max()) + delta
        pts += [mk + delta, np.array([lo]), np.linspace(lo, hi, num)]
    return np.unique(np.concatenate(pts))


def choose_bias(outputs: Any, targets: Any, k: int, target_recall: float,
                grid: Any | None = None) -> float | None:
    """The smallest bias in ``grid`` whose recall of class ``k`` on (outputs, targets) is ≥ target.

    ``None`` when no grid bias reaches it (or class ``k`` has no sample).
    """
    if not 0 < float(target_recall) <= 1:
        raise ValueError(f"target_recall: expected a number in (0, 1], got {target_recall!r}")
    if grid is None:
        grid = bias_grid(outputs, targets, k)
    g = np.sort(np.asarray(grid, dtype=np.float64).reshape(-1))
    r = sweep(outputs, targets, k, g).recall
    ok = np.nonzero(r >= float(target_recall) - 1e-12)[0]
    return float(g[ok[0]]) if ok.size else None


def apply_bias(outputs: Any, targets: Any, k: int, bias: float) -> Point:
    """Recall/precision of class ``k`` and accuracy at one bias."""
    s = sweep(outputs, targets, k, [bias])
    return Point(bias=float(bias), recall=float(s.recall[0]), precision=float(s.precision[0]),
                 accuracy=float(s.accuracy[0]))


def operating_points(val_outputs: Any, val_targets: Any, test_outputs: Any, test_targets: Any,
                     k: int, targets: list[float]) -> list[OperatingPoint]:
    """For each target recall: the bias chosen on validation, its val recall, and its test metrics."""
    grid = bias_grid(val_outputs, val_targets, k)
    out = []
    for t in targets:
        b = choose_bias(val_outputs, val_targets, k, t, grid)
        if b is None:
            out.append(OperatingPoint(target=float(t)))
            continue
        out.append(OperatingPoint(
            target=float(t), val_recall=apply_bias(val_outputs, val_targets, k, b).recall,
            test=apply_bias(test_outputs, test_targets, k, b)))
    return out


def curve(outputs: Any, targets: Any, k: int, grid: Any | None = None) -> Curve:
    """The recall-vs-accuracy curve of ``k`` over a bias grid (default: :func:`bias_grid` of these
    outputs)."""
    if grid is None:
        grid = bias_grid(outputs, targets, k)
    return sweep(outputs, targets, k, grid)


def accuracy_at_recall(curve_recall: Any, curve_accuracy: Any, recall: float) -> float:
    """Accuracy a threshold curve reaches at ``recall``: the best accuracy among curve points with
    recall ≥ ``recall`` (NaN when none reaches it). A step curve, no interpolation."""
    r = np.asarray(curve_recall, dtype=np.float64)
    a = np.asarray(curve_accuracy, dtype=np.float64)
    ok = r >= recall - 1e-12
    return float(a[ok].max()) if ok.any() else float("nan")
