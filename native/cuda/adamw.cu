// AdamW and global-norm kernels (adamw.cuh). Flat fp32 arrays; grid-stride loops.
// global_norm: per range a fixed grid of 64 blocks writes 64 partial sums (double), then one block
// adds all partials in index order and derives the norm and clip coefficient.
#include <cmath>

#include "adamw.cuh"
#include "common.cuh"

namespace xlir {
namespace cuda {

namespace {

const int kThreads = 256;
const int kNormBlocks = 64;
const int kFinishThreads = 1024;  // one block sums the partial sums

__global__ void __launch_bounds__(kThreads)
    sum_squares_partial_kernel(double* __restrict__ partial, const float* __restrict__ g, int64_t n) {
  __shared__ double sh[32];
  double s = 0;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    s += double(g[i]) * g[i];
  s = block_sum(s, sh);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ void __launch_bounds__(kFinishThreads)
    norm_finish_kernel(float* norm, float* clip_scale, const double* __restrict__ partial, int64_t n,
                       float max_norm) {
  __shared__ double sh[32];
  // Each thread sums a contiguous stretch in order; the block sum is in a fixed order too.
  const int64_t per = (n + blockDim.x - 1) / blockDim.x;
  double s = 0;
  for (int64_t i = threadIdx.x * per; i < n && i < (threadIdx.x + 1) * per; i++) s += partial[i];
  s = block_sum(s, sh);
  if (threadIdx.x == 0) {
    const double nrm = sqrt(s);
    *norm = float(nrm);
    if (clip_scale) {
      float scale = 1.f;
      if (max_norm > 0.f) {
        const float coef = float(double(max_norm) / (nrm + 1e-6));
        scale = coef < 1.f ? coef : 1.f;
      }
      *clip_scale = scale;
    }
  }
}

// One block per listed row at a time (grid-stride over rows), threads across the row.
__global__ void __launch_bounds__(kThreads)
    sum_squares_rows_partial_kernel(double* __restrict__ partial, const float* __restrict__ g,
                                    const int32_t* __restrict__ rows, int64_t num_rows, int64_t width) {
  __shared__ double sh[32];
  double s = 0;
  for (int64_t r = blockIdx.x; r < num_rows; r += gridDim.x) {
    const float* row = g + int64_t(rows[r]) * width;
    for (int64_t i = threadIdx.x; i < width; i += blockDim.x) s += double(row[i]) * row[i];
  }
  s = block_sum(s, sh);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// The element update shared by the dense and the row kernels: the CPU's expressions in the CPU's
// order (adamw.cc), so a step matches it to rounding.
__device__ __forceinline__ void adamw_element(float* __restrict__ p, __nv_bfloat16* __restrict__ p16,
                                              const float* __restrict__ g, float* __restrict__ m,
                                              float* __restrict__ v, int64_t i, float gs, float beta1, float beta2,
                                              float eps, float decay, float step_size, float bc2_sqrt) {
  const float gi = g[i] * gs;
  float pi = p[i] * decay;
  float mi = m[i];
  mi += (gi - mi) * (1.f - beta1);
  const float vi = v[i] * beta2 + (1.f - beta2) * gi * gi;
  const float denom = sqrtf(vi) / bc2_sqrt + eps;
  pi -= step_size * mi / denom;
  p[i] = pi;
  m[i] = mi;
  v[i] = vi;
  if (p16) p16[i] = to_bf16(pi);
}

__global__ void __launch_bounds__(kThreads)
    adamw_rows_kernel(float* __restrict__ p, __nv_bfloat16* __restrict__ p16, const float* __restrict__ g,
                      float* __restrict__ m, float* __restrict__ v, const int32_t* __restrict__ rows,
                      int64_t num_rows, int64_t width, float beta1, float beta2, float eps, float decay,
                      float step_size, float bc2_sqrt, const float* __restrict__ grad_scale) {
  const float gs = grad_scale ? *grad_scale : 1.f;
  for (int64_t r = blockIdx.x; r < num_rows; r += gridDim.x) {
    const int64_t o = int64_t(rows[r]) * width;
    for (int64_t i = o + threadIdx.x; i < o + width; i += blockDim.x)
      adamw_element(p, p16, g, m, v, i, gs, beta1, beta2, eps, decay, step_size, bc2_sqrt);
  }
}

__global__ void __launch_bounds__(kThreads)
    adamw_kernel(float* __restrict__ p, __nv_bfloat16* __restrict__ p16, const float* __restrict__ g,
                 float* __restrict__ m, float* __restrict__ v, int64_t n, float lr, float beta1, float beta2,
                 float eps, float decay, float step_size, float bc2_sqrt, const float* __restrict__ grad_scale) {
  const float gs = grad_scale ? *grad_scale : 1.f;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    adamw_element(p, p16, g, m, v, i, gs, beta1, beta2, eps, decay, step_size, bc2_sqrt);
}

// Host-side constants exactly as adamw.cc computes them.
struct StepConstants {
  float step_size, bc2_sqrt, decay;
  StepConstants(float lr, float beta1, float beta2, float weight_decay, int64_t t) {
    const float bc1 = 1.f - float(std::pow(double(beta1), double(t)));
    const float bc2 = 1.f - float(std::pow(double(beta2), double(t)));
    step_size = lr / bc1;
    bc2_sqrt = std::sqrt(bc2);
    decay = 1.f - lr * weight_decay;
  }
};

}  // namespace

int64_t global_norm_scratch_doubles(int64_t ranges) { return ranges * kNormBlocks; }

void global_norm(float* norm, float* clip_scale, const float* g, const int64_t* begin, const int64_t* size,
                 int64_t ranges, float max_norm, double* scratch, cudaStream_t stream) {
  XLIR_CHECK(ranges >= 0 && (ranges == 0 || (begin && size)), "cuda global_norm: bad ranges");
  XLIR_CHECK(norm && scratch && (ranges == 0 || g), "cuda global_norm: null pointer (scratch: global_norm_scratch_doubles)");
  for (int64_t r = 0; r < ranges; r++) {
    XLIR_CHECK(begin[r] >= 0 && size[r] >= 0, "cuda global_norm: range " << r << " is negative");
    if (size[r] == 0) {
      XLIR_CUDA_CHECK(cudaMemsetAsync(scratch + r * kNormBlocks, 0, kNormBlocks * sizeof(double), stream));
      continue;
    }
    sum_squares_partial_kernel<<<kNormBlocks, kThreads, 0, stream>>>(scratch + r * kNormBlocks, g + begin[r], size[r]);
    XLIR_CUDA_LAUNCH_CHECK();
  }
  norm_finish_kernel<<<1, kFinishThreads, 0, stream>>>(norm, clip_scale, scratch, ranges * kNormBlocks, max_norm);
  XLIR_CUDA_LAUNCH_CHECK();
}

void adamw_update(float* p, __nv_bfloat16* p16, const float* g, float* m, float* v, int64_t n, float lr, float beta1,
                  float beta2, float eps, float weight_decay, const float* grad_scale, int64_t t, cudaStream_t stream) {
  XLIR_CHECK(n >= 0 && t >= 1, "cuda adamw_update: bad n " << n << " or step " << t);
  if (n == 0) return;
  XLIR_CHECK(p && g && m && v, "cuda adamw_update: null pointer");
  const StepConstants c(lr, beta1, beta2, weight_decay, t);
  int64_t blocks = (n + kThreads - 1) / kThreads;
  if (blocks > 65536 * 4) blocks = 65536 * 4;
  adamw_kernel<<<unsigned(blocks), kThreads, 0, stream>>>(p, p16, g, m, v, n, lr, beta1, beta2, eps, c.decay,
                                                           c.step_size, c.bc2_sqrt, grad_scale);
  XLIR_CUDA_LAUNCH_CHECK();
}

void adamw_update_rows(float* p, __nv_bfloat16* p16, const float* g, float* m, float* v, const int32_t* rows,
                       int64_t num_rows, int64_t width, float lr, float beta1, float beta2, float eps,
                       float weight_decay, const float* grad_scale, int64_t t, cudaStream_t stream) {
  XLIR_CHECK(num_rows >= 0 && width > 0 && t >= 1,
             "cuda adamw_update_rows: bad rows " << num_rows << ", width " << width << " or step " << t);
  if (num_rows == 0) return;
  XLIR_CHECK(p && g && m && v && rows, "cuda adamw_update_rows: null pointer");
  const StepConstants c(lr, beta1, beta2, weight_decay, t);
  const int64_t blocks = num_rows < 65536 ? num_rows : 65536;
  adamw_rows_kernel<<<unsigned(blocks), kThreads, 0, stream>>>(p, p16, g, m, v, rows, num_rows, width, beta1, beta2,
                                                                eps, c.decay, c.step_size, c.bc2_sqrt, grad_scale);
  XLIR_CUDA_LAUNCH_CHECK();
}

void sum_squares_rows_partial(double* partial, const float* g, const int32_t* rows, int64_t num_rows, int64_t width,
                              cudaStream_t stream) {
  XLIR_CHECK(partial && num_rows >= 0 && width > 0 && (num_rows == 0 || (g && rows)),
             "cuda sum_squares_rows_partial: bad arguments");
  if (num_rows == 0) {
    XLIR_CUDA_CHECK(cudaMemsetAsync(partial, 0, kNormBlocks * sizeof(double), stream));
    return;
  }
  sum_squares_rows_partial_kernel<<<kNormBlocks, kThreads, 0, stream>>>(partial, g, rows, num_rows, width);
  XLIR_CUDA_LAUNCH_CHECK();
}

void norm_from_partials(float* norm, float* clip_scale, const double* partial, int64_t count, float max_norm,
                        cudaStream_t stream) {
  XLIR_CHECK(norm && partial && count > 0 && count % kNormBlocks == 0, "cuda norm_from_partials: bad arguments");
  norm_finish_kernel<<<1, kFinishThreads, 0, stream>>>(norm, clip_scale, partial, count, max_norm);
  XLIR_CUDA_LAUNCH_CHECK();
}

}  // namespace cuda
}  // namespace xlir
