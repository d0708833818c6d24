// Exact inner-product search: top-k corpus rows per query, and full score matrices (evaluation).
// Design: scores come from the engine's gemm (oneDNN, fp32; matmul.h) one block at a time, so the
// memory a search needs is one block of scores whatever the corpus size: SearchBlocks{} is
// 1024 queries x 4096 corpus rows = 16 MiB of fp32 scores (plus k entries per query for the
// selection). Each query keeps a k-entry heap ordered by (score, corpus index): the result is the
// exact top k under "higher score first, lower corpus index first among equal scores", independent
// of the block sizes and of thread scheduling. The reference path (plain loops accumulating in
// double, then a full sort) is what native/tests/op_tests.cc checks the fast path against.
//
// Shapes are row-major: queries [nq, d], corpus [nc, d], results [nq, k] (scores, ids) and
// [nq, nc] (score matrix). Errors (XLIR_CHECK): d < 1, k < 1, k > nc (an error rather than a clamp,
// so that a result always has exactly k columns), nc > 2^31 - 1 (ids are int32), and non-finite
// values in queries or corpus (NaN has no place in a ranking; the message names the first one).
#pragma once
#include <cstdint>

namespace xlir {

struct SearchBlocks {
  int64_t queries = 1024;  // query rows per gemm
  int64_t corpus = 4096;   // corpus rows per gemm (top-k only; the score matrix writes its output directly)
};

// Validates the sizes (not the values); `what` prefixes the error message.
void check_search_shape(int64_t nq, int64_t nc, int64_t d, int64_t k, const char* what);
// Throws naming the first non-finite value of x [n, d] (row, column), `what` naming the array.
void check_finite(const float* x, int64_t n, int64_t d, const char* what);

// scores[q * k + r], ids[q * k + r]: the r-th best corpus row for query q.
void search_topk(const float* queries, int64_t nq, const float* corpus, int64_t nc, int64_t d, int64_t k,
                 float* scores, int32_t* ids, const SearchBlocks& blocks = SearchBlocks{});
void search_topk_reference(const float* queries, int64_t nq, const float* corpus, int64_t nc, int64_t d, int64_t k,
                           float* scores, int32_t* ids);

// out[q * nc + c] = <queries[q], corpus[c]>.
void score_matrix(const float* queries, int64_t nq, const float* corpus, int64_t nc, int64_t d, float* out,
                  const SearchBlocks& blocks = SearchBlocks{});
void score_matrix_reference(const float* queries, int64_t nq, const float* corpus, int64_t nc, int64_t d, float* out);

}  // namespace xlir
