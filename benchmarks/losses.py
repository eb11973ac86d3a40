"""Loss speed relative to F.cross_entropy, and each loss's share of a training step.

For every loss of ``classaware.losses.available()`` this times forward + backward on the same
input as a ratio to ``F.cross_entropy`` (margin losses: to cross entropy on a precomputed
``scale * cosine``), all in one process, as the median of many repetitions after a warm-up,
interleaved pairwise with its cross-entropy baseline (a fresh shuffled order each round).  It also
times a *literal* implementation of each paper formula (arccos of the whole matrix, one-hot
masks, probabilities, as the released code does; written below) and prints our speed-up over it.
Last, it prints each loss's share of a whole training step (forward + backward + SGD step at
batch 128) of ``small_cnn`` (1x28x28) and ``resnet32`` (3x32x32).

Run::

    python benchmarks/losses.py                 # all sizes, all losses, CPU float32 (+ CUDA bf16)
    python benchmarks/losses.py --quick         # fewer repetitions, no training-step shares
    python benchmarks/losses.py --sizes 256x1000,64x10000 --losses camri,focal
    python benchmarks/losses.py --device cuda --dtypes float32,bfloat16 \
        --sizes 256x10,256x1000,64x100000 --no-literal --no-step   # what device_check.sh runs

Targets (median ratio at 256x1000 and 64x10000; SimLoss at 256x1000 only): CAMRI, ArcFace,
CosFace, LDAM, LogitAdjusted <= 1.3; Focal, ELM <= 1.6; SimLoss, ComplementCrossEntropy <= 2.0.
"""

from __future__ import annotations

import argparse
import ctypes
import math
import random
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from classaware.data import imbalance_counts
from classaware.losses import available, create, spec
from classaware.similarity import ordinal

DEFAULT_SIZES = [(256, 10), (1024, 100), (256, 1000), (64, 10000)]
LARGE_SIZES = {(256, 1000), (64, 10000)}
TARGETS = {
    "camri": 1.3, "arcface": 1.3, "cosface": 1.3, "ldam": 1.3, "logit_adjusted": 1.3,
    "balanced_softmax": 1.3, "focal": 1.6, "elm": 1.6, "simloss": 2.0, "cce": 2.0,
}
SIMLOSS_MAX_C = 1000  # its matrix is C x C
STEP_BATCH = 128
# (model, one sample's shape, classes) whose training step the losses are compared with
STEP_MODELS = [("small_cnn", (1, 28, 28), 10), ("resnet32", (3, 32, 32), 10),
               ("resnet32", (3, 32, 32), 100)]


# ---------------------------------------------------------------------------------------------
# loss configurations (typical published settings) and the literal formulas
# ---------------------------------------------------------------------------------------------


def loss_kwargs(name: str, c: int) -> dict:
    """Each loss's published setting; class counts of LDAM's CIFAR-LT profile (exp, ratio 100)."""
    counts = imbalance_counts([1000] * c, "exp", 100.0)
    if name == "simloss":  # built only when asked for: its matrix is C x C
        return {"similarity": ordinal(c, 0.5)}
    return {
        "ce": {},
        "camri": {"important_classes": [0], "margin": math.pi / 16, "scale": 16.0},
        "arcface": {"margin": 0.5, "scale": 64.0},
        "cosface": {"margin": 0.35, "scale": 64.0},
        "ldam": {"class_counts": counts, "max_margin": 0.5, "scale": 30.0},
        "elm": {"class_counts": counts, "max_margin": 0.5, "lam": 1.0, "scale": 30.0},
        "cce": {"gamma": -1.0},
        "focal": {"gamma": 2.0},
        "logit_adjusted": {"class_counts": counts, "tau": 1.0},
        "balanced_softmax": {"class_counts": counts},
    }[name]


def _onehot(t, c, dtype):
    return F.one_hot(t, c).to(dtype)


def _literal_camri(kw, c, device):  # CAMRI's TF release: arccos of everything, one-hot margin
    margins = torch.zeros(c, device=device)
    margins[kw["important_classes"]] = kw["margin"]

    def camri(cos, t):
        theta = torch.acos(cos.clamp(-1 + 1e-7, 1 - 1e-7))
        return F.cross_entropy(kw["scale"] * torch.cos(theta + _onehot(t, c, cos.dtype)
                                                       * margins[t][:, None]), t)
    return camri


