"""Everything a study's report shows, as data: :func:`analyze` returns a :class:`StudyAnalysis`.

It reads every finished run of a study directory (final.json, metrics.jsonl, outputs.npz),
aggregates over seeds (:mod:`classaware.study.aggregate`: means, t intervals, paired differences
to the baseline, "accuracy kept") and runs threshold moving on each important class
(:mod:`classaware.study.threshold`).  For a variant ``v`` and a seed ``s`` with the baseline's test
threshold curve ``A_s(r)`` (the best accuracy the baseline reaches with recall ≥ ``r`` by moving
the class's bias), the "vs threshold" difference is the paired difference over seeds of

    d_s = acc(v, s) − A_s(recall(v, s)).

Example
-------
>>> from classaware.study import load_study
>>> from classaware.study.analysis import analyze
>>> a = analyze(load_study("important-class"), "runs/important-class")   # doctest: +SKIP
>>> a.agg.variants["camri-m0.2-s16"].accuracy_kept                       # doctest: +SKIP
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from classaware.study import threshold as thr
from classaware.study.aggregate import (
    Paired,
    RunRecord,
    StudyAggregate,
    Summary,
    aggregate,
    class_index,
    load_run,
    paired_difference,
    summarize,
)
from classaware.study.runner import PlannedRun, plan_runs
from classaware.study.spec import Study


@dataclass(frozen=True)
class RunThreshold:
    """One run on one class: its own test point (bias 0) and the val-chosen target points (empty
    when its validation set has no sample of the class)."""

    variant: str
    seed: int
    own: thr.Point
    ops: list[thr.OperatingPoint]


@dataclass(frozen=True)
class TargetSummary:
    """The val-chosen bias for one target recall, over the ``n`` seeds that reached it on val."""

    target: float
    n: int
    test_recall: Summary
    test_accuracy: Summary
    bias: Summary


@dataclass(frozen=True)
class VariantThreshold:
    """A variant's own point (mean over seeds), its target points, the baseline curve's accuracy at
    the variant's recall and the paired difference ``vs_curve`` (variant − curve)."""

    recall: Summary
    accuracy: Summary
    targets: list[TargetSummary]
    curve_accuracy: Summary
    vs_curve: Paired


@dataclass(frozen=True)
class ThresholdSummary:
    """Threshold moving on one important class: per run, the baseline's test curve per seed
    (recall, accuracy), per variant, and notes on what could not be computed."""

    class_name: str
    index: int
    runs: dict[str, RunThreshold]
    curves: dict[int, tuple[np.ndarray, np.ndarray]]
    variants: dict[str, VariantThreshold]
    notes: list[str]


@dataclass(frozen=True)
class StudyAnalysis:
    """A study directory, analysed: the planned and finished runs, the class names, the aggregate
    (``None`` without a finished run), threshold moving per important class, and each variant's
    model head as trained (``final.json``'s ``head_type``)."""

    study: Study
    root: Path
    planned: list[PlannedRun]
    records: list[RunRecord]
    missing: list[str]
    class_names: list[str]
    important: list[str]
    groups: list[list[str]]
    agg: StudyAggregate | None
    threshold: dict[str, ThresholdSummary]
    heads: dict[str, str]
    diverged: list[RunRecord] = field(default_factory=list)  # no results: listed apart

    @property
    def variants(self) -> list[str]:
        return [v.name for v in self.study.variants]

    @property
    def baseline(self) -> str:
        return self.study.baseline


def _load_outputs(run_dir: Path) -> dict[str, np.ndarray] | None:
    p = run_dir / "outputs.npz"
    if not p.is_file():
        return None
    with np.load(p) as z:
        return {k: np.asarray(z[k]) for k in z.files}


def _run_threshold(r: RunRecord, o: dict[str, np.ndarray], k: int,
                   targets: list[float]) -> RunThreshold:
    own = thr.apply_bias(o["test_outputs"], o["test_targets"], k, 0.0)
    ops: list[thr.OperatingPoint] = []
    val_y = o.get("val_targets", np.zeros(0, dtype=np.int64))
    if int((val_y == k).sum()):
        ops = thr.operating_points(o["val_outputs"], val_y, o["test_outputs"], o["test_targets"],
                                   k, targets)
    return RunThreshold(variant=r.variant, seed=r.seed, own=own, ops=ops)


