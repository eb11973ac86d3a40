"""The verdict: one line per variant, its words chosen from the numbers by a written rule.

For a variant ``v`` and the baseline ``b``, over the seeds both have (paired differences, as in the
Δ columns; α = 0.05, the two-sided paired t-test of :func:`classaware.study.aggregate.paired_difference`):

1. **Effect.** For each *primary* metric — the recall of each important class; else group
   accuracy (``study.groups``); else the mean absolute class error (``study.ordinal``); else
   few-shot accuracy (when the classes fall into shot buckets); else balanced accuracy — the paired
   mean difference, then ``significant`` when ``p < α``, ``not significant`` when ``p ≥ α``, or
   ``no test`` with fewer than 2 paired seeds or identical differences.
2. **Accuracy.** ``with accuracy kept`` when the paired mean accuracy difference is
   ``≥ −study.accuracy_tolerance`` points (the "acc kept" column), else ``but accuracy not
   kept``; the difference and its test follow in brackets.
3. **Threshold moving** (per important class, when outputs.npz exist): ``d`` = the variant's
   accuracy − the accuracy the baseline's test threshold curve reaches at the variant's recall
   (the "Δ acc vs threshold" column). ``p < α`` and ``d > 0``: the variant *is more accurate than*
   the baseline with a moved threshold; ``p < α`` and ``d < 0``: the baseline with a moved
   threshold *is more accurate*; else it *is as accurate* (no significant difference) — or, with
   no test, *is not distinguishable*.

The baseline's own line gives its means. No correction for multiple comparisons is applied: read
each line as one test at α.

Example
-------
>>> from classaware.study.aggregate import Paired
>>> delta(Paired(n=4, mean=0.0965, sd=0.05, p=0.028), "recall[Shirt]")
'+9.7 pt (significant, p = 0.028)'
>>> threshold_words("camri", "ce", "Shirt", Paired(n=4, mean=0.0001, sd=0.01, p=0.98))
'at the same Shirt recall, ce with a moved threshold is as accurate (Δ +0.0 pt, not significant, p = 0.98)'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from classaware.study.aggregate import Paired, Summary, metric_label, metric_scale

if TYPE_CHECKING:
    from classaware.study.analysis import StudyAnalysis

ALPHA = 0.05


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}"


def significance(d: Paired) -> str:
    """``significant, p = …`` / ``not significant, p = …`` / ``no test: …`` (rule 1)."""
    if d.p is None:
        return "no test: 1 paired seed" if d.n < 2 else "no test: identical differences"
    return f"{'significant' if d.p < ALPHA else 'not significant'}, {_p(d.p)}"


def delta(d: Paired, metric: str, *, sep: str = " (") -> str:
    """``+9.7 pt (significant, p = 0.028)``: the paired mean (points for fractions) and its test;
    ``sep=", "`` gives ``+9.7 pt, significant, p = 0.028`` for use inside brackets."""
    pt = metric_scale(metric) == 100.0
    value = f"{metric_scale(metric) * (d.mean or 0.0):+.{1 if pt else 2}f}{' pt' if pt else ''}"
    return f"{value}{sep}{significance(d)}{')' if sep == ' (' else ''}"


def accuracy_words(d: Paired, kept: bool | None, *, after: bool = True) -> str:
    """``with accuracy kept (+0.0 pt, …)`` or ``but accuracy not kept (…)`` (rule 2); without the
    leading word when ``after`` is False (nothing comes before it)."""
    link, words = ("with", "accuracy kept") if kept else ("but", "accuracy not kept")
    return f"{link + ' ' if after else ''}{words} ({delta(d, 'accuracy', sep=', ')})"


def threshold_words(variant: str, baseline: str, cname: str, d: Paired) -> str:
    """How the variant compares with the baseline plus a moved threshold on ``cname`` (rule 3)."""
    moved = f"{baseline} with a moved threshold"
    if d.p is not None and d.p < ALPHA:
        who = f"{variant} is more accurate than {moved}" if (d.mean or 0.0) > 0 \
            else f"{moved} is more accurate"
    else:
        who = f"{moved} is {'as accurate' if d.p is not None else 'not distinguishable'}"
    return f"at the same {cname} recall, {who} (Δ {delta(d, 'accuracy', sep=', ')})"


NAMES = {"balanced_accuracy": "balanced accuracy", "group_accuracy": "group accuracy",
         "mean_abs_class_error": "mean absolute class error",
         "few_shot_accuracy": "few-shot accuracy"}


def _name(metric: str) -> str:
    if metric.startswith("recall["):
        return f"{metric[7:-1]} recall"
    return NAMES.get(metric, metric_label(metric))


def primary_metrics(a: StudyAnalysis) -> list[str]:
    """The metrics rule 1 speaks of (see the module docstring)."""
    if a.important:
        return [f"recall[{c}]" for c in a.important]
    metrics = a.agg.metrics if a.agg else []
    for m in ("group_accuracy", "mean_abs_class_error", "few_shot_accuracy"):
        if m in metrics:
            return [m]
    return ["balanced_accuracy"]


def _mean(s: Summary | None, metric: str) -> str:
    if s is None or s.mean is None:
        return "–"
    k, digits = metric_scale(metric), 1 if metric_scale(metric) == 100.0 else 2
    hw = f" ± {k * s.half_width:.{digits}f}" if s.half_width is not None else ""
    return f"{k * s.mean:.{digits}f}{hw}{' %' if digits == 1 else ''}"


def variant_line(a: StudyAnalysis, variant: str) -> str:
    """The verdict on one variant (the baseline's line gives its means)."""
    head = f" ({a.heads.get(variant, '–')} head)" if len(set(a.heads.values())) > 1 else ""
    info = a.agg.variants.get(variant) if a.agg else None
    if info is None or not info.n:
        return f"{variant}{head}: no finished run"
    if variant == a.baseline:
        parts = [f"{_name(m)} {_mean(info.stats.get(m), m)}"
                 for m in ["accuracy", *primary_metrics(a)]]
        seeds = f"{info.n} seed{'s' if info.n > 1 else ''}"
        return f"{variant}{head}: the baseline, {', '.join(parts)} over {seeds}"
    if not info.diff["accuracy"].n:
        return f"{variant}{head}: no seed in common with {a.baseline}; not compared"
    lead = ", ".join(f"{_name(m)} {delta(info.diff[m], m)}" for m in primary_metrics(a)
                     if m in info.diff and info.diff[m].mean is not None)
    kept = accuracy_words(info.diff["accuracy"], info.accuracy_kept, after=bool(lead))
    text = f"{variant}{head}: " + " ".join(x for x in (lead, kept) if x)
    for cname, t in a.threshold.items():
        vt = t.variants.get(variant)
        if vt is not None and vt.vs_curve.n:
            text += "; " + threshold_words(variant, a.baseline, cname, vt.vs_curve)
    return text


def verdict_lines(a: StudyAnalysis) -> list[str]:
    """One verdict line per variant of the study, in study order (empty without finished runs)."""
    return [variant_line(a, v) for v in a.variants] if a.records else []
