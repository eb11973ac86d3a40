"""Images/s of the harness (``run_training``) against a bare PyTorch loop, in one process.

Both train the same model (``build_model`` with the same config and seed) on the same in-memory
tensors with the same batch size, optimizer and loss (cross entropy).  The bare loop is what
one would write by hand: randperm, index the tensors, normalise, forward, loss, backward, step —
no metrics, no progress bar, no evaluation, no checkpoints.  The harness does everything it
always does (device-side running loss and confusion matrix, per-epoch validation, atomic
checkpoints, metrics.jsonl, final evaluation).  Augmentation is off for both (the bare loop has
none).

Repetitions alternate harness / bare; each repetition trains ``--epochs`` epochs and the
first epoch of each is a warm-up that is not counted (unless it is the only one).  Printed (median over the counted epochs):

* training images/s — the harness' per-epoch training time (``train_seconds`` in
  metrics.jsonl: the steps plus the one read of the running loss) vs the bare loop's epoch;
* end-to-end images/s — the harness' whole ``run_training`` wall time (data loading, per-epoch
  validation, checkpoints, final evaluation included) vs the bare loop's whole run (data
  loading, model build, training).

The overhead is ``(bare / harness - 1) * 100%``.

Usage::

    python benchmarks/train_overhead.py                    # Fashion-MNIST small_cnn, 5k images
    python benchmarks/train_overhead.py --data digits --model mlp --max-train 0
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from classaware.classes import resolve_classes
from classaware.data import load_data
from classaware.models import build_model
from classaware.trainer.build import (
    Normalizer,
    amp_dtype,
    auto_flag,
    build_loss,
    seed_everything,
)
from classaware.trainer.config import RunConfig, load_config
from classaware.trainer.loop import run_training
from classaware.trainer.optim import build_optimizer, lr_at, set_lr


def make_cfg(args: argparse.Namespace) -> RunConfig:
    data = {"name": args.data, "val_fraction": args.val_fraction}
    if args.max_train:
        data["max_train"] = args.max_train
    if args.max_test:
        data["max_test"] = args.max_test
    return load_config({
        "seed": 0, "data": data, "model": {"name": args.model},
        "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4,
                  "schedule": "constant"},
        # the same work as the bare loop below: no augmentation, contiguous memory format
        "train": {"epochs": args.epochs, "batch_size": args.batch_size, "augment": False,
                  "channels_last": False, "progress": False, "device": args.device,
                  "log_interval": 50},
    })


def bare_run(cfg: RunConfig, device: torch.device, *, data=None, evaluate: bool = False
             ) -> tuple[list[float], float]:
    """A hand-written loop; returns per-epoch training seconds and the whole run's seconds.

    It trains with the config's model, optimizer, learning-rate schedule, batch size and
    (``cross entropy``, or the config's loss when ``evaluate``) loss, no metrics, no progress
    bar, no checkpoints.  With ``evaluate`` it also makes the evaluation passes a run makes:
    one forward pass over validation after every epoch and one over validation and test at the
    end.  ``data``: a preloaded DataBundle (then loading is not part of the whole run's time).
    """
    t_start = time.perf_counter()
    if data is None:
        data = load_data(cfg.data, seed=cfg.seed)  # loading counts
    seed_everything(cfg.seed)
    model = build_model(cfg.model, tuple(data.input_shape), len(data.class_names)).to(device)
    x, y = data.x_train.to(device), data.y_train.to(device)
    norm = Normalizer.fit(data.x_train).to(device, x.dim())
    # as the trainer resolves it: "auto" = on for images
    channels_last = x.dim() == 4 and auto_flag(cfg.train.channels_last, True)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    amp = amp_dtype(cfg.train.amp, device)  # the forward pass's autocast, as the trainer's

    def fwd(xb: torch.Tensor) -> torch.Tensor:
        if amp is None:
            return model(xb).float()
        with torch.autocast(device_type=device.type, dtype=amp):
            return model(xb).float()

    opt = build_optimizer(model.parameters(), cfg.optim)
    loss_fn = _loss(cfg, data, device) if evaluate else F.cross_entropy
    evals: list[torch.Tensor] = []

    def forward_all(split: str) -> None:  # an evaluation pass: eval mode, no grad, argmax
        xs = getattr(data, f"x_{split}").to(device)
        model.eval()
        with torch.no_grad():
            for i in range(0, xs.shape[0], 1024):
                xb = norm(xs[i:i + 1024])
                if channels_last:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                evals.append(fwd(xb).argmax(1))
        model.train()

    bs, n = min(cfg.train.batch_size, x.shape[0]), x.shape[0]
    times = []
    model.train()
    for epoch in range(cfg.train.epochs):
        t0 = time.perf_counter()
        set_lr(opt, lr_at(cfg.optim, cfg.train.epochs, epoch))
        perm = torch.randperm(n, device=device)
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            xb = norm(x[idx])
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            loss = loss_fn(fwd(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        loss.item()  # synchronise, as the harness does once per epoch
        times.append(time.perf_counter() - t0)
        if evaluate and data.x_val.shape[0]:
            forward_all("val")
    if evaluate:
        forward_all("val")
        forward_all("test")
    return times, time.perf_counter() - t_start


def _loss(cfg: RunConfig, data, device: torch.device) -> torch.nn.Module:
    """The run's loss module (its class weight included), built by the trainer's builder."""
    names, counts = list(data.class_names), list(data.train_class_counts)
    important = resolve_classes(cfg.loss.important_classes, names, key="loss.important_classes")
    return build_loss(cfg, names, counts, important, device)[0]


def harness_run(cfg: RunConfig, root: Path, rep: int) -> tuple[list[float], float]:
    run_dir = root / f"h{rep}"
    t0 = time.perf_counter()
    run_training(cfg, run_dir, quiet=True)
    total = time.perf_counter() - t0
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["train_seconds"] for r in lines], total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--model", default="small_cnn")
    ap.add_argument("--max-train", type=int, default=5000, help="0 = the whole training set")
    ap.add_argument("--max-test", type=int, default=2000, help="0 = the whole test set")
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--reps", type=int, default=4)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0 = default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    cfg = make_cfg(args)
    data = load_data(cfg.data, seed=0)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    n = data.x_train.shape[0]
    steps = math.ceil(n / args.batch_size)
    print(f"{args.data} {args.model}: {n} training images, batch {args.batch_size} "
          f"({steps} steps/epoch), {args.epochs} epochs x {args.reps} reps, device {device}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")

    h_epoch, b_epoch, h_total, b_total = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            order = ("harness", "bare") if rep % 2 == 0 else ("bare", "harness")
            for which in order:
                if which == "harness":
                    ep, tot = harness_run(cfg, Path(tmp), rep)
                    h_epoch += ep[1:] or ep  # one epoch: nothing to warm up on
                    h_total.append(tot)
                else:
                    ep, tot = bare_run(cfg, device)
                    b_epoch += ep[1:] or ep
                    b_total.append(tot)

    epochs = args.epochs
    h_ips = n / statistics.median(h_epoch)
    b_ips = n / statistics.median(b_epoch)
    h_e2e = n * epochs / statistics.median(h_total)
    b_e2e = n * epochs / statistics.median(b_total)
    print(f"{'':28s}{'harness':>12s}{'bare':>12s}{'overhead':>10s}")
    print(f"{'training images/s':28s}{h_ips:12.0f}{b_ips:12.0f}{(b_ips / h_ips - 1) * 100:9.1f}%")
    print(f"{'end-to-end images/s':28s}{h_e2e:12.0f}{b_e2e:12.0f}{(b_e2e / h_e2e - 1) * 100:9.1f}%")
    print("(end-to-end: the harness also loads the data, evaluates validation every epoch, "
          "writes checkpoints and evaluates the test set at the end)")


if __name__ == "__main__":
    main()
