"""Evaluation metrics, all computed from one confusion matrix.

``cm[i, j]`` = number of samples of true class ``i`` predicted as class ``j`` (rows true,
columns predicted).  Build it with :func:`confusion_matrix` on any device (it is an int64
tensor, so a distributed evaluation can ``all_reduce`` it), then turn it into numbers with
:func:`metrics_from_confusion`.

Zero-division convention (scikit-learn's ``zero_division=0``): a ratio whose denominator is 0
is 0.  So a class that is never predicted has precision 0, a class absent from the data has
recall 0, and an F1 with ``2·TP + FP + FN = 0`` is 0.  Averages over classes follow
scikit-learn's default label sets: balanced accuracy averages the recall of the classes present
in the data (support > 0); macro-F1 averages the F1 of the classes that are present *or*
predicted (a class that is neither is left out).  The per-class lists always have ``C``
entries.

Everything returned is JSON-serialisable (python ``float``/``int``/``list``/``dict``/``None``).

>>> import torch
>>> cm = confusion_matrix(torch.tensor([0, 0, 1, 2]), torch.tensor([0, 1, 1, 1]), 3)
>>> cm.tolist()
[[1, 1, 0], [0, 1, 0], [0, 1, 0]]
>>> m = metrics_from_confusion(cm, class_names=["a", "b", "c"], important=["c"])
>>> m["accuracy"], m["important_recall"]
(0.5, {'c': 0.0})
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from classaware.classes import resolve_class, resolve_classes

__all__ = [
    "confusion_matrix",
    "metrics_from_confusion",
    "shot_buckets",
    "group_accuracy",
    "mean_abs_class_error",
    "angles_deg",
    "angle_stats",
    "format_table",
    "METRIC_KEYS",
]

#: The keys of :func:`metrics_from_confusion`'s result, in order.
METRIC_KEYS: tuple[str, ...] = (
    "accuracy", "balanced_accuracy", "macro_f1",
    "per_class_precision", "per_class_recall", "per_class_f1", "per_class_support",
    "confusion_matrix", "important_recall", "important_precision",
    "many_shot_accuracy", "medium_shot_accuracy", "few_shot_accuracy",
)


def _as_label_tensor(x: Any, name: str) -> Tensor:
    if isinstance(x, Tensor):
        t = x
    else:
        try:
            t = torch.as_tensor(np.asarray(x))
        except (TypeError, ValueError, RuntimeError) as e:
            raise TypeError(f"{name} must be a 1-D integer tensor or array, got "
                            f"{type(x).__name__}") from e
    if t.dtype == torch.bool or t.is_floating_point() or t.is_complex():
        raise TypeError(f"{name} must hold integer class indices, got dtype {t.dtype}")
    if t.dim() != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(t.shape)}")
    return t


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got bool")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}") from None
    if v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    return v


def confusion_matrix(y_true: Tensor | Sequence[int] | np.ndarray,
                     y_pred: Tensor | Sequence[int] | np.ndarray, num_classes: int) -> Tensor:
    """Confusion matrix ``cm[i, j] = #{n : y_true[n] = i and y_pred[n] = j}``.

    Computed with one ``bincount`` of ``y_true · C + y_pred`` on ``y_true``'s device.

    Parameters
    ----------
    y_true, y_pred : 1-D integer tensor, array or list, same length
        True and predicted class indices in ``[0, num_classes)``.  ``y_pred`` is moved to
        ``y_true``'s device.
    num_classes : int
        ``C`` (>= 1).

    Returns
    -------
    torch.LongTensor ``[C, C]``
        Rows true, columns predicted; int64 (suitable for ``all_reduce``).

    Raises
    ------
    ValueError
        Length mismatch, not 1-D, or a label outside ``[0, C)``.
    TypeError
        Non-integer labels.

    Examples
    --------
    >>> confusion_matrix([1, 1, 0], [1, 0, 0], 2).tolist()
    [[1, 0], [1, 1]]
    """
    c = _check_int(num_classes, "num_classes", 1)
    t = _as_label_tensor(y_true, "y_true")
    p = _as_label_tensor(y_pred, "y_pred").to(t.device)
    if t.shape[0] != p.shape[0]:
        raise ValueError(f"y_true and y_pred must have the same length, got {t.shape[0]} and "
                         f"{p.shape[0]}")
    t = t.long()
    p = p.long()
    if t.numel():
        lo = torch.minimum(t.min(), p.min())
        hi = torch.maximum(t.max(), p.max())
        lo_v, hi_v = torch.stack([lo, hi]).tolist()  # one device sync
        if lo_v < 0 or hi_v >= c:
            bad = "y_true" if bool(((t < 0) | (t >= c)).any()) else "y_pred"
            raise ValueError(f"{bad} holds labels outside [0, {c}) (num_classes = {c}); "
                             f"found values in [{lo_v}, {hi_v}]")
    return torch.bincount(t * c + p, minlength=c * c).reshape(c, c)


def _as_cm(cm: Any) -> np.ndarray:
    if isinstance(cm, Tensor):
        arr = cm.detach().cpu().numpy()
    else:
        arr = np.asarray(cm)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.shape[0] == 0:
        raise ValueError(f"cm must be a square [C, C] matrix with C >= 1, got shape {arr.shape}")
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"cm must hold counts, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ValueError("cm must hold whole-number counts")
    arr = arr.astype(np.int64)
    if (arr < 0).any():
        raise ValueError("cm must hold non-negative counts")
    return arr


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` elementwise, 0 where ``den == 0`` (zero_division=0)."""
    num = num.astype(np.float64)
    den = den.astype(np.float64)
    out = np.zeros_like(num)
    np.divide(num, den, out=out, where=den != 0)
    return out


