#include "pooling.h"

#include <cmath>

namespace xlir {

void pool_forward(float* out, const float* h, const int32_t* lengths, const int64_t* offsets, int64_t B, int64_t C,
                  PoolMode mode) {
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < B; b++) {
    const float* hb = h + offsets[b] * C;
    float* o = out + b * C;
    if (mode == PoolMode::CLS) {
      for (int64_t c = 0; c < C; c++) o[c] = hb[c];
      continue;
    }
    const int64_t L = lengths[b];
    for (int64_t c = 0; c < C; c++) o[c] = 0.f;
    for (int64_t t = 0; t < L; t++)
      for (int64_t c = 0; c < C; c++) o[c] += hb[t * C + c];
    const float inv = 1.f / float(L);
    for (int64_t c = 0; c < C; c++) o[c] *= inv;
  }
}

void pool_backward(float* dh, const float* dout, const int32_t* lengths, const int64_t* offsets, int64_t B,
                   int64_t C, PoolMode mode) {
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < B; b++) {
    float* d = dh + offsets[b] * C;
    const float* g = dout + b * C;
    if (mode == PoolMode::CLS) {
      for (int64_t c = 0; c < C; c++) d[c] += g[c];
      continue;
    }
    const int64_t L = lengths[b];
    const float inv = 1.f / float(L);
    for (int64_t t = 0; t < L; t++)
      for (int64_t c = 0; c < C; c++) d[t * C + c] += g[c] * inv;
  }
}

void l2norm_forward(float* y, float* norms, const float* x, int64_t B, int64_t D) {
  for (int64_t b = 0; b < B; b++) {
    double s = 0;
    for (int64_t i = 0; i < D; i++) s += double(x[b * D + i]) * x[b * D + i];
    float n = std::fmax(float(std::sqrt(s)), 1e-12f);
    norms[b] = n;
    for (int64_t i = 0; i < D; i++) y[b * D + i] = x[b * D + i] / n;
  }
}

void l2norm_backward(float* dx, const float* dy, const float* y, const float* norms, int64_t B, int64_t D) {
  for (int64_t b = 0; b < B; b++) {
    float dot = 0;
    for (int64_t i = 0; i < D; i++) dot += y[b * D + i] * dy[b * D + i];
    for (int64_t i = 0; i < D; i++) dx[b * D + i] = (dy[b * D + i] - y[b * D + i] * dot) / norms[b];
  }
}

}  // namespace xlir
