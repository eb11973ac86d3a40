"""Aggregation over seeds: summary statistics, paired differences, and the "accuracy kept" rule.

For values ``x_1..x_n`` of one metric over seeds:

    mean = (1/n) Σ x_i,   sd = sqrt(Σ (x_i − mean)² / (n − 1)),
    95% CI = mean ± t_{0.975, n−1} · sd / sqrt(n)          (scipy.stats.t; needs n ≥ 2)

Paired difference of a variant ``v`` to the baseline ``b`` over the seeds both have:
``d_i = v_i − b_i``; ``t = mean(d) / (sd(d) / sqrt(n))`` with ``n − 1`` degrees of freedom and the
two-sided ``p = 2 · (1 − T_{n−1}(|t|))`` (the paired t-test, as ``scipy.stats.ttest_rel``).
With ``n < 2`` (or ``sd(d) = 0``) there is no test: ``t`` and ``p`` are ``None`` ("n/a").

"Accuracy kept": the paired mean accuracy difference ``mean(d) ≥ −tolerance / 100`` (tolerance in
percentage points), over the same paired seeds as the Δ column.

Example
-------
>>> s = summarize([0.80, 0.82, 0.84])
>>> round(s.mean, 4), round(s.sd, 4), s.n
(0.82, 0.02, 3)
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HEADLINE = ("accuracy", "balanced_accuracy", "macro_f1")
SHOTS = ("many_shot_accuracy", "medium_shot_accuracy", "few_shot_accuracy")
NOT_FRACTION = frozenset({"mean_abs_class_error"})  # every other metric is a fraction in [0, 1]
LABELS = {
    "accuracy": "accuracy", "balanced_accuracy": "bal. acc", "macro_f1": "macro-F1",
    "many_shot_accuracy": "many", "medium_shot_accuracy": "medium", "few_shot_accuracy": "few",
    "group_accuracy": "group acc", "group_accuracy_mistakes": "group acc (mistakes)",
    "mean_abs_class_error": "MAE (classes)",
}


def metric_label(metric: str) -> str:
    """The column label of a metric key: ``recall[Shirt]`` → ``recall Shirt``, ``recall[8]`` →
    ``recall '8'`` (:func:`classaware.classes.class_label`)."""
    from classaware.classes import class_label

    for prefix in ("recall", "precision"):
        if metric.startswith(prefix + "["):
            return f"{prefix} {class_label(metric[len(prefix) + 1:-1])}"
    return LABELS.get(metric, metric)


def metric_scale(metric: str) -> float:
    """100 for fractions (shown in % and differences in points), 1 for the others."""
    return 1.0 if metric in NOT_FRACTION else 100.0


def _t_ppf(q: float, df: int) -> float:
    from scipy.stats import t

    return float(t.ppf(q, df))


def _t_sf(x: float, df: int) -> float:
    from scipy.stats import t

    return float(t.sf(x, df))


@dataclass(frozen=True)
class Summary:
    """Mean, sample sd and t confidence interval over seeds; ``sd`` and the interval are ``None``
    when ``n < 2``, everything but ``n`` is ``None`` when ``n == 0``."""

    n: int
    mean: float | None = None
    sd: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    half_width: float | None = None


@dataclass(frozen=True)
class Paired(Summary):
    """:class:`Summary` of the paired differences ``variant − baseline`` over ``seeds`` (the seeds
    both have), with the paired t-test's ``t`` and two-sided ``p`` (``None``: no test)."""

    t: float | None = None
    p: float | None = None
    seeds: tuple[int, ...] = ()


