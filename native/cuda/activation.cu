// Element-wise kernels (activation.cuh): grid-stride loops over flat arrays, coalesced; the column
// sums of the bias gradient as in layernorm.cu (partial sums per 64-row chunk, then per column).
#include "activation.cuh"
#include "common.cuh"

namespace xlir {
namespace cuda {

namespace {

const int kThreads = 256;
const int kChunkRows = 64;
const int kColumnThreads = 128;  // the column-sum kernels: a thread per column

int grid_for(int64_t n) {
  int64_t b = (n + kThreads - 1) / kThreads;
  return int(b < 65536 * 8 ? b : 65536 * 8);  // grid-stride beyond that
}

__device__ __forceinline__ float gelu(float v) { return 0.5f * v * (1.f + erff(v * 0.70710678118654752f)); }
__device__ __forceinline__ float gelu_grad(float v) {
  const float cdf = 0.5f * (1.f + erff(v * 0.70710678118654752f));
  const float pdf = 0.3989422804014327f * expf(-0.5f * v * v);
  return cdf + v * pdf;
}

__global__ void __launch_bounds__(kThreads)
    bias_gelu_forward_kernel(float* pre, float* __restrict__ y, __nv_bfloat16* __restrict__ y16, const float* x,
                             const float* __restrict__ bias, int64_t n, int C) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    float v = x[i] + (bias ? bias[i % C] : 0.f);
    if (pre) pre[i] = v;
    float g = gelu(v);
    if (y) y[i] = g;
    if (y16) y16[i] = to_bf16(g);
  }
}

// A thread per column of a kChunkRows-row chunk (coalesced across the warp): dx, its bf16 copy and
// the chunk's column sum in one pass, the sum in row order as column_partial_kernel takes it. Rows
// go kUnroll at a time, all loads before the stores: dx may alias dy, which only allows the same
// element to be read and then written, and independent loads keep more of them in flight.
const int kUnroll = 4;
__global__ void __launch_bounds__(kColumnThreads)
    gelu_backward_kernel(float* dx, __nv_bfloat16* __restrict__ dx16, float* __restrict__ partial, const float* dy,
                         const float* __restrict__ pre, int64_t N, int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const int64_t r0 = int64_t(blockIdx.y) * kChunkRows, r1 = min(N, r0 + kChunkRows);
  float s = 0.f;
  for (int64_t r = r0; r < r1; r += kUnroll) {
    float g[kUnroll], q[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; u++)
      if (r + u < r1) g[u] = dy[(r + u) * C + c], q[u] = pre[(r + u) * C + c];
#pragma unroll
    for (int u = 0; u < kUnroll; u++)
      if (r + u < r1) {
        const float v = g[u] * gelu_grad(q[u]);
        if (dx) dx[(r + u) * C + c] = v;
        if (dx16) dx16[(r + u) * C + c] = to_bf16(v);
        s += v;
      }
  }
  if (partial) partial[int64_t(blockIdx.y) * C + c] = s;
}

__global__ void __launch_bounds__(kColumnThreads)
    column_partial_kernel(float* __restrict__ partial, const float* __restrict__ dy, int64_t N, int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const int64_t r0 = int64_t(blockIdx.y) * kChunkRows, r1 = min(N, r0 + kChunkRows);
  float s = 0.f;
  for (int64_t r = r0; r < r1; r++) s += dy[r * C + c];
  partial[int64_t(blockIdx.y) * C + c] = s;
}

__global__ void __launch_bounds__(kColumnThreads)
    column_reduce_kernel(float* __restrict__ dbias, const float* __restrict__ partial, int chunks, int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  double s = 0;
  for (int k = 0; k < chunks; k++) s += partial[int64_t(k) * C + c];
  dbias[c] += float(s);
}

__global__ void __launch_bounds__(kThreads) tanh_forward_kernel(float* y, const float* x, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = tanhf(x[i]);
}
__global__ void __launch_bounds__(kThreads)
    tanh_backward_kernel(float* dx, const float* dy, const float* y, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dx[i] = dy[i] * (1.f - y[i] * y[i]);
}

// One block row per matrix row (keys hashed once per row), columns across threads.
__global__ void __launch_bounds__(kThreads)
    dropout_rows_kernel(float* y, const float* x, int C, float p, float scale, uint64_t site,
                        const uint64_t* __restrict__ row_keys) {
  const int64_t r = blockIdx.x;
  const uint64_t rk = d_hash_key(site, row_keys[r]);
  for (int c = blockIdx.y * blockDim.x + threadIdx.x; c < C; c += gridDim.y * blockDim.x)
    y[r * C + c] = d_dropout_keep(rk, uint64_t(c), p) ? x[r * C + c] * scale : 0.f;
}

__global__ void __launch_bounds__(kThreads)
    to_bf16_kernel(__nv_bfloat16* __restrict__ dst, const float* __restrict__ src, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = to_bf16(src[i]);
}

void check_shape(int64_t N, int64_t C, const char* what) {
  XLIR_CHECK(N >= 0 && C >= 1 && C < (int64_t(1) << 30), what << ": bad shape [" << N << ", " << C << "]");
}

}  // namespace

void bias_gelu_forward(float* pre, float* y, __nv_bfloat16* y16, const float* x, const float* bias, int64_t N, int64_t C,
                       cudaStream_t stream) {
  check_shape(N, C, "cuda bias_gelu_forward");
  XLIR_CHECK((y || y16) && x, "cuda bias_gelu_forward: null pointer (x, and y or y16, are needed)");
  XLIR_CHECK(pre || !bias, "cuda bias_gelu_forward: with a bias, pre (x + bias, kept for backward) must be given");
  if (N == 0) return;
  bias_gelu_forward_kernel<<<grid_for(N * C), kThreads, 0, stream>>>(pre, y, y16, x, bias, N * C, int(C));
  XLIR_CUDA_LAUNCH_CHECK();
}

