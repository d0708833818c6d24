// Sentence pooling over packed sequences (first token, or mean over the sequence's tokens) and
// L2 normalisation, forward beside backward. Because sequences are packed, "mean over non-padding
// tokens" is simply the mean over the sequence.
#pragma once
#include <cstdint>

namespace xlir {

enum class PoolMode { CLS, Mean };

// out[B, C] from h[T, C].
void pool_forward(float* out, const float* h, const int32_t* lengths, const int64_t* offsets, int64_t B, int64_t C,
                  PoolMode mode);
// dh[T, C] += the gradient of pooling (tokens that do not feed the pool receive nothing).
void pool_backward(float* dh, const float* dout, const int32_t* lengths, const int64_t* offsets, int64_t B,
                   int64_t C, PoolMode mode);

// y = x / max(||x||, 1e-12) per row, as torch.nn.functional.normalize; norms[B] saved for backward.
void l2norm_forward(float* y, float* norms, const float* x, int64_t B, int64_t D);
// dx = (dy - y (y . dy)) / ||x|| (written with =).
void l2norm_backward(float* dx, const float* dy, const float* y, const float* norms, int64_t B, int64_t D);

}  // namespace xlir
