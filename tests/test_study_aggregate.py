"""Aggregation over seeds and the paired test, against numbers computed by hand from the formulas."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from classaware.study.aggregate import (
    RunRecord,
    accuracy_kept,
    aggregate,
    paired_difference,
    run_metrics,
    summarize,
)

T_975_DF2 = 4.302652729911275  # t-table: 97.5% quantile, 2 degrees of freedom
T_975_DF1 = 12.706204736174707


def test_summarize_matches_hand_computation():
    s = summarize([0.80, 0.82, 0.87])
    # mean = 2.49 / 3; squared deviations .0009 + .0001 + .0016 = .0026; var = .0026 / 2
    assert s.n == 3
    assert s.mean == pytest.approx(0.83)
    assert s.sd == pytest.approx(math.sqrt(0.0013))
    hw = T_975_DF2 * math.sqrt(0.0013) / math.sqrt(3)
    assert s.half_width == pytest.approx(hw)
    assert s.ci_low == pytest.approx(0.83 - hw)
    assert s.ci_high == pytest.approx(0.83 + hw)


def test_summarize_two_values_and_edge_cases():
    s = summarize([0.5, 0.7])
    assert s.sd == pytest.approx(math.sqrt(0.02))
    assert s.half_width == pytest.approx(T_975_DF1 * math.sqrt(0.02) / math.sqrt(2))
    one = summarize([0.9])
    assert one.n == 1 and one.mean == 0.9 and one.sd is None and one.ci_low is None
    empty = summarize([])
    assert empty.n == 0 and empty.mean is None
    # None / NaN entries are dropped (a missing metric of one seed)
    assert summarize([0.5, None, float("nan"), 0.7]).n == 2
    with pytest.raises(ValueError, match="confidence"):
        summarize([1.0, 2.0], confidence=1.5)


def test_paired_t_test_matches_closed_form_df2():
    var = {0: 0.85, 1: 0.86, 2: 0.90}
    base = {0: 0.80, 1: 0.82, 2: 0.87}
    d = paired_difference(var, base)
    # d = [.05, .04, .03]: mean .04, sd .01, t = .04 / (.01 / sqrt 3) = 4 sqrt 3
    t = 4 * math.sqrt(3)
    assert d.n == 3 and d.seeds == (0, 1, 2)
    assert d.mean == pytest.approx(0.04)
    assert d.sd == pytest.approx(0.01)
    assert d.t == pytest.approx(t)
    # Student t with 2 df: CDF(t) = 1/2 + t / (2 sqrt(2 + t^2))  =>  p = 1 - t / sqrt(2 + t^2)
    assert d.p == pytest.approx(1 - t / math.sqrt(2 + t * t))
    scipy_stats = pytest.importorskip("scipy.stats")
    ref = scipy_stats.ttest_rel([0.85, 0.86, 0.90], [0.80, 0.82, 0.87])
    assert d.p == pytest.approx(ref.pvalue)
    assert d.t == pytest.approx(ref.statistic)


def test_paired_uses_common_seeds_and_reports_na():
    d = paired_difference({0: 0.9, 1: 0.5, 2: 0.7}, {0: 0.8, 2: 0.6})
    assert d.seeds == (0, 2)
    assert d.mean == pytest.approx(0.1)
    assert d.p is None  # both differences are 0.1: sd 0, no test
    one = paired_difference({0: 0.9}, {0: 0.8, 1: 0.7})
    assert one.n == 1 and one.t is None and one.p is None
    assert one.mean == pytest.approx(0.1)
    none = paired_difference({3: 0.9}, {0: 0.8})
    assert none.n == 0 and none.mean is None


def test_accuracy_kept_rule():
    # on the paired mean difference, tolerance in percentage points: -0.5 / 100 = -0.005
    assert accuracy_kept(-0.004, 0.5) is True
    assert accuracy_kept(-0.005, 0.5) is True
    assert accuracy_kept(-0.006, 0.5) is False
    assert accuracy_kept(0.01, 0.0) is True
    assert accuracy_kept(-1e-13, 0.0) is True  # rounding of a zero difference
    assert accuracy_kept(None, 0.5) is None


def _final(cm, names, counts=None):
    cm = np.asarray(cm)
    tp = np.diag(cm).astype(float)
    rec = tp / cm.sum(1)
    pred = cm.sum(0)
    prec = np.divide(tp, pred, out=np.zeros_like(tp), where=pred > 0)
    f1 = np.divide(2 * prec * rec, prec + rec, out=np.zeros_like(tp), where=(prec + rec) > 0)
    test = {"accuracy": tp.sum() / cm.sum(), "balanced_accuracy": rec.mean(),
            "macro_f1": f1.mean(), "per_class_recall": rec.tolist(),
            "per_class_precision": prec.tolist(), "confusion_matrix": cm.tolist()}
    return {"class_names": names, "test": test, "val": test}


def _rec(variant, seed, cm, names):
    return RunRecord(name=f"{variant}-seed{seed}", variant=variant, seed=seed, run_dir=Path("."),
                     final=_final(cm, names))


def test_run_metrics_important_groups_ordinal():
    names = ["a", "b", "c"]
    cm = [[8, 2, 0], [1, 6, 3], [0, 0, 10]]
    m = run_metrics(_final(cm, names), important=["b"], groups=[["a", "b"]], ordinal=True)
    assert m["accuracy"] == pytest.approx(24 / 30)
    assert m["recall[b]"] == pytest.approx(0.6)
    assert m["precision[b]"] == pytest.approx(6 / 8)
    # same group: a<->b mistakes 2 + 1 = 3 of 6 mistakes; plus 24 correct
    assert m["group_accuracy"] == pytest.approx(27 / 30)
    assert m["group_accuracy_mistakes"] == pytest.approx(3 / 6)
    # |i - j|: 2*1 + 1*1 + 3*1 = 6 over 30
    assert m["mean_abs_class_error"] == pytest.approx(6 / 30)
    with pytest.raises(ValueError, match="unknown class"):
        run_metrics(_final(cm, names), important=["zebra"])


def test_aggregate_over_variants_and_seeds():
    names = ["a", "b"]
    # accuracy per run: ce 0.80, 0.90 ; w 0.85, 0.90 ; recall of b: ce .6/.8 ; w .9/1.0
    recs = [
        _rec("ce", 0, [[10, 0], [4, 6]], names),      # acc 16/20 = .8, recall b .6
        _rec("ce", 1, [[10, 0], [2, 8]], names),      # acc .9, recall b .8
        _rec("w", 0, [[8, 2], [1, 9]], names),        # acc .85, recall b .9
        _rec("w", 1, [[8, 2], [0, 10]], names),       # acc .9, recall b 1.0
    ]
    agg = aggregate(recs, variants=["ce", "w"], baseline="ce", tolerance_points=2.0,
                    important=["b"])
    w = agg.variants["w"]
    assert w.n == 2 and w.seeds == [0, 1]
    assert w.stats["accuracy"].mean == pytest.approx(0.875)
    assert w.stats["recall[b]"].mean == pytest.approx(0.95)
    # paired recall differences .3 and .2: mean .25, sd sqrt(.005)
    d = w.diff["recall[b]"]
    assert d.mean == pytest.approx(0.25)
    assert d.sd == pytest.approx(math.sqrt(0.005))
    t = 0.25 / (math.sqrt(0.005) / math.sqrt(2))
    # 1 df: CDF(t) = 1/2 + atan(t)/pi  =>  p = 1 - 2 atan(t)/pi
    assert d.p == pytest.approx(1 - 2 * math.atan(t) / math.pi)
    # paired accuracy differences +.05, 0: kept; a variant at .65 on seed 0 (ce .80): -15 pt, not kept
    assert w.accuracy_kept is True
    recs.append(_rec("bad", 0, [[7, 3], [4, 6]], names))  # acc .65
    agg2 = aggregate(recs, variants=["ce", "w", "bad"], baseline="ce", tolerance_points=2.0)
    assert agg2.variants["bad"].accuracy_kept is False
    assert agg2.variants["bad"].diff["accuracy"].p is None  # n = 1


def test_shot_accuracies_only_when_the_set_is_imbalanced():
    names = ["a", "b"]
    f = _final([[8, 2], [1, 9]], names)
    f["test"].update(many_shot_accuracy=0.8, medium_shot_accuracy=None, few_shot_accuracy=0.9)
    m = run_metrics(f)
    assert m["many_shot_accuracy"] == 0.8 and m["few_shot_accuracy"] == 0.9
    assert "medium_shot_accuracy" not in m
    f["test"].update(few_shot_accuracy=None)  # every class many-shot: same as the accuracy
    assert not any(k.endswith("shot_accuracy") for k in run_metrics(f))


def test_accuracy_kept_uses_the_paired_seeds_of_the_delta():
    """Unequal seed counts: the baseline has seeds 0-2, the variant 0-1. Over all its seeds the
    baseline's mean is pulled up by seed 2 (acc .95), so comparing unpaired means would say "not
    kept" (.80 < .85 - .02); over the paired seeds 0, 1 the variant is .005 below: kept."""
    names = ["a", "b"]
    recs = [
        _rec("ce", 0, [[10, 0], [4, 6]], names),      # .80
        _rec("ce", 1, [[10, 0], [2, 8]], names),      # .90
        _rec("ce", 2, [[10, 0], [1, 9]], names),      # .95
        _rec("w", 0, [[10, 0], [4, 6]], names),       # .80
        _rec("w", 1, [[9, 1], [2, 8]], names),        # .85
    ]
    agg = aggregate(recs, variants=["ce", "w"], baseline="ce", tolerance_points=3.0)
    w, ce = agg.variants["w"], agg.variants["ce"]
    assert ce.stats["accuracy"].mean == pytest.approx((0.80 + 0.90 + 0.95) / 3)
    assert w.stats["accuracy"].mean == pytest.approx(0.825)
    d = w.diff["accuracy"]
    assert d.seeds == (0, 1) and d.mean == pytest.approx(-0.025)
    # unpaired: .825 < .8833 - .03 -> would be "not kept"; paired: -.025 >= -.03 -> kept
    assert w.stats["accuracy"].mean < ce.stats["accuracy"].mean - 0.03
    assert w.accuracy_kept is True
    agg_strict = aggregate(recs, variants=["ce", "w"], baseline="ce", tolerance_points=2.0)
    assert agg_strict.variants["w"].accuracy_kept is False  # -2.5 pt < -2 pt
