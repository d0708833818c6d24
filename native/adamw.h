// AdamW with decoupled weight decay over fp32 master weights, exactly as torch.optim.AdamW
// (decay first: p *= 1 - lr * wd; then the bias-corrected Adam update), and the global gradient
// norm used for clipping as torch.nn.utils.clip_grad_norm_ computes it.
#pragma once
#include <cstdint>

namespace xlir {

// Sum of squares of g[0, n), in double.
double sum_squares(const float* g, int64_t n);

// One update of n parameters at step t (1-based); the gradient is multiplied by grad_scale first
// (the clipping coefficient).
void adamw_update(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1, float beta2,
                  float eps, float weight_decay, float grad_scale, int64_t t);

}  // namespace xlir
