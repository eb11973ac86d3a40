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
* ``device-resident data`` — CUDA only: the dataset lives on the GPU (the default when it fits)
  vs host tensors copied per batch.  On CPU the data is always in host memory, so the row is
  skipped;
* ``all`` — every option that applies on this device.

images/s = training images of an epoch / that epoch's ``train_seconds`` (metrics.jsonl), median
over the epochs after the first (warm-up, compilation).

Usage::

    python benchmarks/train_throughput.py                  # both workloads, default sizes
    python benchmarks/train_throughput.py --n 2048 --epochs 3 --workloads resnet32
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch

from classaware.trainer import build
from classaware.trainer.config import load_config
from classaware.trainer.loop import run_training

WORKLOADS = {
    "resnet32": {"shape": (3, 32, 32), "model": "resnet32", "augment": True},
    "small_cnn": {"shape": (1, 28, 28), "model": "small_cnn", "augment": False},
}


def write_npz(path: Path, shape: tuple, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    np.savez(path, x_train=rng.integers(0, 256, (n, *shape), dtype=np.uint8),
             y_train=rng.integers(0, 10, n), x_test=rng.integers(0, 256, (64, *shape),
                                                                   dtype=np.uint8),
             y_test=rng.integers(0, 10, 64))


def measure(npz: Path, wl: dict, opts: dict, args: argparse.Namespace, root: Path,
            host_data: bool) -> float:
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
    if host_data:
        build._data_fits_on = lambda device, nbytes: False  # keep the tensors in host memory
    try:
        run_dir = root / f"r{len(list(root.iterdir()))}"
        run_training(cfg, run_dir, quiet=True)
    finally:
        build._data_fits_on = fits
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return args.n / statistics.median(r["train_seconds"] for r in lines[1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1024, help="training images per epoch")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    ap.add_argument("--skip", nargs="*", default=[], help="options to leave out (e.g. compile)")
    args = ap.parse_args()
    cuda = (args.device == "auto" and torch.cuda.is_available()) or args.device.startswith("cuda")
    dev_name = torch.cuda.get_device_name() if cuda else "CPU"
    print(f"device {dev_name}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{args.n} images/epoch, batch {args.batch_size}, median of epochs 2..{args.epochs}")
    variants = [("baseline", {}, False), ("channels_last", {"channels_last": True}, False),
                ("compile", {"compile": True}, False), ("amp bf16", {"amp": True}, False)]
    if cuda:
        variants.append(("host-resident data", {}, True))
        variants.append(("all", {"channels_last": True, "compile": True, "amp": True}, False))
    variants = [v for v in variants if v[0].split()[0] not in args.skip]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in args.workloads:
            wl = WORKLOADS[name]
            npz = root / f"{name}.npz"
            write_npz(npz, wl["shape"], args.n)
            runs = root / f"{name}-runs"
            runs.mkdir()
            print(f"\n{name} ({'x'.join(map(str, wl['shape']))}, augment "
                  f"{'crop+flip' if wl['augment'] else 'off'})")
            base = None
            for label, opts, host in variants:
                ips = measure(npz, wl, opts, args, runs, host)
                base = base or ips
                print(f"  {label:22s}{ips:10.0f} images/s  ({ips / base:5.2f}x baseline)",
                      flush=True)
            if not cuda:
                print("  device-resident data: CUDA only (on CPU the data is in host memory)")


if __name__ == "__main__":
    main()