def shot_buckets(train_counts: Sequence[int], shot_thresholds: Sequence[int] = (100, 20)
                 ) -> dict[str, list[int]]:
    """Split classes by their number of training images.

    With ``shot_thresholds = (many, few)``: ``many`` = classes with ``count > many``,
    ``few`` = ``count < few``, ``medium`` = ``few <= count <= many`` (the LDAM/OLTR convention:
    > 100, 20–100, < 20).

    Examples
    --------
    >>> shot_buckets([500, 100, 20, 19])
    {'many': [0], 'medium': [1, 2], 'few': [3]}
    """
    if isinstance(shot_thresholds, (str, bytes)) or len(shot_thresholds) != 2:
        raise ValueError(f"shot_thresholds must be two ints (many, few), got {shot_thresholds!r}")
    many = _check_int(shot_thresholds[0], "shot_thresholds[0]", 0)
    few = _check_int(shot_thresholds[1], "shot_thresholds[1]", 0)
    if few > many:
        raise ValueError(f"shot_thresholds must be (many, few) with many >= few, got "
                         f"{tuple(shot_thresholds)}")
    counts = [_check_int(n, "train_counts[i]", 0) for n in train_counts]
    return {
        "many": [i for i, n in enumerate(counts) if n > many],
        "medium": [i for i, n in enumerate(counts) if few <= n <= many],
        "few": [i for i, n in enumerate(counts) if n < few],
    }


