"""``classaware compare`` and the main job (``classaware`` with no arguments).

``classaware compare --config STUDY`` runs a study file (a path or a shipped preset name: see
``classaware compare --list``); the short form ``classaware compare --losses ce,camri,arcface
--seeds 5 --set k=v ... --jobs 2 --out DIR`` builds one from the train defaults and ``--set``.
Runs that are already finished are reused: run the same command again after an interruption.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from classaware.errors import ConfigError

DEFAULT_STUDY = "important-class-demo"
DEFAULT_OUT = Path("runs") / "demo-important-class"


def register(subparsers: Any) -> None:
    """Add the ``compare`` sub-command to ``subparsers``."""
    p = subparsers.add_parser(
        "compare", help="compare losses over seeds: parallel runs, statistics, report",
        description="Train every (variant, seed) of a study (worker processes on this machine, "
                    "or Ray tasks on a cluster), aggregate over seeds, compare with the baseline "
                    "and with threshold moving, and write DIR/report.{md,html,csv}. Ctrl-C or "
                    "SIGTERM stops it with a checkpoint; re-running the same command resumes it.",
    )
    p.add_argument("--config", "-c", metavar="FILE|PRESET",
                   help="study file or shipped preset (e.g. important-class, long-tail, similarity)")
    p.add_argument("--losses", "-l", metavar="A,B,...",
                   help="variants to run: names of the study's variants or loss names")
    p.add_argument("--seeds", metavar="N|S1,S2,...",
                   help="N: seeds 0..N-1; a comma-separated list: those seeds (0,3,7); one named "
                        "seed is a one-element list: 5, (seed 5 alone); replaces study.seeds")
    p.add_argument("--set", "-s", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a shared config key (optim.lr=0.01), a study key "
                        "(study.baseline=ce), or one variant's key, applied after the variant's "
                        "own values: VARIANT:KEY=VALUE (ldam-drw:train.drw_epoch=1); a shared key "
                        "does not change a value a variant sets itself; repeatable")
    p.add_argument("--jobs", "-j", type=int, default=None, metavar="N",
                   help="runs trained at once (default 1; with --executor ray, as many as the "
                        "cluster fits)")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local: worker processes on this machine (default); ray: one Ray task "
                        "per run (pip install 'classaware[ray]')")
    p.add_argument("--address", metavar="ADDR",
                   help="with --executor ray: the cluster (HOST:PORT or auto; default: start a "
                        "local Ray); --out must then be on a path every node sees")
    p.add_argument("--gpus-per-run", type=float, default=0.0, metavar="G",
                   help="with --executor ray: GPUs each run reserves (default 0)")
    p.add_argument("--cpus-per-run", type=int, default=1, metavar="C",
                   help="with --executor ray: CPUs each run reserves = its torch threads "
                        "(default 1)")
    p.add_argument("--out", "-o", metavar="DIR", help="study directory (default runs/<study name>)")
    p.add_argument("--report-only", action="store_true",
                   help="do not train: (re)build the report from the finished runs in DIR")
    p.add_argument("--tables", action="store_true",
                   help="print the per-class table of every run as it finishes")
    p.add_argument("--list", action="store_true", help="list the shipped study presets and exit")
    p.set_defaults(func=_run)


def _parse_seeds(text: str | None) -> int | list[int] | None:
    if text is None:
        return None
    try:
        items = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--seeds: expected a count or a comma-separated list of ints, got {text!r}") from None
    if not items:
        raise ConfigError("--seeds: empty")
    return items[0] if len(items) == 1 and "," not in text else items


def _run(args: argparse.Namespace) -> int:
    from classaware.study.spec import load_study, parse_set, presets

    if args.list:
        import shutil
        import textwrap

        from classaware.study.spec import preset_summary

        width = max(60, min(shutil.get_terminal_size((100, 24)).columns, 120))
        for name in presets():  # each description whole, wrapped under its name
            print(textwrap.fill(preset_summary(name), width, initial_indent=f"{name:26s}",
                                subsequent_indent=" " * 26))
        return 0
    if args.config is None and args.losses is None:
        raise ConfigError("compare: give --config STUDY (a file or preset) or --losses ce,camri,...")
    losses = [x.strip() for x in args.losses.split(",")] if args.losses else None
    sets = [parse_set(s) for s in args.overrides]
    study = load_study(args.config, losses=losses, seeds=_parse_seeds(args.seeds), sets=sets)
    out = Path(args.out) if args.out else Path("runs") / study.name
    if args.executor != "ray" and (args.address or args.gpus_per_run or args.cpus_per_run != 1):
        raise ConfigError("--address, --gpus-per-run and --cpus-per-run need --executor ray")
    execution: dict[str, Any] = {"executor": args.executor}
    if args.executor == "ray":
        from classaware.study.ray_executor import _import_ray

        _import_ray()  # without Ray: one line saying how to install it, before anything runs
        execution.update(address=args.address, gpus_per_run=args.gpus_per_run,
                         cpus_per_run=args.cpus_per_run)
    return run_and_report(study, out, jobs=args.jobs, report_only=args.report_only,
                          tables=args.tables, execution=execution)


def _summary_line(run_dir: Path) -> str:
    from classaware.classes import class_label

    try:
        final = json.loads((run_dir / "final.json").read_text())
    except (OSError, json.JSONDecodeError):
        return ""
    t = final.get("test") or {}
    parts = [f"acc {100 * t['accuracy']:.2f}%"] if t.get("accuracy") is not None else []
    if t.get("balanced_accuracy") is not None:
        parts.append(f"bal {100 * t['balanced_accuracy']:.2f}%")
    for name, r in (t.get("important_recall") or {}).items():
        if r is not None:
            parts.append(f"recall {class_label(name)} {100 * r:.1f}%")
    return "  ".join(parts)


def _per_class_table(run_dir: Path) -> str:
    from classaware.metrics import format_table

    try:
        final = json.loads((run_dir / "final.json").read_text())
        return format_table(final["test"], final["class_names"],
                            important=final.get("important_classes") or ())
    except Exception as exc:  # a table is a courtesy: never stop the study for it
        return f"(no per-class table: {type(exc).__name__}: {exc})"


def _shown(path: Path) -> str:
    """``path`` as the user gave it, relative to the working directory when it lies below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _print_report(study: Any, a: Any, html: Path) -> None:
    from classaware.study.report import comparison_table, format_text_table, threshold_table
    from classaware.study.verdict import ALPHA, verdict_lines

    lines = verdict_lines(a)
    if lines:
        print(f"\nVerdict (paired over seeds vs {study.baseline}; significant at p < {ALPHA:g}; "
              f"accuracy kept = Δ accuracy ≥ -{study.accuracy_tolerance:g} pt):")
        print("\n".join(f"  {line}" for line in lines))
        header, rows = comparison_table(a)
        print(f"\nComparison on the test set (mean ± 95% CI over seeds, %; Δ = paired difference "
              f"to {study.baseline}):")
        print(format_text_table(header, rows))
        for cname in a.threshold:
            h, r = threshold_table(a, cname)
            print(f"\nThreshold moving on {cname} ({study.baseline}+threshold = accuracy of "
                  f"{study.baseline}'s threshold curve at the same recall):")
            print(format_text_table(h, r))
    print(f"\nreport: {_shown(html)}")