int64_t bias_backward_scratch_floats(int64_t N, int64_t C) { return C * ((N + kChunkRows - 1) / kChunkRows); }

void bias_backward(float* dbias, const float* dy, int64_t N, int64_t C, float* scratch, cudaStream_t stream) {
  check_shape(N, C, "cuda bias_backward");
  XLIR_CHECK(dbias && dy && scratch, "cuda bias_backward: null pointer (scratch: bias_backward_scratch_floats)");
  if (N == 0) return;
  const int chunks = ceil_div(N, kChunkRows);
  XLIR_CHECK(chunks < 65536, "cuda bias_backward: " << N << " rows exceed " << 65535 * kChunkRows);
  column_partial_kernel<<<dim3(ceil_div(C, kColumnThreads), chunks), kColumnThreads, 0, stream>>>(scratch, dy, N,
                                                                                            int(C));
  XLIR_CUDA_LAUNCH_CHECK();
  column_reduce(dbias, scratch, chunks, C, stream);
}

void column_reduce(float* dbias, const float* partial, int64_t parts, int64_t C, cudaStream_t stream) {
  check_shape(parts, C, "cuda column_reduce");
  XLIR_CHECK(dbias && (parts == 0 || partial), "cuda column_reduce: null pointer");
  XLIR_CHECK(parts < (int64_t(1) << 31), "cuda column_reduce: " << parts << " partial rows");
  column_reduce_kernel<<<ceil_div(C, kColumnThreads), kColumnThreads, 0, stream>>>(dbias, partial, int(parts), int(C));
  XLIR_CUDA_LAUNCH_CHECK();
}

void bias_gelu_backward(float* dx, __nv_bfloat16* dx16, float* dbias, const float* dy, const float* pre, int64_t N,
                        int64_t C, float* scratch, cudaStream_t stream) {
  check_shape(N, C, "cuda bias_gelu_backward");
  XLIR_CHECK((dx || dx16) && dy && pre, "cuda bias_gelu_backward: null pointer (dy, pre, and dx or dx16, are needed)");
  XLIR_CHECK(!dbias || scratch, "cuda bias_gelu_backward: dbias needs scratch (bias_backward_scratch_floats)");
  if (N == 0) return;
  const int chunks = ceil_div(N, kChunkRows);
  XLIR_CHECK(chunks < 65536, "cuda bias_gelu_backward: " << N << " rows exceed " << 65535 * kChunkRows);
  gelu_backward_kernel<<<dim3(ceil_div(C, kColumnThreads), chunks), kColumnThreads, 0, stream>>>(
      dx, dx16, dbias ? scratch : nullptr, dy, pre, N, int(C));
  XLIR_CUDA_LAUNCH_CHECK();
  if (dbias) column_reduce(dbias, scratch, chunks, C, stream);
}

void tanh_forward(float* y, const float* x, int64_t n, cudaStream_t stream) {
  XLIR_CHECK(n >= 0 && (n == 0 || (y && x)), "cuda tanh_forward: bad arguments");
  if (n == 0) return;
  tanh_forward_kernel<<<grid_for(n), kThreads, 0, stream>>>(y, x, n);
  XLIR_CUDA_LAUNCH_CHECK();
}

void tanh_backward(float* dx, const float* dy, const float* y, int64_t n, cudaStream_t stream) {
  XLIR_CHECK(n >= 0 && (n == 0 || (dx && dy && y)), "cuda tanh_backward: bad arguments");
  if (n == 0) return;
  tanh_backward_kernel<<<grid_for(n), kThreads, 0, stream>>>(dx, dy, y, n);
  XLIR_CUDA_LAUNCH_CHECK();
}

void dropout_rows(float* y, const float* x, int64_t N, int64_t C, float p, uint64_t site, const uint64_t* row_keys,
                  cudaStream_t stream) {
  check_shape(N, C, "cuda dropout_rows");
  XLIR_CHECK(p >= 0.f && p < 1.f, "cuda dropout_rows: p must be in [0, 1) (got " << p << ")");
  XLIR_CHECK(y && x, "cuda dropout_rows: null pointer");
  if (N == 0) return;
  if (p == 0.f) {
    if (y != x) XLIR_CUDA_CHECK(cudaMemcpyAsync(y, x, size_t(N * C) * sizeof(float), cudaMemcpyDeviceToDevice, stream));
    return;
  }
  XLIR_CHECK(row_keys, "cuda dropout_rows: row keys needed when p > 0");
  XLIR_CHECK(N < (int64_t(1) << 31), "cuda dropout_rows: too many rows");
  dropout_rows_kernel<<<dim3(unsigned(N), ceil_div(C, kThreads) < 8 ? ceil_div(C, kThreads) : 8), kThreads, 0, stream>>>(
      y, x, int(C), p, 1.f / (1.f - p), site, row_keys);
  XLIR_CUDA_LAUNCH_CHECK();
}

void to_bf16(__nv_bfloat16* dst, const float* src, int64_t n, cudaStream_t stream) {
  XLIR_CHECK(n >= 0 && (n == 0 || (dst && src)), "cuda to_bf16: bad arguments");
  if (n == 0) return;
  to_bf16_kernel<<<grid_for(n), kThreads, 0, stream>>>(dst, src, n);
  XLIR_CUDA_LAUNCH_CHECK();
}

}  // namespace cuda
}  // namespace xlir
