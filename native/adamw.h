// AdamW with decoupled weight decay over fp32 master weights, exactly as torch.optim.AdamW
// (decay first: p *= 1 - lr * wd; then the bias-corrected Adam update), and the global gradient
// norm used for clipping as torch.nn.utils.clip_grad_norm_ computes it.
#pragma once
#include <cstdint>

namespace xlir {

// Sum of squares of g[0, n), in double.
double sum_squares(const float* g, int64_t n);

// Sum of squares of the listed rows (each `width` floats) of a row-major table g, in double: the
// squared norm of a gradient whose other rows are zero.
double sum_squares_rows(const float* g, const int32_t* rows, int64_t num_rows, int64_t width);

// One update of n parameters at step t (1-based); the gradient is multiplied by grad_scale first
// (the clipping coefficient).
void adamw_update(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1, float beta2,
                  float eps, float weight_decay, float grad_scale, int64_t t);

// The same update applied only to the listed rows of a row-major [rows, width] table (p, g, m, v
// alike): the row-sparse ("lazy") AdamW of an embedding matrix. Rows not listed are left exactly as
// they are: their moments do not decay, momentum does not move them and weight decay skips them,
// where the dense update would do all three. Bias correction uses the global step t. With every
// row listed it equals adamw_update bit for bit.
void adamw_update_rows(float* p, const float* g, float* m, float* v, const int32_t* rows, int64_t num_rows,
                       int64_t width, float lr, float beta1, float beta2, float eps, float weight_decay,
                       float grad_scale, int64_t t);

}  // namespace xlir
