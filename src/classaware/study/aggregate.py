"""Aggregation over seeds: summary statistics, paired differences, and the "accuracy kept" rule.

For values ``x_1..x_n`` of one metric over seeds:

    mean = (1/n) Σ x_i,   sd = sqrt(Σ (x_i − mean)² / (n − 1)),
    95% CI = mean ± t_{0.975, n−1} · sd / sqrt(n)          (scipy.stats.t; needs n ≥ 2)

Paired difference of a variant ``v`` to the baseline ``b`` over the seeds both have:
``d_i = v_i − b_i``; ``t = mean(d) / (sd(d) / sqrt(n))`` with ``n − 1`` degrees of freedom and the
two-sided ``p = 2 · (1 − T_{n−1}(|t|))`` (the paired t-test, as ``scipy.stats.ttest_rel``).
With ``n < 2`` (or ``sd(d) = 0``) there is no test: ``t`` and ``p`` are ``None`` ("n/a").

"Accuracy kept": ``mean_acc(v) ≥ mean_acc(b) − tolerance / 100`` (tolerance in percentage points).

Example
-------
>>> s = summarize([0.80, 0.82, 0.84])
>>> round(s["mean"], 4), round(s["sd"], 4), s["n"]
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


def _t_ppf(q: float, df: int) -> float:
    from scipy.stats import t

    return float(t.ppf(q, df))


def _t_sf(x: float, df: int) -> float:
    from scipy.stats import t

    return float(t.sf(x, df))


def summarize(values: Sequence[float], *, confidence: float = 0.95) -> dict[str, Any]:
    """Mean, sample sd and the t confidence interval of ``values`` (NaN/None entries dropped).

    Returns ``{"n", "mean", "sd", "ci_low", "ci_high", "half_width"}``; ``sd`` and the interval are
    ``None`` when ``n < 2``, everything but ``n`` is ``None`` when ``n == 0``.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence: expected a number in (0, 1), got {confidence!r}")
    x = np.array([float(v) for v in values if v is not None and not _isnan(v)], dtype=np.float64)
    n = int(x.size)
    out: dict[str, Any] = {"n": n, "mean": None, "sd": None, "ci_low": None, "ci_high": None,
                           "half_width": None}
    if n == 0:
        return out
    mean = float(x.mean())
    out["mean"] = mean
    if n >= 2:
        sd = float(x.std(ddof=1))
        hw = _t_ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)
        out.update(sd=sd, ci_low=mean - hw, ci_high=mean + hw, half_width=hw)
    return out


def paired_difference(variant: dict[int, float], baseline: dict[int, float], *,
                      confidence: float = 0.95) -> dict[str, Any]:
    """Paired difference ``variant − baseline`` over the seeds both have (dicts seed → value).

    Returns :func:`summarize` of the differences plus ``"t"``, ``"p"`` (two-sided paired t-test;
    ``None`` when n < 2 or the differences have sd 0) and ``"seeds"`` (the paired seeds).
    """
    seeds = sorted(s for s in variant if s in baseline
                   and variant[s] is not None and baseline[s] is not None
                   and not _isnan(variant[s]) and not _isnan(baseline[s]))
    d = [float(variant[s]) - float(baseline[s]) for s in seeds]
    out = summarize(d, confidence=confidence)
    out.update(t=None, p=None, seeds=seeds)
    if out["n"] >= 2 and out["sd"] and out["sd"] > 0:
        t = out["mean"] / (out["sd"] / math.sqrt(out["n"]))
        out.update(t=float(t), p=float(min(1.0, 2.0 * _t_sf(abs(t), out["n"] - 1))))
    return out


def accuracy_kept(variant_mean: float | None, baseline_mean: float | None,
                  tolerance_points: float) -> bool | None:
    """``variant_mean ≥ baseline_mean − tolerance_points / 100`` (None when a mean is missing)."""
    if variant_mean is None or baseline_mean is None:
        return None
    return bool(variant_mean >= baseline_mean - tolerance_points / 100.0 - 1e-12)


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


def aggregate(records: list[RunRecord], *, variants: list[str], baseline: str,
              tolerance_points: float, important: Sequence[str | int] = (),
              groups: Sequence[Sequence[str | int]] = (), ordinal: bool = False) -> dict[str, Any]:
    """Per variant and metric: summary over seeds, paired difference to ``baseline``, and the
    accuracy-kept rule.

    Returns ``{"metrics": [metric names], "variants": {name: {"n", "seeds", "stats": {metric:
    summary}, "diff": {metric: paired}, "accuracy_kept": bool|None}}, "baseline", "tolerance"}``.
    """
    per: dict[str, dict[int, dict[str, Any]]] = {v: {} for v in variants}
    for r in records:
        if r.variant in per:
            per[r.variant][r.seed] = run_metrics(r.final, important=important, groups=groups,
                                                 ordinal=ordinal)
    metric_names: list[str] = []
    for v in variants:
        for vals in per[v].values():
            for k in vals:
                if k not in metric_names:
                    metric_names.append(k)
    base = per.get(baseline, {})
    out: dict[str, Any] = {"metrics": metric_names, "variants": {}, "baseline": baseline,
                           "tolerance": tolerance_points}
    base_acc = summarize([m.get("accuracy") for m in base.values()])["mean"]
    for v in variants:
        seeds = sorted(per[v])
        stats = {k: summarize([per[v][s].get(k) for s in seeds]) for k in metric_names}
        diff = {}
        for k in metric_names:
            a = {s: per[v][s].get(k) for s in seeds}
            b = {s: m.get(k) for s, m in base.items()}
            diff[k] = paired_difference(a, b)
        out["variants"][v] = {
            "n": len(seeds), "seeds": seeds, "stats": stats, "diff": diff,
            "values": {s: per[v][s] for s in seeds},
            "accuracy_kept": accuracy_kept(stats.get("accuracy", {}).get("mean"), base_acc,
                                           tolerance_points),
        }
    return out
