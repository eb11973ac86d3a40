#!/usr/bin/env bash
# The GPU device check: one script, at most 8 minutes, run from the repo root on a CUDA machine.
#
# It prints, each part under its own time limit (a part that runs past it is stopped, the rows
# it printed are kept, and the next part starts):
#   (a) the loss benchmark: every loss's forward+backward time as a ratio to F.cross_entropy,
#       float32 and bfloat16, at C = 10, 1000 and 100 000 (benchmarks/losses.py)  60 s
#   (b) training images/s of resnet32 and small_cnn with the data resident on the GPU: the
#       baseline, each option (channels_last, compile, bf16), all together, and host-resident
#       data for contrast (benchmarks/train_throughput.py)                 170 s + 90 s
#   (c) the main job's wall time: classaware compare --config important-class-demo
#       --jobs N --out DIR (the study a bare `classaware` runs), N = --jobs (default 4)  120 s
# and a summary line per part. Exit 0 when every part finished, 1 otherwise.
#
# It installs nothing and needs no network. It runs the project from src/ (PYTHONPATH), with
# an existing torch (a CUDA build) and numpy; tqdm and tomli-w may come as pure-Python wheels in
# .devdata/wheels/ (put on PYTHONPATH). scipy and matplotlib are needed only by the study's
# report; without them part (c) times the training and says the report failed.
# Fashion-MNIST (for part (c)) comes from .devdata/fashion-mnist/ (git-ignored), filled once
# on a machine that has it:
#
#   mkdir -p .devdata/fashion-mnist && cp /usr/share/datasets/fashion-mnist/*-ubyte.gz .devdata/fashion-mnist/
#   .venv/bin/pip download -q --no-deps -d .devdata/wheels tqdm tomli-w    # optional, see above
#
# and carried along to the GPU machine (the device tool: carry [".devdata"]). Usage:
#
#   bash benchmarks/device_check.sh                 # on the CUDA machine; OUT=DIR also logs there
#   PYTHON=.venv/bin/python bash benchmarks/device_check.sh --dry-run   # CPU smoke, tiny sizes
#
# Environment: PYTHON (default python3), DEVCHECK_DATA (default .devdata), DEVCHECK_LIMITS
# (the four limits in seconds, "60 170 90 120" by default), OUT (if set, the whole output is
# also written to $OUT/device_check.log and the study's report to $OUT/main-job/). Without CUDA (and not --dry-run) it stops in one line with exit code 1
# before anything heavy runs; a missing module or missing data is one line and exit 1 too.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
PY="${PYTHON:-python3}"
DATA="${DEVCHECK_DATA:-.devdata}"
DRY=0
JOBS=4
FMNIST_FILES="train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz"

usage() { sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "device_check: $1" >&2; exit "${2:-1}"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY=1 ;;
        --jobs) [ $# -ge 2 ] || die "--jobs needs a number" 2
                JOBS="$2"; shift ;;
        --jobs=*) JOBS="${1#--jobs=}" ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" 2 ;;
    esac
    shift
done
case "$JOBS" in ''|*[!0-9]*|0) die "--jobs must be a positive integer, got '$JOBS'" 2 ;; esac

