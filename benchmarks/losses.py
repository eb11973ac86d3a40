"""Loss speed relative to ``F.cross_entropy`` (issue 5, point 1).

For every loss of ``classaware.losses.available()`` this times forward + backward on the same
input as a ratio to ``F.cross_entropy`` (margin losses: to cross entropy on a precomputed
``scale * cosine``), all in one process, as the median of many repetitions after a warm-up,
interleaved pairwise with its cross-entropy baseline (a fresh shuffled order each round).  It also times a *literal* implementation of each paper formula (arccos of the whole
matrix, one-hot masks, probabilities, as the released code does; written below) and prints our
speed-up over it.  At small sizes, where framework dispatch and not arithmetic sets the time, it
also prints the loss's share of a whole ResNet-32 training step (batch 128, CIFAR shape).

Run::

    python benchmarks/losses.py                 # all sizes, all losses, CPU float32 (+ CUDA bf16)
    python benchmarks/losses.py --quick         # fewer repetitions, no ResNet step
    python benchmarks/losses.py --sizes 256x1000,64x10000 --losses camri,focal

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

from classaware.losses import available, create, spec
from classaware.similarity import ordinal

DEFAULT_SIZES = [(256, 10), (1024, 100), (256, 1000), (64, 10000)]
LARGE_SIZES = {(256, 1000), (64, 10000)}
SMALL_SIZES = {(256, 10), (1024, 100)}
TARGETS = {
    "camri": 1.3, "arcface": 1.3, "cosface": 1.3, "ldam": 1.3, "logit_adjusted": 1.3,
    "balanced_softmax": 1.3, "focal": 1.6, "elm": 1.6, "simloss": 2.0, "cce": 2.0,
}
SIMLOSS_MAX_C = 1000  # its matrix is C x C
STEP_BATCH = 128


# ---------------------------------------------------------------------------------------------
# loss configurations (typical published settings)
# ---------------------------------------------------------------------------------------------


def long_tail_counts(c: int, ratio: float = 100.0, head: int = 1000) -> list[int]:
    """Exponential profile n_j = head * ratio^(-j/(C-1)) (LDAM's CIFAR-LT), at least 1."""
    if c == 1:
        return [head]
    return [max(1, round(head * ratio ** (-j / (c - 1)))) for j in range(c)]


def loss_kwargs(name: str, c: int) -> dict:
    counts = long_tail_counts(c)
    return {
        "ce": {},
        "camri": {"important_classes": [0], "margin": math.pi / 16, "scale": 16.0},
        "arcface": {"margin": 0.5, "scale": 64.0},
        "cosface": {"margin": 0.35, "scale": 64.0},
        "ldam": {"class_counts": counts, "max_margin": 0.5, "scale": 30.0},
        "elm": {"class_counts": counts, "max_margin": 0.5, "lam": 1.0, "scale": 30.0},
        "simloss": {"similarity": ordinal(c, 0.5)},
        "cce": {"gamma": -1.0},
        "focal": {"gamma": 2.0},
        "logit_adjusted": {"class_counts": counts, "tau": 1.0},
        "balanced_softmax": {"class_counts": counts},
    }[name]


# ---------------------------------------------------------------------------------------------
# literal implementations of the paper formulas (the released codes' style)
# ---------------------------------------------------------------------------------------------


def _ldam_deltas(counts, max_margin, device):
    m = torch.tensor(counts, dtype=torch.float32, device=device) ** -0.25
    return m * (max_margin / m.max())


def make_literal(name: str, kw: dict, c: int, device) -> Callable | None:
    """Return literal(input, target) -> loss, or None when the formula is CE itself."""
    if name == "ce":
        return None
    if name == "camri":
        s, m = kw["scale"], kw["margin"]
        margins = torch.zeros(c, device=device)
        margins[kw["important_classes"]] = m

        def camri(cos, t):  # CAMRI's TF release: arccos of everything, one-hot margin
            theta = torch.acos(cos.clamp(-1 + 1e-7, 1 - 1e-7))
            onehot = F.one_hot(t, c).to(cos.dtype)
            logits = s * torch.cos(theta + onehot * margins[t][:, None])
            return F.cross_entropy(logits, t)

        return camri
    if name == "arcface":
        s, m = kw["scale"], kw["margin"]

        def arcface(cos, t):  # insightface: arccos of the matrix, margin at the label, cos back
            onehot = F.one_hot(t, c).to(cos.dtype)
            theta = torch.acos(cos.clamp(-1 + 1e-7, 1 - 1e-7))
            target = theta + m * onehot
            logits = torch.where(target > math.pi, cos - m * math.sin(m), torch.cos(target))
            return F.cross_entropy(s * logits, t)

        return arcface
    if name == "cosface":
        s, m = kw["scale"], kw["margin"]

        def cosface(cos, t):
            onehot = F.one_hot(t, c).to(cos.dtype)
            return F.cross_entropy(s * (cos - m * onehot), t)

        return cosface
    if name in ("ldam", "elm"):
        s = kw["scale"]
        deltas = _ldam_deltas(kw["class_counts"], kw["max_margin"], device)
        lam = kw.get("lam", 0.0)

        def ldam(cos, t):  # Cao et al.'s release: bool index matrix + matmul of the margins
            index = torch.zeros_like(cos, dtype=torch.bool).scatter_(1, t[:, None], True)
            batch_m = torch.matmul(deltas[None, :], index.to(cos.dtype).T).view(-1, 1)
            if name == "elm":
                other = cos.masked_fill(index, float("-inf")).argmax(1)
                other_index = torch.zeros_like(index).scatter_(1, other[:, None], True)
                batch_m = batch_m + lam * torch.matmul(
                    deltas[None, :], other_index.to(cos.dtype).T
                ).view(-1, 1)
            out = torch.where(index, cos - batch_m, cos)
            return F.cross_entropy(s * out, t)

        return ldam
    if name == "simloss":
        sim = kw["similarity"].to(device)

        def simloss(x, t):  # Kobs et al.'s release: probabilities in, log of their sum
            p = torch.softmax(x, 1)
            return -torch.log((sim[t] * p).sum(1) + 1e-8).mean()

        return simloss
    if name == "cce":
        gamma = kw["gamma"]

        def cce(x, t):  # the authors' release (with the paper's sign and weight)
            n = x.shape[0]
            ce = F.nll_loss(F.log_softmax(x, 1), t)
            p = torch.softmax(x, 1)
            yg = p.gather(1, t[:, None])
            px = p / ((1 - yg) + 1e-7)
            zerohot = torch.ones_like(p).scatter_(1, t[:, None], 0)
            h = -(px * torch.log(px + 1e-10) * zerohot).sum() / n
            return ce + gamma / (c - 1) * h

        return cce
    if name == "focal":
        gamma = kw["gamma"]

        def focal(x, t):  # one-hot formulation (kornia / many repos)
            logp = F.log_softmax(x, 1)
            onehot = F.one_hot(t, c).to(x.dtype)
            return (-(onehot * (1 - logp.exp()) ** gamma * logp).sum(1)).mean()

        return focal
    if name in ("logit_adjusted", "balanced_softmax"):
        tau = kw.get("tau", 1.0)
        counts = torch.tensor(kw["class_counts"], dtype=torch.float32, device=device)
        log_prior = (counts / counts.sum()).log()

        def logit_adjusted(x, t):  # Menon et al.'s release: add tau log prior, CE
            return F.cross_entropy(x + tau * log_prior, t)

        return logit_adjusted
    raise KeyError(name)


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
            dt = clock() - t0
            if r >= warmup:
                samples[n].append(dt)
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


def bench_size(n, c, names, dtype, device, reps, warmup, with_literal=True):
    """{name: {"ours": ratio, "literal": ratio | None, "ours_s": sec, "ce_s": sec}}.

    Each ratio is measured in its own interleaved pair {cross entropy, candidate}: the loss and
    its baseline alternate (shuffled each round) on inputs of the same size, so neither the other
    losses nor the (much slower, allocation-heavy) literal implementations sit between them and
    evict their inputs from the cache.  The literal implementation gets its own pair.
    """
    logits, cos, target = make_inputs(n, c, dtype, device)
    out = {}
    for name in names:
        if name == "simloss" and c > SIMLOSS_MAX_C:
            continue
        kw = loss_kwargs(name, c)
        module = create(name, **kw).to(device)
        cosine = spec(name).input == "cosine"
        scale = kw.get("scale", 1.0) if cosine else 1.0
        base_leaf = (scale * cos if cosine else logits).detach().clone().requires_grad_(True)
        leaf = (cos if cosine else logits).detach().clone().requires_grad_(True)
        ce = _fwd_bwd(F.cross_entropy, base_leaf, target)
        med = time_interleaved({"ce": ce, "ours": _fwd_bwd(module, leaf, target)},
                               reps, warmup, device)
        row = {"ours": med["ours"] / med["ce"], "literal": None,
               "ours_s": med["ours"], "ce_s": med["ce"]}
        literal = make_literal(name, kw, c, device) if with_literal else None
        if literal is not None:
            lit_leaf = leaf.detach().clone().requires_grad_(True)
            lit = time_interleaved({"ce": ce, "literal": _fwd_bwd(literal, lit_leaf, target)},
                                   reps, warmup, device)
            row["literal"] = lit["literal"] / lit["ce"]
        out[name] = row
    return out


def step_times(c: int, device, reps: int, warmup: int) -> dict[str, float]:
    """Seconds per ResNet-32 training step (batch 128, 3x32x32, SGD) with CE, per head type."""
    from classaware.models import build_model

    out = {}
    g = torch.Generator().manual_seed(0)
    x = torch.randn(STEP_BATCH, 3, 32, 32, generator=g).to(device)
    y = torch.randint(0, c, (STEP_BATCH,), generator=g).to(device)
    for head in ("linear", "cosine"):
        model = build_model({"name": "resnet32", "head": head}, (3, 32, 32), c).to(device)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        scale = 16.0 if head == "cosine" else 1.0

        def step(model=model, opt=opt, scale=scale) -> None:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(scale * model(x), y).backward()
            opt.step()

        out[head] = time_interleaved({"step": step}, reps, warmup, device)["step"]
    return out


def loss_times_at_step_batch(c, names, dtype, device, reps, warmup):
    """Seconds of forward + backward of each loss and of CE at [128, C]."""
    logits, cos, target = make_inputs(STEP_BATCH, c, dtype, device, seed=1)
    fns = {}
    for name in names:
        if name == "simloss" and c > SIMLOSS_MAX_C:
            continue
        kw = loss_kwargs(name, c)
        cosine = spec(name).input == "cosine"
        leaf = (cos if cosine else logits).detach().clone().requires_grad_(True)
        fns[name] = _fwd_bwd(create(name, **kw).to(device), leaf, target)
    fns["__ce__"] = _fwd_bwd(F.cross_entropy, logits.detach().clone().requires_grad_(True), target)
    return time_interleaved(fns, reps, warmup, device)


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------


def _fmt_ratio(r: float | None) -> str:
    return "—" if r is None else f"{r:.2f}"


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
    configs = [(torch.device("cpu"), torch.float32)]
    if torch.cuda.is_available() and not args.cpu_only:
        configs.append((torch.device("cuda"), torch.bfloat16))
    print(f"# classaware loss benchmark: torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads"
          + (f", {torch.cuda.get_device_name()}" if len(configs) > 1 else ", no CUDA device")
          + f", clock={args.clock}, malloc keeps freed memory: {tuned}")
    print(f"# forward+backward, median of {args.reps} interleaved repetitions after "
          f"{args.warmup} warm-up; ratio = time / F.cross_entropy on the same input "
          "(margin losses: CE on precomputed scale*cos)\n")
    misses = []
    for device, dtype in configs:
        dname = f"{device.type} {str(dtype).replace('torch.', '')}"
        share = {}
        if device.type == "cpu" and not args.no_step:
            for n, c in args.sizes:
                if (n, c) not in SMALL_SIZES:
                    continue
                steps = step_times(c, device, args.step_reps, 1)
                lt = loss_times_at_step_batch(c, names, dtype, device, args.reps, args.warmup)
                for name in names:
                    if name in lt:
                        head = "cosine" if spec(name).input == "cosine" else "linear"
                        step = steps[head] - lt["__ce__"] + lt[name]
                        share[(name, c)] = (lt[name] / step, step)
        print(f"## {dname}\n")
        print("| loss | N x C | CE (us) | ours (us) | ours / CE | literal / CE | speed-up vs "
              "literal | target | | share of ResNet-32 step |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---|---:|")
        for n, c in args.sizes:
            res = bench_size(n, c, names, dtype, device, args.reps, args.warmup,
                             with_literal=not args.no_literal)
            for name in names:
                if name not in res:
                    continue
                r = res[name]
                lit = r["literal"]
                speed = "—" if lit is None else f"{lit / r['ours']:.2f}x"
                target = TARGETS.get(name)
                mark = ""
                if target is not None and (n, c) in LARGE_SIZES:
                    ok = r["ours"] <= target
                    mark = "pass" if ok else "FAIL"
                    if not ok:
                        misses.append((dname, name, n, c, r["ours"], target))
                sh = share.get((name, c))
                sh_txt = f"{100 * sh[0]:.2f}% of {sh[1] * 1e3:.0f} ms" if sh else ""
                print(f"| {name} | {n}x{c} | {r['ce_s'] * 1e6:.0f} | {r['ours_s'] * 1e6:.0f} | "
                      f"{_fmt_ratio(r['ours'])} | {_fmt_ratio(lit)} | {speed} | "
                      f"{'' if target is None else f'<= {target}'} | {mark} | {sh_txt} |")
            sys.stdout.flush()
        print()
    if misses:
        print("Missed targets:")
        for dname, name, n, c, ratio, target in misses:
            print(f"  {dname} {name} at {n}x{c}: {ratio:.2f} > {target}")
    else:
        print("Every loss is within its target at the large sizes.")
    return 0


def parse_sizes(text: str) -> list[tuple[int, int]]:
    out = []
    for part in text.split(","):
        try:
            n, c = part.lower().split("x")
            out.append((int(n), int(c)))
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"--sizes wants NxC,NxC,... got {part!r}") from exc
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer repetitions, no ResNet step")
    p.add_argument("--sizes", type=parse_sizes, default=DEFAULT_SIZES, help="e.g. 256x1000,64x10000")
    p.add_argument("--losses", type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
                   default=None, help="comma-separated names (default: all)")
    p.add_argument("--reps", type=int, default=None, help="timed repetitions (default 60; quick 15)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up repetitions (default 10)")
    p.add_argument("--step-reps", type=int, default=5, help="ResNet-32 steps timed per head")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's)")
    p.add_argument("--no-step", action="store_true", help="skip the ResNet-32 step share")
    p.add_argument("--no-literal", action="store_true", help="skip the literal implementations")
    p.add_argument("--cpu-only", action="store_true", help="skip CUDA even when available")
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