def metrics_from_confusion(cm: Tensor | np.ndarray | Sequence[Sequence[int]], *,
                           class_names: Sequence[str], important: Any = (),
                           train_counts: Sequence[int] | None = None,
                           shot_thresholds: Sequence[int] = (100, 20)) -> dict[str, Any]:
    """Every evaluation number from one confusion matrix.

    With ``TP_c = cm[c, c]``, ``support_c = Σ_j cm[c, j]``, ``predicted_c = Σ_i cm[i, c]`` and
    ``N = Σ cm``:

    * ``accuracy = Σ_c TP_c / N``
    * ``per_class_recall[c] = TP_c / support_c``, ``per_class_precision[c] = TP_c /
      predicted_c``, ``per_class_f1[c] = 2·TP_c / (support_c + predicted_c)`` (= 2PR/(P+R))
    * ``balanced_accuracy`` = mean recall over the classes with ``support_c > 0``
    * ``macro_f1`` = mean F1 over the classes with ``support_c + predicted_c > 0``
    * ``important_recall`` / ``important_precision``: ``{class name: value}`` for the important
      classes
    * ``many/medium/few_shot_accuracy`` = ``Σ_{c∈B} TP_c / Σ_{c∈B} support_c`` over the bucket
      ``B`` of :func:`shot_buckets`; ``None`` when ``train_counts`` is None, the bucket is empty
      or its classes have no test samples.

    Zero division gives 0 (see the module docstring).  This matches scikit-learn's
    ``accuracy_score``, ``balanced_accuracy_score``, ``f1_score(average="macro",
    zero_division=0)`` and ``precision_recall_fscore_support(labels=range(C),
    zero_division=0)`` on the same predictions.

    Parameters
    ----------
    cm : [C, C] int tensor, array or nested list
        Rows true, columns predicted.
    class_names : sequence of str, length C
    important : names or indices (or one of them), optional
        Resolved by :func:`classaware.classes.resolve_classes` (case-insensitive names; an
        unknown or ambiguous name, or a class given twice, is a ConfigError listing the names).
    train_counts : sequence of C ints, optional
        Training images per class (for the shot buckets).
    shot_thresholds : (many, few), default (100, 20)

    Returns
    -------
    dict
        Keys :data:`METRIC_KEYS`; ``confusion_matrix`` as a list of lists of ints; every value
        a python float/int/list/dict/None.

    Examples
    --------
    >>> m = metrics_from_confusion([[8, 2], [1, 1]], class_names=["a", "b"],
    ...                            train_counts=[150, 10])
    >>> round(m["balanced_accuracy"], 3), m["many_shot_accuracy"], m["few_shot_accuracy"]
    (0.65, 0.8, 0.5)
    """
    arr = _as_cm(cm)
    c = arr.shape[0]
    if isinstance(class_names, str) or len(class_names) != c:
        raise ValueError(f"class_names must be a list of {c} names (cm is {c}×{c}), got "
                         f"{class_names!r}")
    names = [str(n) for n in class_names]
    imp = resolve_classes(important, names, key="important")
    tp = np.diag(arr)
    support = arr.sum(axis=1)
    predicted = arr.sum(axis=0)
    total = int(arr.sum())
    precision = _ratio(tp, predicted)
    recall = _ratio(tp, support)
    f1 = _ratio(2 * tp, support + predicted)
    present = support > 0
    seen = (support + predicted) > 0
    result: dict[str, Any] = {
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "balanced_accuracy": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1[seen].mean()) if seen.any() else 0.0,
        "per_class_precision": [float(v) for v in precision],
        "per_class_recall": [float(v) for v in recall],
        "per_class_f1": [float(v) for v in f1],
        "per_class_support": [int(v) for v in support],
        "confusion_matrix": arr.tolist(),
        "important_recall": {names[i]: float(recall[i]) for i in imp},
        "important_precision": {names[i]: float(precision[i]) for i in imp},
        "many_shot_accuracy": None,
        "medium_shot_accuracy": None,
        "few_shot_accuracy": None,
    }
    if train_counts is not None:
        if isinstance(train_counts, (str, bytes)) or len(train_counts) != c:
            raise ValueError(f"train_counts must have {c} entries (one per class), got "
                             f"{train_counts!r}")
        for bucket, members in shot_buckets(train_counts, shot_thresholds).items():
            n = int(support[members].sum()) if members else 0
            if n:
                result[f"{bucket}_shot_accuracy"] = float(tp[members].sum() / n)
    elif not isinstance(shot_thresholds, (str, bytes)):
        shot_buckets([], shot_thresholds)  # still validate the thresholds
    return result


def _groups_to_index(groups: Any, c: int, class_names: Sequence[str] | None) -> np.ndarray:
    """Group id per class; classes in no group get a singleton group."""
    if isinstance(groups, (str, bytes)) or not isinstance(groups, Iterable):
        raise TypeError(f"groups must be a list of lists of class indices or names, got "
                        f"{groups!r}")
    gid = np.full(c, -1, dtype=np.int64)
    names = list(class_names) if class_names is not None else [str(i) for i in range(c)]
    for g, members in enumerate(groups):
        if isinstance(members, (str, bytes)) or not isinstance(members, Iterable):
            raise TypeError(f"groups[{g}] must be a list of classes, got {members!r}")
        for k in members:
            if isinstance(k, str) and class_names is None:
                raise ValueError(f"groups: class name {k!r} given but no class_names")
            idx = resolve_class(k, names, key="groups")
            if gid[idx] != -1:
                raise ValueError(f"groups: class {names[idx]!r} is in more than one group")
            gid[idx] = g
    n_groups = len(list(groups))
    for i in range(c):
        if gid[i] == -1:
            gid[i] = n_groups
            n_groups += 1
    return gid


