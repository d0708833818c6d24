#!/usr/bin/env bash
# Runs the CUDA checks (and benchmarks when built) from gpu-kit/ on a GPU machine; copied into
# gpu-kit/ as run.sh by scripts/gpu-kit.sh. Each part has its own time limit, so a hang costs
# minutes, not the session; every output is also written to OUT_DIR (default gpu-out/).
set -uo pipefail
kit="$(cd "$(dirname "$0")" && pwd)"
out="${1:-gpu-out}"
mkdir -p "$out"
libdirs=$(find "$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/nvidia" -name 'libcublasLt.so*' -printf '%h\n' 2>/dev/null | sort -u | tr '\n' ':')
export LD_LIBRARY_PATH="$kit:${libdirs}${LD_LIBRARY_PATH:-}"
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
run cuda_tests 240 "$kit/xlir_cuda_tests"
run device_tests 240 "$kit/xlir_device_tests"
if [ -x "$kit/xlir_cuda_bench" ]; then run cuda_bench 240 "$kit/xlir_cuda_bench"; fi
exit $status
