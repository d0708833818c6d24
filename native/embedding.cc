#include "embedding.h"

#include <omp.h>

namespace xlir {

void embedding_forward(float* x, const int32_t* ids, const int32_t* pos_ids, const int32_t* type_ids,
                       const float* word, const float* pos, const float* type, int64_t T, int64_t C) {
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < T; t++) {
    const float* w = word + int64_t(ids[t]) * C;
    const float* p = pos + int64_t(pos_ids[t]) * C;
    const float* ty = type + int64_t(type_ids[t]) * C;
    float* xt = x + t * C;
    for (int64_t c = 0; c < C; c++) xt[c] = w[c] + p[c] + ty[c];
  }
}

void embedding_backward(float* dword, float* dpos, float* dtype, const float* dx, const int32_t* ids,
                        const int32_t* pos_ids, const int32_t* type_ids, int64_t T, int64_t C) {
  // Tokens share rows (repeated ids, the same position), so threads split the feature columns
  // instead of the tokens: every thread owns its columns of every row, no atomics needed.
#pragma omp parallel
  {
    int nt = omp_get_num_threads(), tid = omp_get_thread_num();
    int64_t c0 = C * tid / nt, c1 = C * (tid + 1) / nt;
    for (int64_t t = 0; t < T; t++) {
      const float* g = dx + t * C;
      if (dword) {
        float* r = dword + int64_t(ids[t]) * C;
        for (int64_t c = c0; c < c1; c++) r[c] += g[c];
      }
      if (dpos) {
        float* r = dpos + int64_t(pos_ids[t]) * C;
        for (int64_t c = c0; c < c1; c++) r[c] += g[c];
      }
      if (dtype) {
        float* r = dtype + int64_t(type_ids[t]) * C;
        for (int64_t c = c0; c < c1; c++) r[c] += g[c];
      }
    }
  }
}

}  // namespace xlir
