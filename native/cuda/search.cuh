// Exact inner-product search on the GPU (matrix product + k-selection), with the CPU search.h's
// contract: for each query the k best corpus rows under "higher score first, lower corpus index
// first among equal scores", independent of block sizes; the same errors (k < 1, k > corpus size,
// non-finite values naming row and column).
// Shapes and assumptions: queries [nq, d], corpus [nc, d] row-major fp32 in device memory; results
// [nq, k] (scores, int32 ids) in device memory; k <= 1024 (the selection sorts in shared memory;
// TREC evaluation's 1000 fits).
// Design: the corpus is scored one block at a time (SearchBlocks: 1024 queries x 4096 corpus rows by
// default) by cuBLASLt into a buffer whose first k columns hold each query's running best k, so a
// selection over [running best | new block] gives the new running best. Selection is a block per
// query: a 4-pass radix select (8 bits a pass, on an order-preserving integer image of the score)
// finds the k-th score, entries above it are gathered, entries equal to it are taken in position
// order (which is corpus-index order), and the k winners are bitonic-sorted by (score, index).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "../search.h"

namespace xlir {
namespace cuda {

const int64_t kMaxSearchK = 1024;

// Scratch (bytes) that search_topk needs.
size_t search_scratch_bytes(int64_t nq, int64_t k, const SearchBlocks& blocks = SearchBlocks{});
// Checks the values for NaN / infinity first (one device-to-host copy: this call waits for the GPU).
void search_topk(const float* queries, int64_t nq, const float* corpus, int64_t nc, int64_t d, int64_t k, float* scores,
                 int32_t* ids, void* scratch, size_t scratch_bytes, cudaStream_t stream,
                 const SearchBlocks& blocks = SearchBlocks{});

// out[q * nc + c] = <queries[q], corpus[c]> (one fp32 product; asynchronous).
void score_matrix(const float* queries, int64_t nq, const float* corpus, int64_t nc, int64_t d, float* out,
                  cudaStream_t stream);

}  // namespace cuda
}  // namespace xlir
