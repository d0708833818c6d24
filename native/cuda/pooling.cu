// Pooling and L2 normalisation kernels (pooling.cuh). Shapes: h, dh [T, C]; out, dout [B, C];
// offsets int32 [B + 1]. Pooling grid: (B, ceil(C / 128)); normalisation: a warp per row.
#include "common.cuh"
#include "pooling.cuh"

namespace xlir {
namespace cuda {

namespace {

const int kColumnThreads = 128;  // pooling: a thread per column

__global__ void __launch_bounds__(kColumnThreads)
    pool_forward_kernel(float* __restrict__ out, const float* __restrict__ h,
                        const int32_t* __restrict__ offsets, int C, bool mean) {
  const int c = blockIdx.y * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const int b = blockIdx.x;
  const int t0 = offsets[b], t1 = offsets[b + 1];
  float v = 0.f;
  if (!mean) {
    if (t1 > t0) v = h[int64_t(t0) * C + c];
  } else if (t1 > t0) {
    for (int t = t0; t < t1; t++) v += h[int64_t(t) * C + c];
    v *= 1.f / float(t1 - t0);
  }
  out[int64_t(b) * C + c] = v;
}

__global__ void __launch_bounds__(kColumnThreads)
    pool_backward_kernel(float* __restrict__ dh, const float* __restrict__ dout,
                         const int32_t* __restrict__ offsets, int C, bool mean) {
  const int c = blockIdx.y * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const int b = blockIdx.x;
  const int t0 = offsets[b], t1 = offsets[b + 1];
  if (t1 <= t0) return;
  const float g = dout[int64_t(b) * C + c];
  if (!mean) {
    dh[int64_t(t0) * C + c] += g;
    return;
  }
  const float gi = g * (1.f / float(t1 - t0));
  for (int t = t0; t < t1; t++) dh[int64_t(t) * C + c] += gi;
}

const int kRows = 8;

__global__ void __launch_bounds__(kRows * 32)
    l2norm_forward_kernel(float* __restrict__ y, float* __restrict__ norms, const float* __restrict__ x,
                          int64_t B, int D) {
  const int64_t r = int64_t(blockIdx.x) * kRows + (threadIdx.x >> 5);
  if (r >= B) return;
  const int lane = threadIdx.x & 31;
  const float* xr = x + r * D;
  double s = 0;  // the CPU sums squares in double
  for (int i = lane; i < D; i += 32) s += double(xr[i]) * xr[i];
  s = warp_sum(s);
  const float n = fmaxf(float(sqrt(s)), 1e-12f);
  for (int i = lane; i < D; i += 32) y[r * D + i] = xr[i] / n;
  if (lane == 0) norms[r] = n;
}

__global__ void __launch_bounds__(kRows * 32)
    l2norm_backward_kernel(float* dx, const float* dy, const float* __restrict__ y,
                           const float* __restrict__ norms, int64_t B, int D) {
  const int64_t r = int64_t(blockIdx.x) * kRows + (threadIdx.x >> 5);
  if (r >= B) return;
  const int lane = threadIdx.x & 31;
  float dot = 0.f;
  for (int i = lane; i < D; i += 32) dot += y[r * D + i] * dy[r * D + i];
  dot = warp_sum(dot);
  const float n = norms[r];
  for (int i = lane; i < D; i += 32) dx[r * D + i] = (dy[r * D + i] - y[r * D + i] * dot) / n;
}

void check(int64_t B, int64_t C, const char* what) {
  XLIR_CHECK(B >= 0 && B < (int64_t(1) << 31) && C >= 1 && C < (int64_t(1) << 30),
             what << ": bad shape [" << B << ", " << C << "]");
}

}  // namespace

void pool_forward(float* out, const float* h, const int32_t* offsets, int64_t B, int64_t C, PoolMode mode,
                  cudaStream_t stream) {
  check(B, C, "cuda pool_forward");
  if (B == 0) return;
  XLIR_CHECK(out && h && offsets, "cuda pool_forward: null pointer");
  pool_forward_kernel<<<dim3(unsigned(B), ceil_div(C, kColumnThreads)), kColumnThreads, 0, stream>>>(
      out, h, offsets, int(C), mode == PoolMode::Mean);
  XLIR_CUDA_LAUNCH_CHECK();
}

void pool_backward(float* dh, const float* dout, const int32_t* offsets, int64_t B, int64_t C, PoolMode mode,
                   cudaStream_t stream) {
  check(B, C, "cuda pool_backward");
  if (B == 0) return;
  XLIR_CHECK(dh && dout && offsets, "cuda pool_backward: null pointer");
  pool_backward_kernel<<<dim3(unsigned(B), ceil_div(C, kColumnThreads)), kColumnThreads, 0, stream>>>(
      dh, dout, offsets, int(C), mode == PoolMode::Mean);
  XLIR_CUDA_LAUNCH_CHECK();
}

void l2norm_forward(float* y, float* norms, const float* x, int64_t B, int64_t D, cudaStream_t stream) {
  check(B, D, "cuda l2norm_forward");
  if (B == 0) return;
  XLIR_CHECK(y && norms && x, "cuda l2norm_forward: null pointer");
  l2norm_forward_kernel<<<ceil_div(B, kRows), kRows * 32, 0, stream>>>(y, norms, x, B, int(D));
  XLIR_CUDA_LAUNCH_CHECK();
}

void l2norm_backward(float* dx, const float* dy, const float* y, const float* norms, int64_t B, int64_t D,
                     cudaStream_t stream) {
  check(B, D, "cuda l2norm_backward");
  if (B == 0) return;
  XLIR_CHECK(dx && dy && y && norms, "cuda l2norm_backward: null pointer");
  l2norm_backward_kernel<<<ceil_div(B, kRows), kRows * 32, 0, stream>>>(dx, dy, y, norms, B, int(D));
  XLIR_CUDA_LAUNCH_CHECK();
}

}  // namespace cuda
}  // namespace xlir
