// In-batch InfoNCE on the GPU: loss and gradients with respect to the embeddings in one call, with
// the CPU infonce.h's meaning (query i's positive is passage i; every other passage is a negative;
// scale = 1 / temperature; symmetric adds the passage-to-query term over the first nq passages).
// Design (llm.c's fused classifier): one product S = scale q p^T [nq, np] (cuBLASLt); one kernel per
// row computes the row's log-sum-exp with an online max/sum in a single pass (and, when symmetric,
// one per column j < nq); a third kernel overwrites S in place with dL/dS, so the probabilities are
// never stored, and two products give dq = scale dS p and dp = scale dS^T q. The loss is reduced in
// a fixed order (deterministic) into a device scalar: the call never waits for the GPU.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace xlir {
namespace cuda {

// Scratch (floats) for nq queries and np passages: nq * np + 4 * nq.
int64_t infonce_scratch_floats(int64_t nq, int64_t np);
// loss: device float (written); dq [nq, D] and dp [np, D] written with =. Requires np >= nq >= 1.
void infonce_forward_backward(float* loss, float* dq, float* dp, const float* q, const float* p, int64_t nq, int64_t np,
                              int64_t D, float scale, bool symmetric, float* scratch, cudaStream_t stream);

}  // namespace cuda
}  // namespace xlir