def _report(study: Any, out: Path, *, report_only: bool) -> Any:
    """Analyse ``out``, write the report and print it; returns the analysis, or None when building
    the report failed (said in one line; the finished runs stay, ``--report-only`` rebuilds)."""
    import traceback

    from classaware.study.analysis import analyze
    from classaware.study.report import write_report

    try:
        a = analyze(study, out)
        if report_only and not a.records:
            raise ConfigError(f"--report-only: no finished run of study {study.name!r} in "
                              f"{_shown(out)}; run the study first (without --report-only)")
        _print_report(study, a, write_report(study, out, analysis=a))
        return a
    except ConfigError:
        raise
    except Exception as exc:
        log = out / "logs" / "report-error.log"
        try:
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text(traceback.format_exc())
            where = f"; traceback in {_shown(log)}"
        except OSError:
            where = ""
        print(f"classaware: error: building the report failed ({type(exc).__name__}: {exc}){where}."
              f" The finished runs are kept in {_shown(out / 'runs')}; once fixed, rebuild the "
              "report with the same command and --report-only", file=sys.stderr)
        return None


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread: ``compare`` stops as on Ctrl-C (exit 143)."""

    signum = int(signal.SIGTERM)


@contextlib.contextmanager
def _sigterm_stops() -> Iterator[None]:
    """While training, SIGTERM raises :class:`_Terminated` (the runs checkpoint and stop)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise _Terminated()

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _train(study: Any, out: Path, jobs: int | None, on_done: Any,
           execution: dict[str, Any]) -> tuple[list[str], int]:
    """Train the study's runs: (failed runs, 0), or ([], signal number) after SIGINT/SIGTERM."""
    from classaware.study.runner import execute_study

    try:
        with _sigterm_stops():
            outcome = execute_study(study, out, jobs=jobs, on_done=on_done, **execution)
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", int(signal.SIGINT))
        print(f"\nclassaware: {signal.Signals(signum).name}: the running runs saved a checkpoint; "
              "writing the report of the finished runs", file=sys.stderr, flush=True)
        return [], signum
    return outcome.failed, 0


