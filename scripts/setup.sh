#!/usr/bin/env bash
# Installs what a fresh machine lacks and builds the engine. Idempotent: a second run only checks.
#  - Debian packages: oneDNN (matrix products), FAISS (evaluation), a C++ toolchain, python venv,
#    DejaVu fonts (text in the PNG charts of evaluation reports);
#  - npm dependencies (npm ci; faiss-node in native/faiss without its install script) and the native
#    addon plus faiss-node's binding (cmake-js, CMakeLists.txt);
#  - .venv: PyTorch + transformers + sentence-transformers from pip's local index, used by the
#    parity tests as the reference implementation and by bench/ as the peer.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for p in libdnnl-dev libfaiss-dev cmake g++ python3-venv fonts-dejavu-core; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-fund --no-audit
fi

# faiss-node (src/search/faiss.ts) lives in the private package native/faiss, installed without
# running its install script: that script downloads a prebuilt binary or clones FAISS from GitHub,
# which fails offline. The versions and hashes are pinned by native/faiss/package-lock.json; the
# binding itself is built by CMakeLists.txt below, against Debian's libfaiss-dev.
if [ ! -d native/faiss/node_modules/faiss-node ] ||
   [ native/faiss/package-lock.json -nt native/faiss/node_modules/.package-lock.json ]; then
  npm ci --prefix native/faiss --ignore-scripts --no-fund --no-audit
fi

# CUDA back end (issue 3): only when nvcc is present, cuBLASLt's headers and library come from
# NVIDIA's cuBLAS wheel, installed offline from pip's configured indexes into .venv, where
# CMakeLists.txt finds it: for CUDA 13 the package `nvidia-cublas` (include/ and lib/ under
# site-packages/nvidia/cu13), for CUDA 12 `nvidia-cublas-cu12` (site-packages/nvidia/cublas).
# Without nvcc nothing is installed and the build is CPU-only (the build log says which).
if command -v nvcc >/dev/null 2>&1; then
  cuda_major=$(nvcc --version | sed -n 's/.*release \([0-9]*\)\..*/\1/p')
  case "$cuda_major" in
    12) cublas_pkg="nvidia-cublas-cu12"; cublas_dir="cublas" ;;
    *) cublas_pkg="nvidia-cublas==${cuda_major}.*"; cublas_dir="cu${cuda_major}" ;;
  esac
  if ! ls .venv/lib/python3*/site-packages/nvidia/"$cublas_dir"/include/cublasLt.h >/dev/null 2>&1; then
    # Every configured index: the first as --index-url (so pip never tries the network default),
    # the rest as extra indexes (the cuBLAS wheel is not necessarily in the first).
    read -r -a indexes <<<"$(pip config list 2>/dev/null | sed -n "s/^global.extra-index-url='\([^']*\)'.*/\1/p" | head -1)"
    pip_index=()
    for i in "${!indexes[@]}"; do
      if [ "$i" = 0 ]; then pip_index+=(--index-url "${indexes[$i]}"); else pip_index+=(--extra-index-url "${indexes[$i]}"); fi
    done
    [ -x .venv/bin/pip ] || python3 -m venv .venv
    echo "setup: nvcc ${cuda_major} found: installing $cublas_pkg into .venv for the CUDA back end"
    .venv/bin/pip install -q "${pip_index[@]}" "$cublas_pkg" 2>&1 | grep -v "is ignored: it is neither a file nor a directory" ||
      true
    ls .venv/lib/python3*/site-packages/nvidia/"$cublas_dir"/include/cublasLt.h >/dev/null 2>&1 ||
      echo "setup: $cublas_pkg is not installable from pip's index; the engine is built without CUDA"
  fi
fi

# cmake-js builds offline against the node-api-headers package ("binary.napi_versions" in package.json).
npx cmake-js compile --out build >build.log 2>&1 || { tail -50 build.log; exit 1; }
grep -E "xlir: CUDA" build.log | head -1 || true
grep -E "xlir: faiss-node" build.log | head -1 || true
# build/tsan: the emulated CUDA kernels under ThreadSanitizer, the race detector that
# test/cuda-emu.test.ts runs (native/tests/cuda_emu/README.md). Plain cmake, no GPU or nvcc needed.
if command -v python3 >/dev/null 2>&1; then
  { cmake -S . -B build/tsan -DCMAKE_BUILD_TYPE=Release -DXLIR_CUDA=OFF -DXLIR_CUDA_EMU_TSAN=ON &&
    cmake --build build/tsan --target xlir_cuda_emu_tests -j "$(nproc)"; } >build-tsan.log 2>&1 ||
    { tail -50 build-tsan.log; exit 1; }
fi

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import torch, transformers, sentence_transformers" 2>/dev/null; then
  # The first configured index is local; naming it avoids minutes of retries against the default.
  index=$(pip config list 2>/dev/null | sed -n "s/^global.extra-index-url='\([^ ']*\).*/\1/p" | head -1)
  python3 -m venv .venv
  .venv/bin/pip install -q ${index:+--index-url "$index"} torch transformers sentence-transformers safetensors numpy scikit-learn
fi
# FAISS for Python: the peer of bench/search.ts, installed from the same local index when it has it.
if [ -x .venv/bin/python ] && ! .venv/bin/python -c "import faiss" 2>/dev/null; then
  index=$(pip config list 2>/dev/null | sed -n "s/^global.extra-index-url='\([^ ']*\).*/\1/p" | head -1)
  .venv/bin/pip install -q ${index:+--index-url "$index"} faiss-cpu ||
    echo "setup: faiss-cpu is not installable from pip's index; bench/search.ts reports FAISS (Python) as not available"
fi
echo "setup: done (addon build/Release/xlir.node, python .venv/bin/python)"