def group_accuracy(cm: Tensor | np.ndarray | Sequence[Sequence[int]], groups: Any, *,
                   class_names: Sequence[str] | None = None) -> tuple[float, float | None]:
    """Group accuracy, and group accuracy among the mistakes.

    A prediction is group-correct when the predicted class is in the true class's group:
    ``group_accuracy = Σ_{g(i) = g(j)} cm[i, j] / N`` and
    ``group accuracy among mistakes = Σ_{i ≠ j, g(i) = g(j)} cm[i, j] / Σ_{i ≠ j} cm[i, j]``
    (how "mild" the mistakes are; ``None`` when there is no mistake).  Classes that are in no
    group form a group of their own.  With no sample at all the group accuracy is 0.

    Parameters
    ----------
    cm : [C, C] confusion matrix
    groups : list of lists of class indices (or names, with ``class_names``)
    class_names : sequence of str, optional

    Examples
    --------
    >>> group_accuracy([[5, 3, 2], [1, 6, 0], [0, 0, 4]], [[0, 1]])
    (0.9047619047619048, 0.6666666666666666)
    """
    arr = _as_cm(cm)
    c = arr.shape[0]
    if class_names is not None and len(class_names) != c:
        raise ValueError(f"class_names must have {c} entries, got {len(class_names)}")
    gid = _groups_to_index(groups, c, class_names)
    same = gid[:, None] == gid[None, :]
    off = ~np.eye(c, dtype=bool)
    total = int(arr.sum())
    mistakes = int(arr[off].sum())
    acc = float(arr[same].sum() / total) if total else 0.0
    among = float(arr[same & off].sum() / mistakes) if mistakes else None
    return acc, among


def mean_abs_class_error(cm: Tensor | np.ndarray | Sequence[Sequence[int]]) -> float:
    """Mean absolute difference of predicted and true class index (for ordinal classes).

    ``MAE = Σ_{i,j} cm[i, j] · |j − i| / N`` (0 when ``N = 0``); with age-ordered classes this
    is the mean error in age bins.

    Examples
    --------
    >>> mean_abs_class_error([[2, 1, 0], [0, 2, 0], [1, 0, 2]])
    0.375
    """
    arr = _as_cm(cm)
    c = arr.shape[0]
    idx = np.arange(c)
    dist = np.abs(idx[None, :] - idx[:, None])
    total = int(arr.sum())
    return float((arr * dist).sum() / total) if total else 0.0


def angles_deg(features: Tensor, class_weight: Tensor, targets: Tensor) -> Tensor:
    """Angle (degrees) between each feature and its own class's weight vector.

    ``θ_n = arccos(<f_n, w_{y_n}> / (‖f_n‖ ‖w_{y_n}‖))·180/π`` in float64 (a zero vector gives
    90°).  For a cosine head this equals ``degrees(arccos(output[n, y_n]))``.

    Parameters
    ----------
    features : [N, D] tensor
    class_weight : [C, D] tensor (e.g. ``model.head.weight``)
    targets : [N] integer tensor in ``[0, C)``

    Returns
    -------
    Tensor [N], float64, on ``features``' device.
    """
    if not isinstance(features, Tensor) or features.dim() != 2:
        raise ValueError(f"features must be a [N, D] tensor, got "
                         f"{getattr(features, 'shape', type(features).__name__)}")
    if not isinstance(class_weight, Tensor) or class_weight.dim() != 2:
        raise ValueError(f"class_weight must be a [C, D] tensor, got "
                         f"{getattr(class_weight, 'shape', type(class_weight).__name__)}")
    if class_weight.shape[1] != features.shape[1]:
        raise ValueError(f"class_weight must be [C, {features.shape[1]}] to match features, got "
                         f"{tuple(class_weight.shape)}")
    t = _as_label_tensor(targets, "targets").to(features.device).long()
    if t.shape[0] != features.shape[0]:
        raise ValueError(f"targets must have {features.shape[0]} entries (one per feature), got "
                         f"{t.shape[0]}")
    c = class_weight.shape[0]
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= c):
        raise ValueError(f"targets must lie in [0, {c}) (class_weight has {c} rows)")
    f = torch.nn.functional.normalize(features.detach().double(), dim=1)
    w = torch.nn.functional.normalize(class_weight.detach().to(f.device).double(), dim=1)
    cos = (f * w[t]).sum(dim=1).clamp(-1.0, 1.0)
    return torch.rad2deg(torch.arccos(cos))


