#!/usr/bin/env bash
# Runs the CUDA checks (and benchmarks when built) from gpu-kit/ on a GPU machine; copied into
# gpu-kit/ as run.sh by scripts/gpu-kit.sh. Each part has its own time limit, so a hang costs
# minutes, not the session (the limits add up to 9 minutes, inside one device-tool command of 10);
# every output is also written to OUT_DIR (default gpu-out/).
set -uo pipefail
kit="$(cd "$(dirname "$0")" && pwd)"
out="${1:-gpu-out}"
mkdir -p "$out"
libdirs=$(find "$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/nvidia" -name 'libcublasLt.so*' -printf '%h\n' 2>/dev/null | sort -u | tr '\n' ':')
# The kit's libraries are for its own programs only (xl, below): on the python3 runs they could
# shadow what PyTorch expects. The kit's libstdc++ (fallback/) joins only if the machine's is
# older than the programs need (they were built on another image).
libpath="$kit:${libdirs}${LD_LIBRARY_PATH:-}"
missing() { LD_LIBRARY_PATH="$1" ldd "$kit/xlir_cuda_tests" 2>&1 | grep "not found"; }
if missing "$libpath" >/dev/null; then
  missing "$libpath"
  if [ -d "$kit/fallback" ] && ! missing "$kit/fallback:$libpath" >/dev/null; then
    libpath="$kit/fallback:$libpath"
    echo "gpu-kit: using the kit's own libstdc++ (fallback/)"
  else
    echo "gpu-kit: libraries missing even with fallback/: rebuild the programs on this machine" >&2
  fi
fi
xl=(env "LD_LIBRARY_PATH=$libpath")
status=0
run() {  # name, seconds, command...
  local name=$1 secs=$2
  shift 2
  echo "=== $name (limit ${secs}s)"
  timeout "$secs" "$@" 2>&1 | tee "$out/$name.txt"
  local rc=${PIPESTATUS[0]}
  echo "=== $name: exit $rc"
  [ "$rc" -eq 0 ] || status=1
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
run cuda_tests 90 "${xl[@]}" "$kit/xlir_cuda_tests"
run device_tests 120 "${xl[@]}" "$kit/xlir_device_tests"
# SANITIZE=1: the kernel checks again under compute-sanitizer's memcheck and racecheck (not part of
# the 9 minutes; it refuses gVisor machines and ran on Firecracker ones, device tool KINDS.md).
# One output file for both (the device tool brings back at most 8).
if [ "${SANITIZE:-0}" = 1 ] && command -v compute-sanitizer >/dev/null; then
  run sanitizer 480 "${xl[@]}" bash -c 'compute-sanitizer --tool memcheck --error-exitcode 1 "$0" &&
    compute-sanitizer --tool racecheck --error-exitcode 1 "$0"' "$kit/xlir_cuda_tests"
fi
if [ -x "$kit/xlir_cuda_bench" ]; then run cuda_bench 90 "${xl[@]}" "$kit/xlir_cuda_bench"; fi
# End to end, XLM-R base, 128 pairs, bf16: the engine, then sentence-transformers on the very same
# sequences (the lengths file), same GPU, same run; the ratio is of real-token throughput.
steps=${STEPS:-20}
lengths="${TMPDIR:-/tmp}/xlir-lengths.json"  # not in OUT_DIR: the device tool brings back at most 8 files
run train_bench 90 "${xl[@]}" "$kit/xlir_train_bench" --device cuda:0 --precision bf16 --steps "$steps" --lengths-out "$lengths"
run torch_train 90 python3 "$kit/torch_train_step.py" --layers 12 --hidden 768 --heads 12 --ffn 3072 --vocab 250002 \
  --lengths-file "$lengths" --steps "$steps" --warmup 3 --precision bf16 --mode train --device cuda --json
run torch_encode 60 python3 "$kit/torch_train_step.py" --layers 12 --hidden 768 --heads 12 --ffn 3072 --vocab 250002 \
  --lengths-file "$lengths" --steps "$steps" --warmup 3 --precision bf16 --mode encode --device cuda --json
python3 - "$out" <<'PY' || status=1
import json, sys
out = sys.argv[1]
last = lambda f: json.loads([l for l in open(f"{out}/{f}.txt") if l.startswith("{")][-1])
x, t, e = last("train_bench"), last("torch_train"), last("torch_encode")
tt = t.get("tokens_per_s") or t.get("real_tokens_per_s")
te = e.get("tokens_per_s") or e.get("real_tokens_per_s")
print(f"xlir {x['tokens_per_s']:.0f} tok/s (MFU {100 * x['mfu']:.1f}%) vs sentence-transformers {tt:.0f} tok/s: {x['tokens_per_s'] / tt:.2f}x")
print(f"encode: xlir {x['tokens'] / x['encode_ms'] * 1e3:.0f} tok/s vs PyTorch {te:.0f} tok/s: {x['tokens'] / x['encode_ms'] * 1e3 / te:.2f}x")
PY
exit $status
