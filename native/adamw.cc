#include "adamw.h"

#include <algorithm>
#include <cmath>

namespace xlir {

double sum_squares(const float* g, int64_t n) {
  double s = 0;
#pragma omp parallel for reduction(+ : s) schedule(static)
  for (int64_t i = 0; i < n; i++) s += double(g[i]) * g[i];
  return s;
}

namespace {

struct AdamWStep {
  float beta1, beta2, eps, grad_scale, step_size, bc2_sqrt, decay;
  AdamWStep(float lr, float b1, float b2, float e, float wd, float gs, int64_t t)
      : beta1(b1), beta2(b2), eps(e), grad_scale(gs) {
    const float bc1 = 1.f - float(std::pow(double(b1), double(t)));
    const float bc2 = 1.f - float(std::pow(double(b2), double(t)));
    step_size = lr / bc1;
    bc2_sqrt = std::sqrt(bc2);
    decay = 1.f - lr * wd;
  }
  // Same operation order as torch's single-tensor AdamW, so that three steps match to rounding.
  void apply(float* p, const float* g, float* m, float* v, int64_t n) const {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
      float gi = g[i] * grad_scale;
      p[i] *= decay;
      m[i] += (gi - m[i]) * (1.f - beta1);
      v[i] = v[i] * beta2 + (1.f - beta2) * gi * gi;
      float denom = std::sqrt(v[i]) / bc2_sqrt + eps;
      p[i] -= step_size * m[i] / denom;
    }
  }
};

}  // namespace

double sum_squares_rows(const float* g, const int32_t* rows, int64_t num_rows, int64_t width) {
  double s = 0;
#pragma omp parallel for reduction(+ : s) schedule(static)
  for (int64_t r = 0; r < num_rows; r++) {
    const float* row = g + int64_t(rows[r]) * width;
    for (int64_t i = 0; i < width; i++) s += double(row[i]) * row[i];
  }
  return s;
}

void adamw_update(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1, float beta2,
                  float eps, float weight_decay, float grad_scale, int64_t t) {
  const AdamWStep a(lr, beta1, beta2, eps, weight_decay, grad_scale, t);
  // Chunks of 4096 keep the element loop vectorised and the threads' shares even.
  const int64_t chunk = 4096;
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < (n + chunk - 1) / chunk; c++) {
    const int64_t i0 = c * chunk, len = std::min(chunk, n - i0);
    a.apply(p + i0, g + i0, m + i0, v + i0, len);
  }
}

void adamw_update_rows(float* p, const float* g, float* m, float* v, const int32_t* rows, int64_t num_rows,
                       int64_t width, float lr, float beta1, float beta2, float eps, float weight_decay,
                       float grad_scale, int64_t t) {
  const AdamWStep a(lr, beta1, beta2, eps, weight_decay, grad_scale, t);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < num_rows; r++) {
    const int64_t o = int64_t(rows[r]) * width;
    a.apply(p + o, g + o, m + o, v + o, width);
  }
}

}  // namespace xlir