def _literal_arcface(kw, c, device):  # insightface: arccos, margin at the label, cos back
    s, m = kw["scale"], kw["margin"]

    def arcface(cos, t):
        target = torch.acos(cos.clamp(-1 + 1e-7, 1 - 1e-7)) + m * _onehot(t, c, cos.dtype)
        logits = torch.where(target > math.pi, cos - m * math.sin(m), torch.cos(target))
        return F.cross_entropy(s * logits, t)
    return arcface


def _literal_cosface(kw, c, device):
    return lambda cos, t: F.cross_entropy(kw["scale"] * (cos - kw["margin"] * _onehot(t, c, cos.dtype)), t)


def _literal_ldam(kw, c, device):  # Cao et al.'s release: bool index matrix + matmul of margins
    q = torch.tensor(kw["class_counts"], dtype=torch.float32, device=device) ** -0.25
    deltas = q * (kw["max_margin"] / q.max())
    lam = kw.get("lam")

    def ldam(cos, t):
        index = torch.zeros_like(cos, dtype=torch.bool).scatter_(1, t[:, None], True)
        batch_m = torch.matmul(deltas[None, :], index.to(cos.dtype).T).view(-1, 1)
        if lam is not None:  # ELM: the strongest rival's margin too
            other = cos.masked_fill(index, float("-inf")).argmax(1)
            other_index = torch.zeros_like(index).scatter_(1, other[:, None], True)
            batch_m = batch_m + lam * torch.matmul(deltas[None, :], other_index.to(cos.dtype).T).view(-1, 1)
        return F.cross_entropy(kw["scale"] * torch.where(index, cos - batch_m, cos), t)
    return ldam


def _literal_simloss(kw, c, device):  # Kobs et al.'s release: probabilities in, log of their sum
    sim = kw["similarity"].to(device=device, dtype=torch.float32)
    return lambda x, t: -torch.log((sim[t] * torch.softmax(x, 1)).sum(1) + 1e-8).mean()


def _literal_cce(kw, c, device):  # the authors' release (with the paper's sign and weight)
    def cce(x, t):
        p = torch.softmax(x, 1)
        px = p / ((1 - p.gather(1, t[:, None])) + 1e-7)
        zerohot = torch.ones_like(p).scatter_(1, t[:, None], 0)
        h = -(px * torch.log(px + 1e-10) * zerohot).sum() / x.shape[0]
        return F.nll_loss(F.log_softmax(x, 1), t) + kw["gamma"] / (c - 1) * h
    return cce


def _literal_focal(kw, c, device):  # one-hot formulation (kornia / many repos)
    def focal(x, t):
        logp = F.log_softmax(x, 1)
        return (-(_onehot(t, c, x.dtype) * (1 - logp.exp()) ** kw["gamma"] * logp).sum(1)).mean()
    return focal


def _literal_logit_adjusted(kw, c, device):  # Menon et al.'s release: add tau log prior, CE
    counts = torch.tensor(kw["class_counts"], dtype=torch.float32, device=device)
    log_prior = kw.get("tau", 1.0) * (counts / counts.sum()).log()
    return lambda x, t: F.cross_entropy(x + log_prior, t)


LITERAL = {
    "camri": _literal_camri, "arcface": _literal_arcface, "cosface": _literal_cosface,
    "ldam": _literal_ldam, "elm": _literal_ldam, "simloss": _literal_simloss, "cce": _literal_cce,
    "focal": _literal_focal, "logit_adjusted": _literal_logit_adjusted,
    "balanced_softmax": _literal_logit_adjusted,
}


# ---------------------------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------------------------


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


CLOCK = time.perf_counter


