// Embedding tables on the GPU: the gradient scatter of the gather x[t] = word[ids[t]] + pos[...] +
// type[...] (the forward gather is fused with the LayerNorm that follows it: layernorm.cuh).
// Design: deterministic scatter without atomics. Tokens share rows (repeated ids, every sequence's
// position 0), so the host, which assembled the ids, groups the tokens by row once per batch
// (embedding_grad_plan, a stable grouping); the kernel then gives each (row, column) to one thread,
// which adds the row's tokens in token order: the same additions in the same order as the CPU's
// embedding_backward, hence the same bits, and the same result run after run.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "../embedding.h"

namespace xlir {
namespace cuda {

// The plan (tokens grouped by table row) is built on the host by the CPU engine's
// embedding_grad_plan (native/embedding.h), which the emulated back end shares.
using ::xlir::EmbeddingGradPlan;
using ::xlir::embedding_grad_plan;

// dtable[seg_row[s]] += sum of dx[t] over the segment's tokens, for every segment (device copies of
// the plan's three arrays). dx is [T, C], dtable [rows, C].
void embedding_backward(float* dtable, const float* dx, const int32_t* order, const int32_t* seg_start,
                        const int32_t* seg_row, int64_t num_segments, int64_t C, cudaStream_t stream);

}  // namespace cuda
}  // namespace xlir
