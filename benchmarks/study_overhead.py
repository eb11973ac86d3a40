"""The main job's wall time as a ratio to its floor: the bare training of the same runs.

Two measurements on the same machine, in the same process tree (children of this script):

* **study**: ``python -m classaware compare --config PRESET --jobs J --out TMP`` — what a bare
  ``classaware`` runs (the ``important-class-demo`` preset, ``J = min(2, cores)`` workers), the
  report included; its wall time from start to exit;
* **floor**: the bare loop of ``benchmarks/train_overhead.py`` (``bare_run(..., evaluate=True)``)
  on every run of the same study: the run's model, data subset, epochs, batch size, optimizer,
  schedule and loss, one validation pass per epoch and a validation and a test pass at the end;
  no metrics, no checkpoints, no logs.  The runs are shared over ``J`` processes running at the
  same time with the study's thread count per worker (``OMP_NUM_THREADS = cores // J``); data
  loading and process start-up are not counted.  ``floor = Σ bare seconds / J``.  Each bare process first makes one small untimed run (the
  kernels' first calls).

Printed: both times, the ratio ``study / floor`` (and the same ratio of CPU seconds, which
another load on the machine distorts less), and where the difference goes (summed over the
runs and divided by ``J`` so that every line is in wall seconds)::

    bare training steps, bare evaluation passes             (the floor)
    harness training steps      Σ train_seconds of metrics.jsonl
    harness per-epoch rest      validation + metrics + checkpoints + metrics.jsonl
    per-run rest                process start, imports, data, model, final evaluation, files
    study rest                  study start-up, waits and idle workers, the report

Usage::

    python benchmarks/study_overhead.py                       # the main job, as shipped
    python benchmarks/study_overhead.py --seeds 1 --epochs 1  # a quick, smaller version
    python benchmarks/study_overhead.py --losses ce,camri-m0.2-s16 --max-train 3000
    python benchmarks/study_overhead.py --reps 2    # floor/study, then study/floor (a loaded machine)
    python benchmarks/study_overhead.py --ray       # also the same study on a local Ray instance

Under another load that comes and goes, compare ratios of repetitions, not single numbers.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _study_args(args: argparse.Namespace) -> list[str]:
    """The ``compare`` options that make the (smaller) study; the same for both measurements."""
    out = ["--config", args.config]
    if args.seeds is not None:
        out += ["--seeds", args.seeds]
    if args.losses:
        out += ["--losses", args.losses]
    if args.epochs:
        out += ["--set", f"train.epochs={args.epochs}"]
    if args.max_train:
        out += ["--set", f"data.max_train={args.max_train}"]
    return out


def _run_configs(args: argparse.Namespace) -> list[dict]:
    """Every run's resolved train config, in the study's scheduling order."""
    from classaware.cli.compare import _parse_seeds
    from classaware.study.runner import plan_runs
    from classaware.study.spec import load_study
    from classaware.trainer.config import load_config

    sets = []
    if args.epochs:
        sets.append(("train.epochs", args.epochs))
    if args.max_train:
        sets.append(("data.max_train", args.max_train))
    losses = [x.strip() for x in args.losses.split(",")] if args.losses else None
    study = load_study(args.config, losses=losses, seeds=_parse_seeds(args.seeds), sets=sets)
    return [load_config(r.config).to_dict() for r in plan_runs(study, "unused")]


def run_study(args: argparse.Namespace, out: Path, jobs: int, executor: str = "local") -> dict:
    """Run the study as a user does; wall time, the time of each line, per-run seconds."""
    cmd = [sys.executable, "-m", "classaware", "compare", *_study_args(args), "--jobs",
           str(jobs), "--out", str(out)]
    if executor == "ray":  # a local Ray started by the study; each task as many threads
        cmd += ["--executor", "ray", "--cpus-per-run", str(max(1, _cores() // jobs))]
    t0 = time.perf_counter()
    cpu0 = _children_cpu()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    last_run_at, run_walls = t0, []
    assert proc.stdout is not None
    for line in proc.stdout:
        m = re.search(r"\[\d+/\d+\] \S+: (?:trained|resumed) in ([0-9.]+) s", line)
        if m:
            last_run_at = time.perf_counter()
            run_walls.append(float(m.group(1)))
        if args.verbose:
            print("   |", line.rstrip())
    rc = proc.wait()
    wall = time.perf_counter() - t0
    if rc != 0:
        sys.exit(f"study_overhead: the study failed (exit {rc}): {' '.join(cmd)}")
    train = epoch = 0.0
    for mpath in (out / "runs").glob("*/metrics.jsonl"):
        for rec in map(json.loads, mpath.read_text().splitlines()):
            train += rec["train_seconds"]
            epoch += rec["seconds"]
    return {"wall": wall, "after_last_run": t0 + wall - last_run_at, "run_walls": run_walls,
            "train": train, "epoch": epoch, "cpu": _children_cpu() - cpu0}


def _children_cpu() -> float:
    """User + system CPU seconds of the finished children (the study and its workers)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_floor(args: argparse.Namespace, tmp: Path, jobs: int) -> dict:
    """The bare runs, shared round-robin over ``jobs`` processes started together."""
    cfgs = _run_configs(args)
    spec = tmp / "runs.json"
    spec.write_text(json.dumps(cfgs))
    threads = str(max(1, _cores() // jobs))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    procs = [subprocess.Popen([sys.executable, __file__, "--bare-shard", str(spec), str(k),
                               str(jobs)], stdout=subprocess.PIPE, text=True, env=env)
             for k in range(jobs)]
    train = total = cpu = 0.0
    for p in procs:
        out, _ = p.communicate()
        if p.returncode != 0:
            sys.exit(f"study_overhead: a bare shard failed (exit {p.returncode})")
        for rec in json.loads(out.strip().splitlines()[-1]):
            train += rec["train"]
            total += rec["total"]
            cpu += rec["cpu"]
    return {"runs": len(cfgs), "train": train, "total": total, "cpu": cpu}