def _variant_threshold(mine: list[RunThreshold], targets: list[float],
                       curves: dict[int, tuple[np.ndarray, np.ndarray]]) -> VariantThreshold:
    tgt = []
    for i, t in enumerate(targets):
        pts = [op.test for op in (x.ops[i] for x in mine if x.ops) if op.test is not None]
        tgt.append(TargetSummary(target=t, n=len(pts),
                                 test_recall=summarize([p.recall for p in pts]),
                                 test_accuracy=summarize([p.accuracy for p in pts]),
                                 bias=summarize([p.bias for p in pts])))
    paired = [x for x in mine if x.seed in curves]
    own_acc: dict[int, float | None] = {x.seed: x.own.accuracy for x in paired}
    at_curve: dict[int, float | None] = {
        x.seed: thr.accuracy_at_recall(*curves[x.seed], x.own.recall) for x in paired}
    return VariantThreshold(recall=summarize([x.own.recall for x in mine]),
                            accuracy=summarize([x.own.accuracy for x in mine]), targets=tgt,
                            curve_accuracy=summarize(list(at_curve.values())),
                            vs_curve=paired_difference(own_acc, at_curve))


def threshold_analysis(records: list[RunRecord], *, cname: str, k: int, targets: list[float],
                       baseline: str, variants: list[str]) -> ThresholdSummary:
    """Threshold moving on class ``cname`` (index ``k``) for every run with an outputs.npz."""
    runs: dict[str, RunThreshold] = {}
    curves: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    notes: list[str] = []
    for r in records:
        o = _load_outputs(r.run_dir)
        if o is None or "test_outputs" not in o:
            notes.append(f"{r.name}: no outputs.npz")
            continue
        runs[r.name] = _run_threshold(r, o, k, targets)
        if not runs[r.name].ops:
            notes.append(f"{r.name}: no validation samples of {cname}; no bias chosen")
        if r.variant == baseline:
            c = thr.curve(o["test_outputs"], o["test_targets"], k)
            curves[r.seed] = (c.recall, c.accuracy)
    summary = {}
    for v in variants:
        mine = [x for x in runs.values() if x.variant == v]
        if mine:
            summary[v] = _variant_threshold(mine, targets, curves)
    return ThresholdSummary(class_name=cname, index=k, runs=runs, curves=curves,
                            variants=summary, notes=notes)


def _heads(planned: list[PlannedRun], records: list[RunRecord]) -> dict[str, str]:
    """Each variant's head: as trained (final.json), else as configured, else "–"."""
    heads = {r.variant: str(r.final["head_type"]) for r in records if r.final.get("head_type")}
    for p in planned:
        configured = (p.config.get("model") or {}).get("head")
        heads.setdefault(p.variant, str(configured) if configured else "–")
    return heads


def analyze(study: Study, out: str | Path) -> StudyAnalysis:
    """Read the finished runs of ``study`` in ``out`` and compute everything the report shows."""
    root = Path(out)
    planned = plan_runs(study, root)
    records: list[RunRecord] = []
    missing: list[str] = []
    diverged: list[RunRecord] = []
    for p in planned:
        rec = load_run(p.run_dir, variant=p.variant, seed=p.seed)
        if rec is None:
            missing.append(p.name)
        else:
            (diverged if rec.diverged else records).append(rec)
    variants = [v.name for v in study.variants]
    names = records[0].class_names if records else []
    important = [names[class_index(names, c)] for c in study.important] if records else []
    groups = [[names[class_index(names, c)] for c in g] for g in study.groups] if records else []
    agg = None
    threshold: dict[str, ThresholdSummary] = {}
    if records:
        agg = aggregate(records, variants=variants, baseline=study.baseline,
                        tolerance_points=study.accuracy_tolerance, important=important,
                        groups=groups, ordinal=study.ordinal)
        for c in important:
            threshold[c] = threshold_analysis(
                records, cname=c, k=class_index(names, c), targets=study.target_recalls,
                baseline=study.baseline, variants=variants)
    return StudyAnalysis(study=study, root=root, planned=planned, records=records,
                         missing=missing, class_names=names, important=important, groups=groups,
                         agg=agg, threshold=threshold, heads=_heads(planned, records),
                         diverged=diverged)
