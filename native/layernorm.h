// LayerNorm over the last dimension of [N, C] rows, forward beside backward.
// Forward saves mean and 1/std per row; backward recomputes x_hat from x instead of storing it.
// Parameter gradients accumulate with +=; the input gradient is written with =.
#pragma once
#include <cstdint>

namespace xlir {

void layernorm_forward(float* y, float* mean, float* rstd, const float* x, const float* w, const float* b,
                       int64_t N, int64_t C, float eps);
// dw, db may be null (frozen parameters): then only dx is computed.
void layernorm_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w,
                        const float* mean, const float* rstd, int64_t N, int64_t C);

}  // namespace xlir