def bare_shard(spec: str, k: int, jobs: int) -> None:
    """Child process: the bare runs ``k, k + jobs, ...``; prints their seconds as JSON."""
    import torch

    sys.path.insert(0, str(HERE))
    from classaware.data import load_data
    from classaware.trainer.config import load_config
    from train_overhead import bare_run

    cfgs = [load_config(c) for c in json.loads(Path(spec).read_text())[k::jobs]]
    device = torch.device("cpu")
    out = []
    if cfgs:  # warm-up, not counted: the kernels' first calls in this process
        data = load_data(cfgs[0].data, seed=cfgs[0].seed)
        small = dataclasses.replace(data, **{f"{a}_{s}": getattr(data, f"{a}_{s}")[:256]
                                             for a in "xy" for s in ("train", "val", "test")})
        one = dataclasses.replace(cfgs[0], train=dataclasses.replace(cfgs[0].train, epochs=1))
        bare_run(one, device, data=small, evaluate=True)
    for cfg in cfgs:
        data = load_data(cfg.data, seed=cfg.seed)  # not counted: the floor is compute
        cpu0 = time.process_time()
        epochs, total = bare_run(cfg, device, data=data, evaluate=True)
        out.append({"train": sum(epochs), "total": total, "cpu": time.process_time() - cpu0})
    print(json.dumps(out))


