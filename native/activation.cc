#include "activation.h"
#include "matmul.h"
#include "vmath.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace xlir {

void bias_add(float* y, const float* bias, int64_t N, int64_t C) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < N; i++)
    for (int64_t c = 0; c < C; c++) y[i * C + c] += bias[c];
}

void bias_backward(float* dbias, const float* dy, int64_t N, int64_t C) {
  int nt = omp_get_max_threads();
  thread_local Buffer<double> part_buf;  // grow-only: no allocation in a steady-state step
  double* part = part_buf.ensure(size_t(nt) * C);
  std::fill(part, part + size_t(nt) * C, 0.0);
#pragma omp parallel
  {
    double* p = part + size_t(omp_get_thread_num()) * C;
#pragma omp for schedule(static)
    for (int64_t i = 0; i < N; i++)
      for (int64_t c = 0; c < C; c++) p[c] += dy[i * C + c];
  }
  for (int t = 0; t < nt; t++)
    for (int64_t c = 0; c < C; c++) dbias[c] += float(part[size_t(t) * C + c]);
}

// GELU through erf_approx / exp_approx (vmath.h: vectorised; within 1e-6 * max(1, |x|) of the
// erf form); the *_reference versions use libm and are what the fast ones are tested against.
// One expression for every forward variant below, so the fused ones stay bit-equal to it.
static inline float gelu_value(float x) { return 0.5f * x * (1.f + erf_approx(x * float(M_SQRT1_2))); }

void gelu_forward(float* y, const float* x, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; i++) y[i] = gelu_value(x[i]);
}

void bias_gelu_forward(float* h, const float* bias, float* y, int64_t N, int64_t C) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < N; i++) {
    float* hi = h + i * C;
    float* yi = y + i * C;
#pragma omp simd
    for (int64_t c = 0; c < C; c++) {
      const float v = hi[c] + bias[c];
      hi[c] = v;
      yi[c] = gelu_value(v);
    }
  }
}

void bias_gelu_forward_bf16(float* h, const float* bias, uint16_t* y, int64_t N, int64_t C) {
  constexpr int64_t kChunk = 1024;  // through a stack buffer that stays in L1
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < N; i++) {
    float buf[kChunk];
    for (int64_t c0 = 0; c0 < C; c0 += kChunk) {
      const int64_t m = std::min(kChunk, C - c0);
      float* hi = h + i * C + c0;
      const float* bi = bias + c0;
#pragma omp simd
      for (int64_t c = 0; c < m; c++) {
        const float v = hi[c] + bi[c];
        hi[c] = v;
        buf[c] = gelu_value(v);
      }
      to_bf16_serial(buf, y + i * C + c0, m);
    }
  }
}

void gelu_forward_bf16(uint16_t* y, const float* x, int64_t n) {
  constexpr int64_t kChunk = 1024;  // through a stack buffer that stays in L1
#pragma omp parallel for schedule(static)
  for (int64_t i0 = 0; i0 < n; i0 += kChunk) {
    const int64_t m = std::min(kChunk, n - i0);
    float buf[kChunk];
    const float* xi = x + i0;
#pragma omp simd
    for (int64_t i = 0; i < m; i++) buf[i] = gelu_value(xi[i]);
    to_bf16_serial(buf, y + i0, m);
  }
}

void gelu_backward(float* dx, const float* dy, const float* x, int64_t n) {
  const float inv_sqrt_2pi = 0.3989422804014327f;
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; i++) {
    const float v = x[i];
    const float cdf = 0.5f * (1.f + erf_approx(v * float(M_SQRT1_2)));
    const float pdf = inv_sqrt_2pi * exp_approx(-0.5f * v * v);
    dx[i] = dy[i] * (cdf + v * pdf);
  }
}

void gelu_forward_reference(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] = float(0.5 * x[i] * (1.0 + std::erf(double(x[i]) * M_SQRT1_2)));
}

void gelu_backward_reference(float* dx, const float* dy, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    const double v = x[i];
    dx[i] = float(dy[i] * (0.5 * (1.0 + std::erf(v * M_SQRT1_2)) + v * 0.3989422804014327 * std::exp(-0.5 * v * v)));
  }
}

void tanh_forward(float* y, const float* x, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) y[i] = std::tanh(x[i]);
}

void tanh_backward(float* dx, const float* dy, const float* y, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * (1.f - y[i] * y[i]);
}

void dropout_rows(float* y, const float* x, int64_t N, int64_t C, float p, uint64_t site, const uint64_t* row_keys) {
  if (p <= 0.f) {
    if (y != x)
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < N * C; i++) y[i] = x[i];
    return;
  }
  const float scale = 1.f / (1.f - p);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < N; i++) {
    const uint64_t rk = hash_key(site, row_keys[i]);
    for (int64_t c = 0; c < C; c++) y[i * C + c] = dropout_keep(rk, uint64_t(c), p) ? x[i * C + c] * scale : 0.f;
  }
}

void bias_dropout_residual(float* y, const float* bias, const float* res, int64_t N, int64_t C, float p, uint64_t site,
                           const uint64_t* row_keys) {
  const float scale = p > 0.f ? 1.f / (1.f - p) : 1.f;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < N; i++) {
    float* yi = y + i * C;
    const float* ri = res + i * C;
    if (p > 0.f) {
      const uint64_t rk = hash_key(site, row_keys[i]);
      for (int64_t c = 0; c < C; c++) {
        const float v = yi[c] + bias[c];
        yi[c] = (dropout_keep(rk, uint64_t(c), p) ? v * scale : 0.f) + ri[c];
      }
    } else {
#pragma omp simd
      for (int64_t c = 0; c < C; c++) yi[c] = (yi[c] + bias[c]) + ri[c];
    }
  }
}

}  // namespace xlir