def angle_stats(features: Tensor, class_weight: Tensor, targets: Tensor,
                num_classes: int) -> dict[str, list[float | None]]:
    """Per class mean and standard deviation of :func:`angles_deg` (what CAMRI claims to tighten).

    ``mean_c = mean_{n: y_n = c} θ_n``, ``std_c = sqrt(mean_{n: y_n = c} (θ_n − mean_c)²)``
    (population std, ``ddof = 0``); both ``None`` for a class without samples.

    Returns
    -------
    dict
        ``{"mean_deg": [C floats or None], "std_deg": [C floats or None], "count": [C ints]}``

    Examples
    --------
    >>> f = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> w = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> s = angle_stats(f, w, torch.tensor([0, 0, 1]), 2)
    >>> [round(v, 6) for v in s["mean_deg"]], [round(v, 6) for v in s["std_deg"]]
    ([45.0, 45.0], [45.0, 0.0])
    """
    c = _check_int(num_classes, "num_classes", 1)
    if isinstance(class_weight, Tensor) and class_weight.dim() == 2 and class_weight.shape[0] != c:
        raise ValueError(f"class_weight must have num_classes = {c} rows, got "
                         f"{class_weight.shape[0]}")
    ang = angles_deg(features, class_weight, targets)
    t = _as_label_tensor(targets, "targets").to(ang.device).long()
    counts = torch.bincount(t, minlength=c)
    sums = torch.zeros(c, dtype=torch.float64, device=ang.device).index_add_(0, t, ang)
    mean = sums / counts.clamp(min=1)
    dev2 = (ang - mean[t]) ** 2
    var = torch.zeros(c, dtype=torch.float64, device=ang.device).index_add_(0, t, dev2)
    std = (var / counts.clamp(min=1)).sqrt()
    counts_l = counts.tolist()
    return {
        "mean_deg": [float(m) if n else None for m, n in zip(mean.tolist(), counts_l)],
        "std_deg": [float(s) if n else None for s, n in zip(std.tolist(), counts_l)],
        "count": [int(n) for n in counts_l],
    }


def _pct(v: Any) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.2f}%"


def format_table(metrics: Mapping[str, Any], class_names: Sequence[str],
                 important: Any = ()) -> str:
    """A readable per-class table of :func:`metrics_from_confusion`'s result.

    One row per class (precision, recall, F1 in %, support), important classes marked with
    ``*`` (those given in ``important`` and those in ``metrics["important_recall"]``), then a
    summary line (accuracy, balanced accuracy, macro-F1) and, when available, the
    many/medium/few-shot accuracies.

    Examples
    --------
    >>> m = metrics_from_confusion([[8, 2], [1, 1]], class_names=["cat", "dog"], important="dog")
    >>> print(format_table(m, ["cat", "dog"]))
      class  precision  recall     f1  support
      cat         88.9    80.0   84.2       10
    * dog         33.3    50.0   40.0        2
    accuracy 75.00%  balanced accuracy 65.00%  macro-F1 62.11%
    """
    names = [str(n) for n in class_names]
    c = len(names)
    for key in ("per_class_precision", "per_class_recall", "per_class_f1", "per_class_support"):
        if key not in metrics:
            raise ValueError(f"metrics lacks {key!r}; pass the result of metrics_from_confusion")
        if len(metrics[key]) != c:
            raise ValueError(f"metrics[{key!r}] has {len(metrics[key])} entries but class_names "
                             f"has {c}")
    marked = set(resolve_classes(important, names, key="important"))
    marked |= {names.index(k) for k in metrics.get("important_recall", {}) if k in names}
    width = max([len("class")] + [len(n) for n in names])
    lines = [f"  {'class':<{width}}  precision  recall     f1  support"]
    for i, name in enumerate(names):
        star = "*" if i in marked else " "
        lines.append(
            f"{star} {name:<{width}}  {100 * metrics['per_class_precision'][i]:9.1f}"
            f"  {100 * metrics['per_class_recall'][i]:6.1f}"
            f"  {100 * metrics['per_class_f1'][i]:5.1f}"
            f"  {int(metrics['per_class_support'][i]):7d}"
        )
    lines.append(f"accuracy {_pct(metrics.get('accuracy'))}  balanced accuracy "
                 f"{_pct(metrics.get('balanced_accuracy'))}  macro-F1 "
                 f"{_pct(metrics.get('macro_f1'))}")
    shots = [metrics.get(f"{b}_shot_accuracy") for b in ("many", "medium", "few")]
    if any(s is not None for s in shots):
        lines.append(f"many-shot {_pct(shots[0])}  medium-shot {_pct(shots[1])}  "
                     f"few-shot {_pct(shots[2])}")
    return "\n".join(lines)