def report(study: dict, floor: dict, jobs: int) -> float:
    f = floor["total"] / jobs
    w = study["wall"]
    per_run = sum(study["run_walls"]) / jobs
    rows = [
        ("floor: bare training steps", floor["train"] / jobs),
        ("floor: bare evaluation passes", (floor["total"] - floor["train"]) / jobs),
        ("harness training steps", study["train"] / jobs),
        ("harness per-epoch rest (val, metrics, ckpt)", (study["epoch"] - study["train"]) / jobs),
        ("per-run rest (start, import, data, final)", per_run - study["epoch"] / jobs),
        ("study rest (start-up, idle workers, report)", w - per_run),
        ("  of which after the last run (report)", study["after_last_run"]),
    ]
    print(f"{'':46s}{'wall s':>9s}{'x floor':>9s}")
    for name, secs in rows:
        print(f"{name:46s}{secs:9.1f}{secs / f:9.2f}")
    print(f"{'study wall time':46s}{w:9.1f}{w / f:9.2f}")
    print(f"{'floor = bare train + eval compute / workers':46s}{f:9.1f}{1:9.2f}")
    print(f"ratio study / floor = {w / f:.2f}  ({floor['runs']} runs, {jobs} workers)")
    print(f"CPU seconds: study (its whole process tree) {study['cpu']:.1f}, floor (the bare runs) "
          f"{floor['cpu']:.1f}: ratio {study['cpu'] / floor['cpu']:.2f} (less sensitive to other "
          "load than the wall ratio; idle cores are not in it)")
    return w / f


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="important-class-demo", help="study preset or file")
    ap.add_argument("--seeds", default=None, help="as compare --seeds (default: the study's)")
    ap.add_argument("--losses", default=None, help="as compare --losses (default: all variants)")
    ap.add_argument("--epochs", type=int, default=0, help="train.epochs (0 = the study's)")
    ap.add_argument("--max-train", type=int, default=0, help="data.max_train (0 = the study's)")
    ap.add_argument("--jobs", type=int, default=0, help="workers (0 = the main job's: min(2, cores))")
    ap.add_argument("--reps", type=int, default=1,
                    help="repetitions, floor and study in alternating order (default 1)")
    ap.add_argument("--ray", action="store_true",
                    help="also run the study with --executor ray (a local Ray) after each study")
    ap.add_argument("--verbose", "-v", action="store_true", help="echo the study's output")
    ap.add_argument("--bare-shard", nargs=3, metavar=("SPEC", "K", "JOBS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.bare_shard:
        bare_shard(args.bare_shard[0], int(args.bare_shard[1]), int(args.bare_shard[2]))
        return
    jobs = args.jobs or max(1, min(2, _cores()))
    import torch

    print(f"study {' '.join(_study_args(args))}, {jobs} workers, {_cores()} cores, "
          f"torch {torch.__version__}, load average {os.getloadavg()[0]:.1f}")
    ratios: list[float] = []
    ray_ratios: list[float] = []
    for rep in range(args.reps):
        with tempfile.TemporaryDirectory() as tmp:
            if rep % 2 == 0:  # alternate the order: a load that changes hurts both alike
                floor = run_floor(args, Path(tmp), jobs)
                study = run_study(args, Path(tmp) / f"study{rep}", jobs)
            else:
                study = run_study(args, Path(tmp) / f"study{rep}", jobs)
                floor = run_floor(args, Path(tmp), jobs)
        if args.reps > 1:
            print(f"-- repetition {rep + 1}/{args.reps} (load average {os.getloadavg()[0]:.1f})")
        ratios.append(report(study, floor, jobs))
        if args.ray:
            with tempfile.TemporaryDirectory() as tmp:
                on_ray = run_study(args, Path(tmp) / "ray", jobs, "ray")
            ray_ratios.append(on_ray["wall"] / study["wall"])
            print(f"the same study on a local Ray: {on_ray['wall']:.1f} s wall, "
                  f"{ray_ratios[-1]:.2f}x local workers, {on_ray['wall'] / (floor['total'] / jobs):.2f}x floor")
    if args.reps > 1:
        print(f"ratio per repetition: {', '.join(f'{r:.2f}' for r in ratios)}; "
              f"median {statistics.median(ratios):.2f}")
        if ray_ratios:
            print(f"Ray / local workers per repetition: {', '.join(f'{r:.2f}' for r in ray_ratios)}")


if __name__ == "__main__":
    main()
