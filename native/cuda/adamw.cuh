// AdamW over fp32 master weights and the global gradient norm on the GPU, with the CPU adamw.h's
// arithmetic (torch.optim.AdamW's order: decay, then the bias-corrected Adam update; the norm as
// torch.nn.utils.clip_grad_norm_, clip coefficient max_norm / (norm + 1e-6) clamped to 1).
// Design: the norm and the clip coefficient stay on the device: global_norm writes them to device
// scalars and adamw_update reads the coefficient through a pointer, so a training step never waits
// for the GPU. The norm is a fixed-order reduction in double (deterministic). The update optionally
// writes the bf16 working copy of the weights in the same pass (what the bf16 products read).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace xlir {
namespace cuda {

// Scratch (doubles) that global_norm needs for `ranges` gradient ranges.
int64_t global_norm_scratch_doubles(int64_t ranges);
// Squared norm over the ranges [begin[r], begin[r] + size[r]) of g (host arrays of offsets, so
// frozen parameters can be left out); writes norm (device float) and, when clip_scale is not null,
// the clip coefficient (max_norm <= 0: 1).
void global_norm(float* norm, float* clip_scale, const float* g, const int64_t* begin, const int64_t* size,
                 int64_t ranges, float max_norm, double* scratch, cudaStream_t stream);

// One update of n parameters at step t (1-based). grad_scale: device float multiplying the gradient
// (the clip coefficient), or null for 1. p16 (may be null) receives bf16(p) after the update.
void adamw_update(float* p, __nv_bfloat16* p16, const float* g, float* m, float* v, int64_t n, float lr, float beta1,
                  float beta2, float eps, float weight_decay, const float* grad_scale, int64_t t, cudaStream_t stream);

// Row-sparse update of a row-major [rows, width] table (the word embeddings): only the `num_rows`
// rows listed in the device array `rows` are updated, as the CPU's adamw_update_rows (adamw.h:
// untouched rows keep weights and moments; bias correction by the global step t).
void adamw_update_rows(float* p, __nv_bfloat16* p16, const float* g, float* m, float* v, const int32_t* rows,
                       int64_t num_rows, int64_t width, float lr, float beta1, float beta2, float eps,
                       float weight_decay, const float* grad_scale, int64_t t, cudaStream_t stream);

// Squared norm of the listed rows of g (device row list), added into partial sums as global_norm's
// ranges are: writes global_norm_scratch_doubles(1) doubles at `partial` for norm_from_partials.
void sum_squares_rows_partial(double* partial, const float* g, const int32_t* rows, int64_t num_rows, int64_t width,
                              cudaStream_t stream);
// The norm (and clip coefficient) from `count` partial sums written by global_norm's ranges and
// sum_squares_rows_partial, in index order (deterministic). count is a multiple of
// global_norm_scratch_doubles(1).
void norm_from_partials(float* norm, float* clip_scale, const double* partial, int64_t count, float max_norm,
                        cudaStream_t stream);

}  // namespace cuda
}  // namespace xlir
