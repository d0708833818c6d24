// Shared helpers of the CUDA kernels (included by native/cuda/*.cu only, never by host-only code):
// error checks that throw xlir::Error, warp and block reductions, bf16 conversion, and the
// counter-based hash of common.h reproduced bit for bit on the device, so a GPU dropout mask equals
// the CPU one for the same (site, key, index) and the two engines can be compared with dropout on.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "../common.h"

namespace xlir {
namespace cuda {

// A failed CUDA call or launch becomes an xlir::Error naming the call, the CUDA error and the place.
#define XLIR_CUDA_CHECK(call)                                                                       \
  do {                                                                                            \
    cudaError_t xlir_e_ = (call);                                                                 \
    XLIR_CHECK(xlir_e_ == cudaSuccess, "CUDA error " << cudaGetErrorName(xlir_e_) << " (" << cudaGetErrorString(xlir_e_) \
                                                     << ") in " #call " at " << __FILE__ << ":" << __LINE__); \
  } while (0)
// After a <<<...>>> launch: configuration errors surface here, execution errors at the next sync.
#define XLIR_CUDA_LAUNCH_CHECK() XLIR_CUDA_CHECK(cudaGetLastError())

inline int ceil_div(int64_t a, int64_t b) { return int((a + b - 1) / b); }

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ double warp_sum(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// `shared` holds 32 values; the function may be called repeatedly (it syncs before reuse).
template <typename T>
__device__ __forceinline__ T block_sum(T v, T* shared) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  T r = lane < nw ? shared[lane] : T(0);
  return warp_sum(r);
}

__device__ __forceinline__ __nv_bfloat16 to_bf16(float x) { return __float2bfloat16_rn(x); }
__device__ __forceinline__ float from_bf16(__nv_bfloat16 x) { return __bfloat162float(x); }

// common.h's mix64 / hash_key / uniform01, on the device (same constants, same bits).
__device__ __forceinline__ uint64_t d_mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}
__device__ __forceinline__ uint64_t d_hash_key(uint64_t a, uint64_t b) { return d_mix64(a ^ d_mix64(b)); }
__device__ __forceinline__ float d_uniform01(uint64_t key, uint64_t index) {
  return float(d_mix64(key ^ (index * 0xD6E8FEB86659FD93ULL)) >> 40) * (1.0f / 16777216.0f);
}
__device__ __forceinline__ bool d_dropout_keep(uint64_t row_key, uint64_t feature, float p) {
  return d_uniform01(row_key, feature) >= p;
}

}  // namespace cuda
}  // namespace xlir
