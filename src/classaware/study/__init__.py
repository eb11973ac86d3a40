"""Studies: every (variant, seed) of a study file trained by persistent worker processes (or as
Ray tasks on a cluster), aggregated over seeds, compared with threshold moving, and reported
(md, html, csv, png).

Example
-------
>>> from classaware.study import load_study, execute_study, write_report
>>> study = load_study("important-class-demo", seeds=1)            # doctest: +SKIP
>>> execute_study(study, "runs/demo", jobs=2)                      # doctest: +SKIP
>>> write_report(study, "runs/demo")                               # doctest: +SKIP
PosixPath('runs/demo/report.html')
"""

from __future__ import annotations

from classaware.study.aggregate import aggregate, paired_difference, summarize
from classaware.study.analysis import analyze
from classaware.study.report import write_report
from classaware.study.runner import execute_study, plan_runs
from classaware.study.spec import Study, Variant, load_study, presets

__all__ = ["Study", "Variant", "aggregate", "analyze", "execute_study", "load_study",
           "paired_difference", "plan_runs", "presets", "summarize", "write_report"]
