#include "layernorm.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include "common.h"

namespace xlir {

void layernorm_forward(float* y, float* mean, float* rstd, const float* x, const float* w, const float* b,
                       int64_t N, int64_t C, float eps) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < N; i++) {
    const float* xi = x + i * C;
    // Two passes in double: LayerNorm eps is 1e-12 for BERT, so the variance must not cancel.
    double s = 0;
    for (int64_t c = 0; c < C; c++) s += xi[c];
    double m = s / C, v = 0;
    for (int64_t c = 0; c < C; c++) v += (xi[c] - m) * (xi[c] - m);
    float r = float(1.0 / std::sqrt(v / C + eps));
    float mf = float(m);
    float* yi = y + i * C;
    for (int64_t c = 0; c < C; c++) yi[c] = (xi[c] - mf) * r * w[c] + b[c];
    if (mean) mean[i] = mf;
    if (rstd) rstd[i] = r;
  }
}

void layernorm_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w,
                        const float* mean, const float* rstd, int64_t N, int64_t C) {
  int nt = omp_get_max_threads();
  // Per-thread partial sums for the parameter gradients, reduced at the end: no atomics per element.
  thread_local Buffer<float> part_buf;  // grow-only: no allocation in a steady-state step
  float* part = dw ? part_buf.ensure(size_t(nt) * 2 * C) : nullptr;
  if (dw) std::fill(part, part + size_t(nt) * 2 * C, 0.f);
#pragma omp parallel
  {
    int tid = omp_get_thread_num();
    float* pw = dw ? part + size_t(tid) * 2 * C : nullptr;
    float* pb = dw ? pw + C : nullptr;
#pragma omp for schedule(static)
    for (int64_t i = 0; i < N; i++) {
      const float* xi = x + i * C;
      const float* dyi = dy + i * C;
      float m = mean[i], r = rstd[i];
      float sum_g = 0, sum_gx = 0;  // g = dy * w, x_hat = (x - m) * r
      for (int64_t c = 0; c < C; c++) {
        float xh = (xi[c] - m) * r;
        float g = dyi[c] * w[c];
        sum_g += g;
        sum_gx += g * xh;
        if (pw) {
          pw[c] += dyi[c] * xh;
          pb[c] += dyi[c];
        }
      }
      float mg = sum_g / C, mgx = sum_gx / C;
      float* dxi = dx + i * C;
      for (int64_t c = 0; c < C; c++) {
        float xh = (xi[c] - m) * r;
        dxi[c] = r * (dyi[c] * w[c] - mg - xh * mgx);
      }
    }
  }
  if (dw) {
    for (int t = 0; t < nt; t++)
      for (int64_t c = 0; c < C; c++) {
        dw[c] += part[size_t(t) * 2 * C + c];
        db[c] += part[size_t(t) * 2 * C + C + c];
      }
  }
}

}  // namespace xlir
