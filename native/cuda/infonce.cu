// Fused InfoNCE (infonce.cuh). Shapes: q [nq, D], p [np, D], S and dS [nq, np] (the same scratch),
// row log-sum-exps [nq], column log-sum-exps [nq], per-row losses [2 nq].
// Row and column kernels: one block of 256 threads per row (column); each thread keeps a running
// (max, sum of exp(s - max)) over its strided entries, and the block merges the pairs.
#include <cmath>

#include "common.cuh"
#include "infonce.cuh"
#include "matmul.cuh"

namespace xlir {
namespace cuda {

namespace {

const int kThreads = 256;

// Merge of two online-softmax states (m, s): the sum rescaled to the larger max.
__device__ __forceinline__ void lse_merge(float& m, float& s, float m2, float s2) {
  const float mn = fmaxf(m, m2);
  if (mn == -INFINITY) return;
  s = s * expf(m - mn) + s2 * expf(m2 - mn);
  m = mn;
}

// Log-sum-exp of n values at x[k * stride], k < n; every thread of the block gets it.
__device__ float block_lse(const float* x, int n, int64_t stride) {
  __shared__ float sm[32], ss[32];
  float m = -INFINITY, s = 0.f;
  for (int k = threadIdx.x; k < n; k += blockDim.x) {
    const float v = x[k * stride];
    if (v > m) {
      s = s * expf(m - v) + 1.f;
      m = v;
    } else {
      s += expf(v - m);
    }
  }
  for (int o = 16; o > 0; o >>= 1) lse_merge(m, s, __shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, s, o));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) sm[warp] = m, ss[warp] = s;
  __syncthreads();
  m = lane < int(blockDim.x >> 5) ? sm[lane] : -INFINITY;
  s = lane < int(blockDim.x >> 5) ? ss[lane] : 0.f;
  for (int o = 16; o > 0; o >>= 1) lse_merge(m, s, __shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, s, o));
  return m + logf(s);
}

// Row i (blockIdx.x < nq): lse over its np passages. Column j (blockIdx.x >= nq, symmetric): lse of
// passage j against the nq queries. loss_part[k] = lse - S[k, k] (label on the diagonal).
__global__ void __launch_bounds__(kThreads)
    infonce_lse_kernel(float* __restrict__ lse_row, float* __restrict__ lse_col,
                       float* __restrict__ loss_part, const float* __restrict__ S, int nq, int np) {
  const int b = blockIdx.x;
  if (b < nq) {
    const float l = block_lse(S + int64_t(b) * np, np, 1);
    if (threadIdx.x == 0) lse_row[b] = l, loss_part[b] = l - S[int64_t(b) * np + b];
  } else {
    const int j = b - nq;
    const float l = block_lse(S + j, nq, np);
    if (threadIdx.x == 0) lse_col[j] = l, loss_part[nq + j] = l - S[int64_t(j) * np + j];
  }
}

// S[i, j] <- dL/dS = w (softmax_row - onehot) + [symmetric, j < nq] w (softmax_col - onehot), in place.
__global__ void __launch_bounds__(kThreads)
    infonce_grad_kernel(float* S, const float* __restrict__ lse_row, const float* __restrict__ lse_col,
                        int nq, int np, bool symmetric, float w) {
  const int i = blockIdx.y;
  for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < np; j += gridDim.x * blockDim.x) {
    const float s = S[int64_t(i) * np + j];
    const float onehot = i == j ? 1.f : 0.f;
    float g = w * (expf(s - lse_row[i]) - onehot);
    if (symmetric && j < nq) g += w * (expf(s - lse_col[j]) - onehot);
    S[int64_t(i) * np + j] = g;
  }
}

// loss = w * sum of the parts, in index order (one thread: nq is at most a few thousand).
__global__ void __launch_bounds__(32)
    infonce_loss_kernel(float* loss, const float* __restrict__ loss_part, int n, double w) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  double s = 0;
  for (int k = 0; k < n; k++) s += double(loss_part[k]);
  *loss = float(w * s);
}

}  // namespace

int64_t infonce_scratch_floats(int64_t nq, int64_t np) { return nq * np + 4 * nq; }

void infonce_forward_backward(float* loss, float* dq, float* dp, const float* q, const float* p, int64_t nq, int64_t np,
                              int64_t D, float scale, bool symmetric, float* scratch, cudaStream_t stream) {
  XLIR_CHECK(nq >= 1 && np >= nq, "cuda infonce: need at least one query and at least as many passages as queries (got "
                                      << nq << " queries, " << np << " passages)");
  XLIR_CHECK(np < (int64_t(1) << 31) && nq < 65536 && D >= 1, "cuda infonce: sizes out of range (nq=" << nq << " np=" << np
                                                                                                        << " D=" << D << ")");
  XLIR_CHECK(loss && dq && dp && q && p && scratch, "cuda infonce: null pointer (scratch: infonce_scratch_floats)");
  float* S = scratch;
  float* lse_row = S + nq * np;
  float* lse_col = lse_row + nq;
  float* loss_part = lse_col + nq;

  Gemm g;  // S = scale q p^T
  g.transB = true;
  g.M = nq, g.N = np, g.K = D, g.lda = D, g.ldb = D, g.ldc = np, g.alpha = scale;
  gemm_f32(g, q, p, S, stream);

  infonce_lse_kernel<<<unsigned(symmetric ? 2 * nq : nq), kThreads, 0, stream>>>(lse_row, lse_col, loss_part, S, int(nq),
                                                                               int(np));
  XLIR_CUDA_LAUNCH_CHECK();
  // The CPU's weights: 1 / nq per row, halved for each of the two terms when symmetric.
  const double w = symmetric ? 0.5 / double(nq) : 1.0 / double(nq);
  infonce_loss_kernel<<<1, 32, 0, stream>>>(loss, loss_part, int(symmetric ? 2 * nq : nq), w);
  XLIR_CUDA_LAUNCH_CHECK();
  infonce_grad_kernel<<<dim3(ceil_div(np, kThreads) < 64 ? ceil_div(np, kThreads) : 64, unsigned(nq)), kThreads, 0,
                        stream>>>(S, lse_row, lse_col, int(nq), int(np), symmetric, float(w));
  XLIR_CUDA_LAUNCH_CHECK();

  Gemm a;  // dq = scale dS p
  a.M = nq, a.N = D, a.K = np, a.lda = np, a.ldb = D, a.ldc = D, a.alpha = scale;
  gemm_f32(a, S, p, dq, stream);
  Gemm b;  // dp = scale dS^T q
  b.transA = true;
  b.M = np, b.N = D, b.K = nq, b.lda = np, b.ldb = D, b.ldc = D, b.alpha = scale;
  gemm_f32(b, S, q, dp, stream);
}

}  // namespace cuda
}  // namespace xlir
