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

# cmake-js builds offline against the node-api-headers package ("binary.napi_versions" in package.json).
npx cmake-js compile --out build >build.log 2>&1 || { tail -50 build.log; exit 1; }
grep -E "xlir: CUDA" build.log | head -1 || true
grep -E "xlir: faiss-node" build.log | head -1 || true

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
