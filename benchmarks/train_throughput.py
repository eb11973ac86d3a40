"""Training images/s of the harness with and without each performance option.

Two workloads, on random data of the right shape (an ``arrays`` .npz written to a temporary
directory, so nothing needs downloading):

* ResNet-32 (the LDAM CIFAR network) on 3×32×32 images, 10 classes, crop + flip augmentation;
* the Fashion-MNIST CNN (``small_cnn``) on 1×28×28 images, 10 classes.

Options, each toggled alone against the baseline (everything off):

* ``channels_last`` (``train.channels_last``) — CPU and CUDA;
* ``compile`` (``train.compile``, torch.compile) — CPU (needs a C compiler) and CUDA;
* ``amp`` (``train.amp = "bf16"``, bf16 autocast) — CUDA; on CPU it runs CPU bf16 autocast,
  which is shown but is usually slower on CPUs without AMX;
* ``all`` — every option above that is not ``--skip``-ped, together;
* ``host-resident data`` — CUDA only: the baseline with the dataset in host memory, copied per
  batch.  Every other CUDA row keeps the dataset resident on the GPU (the harness' default when
  it fits; here it is forced, so the rows never depend on free memory).  On CPU the data is
  always in host memory, so the row is skipped.

images/s = training images of an epoch / that epoch's ``train_seconds`` (metrics.jsonl), median
over the epochs after the first (warm-up, compilation); with ``--epochs 1`` the one epoch, which
then includes the warm-up (and compilation, for ``compile``).  A row that fails (e.g.
``compile`` without a C compiler) prints its error in one line; the others still run, and the
exit code is 1.

Usage::

    python benchmarks/train_throughput.py                  # both workloads, default sizes
    python benchmarks/train_throughput.py --n 2048 --epochs 3 --workloads resnet32
    python benchmarks/train_throughput.py --device cuda --n 16384 --skip compile
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from classaware.errors import ConfigError
from classaware.trainer import build
from classaware.trainer.build import resolve_device
from classaware.trainer.config import load_config
from classaware.trainer.loop import run_training

WORKLOADS = {
    "resnet32": {"shape": (3, 32, 32), "model": "resnet32", "augment": True},
    "small_cnn": {"shape": (1, 28, 28), "model": "small_cnn", "augment": False},
}
OPTIONS = [("channels_last", {"channels_last": True}), ("compile", {"compile": True}),
           ("amp bf16", {"amp": True})]
SKIPPABLE = [label.split()[0] for label, _ in OPTIONS] + ["all", "host-resident"]


def write_npz(path: Path, shape: tuple, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    np.savez(path, x_train=rng.integers(0, 256, (n, *shape), dtype=np.uint8),
             y_train=rng.permutation(np.arange(n) % 10), x_test=rng.integers(0, 256, (64, *shape),
                                                                   dtype=np.uint8),
             y_test=rng.integers(0, 10, 64))


def epoch_images_per_s(records: list[dict], n: int) -> float:
    """``n`` / median ``train_seconds`` of the epochs after the first (the only one if just one)."""
    timed = records[1:] or records
    return n / statistics.median(r["train_seconds"] for r in timed)


def measure(npz: Path, wl: dict, opts: dict, args: argparse.Namespace, root: Path,
            resident: bool) -> float:
    """Train one configuration; its images/s.  ``resident``: the dataset on the training device
    (forced; on CPU it is host memory either way) or in host memory (copied per batch)."""
    cfg = load_config({
        "data": {"name": "arrays", "path": str(npz), "val_fraction": 0.0},
        "model": {"name": wl["model"]},
        "optim": {"name": "sgd", "lr": 0.05, "schedule": "constant"},
        "train": {"epochs": args.epochs, "batch_size": args.batch_size,
                  "augment": wl["augment"], "progress": False, "device": args.device,
                  "channels_last": opts.get("channels_last", False),
                  "compile": opts.get("compile", False),
                  "amp": "bf16" if opts.get("amp") else "none"},
        "eval": {"test": False},
    })
    fits = build._data_fits_on
    build._data_fits_on = lambda device, nbytes: resident and device.type == "cuda"
    try:
        run_dir = root / f"r{len(list(root.iterdir()))}"
        run_training(cfg, run_dir, quiet=True)
    finally:
        build._data_fits_on = fits
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return epoch_images_per_s(lines, args.n)


def variants(cuda: bool, skip: list[str]) -> list[tuple[str, dict, bool]]:
    """(label, options, data resident) rows: baseline, host data, each option, all of them.

    The compiling rows come last, so that a time limit cuts the slowest rows first.
    """
    single = [(label, opts) for label, opts in OPTIONS if label.split()[0] not in skip]
    rows = [("baseline", {}, True)]
    if cuda and "host-resident" not in skip:
        rows.append(("host-resident data", {}, False))
    rows += sorted(((label, opts, True) for label, opts in single),
                   key=lambda row: bool(row[1].get("compile")))
    if len(single) > 1 and "all" not in skip:
        rows.append(("all", {k: v for _, o in single for k, v in o.items()}, True))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1024, help="training images per epoch")
    ap.add_argument("--epochs", type=int, default=3,
                    help="epochs per row; the first is a warm-up unless it is the only one")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda")
    ap.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    ap.add_argument("--skip", nargs="*", default=[], choices=SKIPPABLE,
                    help="rows to leave out (an option left out is also left out of 'all')")
    args = ap.parse_args(argv)
    for name in ("n", "epochs", "batch_size"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    try:
        device = resolve_device(args.device)
    except ConfigError as exc:
        ap.error(f"--device: {exc}")
    cuda = device.type == "cuda"
    dev_name = torch.cuda.get_device_name(device) if cuda else "CPU"
    timed = "epoch 1 (includes warm-up)" if args.epochs == 1 else f"median of epochs 2..{args.epochs}"
    print(f"device {dev_name}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{args.n} images/epoch, batch {args.batch_size}, {timed}"
          + (", data resident on the GPU unless said otherwise" if cuda else ""), flush=True)
    rows = variants(cuda, args.skip)
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in args.workloads:
            wl = WORKLOADS[name]
            npz = root / f"{name}.npz"
            write_npz(npz, wl["shape"], args.n)
            runs = root / f"{name}-runs"
            runs.mkdir()
            print(f"\n{name} ({'x'.join(map(str, wl['shape']))}, augment "
                  f"{'crop+flip' if wl['augment'] else 'off'})", flush=True)
            base = None
            for label, opts, resident in rows:
                t0 = time.perf_counter()
                try:
                    ips = measure(npz, wl, opts, args, runs, resident)
                except Exception as exc:  # one row's failure (no C compiler, OOM) is reported
                    failed += 1
                    msg = str(exc).strip().splitlines()
                    print(f"  {label:22s}    failed: {type(exc).__name__}: "
                          f"{msg[0] if msg else ''}", flush=True)
                    continue
                secs = time.perf_counter() - t0
                if label == "baseline":
                    base = ips
                ratio = f"({ips / base:5.2f}x baseline)" if base else "(no baseline)"
                print(f"  {label:22s}{ips:10.0f} images/s  {ratio}  [{secs:.0f} s]", flush=True)
            if not cuda:
                print("  host- vs device-resident data: CUDA only (on CPU the data is in host "
                      "memory)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
