// Entry points of the CUDA back end for host-only code (the addon): plain C++, no CUDA headers.
#pragma once
#include <memory>

#include "../device_backend.h"
#include "../search.h"

namespace xlir {
namespace cuda {

// The model on CUDA device `index` (device.cuh's numbering of usable devices); throws with the
// reason when the device is not usable.
std::unique_ptr<DeviceBackend> make_model_backend(const Model& model, int index);

// Exact top-k inner-product search on device `index` over host arrays (search.h's contract and
// errors): uploads queries and corpus, runs cuda::search_topk, downloads scores and ids.
void search_topk_host(int index, const float* queries, int64_t nq, const float* corpus, int64_t nc, int64_t d, int64_t k,
                      float* scores, int32_t* ids);

// In-batch InfoNCE on device `index` over host arrays (infonce.h's contract); returns the loss.
float infonce_host(int index, float* dq, float* dp, const float* q, const float* p, int64_t nq, int64_t np, int64_t D,
                   float scale, bool symmetric);

}  // namespace cuda
}  // namespace xlir
