"""Every loss's forward + backward time as a ratio to ``F.cross_entropy``, per dtype and size.

Part (a) of the GPU device check (``benchmarks/device_check.sh``): on one device, for each
dtype (float32, bfloat16) and each size N x C (default C = 10, 1000, 100 000), every loss of
``classaware.losses.available()`` is timed against cross entropy on the same input (margin
losses: against cross entropy on a precomputed ``scale * cosine``, what the head would feed a
plain CE).  Each pair {cross entropy, loss} alternates in a fresh shuffled order each round;
each sample times ``--inner`` back-to-back calls between two device synchronisations (so a
GPU's launch queue stays full and the sample measures throughput, not one call's latency), and
the ratio is median(loss) / median(cross entropy).  The loss is timed twice: as shipped (with
its data-dependent value checks, on CUDA asynchronous asserts) and with
``classaware.functional.set_value_checks(False)``.

SimLoss needs a C x C similarity matrix; it is skipped above C = 1000 (at C = 100 000 the matrix
alone would be 40 GB).  Only the public API is used (``classaware.losses``, ``classaware.functional``,
``classaware.similarity``, and ``classaware.data.imbalance_counts`` for the long-tail class
counts).  ``benchmarks/losses.py`` is the CPU benchmark with the
literal paper implementations and the per-loss targets.

Usage::

    python benchmarks/device_losses.py                       # CUDA (else CPU), fp32 + bf16
    python benchmarks/device_losses.py --device cpu --sizes 4x10,4x1000 --reps 2 --inner 1
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from classaware.data import imbalance_counts
from classaware.functional import set_value_checks
from classaware.losses import available, create, spec
from classaware.similarity import ordinal

DEFAULT_SIZES = [(256, 10), (256, 1000), (64, 100_000)]
SIMLOSS_MAX_C = 1000
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def loss_kwargs(name: str, c: int) -> dict:
    """The published setting of each loss (scales and margins of the papers' CIFAR runs)."""
    counts = imbalance_counts([1000] * c, "exp", 100.0)  # LDAM's CIFAR-LT profile, ratio 100
    return {
        "ce": {},
        "camri": {"important_classes": [0], "margin": 0.2, "scale": 16.0},
        "arcface": {"margin": 0.5, "scale": 64.0},
        "cosface": {"margin": 0.35, "scale": 64.0},
        "ldam": {"class_counts": counts, "max_margin": 0.5, "scale": 30.0},
        "elm": {"class_counts": counts, "max_margin": 0.5, "lam": 1.0, "scale": 30.0},
        "simloss": {"similarity": ordinal(c, 0.5)} if c <= SIMLOSS_MAX_C else {},
        "cce": {"gamma": -1.0},
        "focal": {"gamma": 2.0},
        "logit_adjusted": {"class_counts": counts, "tau": 1.0},
        "balanced_softmax": {"class_counts": counts},
    }[name]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_pair(fns: dict[str, Callable[[], None]], reps: int, warmup: int, inner: int,
              device: torch.device, seed: int = 0) -> dict[str, float]:
    """Median seconds per call of each fn; rounds interleave the fns in a shuffled order."""
    rng = random.Random(seed)
    samples: dict[str, list[float]] = {n: [] for n in fns}
    for r in range(warmup + reps):
        order = list(fns)
        rng.shuffle(order)
        for n in order:
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(inner):
                fns[n]()
            _sync(device)
            if r >= warmup:
                samples[n].append((time.perf_counter() - t0) / inner)
    return {n: statistics.median(v) for n, v in samples.items()}


def fwd_bwd(loss_fn: Callable, leaf: torch.Tensor, target: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        leaf.grad = None
        loss_fn(leaf, target).backward()

    return run


def make_inputs(n: int, c: int, dtype: torch.dtype, device: torch.device, seed: int = 0
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits ~ 2 N(0, 1), cosines of random unit features and class vectors, uniform targets."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    logits = (torch.randn(n, c, generator=g) * 2).to(device=device, dtype=dtype)
    feats = F.normalize(torch.randn(n, 64, generator=g), dim=1)
    w = F.normalize(torch.randn(c, 64, generator=g), dim=1)
    cos = (feats @ w.T).clamp(-1, 1).to(device=device, dtype=dtype)
    target = torch.randint(0, c, (n,), generator=g).to(device)
    return logits, cos, target


def bench(n: int, c: int, names: list[str], dtype: torch.dtype, device: torch.device,
          args: argparse.Namespace) -> dict[str, dict[str, float] | str]:
    """{name: {"ce_s", "ours_s", "ratio", "nocheck_ratio"} or the reason it was skipped}."""
    logits, cos, target = make_inputs(n, c, dtype, device)
    out: dict[str, dict[str, float] | str] = {}
    for name in names:
        if name == "simloss" and c > SIMLOSS_MAX_C:
            out[name] = f"skipped: its C x C matrix (C > {SIMLOSS_MAX_C})"
            continue
        kw = loss_kwargs(name, c)
        module = create(name, **kw).to(device)
        cosine = spec(name).input == "cosine"
        scale = float(kw.get("scale", 1.0)) if cosine else 1.0
        base_leaf = (scale * cos if cosine else logits).detach().clone().requires_grad_(True)
        leaf = (cos if cosine else logits).detach().clone().requires_grad_(True)
        ce = fwd_bwd(F.cross_entropy, base_leaf, target)
        ours = fwd_bwd(module, leaf, target)
        med = time_pair({"ce": ce, "ours": ours}, args.reps, args.warmup, args.inner, device)
        set_value_checks(False)
        try:
            off = time_pair({"ce": ce, "ours": ours}, args.reps, args.warmup, args.inner, device,
                            seed=1)
        finally:
            set_value_checks(True)
        out[name] = {"ce_s": med["ce"], "ours_s": med["ours"], "ratio": med["ours"] / med["ce"],
                     "nocheck_ratio": off["ours"] / off["ce"]}
    return out


def parse_sizes(text: str) -> list[tuple[int, int]]:
    out = []
    for part in text.split(","):
        try:
            n, c = (int(v) for v in part.lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected NxC,NxC,..., got {part!r}") from None
        if n < 1 or c < 2:
            raise argparse.ArgumentTypeError(f"{part!r}: N must be >= 1 and C >= 2")
        out.append((n, c))
    return out


def parse_names(text: str) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    unknown = [x for x in names if x not in available()]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown loss(es) {unknown}; known: "
                                         f"{', '.join(available())}")
    return names


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda[:N]")
    p.add_argument("--dtypes", default="float32,bfloat16",
                   type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
                   help="comma-separated, of float32, bfloat16")
    p.add_argument("--sizes", type=parse_sizes, default=DEFAULT_SIZES,
                   help="NxC,NxC,... (default 256x10,256x1000,64x100000)")
    p.add_argument("--losses", type=parse_names, default=None,
                   help="comma-separated names (default: all)")
    p.add_argument("--reps", type=int, default=30, help="timed samples per function")
    p.add_argument("--warmup", type=int, default=5, help="untimed samples first")
    p.add_argument("--inner", type=int, default=10, help="calls per sample")
    args = p.parse_args(argv)
    bad = [d for d in args.dtypes if d not in DTYPES]
    if bad or not args.dtypes:
        p.error(f"--dtypes: unknown {bad}; known: {', '.join(DTYPES)}")
    for k in ("reps", "inner"):
        if getattr(args, k) < 1:
            p.error(f"--{k} must be >= 1")
    if args.warmup < 0:
        p.error("--warmup must be >= 0")
    try:
        device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                              else "cpu" if args.device == "auto" else args.device)
    except RuntimeError as exc:
        p.error(f"--device: {exc}")
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device: CUDA is not available here")
    names = args.losses or available()
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU, {torch.get_num_threads()} threads"
    print(f"# loss forward+backward / F.cross_entropy: torch {torch.__version__}, {where}; "
          f"median of {args.reps} samples of {args.inner} call(s) after {args.warmup} warm-up")
    print("# margin losses against CE on precomputed scale*cos; 'no checks' = "
          "classaware.functional.set_value_checks(False)")
    for dname in args.dtypes:
        dtype = DTYPES[dname]
        print(f"\n## {device.type} {dname}\n")
        print("| loss | N x C | CE (us) | ours (us) | ours / CE | no checks / CE |")
        print("|---|---|---:|---:|---:|---:|")
        for n, c in args.sizes:
            res = bench(n, c, names, dtype, device, args)
            for name in names:
                r = res[name]
                if isinstance(r, str):
                    print(f"| {name} | {n}x{c} | — | — | {r} | |")
                    continue
                print(f"| {name} | {n}x{c} | {r['ce_s'] * 1e6:.1f} | {r['ours_s'] * 1e6:.1f} | "
                      f"{r['ratio']:.2f} | {r['nocheck_ratio']:.2f} |")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
