"""The verdict rule of docs/study.md, branch by branch (words from the numbers)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from classaware.study.aggregate import Paired  # noqa: E402
from classaware.study.analysis import analyze  # noqa: E402
from classaware.study.verdict import (  # noqa: E402
    ALPHA,
    accuracy_words,
    delta,
    primary_metrics,
    significance,
    threshold_words,
    verdict_lines,
)
from test_study_report import build_fake_study  # noqa: E402


def paired(mean, p, n=3, sd=0.01):
    return Paired(n=n, mean=mean, sd=sd, p=p)


# rule 1: significance of a paired difference


def test_significance_branches():
    assert significance(paired(0.05, 0.03)) == "significant, p = 0.03"
    assert significance(paired(0.05, ALPHA)) == "not significant, p = 0.05"  # p < α is strict
    assert significance(paired(0.05, 0.4)) == "not significant, p = 0.4"
    assert significance(paired(0.05, 1e-5)) == "significant, p < 0.001"
    assert significance(Paired(n=1, mean=0.05)) == "no test: 1 paired seed"
    assert significance(Paired(n=3, mean=0.05, sd=0.0)) == "no test: identical differences"


def test_delta_in_points_or_raw():
    assert delta(paired(0.0965, 0.028), "recall[Shirt]") == "+9.7 pt (significant, p = 0.028)"
    assert delta(paired(-0.0179, 0.015), "accuracy", sep=", ") == "-1.8 pt, significant, p = 0.015"
    # the mean absolute class error is not a fraction: no points, no ×100
    assert delta(paired(-0.123, 0.2), "mean_abs_class_error") == "-0.12 (not significant, p = 0.2)"


# rule 2: accuracy kept


def test_accuracy_words_follow_the_kept_flag():
    d = paired(-0.003, 0.5)
    assert accuracy_words(d, True) == "with accuracy kept (-0.3 pt, not significant, p = 0.5)"
    assert accuracy_words(d, False).startswith("but accuracy not kept (-0.3 pt")
    assert accuracy_words(d, True, after=False).startswith("accuracy kept (")


# rule 3: threshold moving


@pytest.mark.parametrize("d, words", [
    (paired(0.012, 0.01), "camri is more accurate than ce with a moved threshold (Δ +1.2 pt"),
    (paired(-0.015, 0.02), "ce with a moved threshold is more accurate (Δ -1.5 pt"),
    (paired(0.0001, 0.98), "ce with a moved threshold is as accurate (Δ +0.0 pt, not signif"),
    (paired(-0.02, 0.3), "ce with a moved threshold is as accurate (Δ -2.0 pt"),
    (Paired(n=1, mean=0.01), "ce with a moved threshold is not distinguishable (Δ +1.0 pt, no"),
])
def test_threshold_branches(d, words):
    text = threshold_words("camri", "ce", "Shirt", d)
    assert text.startswith("at the same Shirt recall, ")
    assert words in text


@pytest.mark.parametrize("important, metrics, expected", [
    (["Shirt", "Coat"], ["accuracy", "group_accuracy"], ["recall[Shirt]", "recall[Coat]"]),
    ([], ["accuracy", "group_accuracy", "mean_abs_class_error"], ["group_accuracy"]),
    ([], ["accuracy", "mean_abs_class_error", "few_shot_accuracy"], ["mean_abs_class_error"]),
    ([], ["accuracy", "many_shot_accuracy", "few_shot_accuracy"], ["few_shot_accuracy"]),
    ([], ["accuracy", "balanced_accuracy"], ["balanced_accuracy"]),
])
def test_primary_metrics(important, metrics, expected):
    a = SimpleNamespace(important=important, agg=SimpleNamespace(metrics=metrics))
    assert primary_metrics(a) == expected


# whole lines, from hand-made run directories


def test_one_line_per_variant_from_the_numbers(tmp_path):
    study = build_fake_study(tmp_path)
    a = analyze(study, tmp_path)
    lines = verdict_lines(a)
    assert len(lines) == 2
    assert lines[0].startswith("ce (linear head): the baseline, accuracy ")
    assert "two recall" in lines[0] and "over 3 seeds" in lines[0]
    push = a.agg.variants["push"]
    d = push.diff["recall[two]"]
    assert lines[1].startswith(f"push (cosine head): two recall {100 * d.mean:+.1f} pt (")
    assert significance(d) in lines[1]
    assert (" with accuracy kept (" in lines[1]) == push.accuracy_kept
    assert (" but accuracy not kept (" in lines[1]) == (not push.accuracy_kept)
    vs = a.threshold["two"].variants["push"].vs_curve
    assert f"Δ {100 * vs.mean:+.1f} pt, {significance(vs)}" in lines[1]


def test_lines_without_a_comparison(tmp_path):
    # ce has seeds 0, 1; push only seed 2: nothing to pair
    study = build_fake_study(tmp_path / "a", skip=("ce-seed2", "push-seed0", "push-seed1"))
    lines = verdict_lines(analyze(study, tmp_path / "a"))
    assert lines[1] == "push (cosine head): no seed in common with ce; not compared"
    study = build_fake_study(tmp_path / "b", skip=("push-seed0", "push-seed1", "push-seed2"))
    lines = verdict_lines(analyze(study, tmp_path / "b"))
    assert lines[1] == "push (cosine head): no finished run"  # the head as configured
    assert verdict_lines(analyze(study, tmp_path / "empty")) == []


def test_line_without_important_classes_speaks_of_group_accuracy(tmp_path):
    from classaware.study.runner import plan_runs
    from classaware.study.spec import load_study
    from test_study_report import write_fake_run

    study = load_study({
        "study": {"name": "g", "seeds": [0, 1, 2], "baseline": "ce", "important": [],
                  "groups": [["zero", "one"]]},
        "data": {"name": "digits"},
        "variants": [{"name": "ce", "loss.name": "ce"},
                     {"name": "w", "loss": {"name": "focal", "gamma": 2.0}}]})
    for p in plan_runs(study, tmp_path):
        write_fake_run(p.run_dir, seed=p.seed, push=0.0 if p.variant == "ce" else 0.3)
    a = analyze(study, tmp_path)
    lines = verdict_lines(a)
    d = a.agg.variants["w"].diff["group_accuracy"]
    assert lines[0].startswith("ce: the baseline, accuracy ") and "group accuracy" in lines[0]
    assert lines[1].startswith(f"w: group accuracy {100 * d.mean:+.1f} pt ({significance(d)})")
    assert "moved threshold" not in lines[1]  # no important class: no threshold moving
