// Multi-head self-attention over packed sequences on the GPU, forward beside backward, with the
// same layout and dropout as the CPU attention.h: sequence s owns tokens [offsets[s], offsets[s+1])
// of the [T, 3H] q|k|v matrix, head h its columns [h d, (h+1) d) of each part (d = H / heads).
// Packing makes the key padding mask implicit; key_keep (optional, one byte per token) masks keys
// explicitly as well, for padded layouts: a key t takes part only when key_keep[t] != 0. A query whose
// keys are all masked gets a zero output and no gradient.
// Design (first, simple version, correct before fast): flash-style, so no sequence x sequence matrix
// ever reaches global memory. Forward: one warp per query row, 8 rows per block; keys and values
// stream through shared memory 32 at a time; each lane scores one key of the tile, the warp keeps an
// online softmax (running max and sum) and the output accumulator; the row's log-sum-exp is saved.
// Backward (FlashAttention-2 split, no atomics, deterministic): D_i = dO_i . O_i per row, then one
// kernel for dq (a warp per query, streaming keys) and one for dk, dv (a warp per key, streaming
// queries), both recomputing the probabilities from q, k and the saved log-sum-exp. Arithmetic is
// fp32 on CUDA cores; head size d <= 128. Tensor-core tiles are the next step for speed.
// Dropout on the probabilities uses the CPU's hash with the CPU's indices (row h * L + i of the
// sequence, column j, keyed by hash(site, seq_keys[s])), so GPU and CPU drop the same entries.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace xlir {
namespace cuda {

// ctx[T, H] (and its bf16 copy ctx16, may be null) and lse[T, heads] from qkv[T, 3H].
// offsets: device int32 [num_seqs + 1], offsets[0] = 0, offsets[num_seqs] = T; max_len >= the
// longest sequence (host value: it sizes the grid). seq_keys: device [num_seqs], needed when p > 0.
void attention_forward(float* ctx, __nv_bfloat16* ctx16, float* lse, const float* qkv, const int32_t* offsets,
                       int64_t num_seqs, int64_t max_len, int64_t T, int64_t hidden, int64_t heads,
                       const uint8_t* key_keep, float p, uint64_t site, const uint64_t* seq_keys, cudaStream_t stream);

// Scratch (floats) that attention_backward needs: T * heads.
int64_t attention_backward_scratch_floats(int64_t T, int64_t heads);
// dqkv[T, 3H] (written with =) from dctx[T, H], given the forward's ctx and lse.
void attention_backward(float* dqkv, const float* dctx, const float* ctx, const float* lse, const float* qkv,
                        const int32_t* offsets, int64_t num_seqs, int64_t max_len, int64_t T, int64_t hidden,
                        int64_t heads, const uint8_t* key_keep, float p, uint64_t site, const uint64_t* seq_keys,
                        float* scratch, cudaStream_t stream);

// The launch shape both attention implementations share (this file's and attention_tc.cuh's):
// checks the arguments, naming `what` (a head size d that head_ok refuses: "head size <d><refusal>"),
// and returns the grid (query tiles of `rows`, sequences, heads), the head size and the score
// scale 1/sqrt(d) as the CPU computes it.
struct AttentionLaunch {
  dim3 grid;
  int d;
  float scale;
};
// D[t, h] = dctx[t, head h] . ctx[t, head h] for T tokens and `heads` heads of size d: the row
// sums of dP * P that the backward of both implementations needs first.
void attention_rowdot(float* D, const float* dctx, const float* ctx, int64_t T, int64_t heads, int d,
                      cudaStream_t stream);
// The same where either operand may be its bf16 copy instead (the fp32 one when both are given):
// the tensor-core backward when bf16 training keeps no fp32 ctx or dctx.
void attention_rowdot(float* D, const float* dctx, const __nv_bfloat16* dctx16, const float* ctx,
                      const __nv_bfloat16* ctx16, int64_t T, int64_t heads, int d, cudaStream_t stream);

AttentionLaunch attention_launch(const char* what, int64_t rows, bool (*head_ok)(int64_t d), const char* refusal,
                                 const float* qkv, const int32_t* offsets,
                                 int64_t num_seqs, int64_t max_len, int64_t T, int64_t hidden, int64_t heads, float p,
                                 const uint64_t* seq_keys);

}  // namespace cuda
}  // namespace xlir
