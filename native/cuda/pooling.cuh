// Sentence pooling over packed sequences (first token, or mean over the sequence's tokens) and L2
// normalisation on the GPU, forward beside backward, as the CPU pooling.h.
// Design: pooling gives each (sequence, column) to one thread, which walks the sequence's tokens in
// order (coalesced across columns, deterministic, the CPU's summation order); L2 normalisation is a
// warp per row. Pooling's backward accumulates into dh with +=, normalisation's writes dx with =.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "../pooling.h"

namespace xlir {
namespace cuda {

// out[B, C] from h[T, C]; offsets: device int32 [B + 1] (sequence b = tokens [offsets[b], offsets[b+1])).
// An empty sequence pools to zeros.
void pool_forward(float* out, const float* h, const int32_t* offsets, int64_t B, int64_t C, PoolMode mode,
                  cudaStream_t stream);
// dh[T, C] += the gradient of pooling (tokens that do not feed the pool receive nothing).
void pool_backward(float* dh, const float* dout, const int32_t* offsets, int64_t B, int64_t C, PoolMode mode,
                   cudaStream_t stream);

// y = x / max(||x||, 1e-12) per row (torch.nn.functional.normalize); norms[B] saved for backward.
void l2norm_forward(float* y, float* norms, const float* x, int64_t B, int64_t D, cudaStream_t stream);
// dx = (dy - y (y . dy)) / norm (written with =; dx may alias dy).
void l2norm_backward(float* dx, const float* dy, const float* y, const float* norms, int64_t B, int64_t D,
                     cudaStream_t stream);

}  // namespace cuda
}  // namespace xlir
