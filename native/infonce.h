// In-batch InfoNCE: the loss and its gradient with respect to the embeddings, in one call, so that
// gradient caching can compute it once for a whole batch and back-propagate per sub-batch.
// Query i's positive is passage i; every other passage (the other queries' positives and all hard
// negatives after the first nq) is a negative. scale = 1 / temperature.
// Symmetric: adds the passage-to-query term (positive passage j against all queries, label j) and
// averages the two, as sentence-transformers' MultipleNegativesSymmetricRankingLoss does.
#pragma once
#include <cstdint>

namespace xlir {

// Returns the loss; dq[nq, D] and dp[np, D] are written with =. Requires np >= nq >= 1.
float infonce_forward_backward(float* dq, float* dp, const float* q, const float* p, int64_t nq, int64_t np,
                               int64_t D, float scale, bool symmetric);

}  // namespace xlir