def summarize(values: Sequence[float | None], *, confidence: float = 0.95) -> Summary:
    """Mean, sample sd and the t confidence interval of ``values`` (NaN/None entries dropped)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence: expected a number in (0, 1), got {confidence!r}")
    x = np.array([float(v) for v in values if v is not None and not _isnan(v)], dtype=np.float64)
    n = int(x.size)
    if n == 0:
        return Summary(n=0)
    mean = float(x.mean())
    if n < 2:
        return Summary(n=n, mean=mean)
    sd = float(x.std(ddof=1))
    hw = _t_ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)
    return Summary(n=n, mean=mean, sd=sd, ci_low=mean - hw, ci_high=mean + hw, half_width=hw)


def paired_difference(variant: dict[int, float | None], baseline: dict[int, float | None], *,
                      confidence: float = 0.95) -> Paired:
    """Paired difference ``variant − baseline`` over the seeds both have (dicts seed → value).

    ``t`` and ``p`` are ``None`` when n < 2 or the differences have sd 0.
    """
    seeds = tuple(sorted(s for s in variant if s in baseline
                         and not _isnan(variant[s]) and not _isnan(baseline[s])))
    d = summarize([float(variant[s]) - float(baseline[s]) for s in seeds],  # type: ignore[arg-type]
                  confidence=confidence)
    t = p = None
    if d.n >= 2 and d.sd and d.mean is not None:
        t = d.mean / (d.sd / math.sqrt(d.n))
        p = float(min(1.0, 2.0 * _t_sf(abs(t), d.n - 1)))
    return Paired(**vars(d), t=t, p=p, seeds=seeds)


def accuracy_kept(delta: float | None, tolerance_points: float) -> bool | None:
    """``delta ≥ −tolerance_points / 100`` for the paired mean accuracy difference ``delta``
    (a fraction) to the baseline; ``None`` when there is no paired seed."""
    if delta is None:
        return None
    return bool(delta >= -tolerance_points / 100.0 - 1e-12)


def _isnan(v: Any) -> bool:
    try:
        return math.isnan(float(v))
    except (TypeError, ValueError):
        return True


# --------------------------------------------------------------------------------------------
# runs


@dataclass
class RunRecord:
    """One finished run: its variant, seed, final.json content and epoch history."""

    name: str
    variant: str
    seed: int
    run_dir: Path
    final: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def class_names(self) -> list[str]:
        return list(self.final.get("class_names", []))

    @property
    def train_seconds(self) -> float:
        return float(sum(float(h.get("seconds") or 0.0) for h in self.history))

    @property
    def diverged(self) -> dict[str, Any] | None:
        """``final.json``'s divergence record (``epoch``, ``message``) of a run whose training
        loss became non-finite, else None: such a run has no results and is listed apart."""
        d = self.final.get("diverged")
        return d if isinstance(d, dict) else None


def load_run(run_dir: str | Path, *, variant: str, seed: int) -> RunRecord | None:
    """Read a finished run directory (None when final.json is missing, i.e. not finished)."""
    d = Path(run_dir)
    try:
        final = json.loads((d / "final.json").read_text())
    except FileNotFoundError:
        return None
    history: list[dict[str, Any]] = []
    mpath = d / "metrics.jsonl"
    if mpath.is_file():
        for line in mpath.read_text().splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                history.append(json.loads(line))
            except json.JSONDecodeError:  # a torn last line of an interrupted epoch
                continue
    return RunRecord(name=d.name, variant=variant, seed=int(seed), run_dir=d, final=final,
                     history=history)


def class_index(names: list[str], cls: str | int, key: str = "study.important") -> int:
    """Index of class ``cls`` (a name or an index) in ``names``, by the one class-name rule
    (:func:`classaware.classes.resolve_class`; ConfigError listing the names)."""
    from classaware.classes import resolve_class

    return resolve_class(cls, names, key=key)


def run_metrics(final: dict[str, Any], *, split: str = "test", important: Sequence[str | int] = (),
                groups: Sequence[Sequence[str | int]] = (), ordinal: bool = False) -> dict[str, Any]:
    """Flat scalar metrics of one run from its final.json (fractions in [0, 1]).

    Keys: ``accuracy``, ``balanced_accuracy``, ``macro_f1``, ``recall[<class>]`` and
    ``precision[<class>]`` for each important class, the shot accuracies present (when at least
    two of many/medium/few have classes), and with
    ``groups`` ``group_accuracy`` / ``group_accuracy_mistakes`` (``classaware.metrics.group_accuracy``
    of the confusion matrix), with ``ordinal`` ``mean_abs_class_error``.
    """
    m = final.get(split) or {}
    names = list(final.get("class_names") or [])
    out: dict[str, Any] = {k: _num(m.get(k)) for k in HEADLINE}
    rec = m.get("per_class_recall") or []
    prec = m.get("per_class_precision") or []
    for cls in important:
        i = class_index(names, cls)
        nm = names[i]
        out[f"recall[{nm}]"] = _num(rec[i]) if i < len(rec) else None
        out[f"precision[{nm}]"] = _num(prec[i]) if i < len(prec) else None
    shots = [k for k in SHOTS if m.get(k) is not None]
    if len(shots) >= 2:  # one bucket only (a balanced set): it would just repeat the accuracy
        for k in shots:
            out[k] = _num(m.get(k))
    cm = m.get("confusion_matrix")
    if groups and cm is not None:
        from classaware.metrics import group_accuracy

        idx = [[class_index(names, c) for c in g] for g in groups]
        acc, among = group_accuracy(cm, idx)
        out["group_accuracy"] = acc
        out["group_accuracy_mistakes"] = among
    if ordinal and cm is not None:
        from classaware.metrics import mean_abs_class_error

        out["mean_abs_class_error"] = mean_abs_class_error(cm)
    return out


def _num(v: Any) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


@dataclass(frozen=True)
class VariantSummary:
    """One variant over its seeds: per-seed ``values`` (seed → metric → fraction), ``stats``
    (metric → :class:`Summary`), ``diff`` (metric → :class:`Paired` vs the baseline) and
    ``accuracy_kept`` (:func:`accuracy_kept` of the paired accuracy difference)."""

    name: str
    seeds: list[int]
    values: dict[int, dict[str, float | None]]
    stats: dict[str, Summary]
    diff: dict[str, Paired]
    accuracy_kept: bool | None

    @property
    def n(self) -> int:
        return len(self.seeds)


@dataclass(frozen=True)
class StudyAggregate:
    """Every variant's :class:`VariantSummary` (study order), the metric names, the baseline and
    the accuracy tolerance (points)."""

    metrics: list[str]
    variants: dict[str, VariantSummary]
    baseline: str
    tolerance: float


def aggregate(records: list[RunRecord], *, variants: list[str], baseline: str,
              tolerance_points: float, important: Sequence[str | int] = (),
              groups: Sequence[Sequence[str | int]] = (), ordinal: bool = False) -> StudyAggregate:
    """Per variant and metric: summary over seeds, paired difference to ``baseline``, and the
    accuracy-kept rule on the paired accuracy difference."""
    per: dict[str, dict[int, dict[str, float | None]]] = {v: {} for v in variants}
    for r in records:
        if r.variant in per:
            per[r.variant][r.seed] = run_metrics(r.final, important=important, groups=groups,
                                                 ordinal=ordinal)
    metric_names = list(dict.fromkeys(k for v in variants for vals in per[v].values() for k in vals))
    base = per.get(baseline, {})
    out: dict[str, VariantSummary] = {}
    for v in variants:
        seeds = sorted(per[v])
        diff = {k: paired_difference({s: per[v][s].get(k) for s in seeds},
                                     {s: m.get(k) for s, m in base.items()})
                for k in metric_names}
        out[v] = VariantSummary(
            name=v, seeds=seeds, values={s: per[v][s] for s in seeds},
            stats={k: summarize([per[v][s].get(k) for s in seeds]) for k in metric_names},
            diff=diff,
            accuracy_kept=accuracy_kept(diff["accuracy"].mean if diff else None, tolerance_points))
    return StudyAggregate(metrics=metric_names, variants=out, baseline=baseline,
                          tolerance=tolerance_points)
