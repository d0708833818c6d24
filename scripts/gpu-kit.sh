#!/usr/bin/env bash
# Builds, on this (CPU) machine, what a GPU machine without Node, oneDNN or a network needs to run the
# CUDA checks and benchmarks: gpu-kit/ holds portable (x86-64-v3; sm_90 by default) builds of
# xlir_cuda_tests (every kernel vs the CPU), xlir_device_tests (the Model on cuda:0 vs the CPU
# Model), xlir_train_bench (bench/train_step_native.cc) and xlir_cuda_bench when it exists, the shared libraries they need that such a machine may
# lack (oneDNN, libgomp, the OpenCL loader oneDNN links), bench/torch_train_step.py, and run.sh.
# On the GPU machine: `bash gpu-kit/run.sh [OUT_DIR]` (cuBLASLt comes from python3's nvidia-cublas
# wheel there). About 55 MB: within the device tool's 64 MiB working-tree limit (checked below).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nvcc >/dev/null || { echo "gpu-kit: nvcc is needed to build the CUDA programs" >&2; exit 1; }
# sm_90 machine code only (the lent machines are H100 / H200; GPU_ARCH=80-real etc. for others), and
# stripped: four programs with every kernel each, plus oneDNN, must stay under the device tool's 64 MiB.
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DXLIR_PORTABLE=ON -DXLIR_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES="${GPU_ARCH:-90-real}" >build-gpu.log 2>&1 \
  || { tail -30 build-gpu.log; exit 1; }
targets="xlir_cuda_tests xlir_device_tests xlir_train_bench"
if grep -q "xlir_cuda_bench" CMakeLists.txt; then targets="$targets xlir_cuda_bench"; fi
# shellcheck disable=SC2086
cmake --build build-gpu --target $targets -j2 >>build-gpu.log 2>&1 || { tail -30 build-gpu.log; exit 1; }
rm -rf gpu-kit
mkdir -p gpu-kit
for t in $targets; do cp "build-gpu/$t" gpu-kit/ && strip --strip-unneeded "gpu-kit/$t"; done
for lib in libdnnl.so.2 libgomp.so.1 libOpenCL.so.1; do
  src=$(ldd build-gpu/xlir_device_tests | awk -v l="$lib" '$1 == l { print $3 }')
  [ -n "$src" ] && cp -L "$src" gpu-kit/
done
# This image's C++ runtime, used there only if that machine's is older than the programs need
# (run.sh checks with ldd); kept apart so that it never shadows a newer one.
mkdir -p gpu-kit/fallback
for lib in libstdc++.so.6 libgcc_s.so.1; do
  src=$(ldd build-gpu/xlir_device_tests | awk -v l="$lib" '$1 == l { print $3 }')
  [ -n "$src" ] && cp -L "$src" gpu-kit/fallback/
done
cp bench/torch_train_step.py gpu-kit/
cp scripts/gpu-run.sh gpu-kit/run.sh
du -sh gpu-kit
kb=$(du -sk gpu-kit | cut -f1)
[ "$kb" -lt 62000 ] || { echo "gpu-kit: ${kb} KiB is over the device tool's 64 MiB" >&2; exit 1; }
echo "gpu-kit: ready; on the GPU machine: bash gpu-kit/run.sh OUT_DIR"