def keep_freed_memory() -> bool:
    """Ask glibc malloc to keep freed memory (no trim, no mmap for big blocks).

    Otherwise every [N, C] temporary above 128 KiB is a fresh mmap whose first touch page-faults,
    and the measurement is of the kernel's page zeroing rather than of the loss (PyTorch's CPU
    tuning guide recommends jemalloc/tcmalloc for the same reason).  Returns False off glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_trim_threshold, 1 << 30)) and bool(
            libc.mallopt(m_mmap_threshold, 1 << 30)
        )
    except (OSError, AttributeError):
        return False


def time_interleaved(
    fns: dict[str, Callable[[], None]], reps: int, warmup: int, device
) -> dict[str, float]:
    """Median seconds per call of each fn, calls interleaved (shuffled order) round by round."""
    names = list(fns)
    clock = CLOCK if device.type == "cpu" else time.perf_counter
    samples: dict[str, list[float]] = {n: [] for n in names}
    rng = random.Random(0)
    for r in range(warmup + reps):
        order = names[:]
        rng.shuffle(order)  # a fresh order each round: no function always follows the same one
        for n in order:
            _sync(device)
            t0 = clock()
            fns[n]()
            _sync(device)
            if r >= warmup:
                samples[n].append(clock() - t0)
    return {n: statistics.median(v) for n, v in samples.items()}


def _fwd_bwd(loss_fn: Callable, leaf: torch.Tensor, target: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        leaf.grad = None
        loss_fn(leaf, target).backward()

    return run


def make_inputs(n: int, c: int, dtype, device, seed: int = 0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    logits = (torch.randn(n, c, generator=g) * 2).to(device=device, dtype=dtype)
    feats = F.normalize(torch.randn(n, 64, generator=g), dim=1)
    w = F.normalize(torch.randn(c, 64, generator=g), dim=1)
    cos = (feats @ w.T).to(device=device, dtype=dtype)
    target = torch.randint(0, c, (n,), generator=g).to(device)
    return logits, cos, target


def _leaves(name: str, n: int, c: int, dtype, device, seed: int = 0):
    """(baseline leaf: s*cos or logits, the loss's own leaf, target) for loss ``name``."""
    logits, cos, target = make_inputs(n, c, dtype, device, seed)
    cosine = spec(name).input == "cosine"
    scale = loss_kwargs(name, c).get("scale", 1.0) if cosine else 1.0
    base = (scale * cos if cosine else logits).detach().clone().requires_grad_(True)
    return base, (cos if cosine else logits).detach().clone().requires_grad_(True), target


def bench_size(n, c, names, dtype, device, reps, warmup, with_literal=True):
    """{name: {"ours": ratio, "literal": ratio | None, "ours_s": sec, "ce_s": sec}}.

    Each ratio is measured in its own interleaved pair {cross entropy, candidate}: the loss and
    its baseline alternate (shuffled each round) on inputs of the same size, so neither the other
    losses nor the (much slower, allocation-heavy) literal implementations sit between them and
    evict their inputs from the cache.  The literal implementation gets its own pair.
    """
    out = {}
    for name in names:
        if name == "simloss" and c > SIMLOSS_MAX_C:
            continue
        kw = loss_kwargs(name, c)
        base_leaf, leaf, target = _leaves(name, n, c, dtype, device)
        ce = _fwd_bwd(F.cross_entropy, base_leaf, target)
        med = time_interleaved({"ce": ce, "ours": _fwd_bwd(create(name, **kw).to(device), leaf, target)},
                               reps, warmup, device)
        row = {"ours": med["ours"] / med["ce"], "literal": None,
               "ours_s": med["ours"], "ce_s": med["ce"]}
        if with_literal and name in LITERAL:
            literal = LITERAL[name](kw, c, device)
            lit_leaf = leaf.detach().clone().requires_grad_(True)
            lit = time_interleaved({"ce": ce, "literal": _fwd_bwd(literal, lit_leaf, target)},
                                   reps, warmup, device)
            row["literal"] = lit["literal"] / lit["ce"]
        out[name] = row
    return out


# ---------------------------------------------------------------------------------------------
# share of a training step
# ---------------------------------------------------------------------------------------------


def step_seconds(model_name: str, shape, c: int, head: str, device, reps: int) -> float:
    """Seconds per training step (forward + backward + SGD step, batch 128) with CE."""
    from classaware.models import build_model

    g = torch.Generator().manual_seed(0)
    x = torch.randn(STEP_BATCH, *shape, generator=g).to(device)
    y = torch.randint(0, c, (STEP_BATCH,), generator=g).to(device)
    model = build_model({"name": model_name, "head": head}, shape, c).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scale = 16.0 if head == "cosine" else 1.0

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(scale * model(x), y).backward()
        opt.step()

    return time_interleaved({"step": step}, reps, 1, device)["step"]


def step_shares(names, dtype, device, reps, warmup, step_reps):
    """{(model, C): {name: (share, step seconds)}}: loss / (step with CE - CE + that loss).

    The loss is timed on its own at [128, C] (interleaved with CE), because the difference of two
    whole training steps is far below their run-to-run noise.
    """
    out = {}
    for model_name, shape, c in STEP_MODELS:
        steps = {head: step_seconds(model_name, shape, c, head, device, step_reps)
                 for head in ("linear", "cosine")}
        fns = {}
        for name in names:
            _, leaf, target = _leaves(name, STEP_BATCH, c, dtype, device, seed=1)
            fns[name] = _fwd_bwd(create(name, **loss_kwargs(name, c)).to(device), leaf, target)
        logits, _, target = make_inputs(STEP_BATCH, c, dtype, device, seed=1)
        fns["__ce__"] = _fwd_bwd(F.cross_entropy, logits.requires_grad_(True), target)
        lt = time_interleaved(fns, reps, warmup, device)
        row = {}
        for name in names:
            step = steps["cosine" if spec(name).input == "cosine" else "linear"] - lt["__ce__"] + lt[name]
            row[name] = (lt[name] / step, step)
        out[(model_name, c)] = row
    return out


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------


def _fmt_ratio(r: float | None) -> str:
    return "—" if r is None else f"{r:.2f}"


def print_ratio_table(args, names, dtype, device, misses: list) -> None:
    print("| loss | N x C | CE (us) | ours (us) | ours / CE | literal / CE | speed-up vs "
          "literal | target | |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for n, c in args.sizes:
        res = bench_size(n, c, names, dtype, device, args.reps, args.warmup,
                         with_literal=not args.no_literal)
        for name, r in res.items():
            lit = r["literal"]
            speed = "—" if lit is None else f"{lit / r['ours']:.2f}x"
            target = TARGETS.get(name)
            mark = ""
            if target is not None and (n, c) in LARGE_SIZES:
                mark = "pass" if r["ours"] <= target else "FAIL"
                if r["ours"] > target:
                    misses.append((device.type, name, n, c, r["ours"], target))
            print(f"| {name} | {n}x{c} | {r['ce_s'] * 1e6:.0f} | {r['ours_s'] * 1e6:.0f} | "
                  f"{_fmt_ratio(r['ours'])} | {_fmt_ratio(lit)} | {speed} | "
                  f"{'' if target is None else f'<= {target}'} | {mark} |")
        sys.stdout.flush()
    print()


def print_share_table(args, names, dtype, device) -> None:
    shares = step_shares(names, dtype, device, args.reps, args.warmup, args.step_reps)
    cols = list(shares)
    print(f"Share of a training step (forward + backward + SGD step, batch {STEP_BATCH}):\n")
    print("| loss | " + " | ".join(f"{m} C={c}" for m, c in cols) + " |")
    print("|---|" + "---:|" * len(cols))
    for name in names:
        cells = [f"{100 * shares[k][name][0]:.3f}% of {shares[k][name][1] * 1e3:.0f} ms" for k in cols]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print()


def run(args) -> int:
    names = args.losses or available()
    unknown = [n for n in names if n not in available()]
    if unknown:
        print(f"unknown loss(es) {unknown}; known: {available()}", file=sys.stderr)
        return 2
    global CLOCK
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.clock == "cpu":
        if torch.get_num_threads() != 1:
            print("--clock cpu needs --threads 1 (it reads this thread's CPU time)", file=sys.stderr)
            return 2
        CLOCK = time.thread_time
    tuned = keep_freed_memory() if not args.no_malloc_tuning else False
    configs = _configs(args.device, args.dtypes)
    if isinstance(configs, str):
        print(configs, file=sys.stderr)
        return 2
    cuda = any(d.type == "cuda" for d, _ in configs)
    print(f"# classaware loss benchmark: torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads"
          + (f", {torch.cuda.get_device_name()}" if cuda else ", no CUDA device")
          + f", clock={args.clock}, malloc keeps freed memory: {tuned}")
    print(f"# forward+backward, median of {args.reps} interleaved repetitions after "
          f"{args.warmup} warm-up; ratio = time / F.cross_entropy on the same input "
          "(margin losses: CE on precomputed scale*cos)\n")
    misses: list = []
    for device, dtype in configs:
        print(f"## {device.type} {str(dtype).replace('torch.', '')}\n")
        print_ratio_table(args, names, dtype, device, misses)
        if not args.no_step:
            print_share_table(args, names, dtype, device)
    for dname, name, n, c, ratio, target in misses:
        print(f"Missed target: {dname} {name} at {n}x{c}: {ratio:.2f} > {target}")
    if not any(size in LARGE_SIZES for size in args.sizes):
        print("No target checked: the targets are set at "
              + " and ".join(f"{n}x{c}" for n, c in sorted(LARGE_SIZES, key=lambda s: s[1]))
              + ", not among --sizes.")
    elif not misses:
        print("Every loss is within its target at the large sizes.")
    return 0


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def _configs(device: str, dtypes: list[str] | None) -> list[tuple[torch.device, torch.dtype]] | str:
    """The (device, dtype) tables to print, or a one-line error.

    ``--device auto`` without ``--dtypes``: CPU float32, and CUDA bfloat16 when a GPU is there
    (the default); otherwise every ``--dtypes`` on the one device.
    """
    bad = [d for d in dtypes or () if d not in DTYPES]
    if bad:
        return f"--dtypes: unknown {bad}; known: {', '.join(DTYPES)}"
    if device == "auto" and dtypes is None:
        return [(torch.device("cpu"), torch.float32)] + (
            [(torch.device("cuda"), torch.bfloat16)] if torch.cuda.is_available() else [])
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        return "--device cuda: CUDA is not available here"
    return [(torch.device(device), DTYPES[d]) for d in dtypes or ["float32"]]


def parse_sizes(text: str) -> list[tuple[int, int]]:
    out = []
    for part in text.split(","):
        try:
            n, c = (int(v) for v in part.lower().split("x"))
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"--sizes wants NxC,NxC,... got {part!r}") from exc
        if n < 1 or c < 2:
            raise argparse.ArgumentTypeError(f"--sizes wants N >= 1 and C >= 2, got {part!r}")
        out.append((n, c))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer repetitions, no training-step shares")
    p.add_argument("--sizes", type=parse_sizes, default=DEFAULT_SIZES, help="e.g. 256x1000,64x10000")
    p.add_argument("--losses", type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
                   default=None, help="comma-separated names (default: all)")
    p.add_argument("--reps", type=int, default=None, help="timed repetitions (default 60; quick 15)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up repetitions (default 10)")
    p.add_argument("--step-reps", type=int, default=5, help="training steps timed per model and head")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's)")
    p.add_argument("--no-step", action="store_true", help="skip the training-step shares")
    p.add_argument("--no-literal", action="store_true", help="skip the literal implementations")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: CPU float32 (+ CUDA bfloat16 when a GPU is there); cpu or cuda: "
                   "that device alone, in every --dtypes")
    p.add_argument("--dtypes", type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
                   default=None, help="comma-separated: float32, bfloat16 (default: float32)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall time, or this thread's CPU time (robust on a busy machine; "
                   "needs --threads 1; CUDA timings always use wall time)")
    p.add_argument("--no-malloc-tuning", action="store_true",
                   help="leave glibc malloc's trimming on (timings then include page faults)")
    args = p.parse_args(argv)
    if args.reps is None:
        args.reps = 15 if args.quick else 60
    if args.warmup is None:
        args.warmup = 3 if args.quick else 10
    if args.quick:
        args.no_step = True
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
