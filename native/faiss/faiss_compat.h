// faiss-node 0.5.1's binding (src/faiss.cc) is written against FAISS >= 1.7.4, where `idx_t` is a
// namespace-level type (faiss/MetricType.h). Debian's libfaiss-dev 1.7.3 only has `Index::idx_t`.
// This header supplies the alias so that the package's source compiles unedited: faiss_node_typed.cc
// includes it before that source.
#pragma once
#include <faiss/Index.h>

#if FAISS_VERSION_MAJOR * 10000 + FAISS_VERSION_MINOR * 100 + FAISS_VERSION_PATCH < 10704
namespace faiss {
using idx_t = Index::idx_t;
}
#endif
