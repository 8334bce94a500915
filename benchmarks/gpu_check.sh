#!/usr/bin/env bash
# One-shot GPU verification of the custom kernels and the fp16 path, for a machine with an NVIDIA
# GPU (written for a short loan of one: everything finishes within 8 minutes).
#
#   bash benchmarks/gpu_check.sh            # from anywhere; results in $OUT, else .cache/gpu_check/
#
# 1. finds a Python whose torch sees CUDA ($PYTHON, python3, or .venv-gpu/ in the repository,
#    created with `pip install torch==2.14.1` when no CUDA torch is found);
# 2. installs the few packages the checks import, if missing (pip, no cache);
# 3. pytest tests/test_ops_cuda.py tests/test_ops_ext.py and the CUDA fp16 test of gen_images.py
#    (each kernel vs the reference in fp32/fp16 with gradients; the generator with kernels vs
#    references; the CPU build of the same arithmetic; fp16 vs --fp32 images);
# 4. benchmarks/bench_generator.py --sweep --device cuda at 256² and 512² (stylegan2, raycond2,
#    raycond3-t; batch 1 and 8; with and without the kernels), train.py's default capacity.
#
# It writes nothing outside the repository except the kernel build cache (TORCH_EXTENSIONS_DIR, as
# set or PyTorch's default): pip runs without a cache, temporary and CUDA JIT files go to .cache/.
# Exit status: 0 when every step passed, 1 when a check failed, 2 when no CUDA setup was found.
# Docs: docs/performance.md (GPU section) and docs/troubleshooting.md.

set -u
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO" || exit 2
LOG="${OUT:-$REPO/.cache/gpu_check}"
BUDGET="${GPU_CHECK_BUDGET_S:-480}"       # whole script, seconds
mkdir -p "$LOG"
SUMMARY="$LOG/summary.txt"
: >"$SUMMARY"
say() { echo "gpu_check: $*" | tee -a "$SUMMARY"; }
left() { local l=$((BUDGET - SECONDS)); [ "$l" -gt 10 ] || l=10; echo "$l"; }   # seconds, for timeout
status=0

has_cuda_torch() { "$1" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; }

# ---- 1. a GPU, and a Python with CUDA PyTorch -------------------------------------------------
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    say "no NVIDIA GPU visible (nvidia-smi fails): nothing to check here"
    exit 2
fi
mkdir -p "$REPO/.cache/tmp" "$REPO/.cache/cuda"
export TMPDIR="$REPO/.cache/tmp" CUDA_CACHE_PATH="$REPO/.cache/cuda" PIP_NO_CACHE_DIR=1
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
PY=""
for cand in "${PYTHON:-}" python3 python "$REPO/.venv-gpu/bin/python"; do
    [ -n "$cand" ] && command -v "$cand" >/dev/null 2>&1 && has_cuda_torch "$cand" && { PY="$cand"; break; }
done
if [ -z "$PY" ]; then
    say "no Python with CUDA PyTorch found: creating .venv-gpu with torch==2.14.1"
    base="$(command -v python3.11 || command -v python3)"
    [ -x "$REPO/.venv-gpu/bin/python" ] || "$base" -m venv --system-site-packages "$REPO/.venv-gpu"
    if ! timeout "$(left)" "$REPO/.venv-gpu/bin/python" -m pip install -q torch==2.14.1 >"$LOG/pip.txt" 2>&1 \
            || ! has_cuda_torch "$REPO/.venv-gpu/bin/python"; then
        say "could not install a CUDA torch==2.14.1 (see pip.txt); set PYTHON to a Python whose torch sees the GPU"
        exit 2
    fi
    PY="$REPO/.venv-gpu/bin/python"
fi

# ---- 2. the packages these checks import -----------------------------------------------------
missing="$("$PY" - <<'EOF'
import importlib.util
need = {"numpy": "numpy", "scipy": "scipy", "PIL": "pillow", "click": "click", "ninja": "ninja",
        "tqdm": "tqdm", "pytest": "pytest", "pytest_timeout": "pytest-timeout"}
print(" ".join(dist for mod, dist in need.items() if importlib.util.find_spec(mod) is None))
EOF
)"
if [ -n "$missing" ]; then
    say "installing missing packages: $missing"
    # shellcheck disable=SC2086  # one word per package
    if ! timeout 120 "$PY" -m pip install -q $missing >>"$LOG/pip.txt" 2>&1; then
        say "pip could not install: $missing (see pip.txt); install them for $PY and rerun"
        exit 2
    fi
fi
{
    echo "date: $(date -u +%FT%TZ)   repository: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null)"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1
    command -v nvcc >/dev/null && nvcc --version | tail -n 2
    "$PY" -c 'import sys, torch; print("python", sys.version.split()[0], "| torch", torch.__version__,
"| CUDA", torch.version.cuda, "|", torch.cuda.get_device_name(0))'
    echo "TORCH_EXTENSIONS_DIR=${TORCH_EXTENSIONS_DIR:-<PyTorch default>}  RAYCOND_OPS=${RAYCOND_OPS:-<unset: auto>}"
} >"$LOG/env.txt" 2>&1
say "$(tail -n 2 "$LOG/env.txt" | head -n 1)"

# ---- 3. correctness: kernels vs references on the GPU, CPU build, fp16 images ---------------
t=$(( $(left) - 150 ))                    # keep about 2.5 minutes for the sweep
if [ "$t" -lt 60 ]; then t=60; fi
say "pytest (limit ${t}s): the first CUDA test compiles the kernels (ninja + nvcc), once per source change"
timeout "$t" "$PY" -m pytest -q -p no:cacheprovider tests/test_ops_cuda.py tests/test_ops_ext.py \
    "tests/test_gen_images.py::test_cuda_fp16_default_agrees_with_fp32" --durations=10 \
    >"$LOG/pytest.txt" 2>&1
rc=$?
say "pytest: exit $rc ($([ $rc -eq 0 ] && echo passed || { [ $rc -eq 124 ] && echo 'ran out of time' || echo FAILED; }))"
grep -E "[0-9]+ (passed|failed|error)" "$LOG/pytest.txt" | tail -n 1 | tee -a "$SUMMARY"
[ $rc -eq 0 ] || status=1
if grep -qE "^SKIPPED .*tests/test_(ops_cuda|gen_images)\.py" "$LOG/pytest.txt"; then
    say "GPU tests were SKIPPED although a GPU is visible (see pytest.txt): not verified"
    status=1
fi

# ---- 4. speed: ms/image with and without the kernels --------------------------------------------
t=$(( $(left) - 5 ))
if [ "$t" -lt 30 ]; then
    say "sweep skipped: the time budget is spent"
    status=1
else
    say "bench_generator --sweep (limit ${t}s)"
    timeout "$t" "$PY" benchmarks/bench_generator.py --sweep --device cuda --res 256,512 --batch 1,8 \
        --cbase 32768 --cmax 512 --iters 10 --warmup 3 >"$LOG/sweep.md" 2>"$LOG/sweep-progress.txt"
    rc=$?
    say "sweep: exit $rc$([ $rc -eq 124 ] && echo ' (ran out of time: partial rows in sweep-progress.txt)')"
    [ $rc -eq 0 ] || status=1
    tee -a "$SUMMARY" <"$LOG/sweep.md"
fi
say "done in ${SECONDS}s, status $status; logs in $LOG"
exit $status
