#include "adamw.h"

#include <cmath>

namespace xlir {

double sum_squares(const float* g, int64_t n) {
  double s = 0;
#pragma omp parallel for reduction(+ : s) schedule(static)
  for (int64_t i = 0; i < n; i++) s += double(g[i]) * g[i];
  return s;
}

void adamw_update(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1, float beta2,
                  float eps, float weight_decay, float grad_scale, int64_t t) {
  // Same operation order as torch's single-tensor AdamW, so that three steps match to rounding.
  const float bc1 = 1.f - float(std::pow(double(beta1), double(t)));
  const float bc2 = 1.f - float(std::pow(double(beta2), double(t)));
  const float step_size = lr / bc1;
  const float bc2_sqrt = std::sqrt(bc2);
  const float decay = 1.f - lr * weight_decay;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) {
    float gi = g[i] * grad_scale;
    p[i] *= decay;
    m[i] += (gi - m[i]) * (1.f - beta1);
    v[i] = v[i] * beta2 + (1.f - beta2) * gi * gi;
    float denom = std::sqrt(v[i]) / bc2_sqrt + eps;
    p[i] -= step_size * m[i] / denom;
  }
}

}  // namespace xlir
