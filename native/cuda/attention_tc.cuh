// Multi-head self-attention over packed sequences on tensor cores (bf16 operands, fp32 accumulation),
// forward beside backward: the same layout, arguments and semantics as attention.cuh (the fp32
// kernel), so a caller switches between the two by name. qkv [T, 3H] fp32 (q | k | v, head h at
// columns [h d, (h+1) d) of each part), offsets int32 [B + 1] on the device with offsets[0] = 0 and
// offsets[B] = T, max_len a host value >= the longest sequence; ctx [T, H] (and its bf16 copy ctx16
// when non-null) and lse [T, heads] written; backward writes dqkv [T, 3H] with =, recomputing the
// probabilities from q, k and lse. key_keep (one byte per token, may be null) masks keys as in the
// fp32 kernel: a query whose keys are all masked gets a zero output, lse -inf and no gradient.
// Design:
//  - Precision, as the CPU's Precision::BF16 path (attention.cc) rounds: q, k, v and dctx are rounded
//    to bf16 on their way into shared memory (no separate conversion pass over qkv), P (after
//    dropout) is rounded to bf16 for P V and P^T dO, dS for dS K and dS^T Q. Scores, the softmax
//    statistics (running max and sum, lse), D = dctx . ctx and every accumulator are fp32. bf16
//    training passes ctx and dctx as bf16 copies only (TcBackwardIo): the same dO tiles, and D
//    from the rounded operands, as FlashAttention-2 forms it from its bf16 output and dO.
//  - FlashAttention-2 tiling with the WMMA API (16x16x16 bf16 fragments, sm_80+): a block of 4 warps
//    owns 64 rows (queries, or keys in the dk/dv kernel), 16 per warp, and streams the other side in
//    tiles of 64. WMMA's accumulator layout is opaque, so each warp stores its 16 x 64 score tile to
//    shared memory and two lanes per row do the softmax arithmetic there.
//  - Backward, deterministic (no atomics; every output element is written by one thread, in a fixed
//    order of tiles): D = rowdot(dctx, ctx), then a dk/dv kernel looping over query tiles and a dq
//    kernel looping over key tiles, both recomputing P and dS; the QKV bias gradient's column sums
//    from each block's staged output tile, then one fixed-order pass over the tiles.
//  - Dropout: the fp32 kernel's and the CPU's hash with the same indices (row key
//    hash(hash(site, seq_keys[s]), h L + i) for query i of a length-L sequence, column j = the key's
//    index in its sequence), so the three engines drop the same probabilities.
//  - Head size d in {32, 64, 128} (a template parameter); attention_tc_supported says whether a head
//    size runs here on the current device, and callers fall back to attention.cuh otherwise.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace xlir {
namespace cuda {

// True when head_dim is 32, 64 or 128 and the current device is sm_80 or newer with the opt-in
// shared memory the kernels need (about 122 KB per block for d = 128).
bool attention_tc_supported(int64_t head_dim);

// As attention_forward (attention.cuh); ctx may be null when ctx16 is not (bf16 training keeps only
// the copy: the output product and this backward read it).
void attention_forward_tc(float* ctx, __nv_bfloat16* ctx16, float* lse, const float* qkv, const int32_t* offsets,
                          int64_t num_seqs, int64_t max_len, int64_t T, int64_t hidden, int64_t heads,
                          const uint8_t* key_keep, float p, uint64_t site, const uint64_t* seq_keys,
                          cudaStream_t stream);

// Scratch (floats) that attention_backward_tc needs for T tokens in B sequences: the row sums D
// (T * heads) and the bias gradient's partial column sums ((T / 64 + B) rows of 3 * hidden).
int64_t attention_backward_tc_scratch_floats(int64_t T, int64_t B, int64_t hidden, int64_t heads);
// The bf16 side of attention_backward_tc: copies it reads instead of the fp32 tensors, and what it
// writes besides (or instead of) dqkv. Every member may be null.
struct TcBackwardIo {
  // Read when the fp32 argument is null. bf16 training keeps only these: the forward's ctx16 (D =
  // rowsum(dctx * ctx) then reads it, as FlashAttention-2 reads its bf16 output) and the output
  // product's backward writes dctx in bf16 (the kernels round dO to bf16 anyway, so only D sees
  // the difference).
  const __nv_bfloat16* dctx16 = nullptr;
  const __nv_bfloat16* ctx16 = nullptr;
  // bf16(dqkv) from the same stores: the operand of the QKV product's bf16 backward.
  __nv_bfloat16* dqkv16 = nullptr;
  // dbias[3H] += the column sums of dqkv, the QKV product's bias gradient. Each block sums its
  // 64-row tile's columns from shared memory (in row order, fp32) and a fixed-order double sum over
  // the tiles follows (activation.cuh's column_reduce): deterministic, no atomics, and no fp32
  // dqkv to write and read back (24 bytes x tokens x hidden per layer).
  float* dbias = nullptr;
};
// As attention_backward (attention.cuh): dqkv[T, 3H] (written with =) from dctx[T, H], given the
// forward's ctx and lse. Every token of every sequence is written; since offsets cover [0, T), that
// is every row (unlike the fp32 kernel there is no zero-fill pass first). dqkv may be null when
// io.dqkv16 is not; dctx and ctx may be null when io has their copies.
void attention_backward_tc(float* dqkv, const float* dctx, const float* ctx, const float* lse, const float* qkv,
                           const int32_t* offsets, int64_t num_seqs, int64_t max_len, int64_t T, int64_t hidden,
                           int64_t heads, const uint8_t* key_keep, float p, uint64_t site, const uint64_t* seq_keys,
                           float* scratch, cudaStream_t stream, const TcBackwardIo& io = TcBackwardIo{});

}  // namespace cuda
}  // namespace xlir
