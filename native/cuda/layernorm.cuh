// LayerNorm over the last dimension of [N, C] rows with the op that produces its input fused in:
// the residual add (x = a + b, every post-LN block of BERT) or the embedding gather
// (x = word[id] + pos[pos_id] + type[type_id]). Forward beside backward, as the CPU layernorm.h.
// Design: one warp per row; the LayerNorm input x is written out (backward needs it, and it is the
// residual stream) together with mean and 1/std per row; backward recomputes x_hat from them.
// Parameter gradients accumulate with += and are deterministic: per-chunk column sums (64 rows each)
// in a fixed order, then a fixed-order sum of the chunks; no atomics. The input gradient is written
// with = (or added with += when `accumulate`, for a residual branch that already holds a gradient).
// Optional y16 receives a bf16 copy of y, the input of the next bf16 matrix product.
// Dropout (RowDropout) is fused where BERT puts it next to a LayerNorm, so that the [N, C] tensor is
// not read and written once more by a dropout pass: on the residual branch before the add
// (forward), on the embedding LayerNorm's output, and on the branch's gradient after the LayerNorm
// backward. The masks and values are dropout_rows' (activation.cuh), bit for bit.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "../common.h"  // RowDropout (its row_keys: a device array here)

namespace xlir {
namespace cuda {

// x = dropout(a) + b (b may be null: x = dropout(a); x may alias a), y = (x - mean) * rstd * w + beta:
// a post-LN block's "LayerNorm(residual + dropout(branch))" in one pass over the rows. x may be null
// (inference keeps nothing for backward: 4 bytes x N x C not written), as may mean and rstd.
void residual_layernorm_forward(float* x, float* y, __nv_bfloat16* y16, float* mean, float* rstd, const float* a,
                                const float* b, const float* w, const float* beta, int64_t N, int64_t C, float eps,
                                cudaStream_t stream, const RowDropout& drop = {});

// x[t] = word[ids[t]] + pos[pos_ids[t]] + type[type_ids[t]], then LayerNorm as above, then dropout of
// the output: y (and y16) = dropout(LayerNorm(x)); x, mean and rstd are the LayerNorm's (each may be
// null, as above). Ids must lie in [0, vocab), [0, max_pos), [0, type_vocab): the host validates
// them (embedding_grad_plan does); a row with an id out of range is written as NaN instead of
// reading outside the table.
void embedding_layernorm_forward(float* x, float* y, __nv_bfloat16* y16, float* mean, float* rstd, const int32_t* ids,
                                 const int32_t* pos_ids, const int32_t* type_ids, const float* word, const float* pos,
                                 const float* type, int64_t vocab, int64_t max_pos, int64_t type_vocab, const float* w,
                                 const float* beta, int64_t T, int64_t C, float eps, cudaStream_t stream,
                                 const RowDropout& drop = {});

// The residual branch that fed a LayerNorm through a dropout (x = dropout(branch) + residual): its
// gradient dropout(dx), written by layernorm_backward in the same pass as dx.
struct BranchGrad {
  float* dx = nullptr;            // dropout(dx), fp32 (may be null)
  __nv_bfloat16* dx16 = nullptr;  // its bf16 copy, the next bf16 product's operand (may be null)
  float* dbias = nullptr;         // += its column sums: the bias gradient of the product that made the branch
  RowDropout drop;
};

// True when layernorm_backward computes every column sum (dw, db, the branch's dbias) in the pass
// that writes dx (C <= 1024: a lane keeps up to 32 columns in registers). Otherwise dw and db take a
// second pass over dy and x, and a branch's dbias needs branch.dx to sum.
bool layernorm_backward_fused(int64_t C);
// Benchmarks and tests: fuse only rows of at most C columns (0: never; at most 1024). Not thread-safe;
// set it before any backward runs.
void layernorm_backward_set_max_fused(int64_t C);
// Scratch (floats) that layernorm_backward needs for N rows of C.
int64_t layernorm_backward_scratch_floats(int64_t N, int64_t C);
// dx (= or +=) from dy; dw, db += (both null for frozen parameters).
// Optionally (branch), in the same pass, the gradient of the residual branch: see BranchGrad. It
// needs accumulate = false, and its outputs must not alias dx or dy.
// Column sums are deterministic: in a fixed order within each 64-row chunk, then the chunks in
// order in double; no atomics.
void layernorm_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w,
                        const float* mean, const float* rstd, int64_t N, int64_t C, bool accumulate, float* scratch,
                        cudaStream_t stream, const BranchGrad& branch = {});

}  // namespace cuda
}  // namespace xlir
