#!/usr/bin/env bash
# GPU benchmarks of issue 3, in one go, on a machine prepared by scripts/setup.sh:
#   1. nvidia-smi (what the machine is);
#   2. build/xlir_cuda_bench: the CUDA kernels alone (native/tests/cuda_bench.cu);
#   3. bench/gpu_train_step.ts: XLM-R base training steps and encoding, bf16, against
#      sentence-transformers on the same GPU (bench/torch_train_step.py --device cuda).
# Every part's output goes to the terminal and to a file in the output folder ($1, default
# bench-out/). Each part runs under `timeout`, so a hang costs at most that part's limit (about
# 7 minutes if every part hits it; about 2 minutes expected on an H100 with the default steps);
# a part that fails or times out is reported and the next part still runs; the exit status is
# non-zero when any part failed.
#
#   scripts/gpu-bench.sh [OUT_DIR]
# Environment: STEPS (timed training steps, default 20), WARMUP (default 3), PRECISIONS (default
# bf16; bf16,fp32 adds the fp32 rows), DEVICE (default cuda:0), SHAPE (default base; SHAPE=tiny
# DEVICE=cpu STEPS=3 checks the script itself on a machine without a GPU), XLIR_CUDA_BENCH (the
# kernel benchmark program, default build/xlir_cuda_bench).
set -euo pipefail
cd "$(dirname "$0")/.."

out="${1:-bench-out}"
mkdir -p "$out"
steps="${STEPS:-20}"
warmup="${WARMUP:-3}"
precisions="${PRECISIONS:-bf16}"
device="${DEVICE:-cuda:0}"
shape="${SHAPE:-base}"
failed=()

# run NAME LIMIT_S CMD...: runs CMD under timeout, output to the terminal and to $out/NAME.txt.
run() {
  local name="$1" limit="$2"
  shift 2
  echo "=== $name (limit ${limit}s): $*" | tee "$out/$name.txt"
  local rc=0
  timeout -k 10 "$limit" "$@" 2>&1 | tee -a "$out/$name.txt" || rc=$?
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    echo "=== $name: TIMED OUT after ${limit}s" | tee -a "$out/$name.txt"
    failed+=("$name (timed out)")
  elif [ "$rc" != 0 ]; then
    echo "=== $name: FAILED (exit $rc)" | tee -a "$out/$name.txt"
    failed+=("$name (exit $rc)")
  fi
}

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
  echo "steps $steps, warm-up $warmup, precisions $precisions, device $device, shape $shape"
} | tee "$out/env.txt"

if command -v nvidia-smi >/dev/null 2>&1; then
  run nvidia-smi 30 nvidia-smi
else
  echo "=== nvidia-smi: not found (no NVIDIA driver on this machine?)" | tee "$out/nvidia-smi.txt"
  failed+=("nvidia-smi (not found)")
fi

# What the PyTorch peer will find: a CPU-only torch in .venv makes its half of the comparison fail.
if [ -x .venv/bin/python ]; then
  run torch-env 60 .venv/bin/python -c \
    "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'cuda available:', torch.cuda.is_available())"
fi

# A build configured before the target existed lacks the program: build just that target.
bench_bin="${XLIR_CUDA_BENCH:-build/xlir_cuda_bench}"
if [ ! -x "$bench_bin" ] && [ -z "${XLIR_CUDA_BENCH:-}" ] && [ -f build/CMakeCache.txt ]; then
  run build_cuda_bench 240 cmake --build build --target xlir_cuda_bench
fi
if [ -x "$bench_bin" ]; then
  run cuda_bench 150 "$bench_bin"
else
  echo "=== cuda_bench: $bench_bin is missing (run scripts/setup.sh; build.log says whether CUDA was found)" |
    tee "$out/cuda_bench.txt"
  failed+=("cuda_bench (not built)")
fi

# The torch peer runs twice (train, encode); each is bounded inside the TS benchmark too.
run gpu_train_step 240 env XLIR_TORCH_TIMEOUT_S=100 npx tsx bench/gpu_train_step.ts --device "$device" --shape "$shape" \
  --steps "$steps" --warmup "$warmup" --precisions "$precisions" --json "$out/gpu_train_step.json"

echo
if [ ${#failed[@]} -gt 0 ]; then
  echo "gpu-bench: done with failures: ${failed[*]}; outputs in $out/"
  exit 1
fi
echo "gpu-bench: done; outputs in $out/"