def run_and_report(study: Any, out: str | Path, *, jobs: int | None = None,
                   report_only: bool = False, tables: bool | list[str] = False,
                   execution: dict[str, Any] | None = None) -> int:
    """Run ``study`` into ``out`` (unless ``report_only``), write the report, print the verdict and
    the tables.

    ``tables``: True prints every run's per-class test table as it finishes; a list of variant
    names prints those variants' tables (first seed). ``execution``: ``executor`` and its
    options (see :func:`classaware.study.runner.execute_study`). The study lock is held while
    training and while the report is written. Returns 0; 1 when runs failed or are missing, or
    when building the report failed (one line; ``--report-only`` rebuilds it); 130 / 143 after
    SIGINT / SIGTERM (the report of the finished runs is written; a rerun resumes).
    """
    from classaware.study.runner import study_lock

    out = Path(out)
    lock = study_lock(out) if not report_only or out.is_dir() else contextlib.nullcontext()
    with lock:
        return _run_and_report(study, out, jobs=jobs, report_only=report_only, tables=tables,
                               execution=execution or {})


def _run_and_report(study: Any, out: Path, *, jobs: int | None, report_only: bool,
                    tables: bool | list[str], execution: dict[str, Any]) -> int:
    t0 = time.perf_counter()
    failed: list[str] = []
    printed: set[str] = set()

    def on_done(run: Any, status: str) -> None:
        if status == "failed":
            return
        line = _summary_line(run.run_dir)
        if status == "reused":
            print(f"  {run.name}: finished earlier, reused  {line}")
        else:
            print(f"      {line}")
        want = tables is True or (isinstance(tables, list) and run.variant in tables
                                  and run.variant not in printed)
        if want:
            printed.add(run.variant)
            print(f"\n{run.name} (test set):")
            print(_per_class_table(run.run_dir))
            print()

    stopped_by = 0
    if not report_only:
        failed, stopped_by = _train(study, out, jobs, on_done, execution)
    a = _report(study, out, report_only=report_only)
    if a is None:
        return 1
    print(f"({len(a.records)}/{len(a.planned)} runs finished; {time.perf_counter() - t0:.0f} s)")
    if stopped_by:
        print("stopped before every run finished; run the same command again to resume")
        return 128 + stopped_by
    if failed:
        print(f"failed runs: {', '.join(failed)} (logs in {_shown(out / 'logs')}); run the same "
              "command again to retry them")
        return 1
    if a.diverged:
        print(f"diverged runs: {', '.join(r.name for r in a.diverged)} (listed apart in the report; "
              "a rerun reuses them: lower optim.lr for them)")
        return 1
    return 0 if not a.missing else 1


def run_default_study(out: str | Path | None = None, jobs: int | None = None) -> int:
    """The main job: the demo-size important-class study (``classaware`` with no arguments).

    Fashion-MNIST subset, small CNN: cross entropy, weighted cross entropy, ArcFace and CAMRI
    at two settings, 3 seeds each, into ``./runs/demo-important-class``; prints cross entropy's
    and CAMRI's per-class recall tables, the comparison table and the path of report.html.
    """
    from classaware.study.spec import load_study

    study = load_study(DEFAULT_STUDY)
    if jobs is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover
            cores = os.cpu_count() or 1
        jobs = max(1, min(2, cores))
    out = Path(out) if out is not None else DEFAULT_OUT
    print("classaware: the demo important-class study (important class: "
          f"{', '.join(map(str, study.important))}). Full size: classaware compare --config "
          "important-class --jobs 2; other studies: classaware compare --list")
    show = [v.name for v in study.variants if v.name == study.baseline or v.name.startswith("camri")]
    return run_and_report(study, out, jobs=jobs, tables=show)