main() {
    local t_start part_status=() now rc
    t_start=$(date +%s)
    command -v "$PY" >/dev/null 2>&1 || die "no Python interpreter '$PY' (set PYTHON=/path/to/python3)"

    local wheels="" w
    for w in "$DATA"/wheels/*.whl; do
        [ -f "$w" ] && wheels="$wheels:$(cd "$(dirname "$w")" && pwd)/$(basename "$w")"
    done
    export PYTHONPATH="$ROOT/src$wheels${PYTHONPATH:+:$PYTHONPATH}"
    export PYTHONUNBUFFERED=1 PYTHONHASHSEED=0
    if [ "$DRY" = 1 ]; then export CUDA_VISIBLE_DEVICES=""; fi  # the smoke run is CPU only

    # -- prerequisites: modules, then CUDA, then data; each failure is one line ---------------
    local probe
    probe=$("$PY" - <<'EOF'
import importlib.util, sys
need = ["torch", "numpy", "tqdm", "tomli_w"] + (["tomli"] if sys.version_info < (3, 11) else [])
missing = [m for m in need if importlib.util.find_spec(m) is None]
if missing:
    print("missing", sys.version.split()[0], " ".join(missing))
    raise SystemExit
import torch
optional = [m for m in ("scipy", "matplotlib") if importlib.util.find_spec(m) is None]
cuda = torch.cuda.is_available()
print("cuda" if cuda else "nocuda", sys.version.split()[0], torch.__version__,
      torch.version.cuda or "none", ",".join(optional) or "-",
      torch.cuda.get_device_name(0).replace(" ", "_") if cuda else "-")
EOF
    ) || die "'$PY' could not run the prerequisite check (see the error above)"
    # shellcheck disable=SC2086
    set -- $probe
    local state="$1" pyver="$2"
    if [ "$state" = missing ]; then
        shift 2
        die "Python $pyver ($PY) cannot import: $* — this script installs nothing: use a Python that has torch (a CUDA build) and numpy, and put tqdm/tomli-w wheels in $DATA/wheels/ (see the top of $0)"
    fi
    local torchver="$3" cudaver="$4" optional="$5" gpu="${6//_/ }"
    if [ "$state" != cuda ] && [ "$DRY" = 0 ]; then
        die "no CUDA device: torch $torchver (CUDA build: $cudaver) sees no GPU here; this check measures a GPU (use --dry-run for the CPU smoke test)"
    fi
    local f
    for f in $FMNIST_FILES; do
        [ -s "$DATA/fashion-mnist/$f" ] || die "Fashion-MNIST is not in $DATA/fashion-mnist/ ($f missing); fill it with: mkdir -p $DATA/fashion-mnist && cp /usr/share/datasets/fashion-mnist/*-ubyte.gz $DATA/fashion-mnist/"
    done
    export CLASSAWARE_DATA="$(cd "$DATA" && pwd)"

    # -- sizes and time limits per part -------------------------------------------------------
    local dev a_args b1_args b2_args c_sets=() lim_a lim_b1 lim_b2 lim_c
    if [ "$DRY" = 1 ]; then
        dev=cpu
        a_args=(--sizes 4x10,4x1000,2x100000 --reps 2 --warmup 1)
        b1_args=(--n 64 --epochs 2 --batch-size 32 --skip compile)
        b2_args=(--n 64 --epochs 2 --batch-size 32 --skip compile)
        c_sets=(--seeds 1 --set train.epochs=1 --set data.max_train=300 --set data.max_test=200)
        lim_a=300 lim_b1=300 lim_b2=300 lim_c=300
        JOBS=2
    else
        dev=cuda
        a_args=(--sizes 256x10,256x1000,64x100000)
        b1_args=(--n 16384 --epochs 3)
        b2_args=(--n 65536 --epochs 3)
        lim_a=60 lim_b1=170 lim_b2=90 lim_c=120
    fi
    if [ -n "${DEVCHECK_LIMITS:-}" ]; then  # "A B1 B2 C" seconds, e.g. after a first GPU run
        read -r lim_a lim_b1 lim_b2 lim_c <<<"$DEVCHECK_LIMITS"
        for f in "$lim_a" "$lim_b1" "$lim_b2" "$lim_c"; do
            case "$f" in ''|*[!0-9]*|0) die "DEVCHECK_LIMITS wants 4 positive integers (seconds of parts a, b resnet32, b small_cnn, c), got '$DEVCHECK_LIMITS'" 2 ;; esac
        done
    fi

    echo "# classaware device check$([ "$DRY" = 1 ] && echo ' (DRY RUN: CPU, tiny sizes, no compile; numbers mean nothing)')"
    echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -n), $(nproc) CPU cores, Python $pyver, torch $torchver (CUDA $cudaver), GPU: $gpu"
    echo "# classaware: $("$PY" -m classaware --version 2>&1), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" status --porcelain 2>/dev/null | grep -q . && echo ' + local changes')"
    [ "$optional" = - ] || echo "# note: $optional not importable: part (c) times the training; its report will fail"

    # part NAME LIMIT CMD...: run CMD under LIMIT seconds, record its outcome
    part() {
        local name="$1" limit="$2" t0 t1
        shift 2
        echo; echo "=== $name (limit ${limit} s) ==="
        t0=$(date +%s.%N)
        timeout --kill-after=10 "$limit" "$@"
        rc=$?
        t1=$(date +%s.%N)
        local secs
        secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
        case $rc in
            0) part_status+=("$name: ok, $secs s") ;;
            124|137) echo "--- $name: stopped at its limit of $limit s (the lines above are complete)"
                     part_status+=("$name: STOPPED at its $limit s limit") ;;
            *) part_status+=("$name: FAILED (exit $rc) after $secs s") ;;
        esac
        LAST_SECS=$secs
    }

    part "(a) loss benchmark" "$lim_a" \
        "$PY" benchmarks/losses.py --device "$dev" --dtypes float32,bfloat16 --no-literal \
        --no-step "${a_args[@]}"
    part "(b) throughput resnet32" "$lim_b1" \
        "$PY" benchmarks/train_throughput.py --device "$dev" --workloads resnet32 "${b1_args[@]}"
    part "(b) throughput small_cnn" "$lim_b2" \
        "$PY" benchmarks/train_throughput.py --device "$dev" --workloads small_cnn "${b2_args[@]}"

    local study
    study="$(mktemp -d "${TMPDIR:-/tmp}/devcheck-study.XXXXXX")"
    part "(c) main job" "$lim_c" \
        "$PY" -m classaware compare --config important-class-demo --jobs "$JOBS" \
        --out "$study/demo" "${c_sets[@]}"
    local cmd="classaware compare --config important-class-demo --jobs $JOBS${c_sets:+ ${c_sets[*]}}"
    case $rc in
        0) echo "--- main job wall time: $LAST_SECS s ($cmd, on $dev)" ;;
        124|137) echo "--- main job wall time: more than $lim_c s (stopped at its limit; $cmd)" ;;
        *) echo "--- main job wall time: $LAST_SECS s, but it exited $rc ($cmd, on $dev)" ;;
    esac
    if [ -n "${OUT:-}" ] && [ -d "$study/demo" ]; then
        mkdir -p "$OUT/main-job"
        cp "$study"/demo/report.* "$OUT/main-job/" 2>/dev/null || true
    fi
    rm -rf "$study"

    now=$(date +%s)
    echo; echo "=== summary ($((now - t_start)) s in all) ==="
    local s bad=0
    for s in "${part_status[@]}"; do
        echo "  $s"
        case "$s" in *": ok,"*) ;; *) bad=1 ;; esac
    done
    return $bad
}

if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT" || die "cannot create OUT=$OUT"
    main 2>&1 | tee "$OUT/device_check.log"
    exit "${PIPESTATUS[0]}"
fi
main
