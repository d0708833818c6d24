// Exact top-k search kernels (search.cuh). Buffer layout per query row r of a query block:
// buf[r * ldb + j], ldb = k + corpus block: columns [0, kprev) the running best (ids in prev_ids,
// sorted by score then id), columns [k, k + cn) the scores of corpus rows c0 .. c0 + cn - 1 written
// by the product. Entry e < kprev is column e; entry e >= kprev is column k + e - kprev. Equal scores
// therefore appear in increasing corpus index along e: earlier blocks' ids are all below c0, and the
// running best lists equal scores by increasing id.
#include <climits>
#include <cstring>

#include "common.cuh"
#include "matmul.cuh"
#include "search.cuh"

namespace xlir {
namespace cuda {

namespace {

const int kThreads = 256;

// Order-preserving image of a float: a > b (as floats, -0 == +0) iff key(a) > key(b).
__device__ __forceinline__ uint32_t order_key(float x) {
  const uint32_t b = __float_as_uint(x + 0.f);  // -0 becomes +0
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

// a ranks before b: higher score, then lower id.
__device__ __forceinline__ bool ranks_before(float sa, int32_t ia, float sb, int32_t ib) {
  return sa > sb || (sa == sb && ia < ib);
}

__global__ void __launch_bounds__(kThreads)
    topk_select_kernel(float* __restrict__ buf, int64_t ldb, int32_t* __restrict__ prev_ids, int k, int kprev, int cn,
                       int c0, int kk, float* __restrict__ out_scores, int32_t* __restrict__ out_ids) {
  __shared__ int hist[256];
  __shared__ float cs[kMaxSearchK];
  __shared__ int32_t ci[kMaxSearchK];
  __shared__ uint32_t sh_prefix;
  __shared__ int sh_need, sh_gt_count, sh_warp_eq[kThreads / 32], sh_eq_base;
  const int r = blockIdx.x, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  float* row = buf + int64_t(r) * ldb;
  int32_t* pids = prev_ids + int64_t(r) * k;
  const int n = kprev + cn;
  auto col = [&](int e) { return e < kprev ? e : k + e - kprev; };
  auto id_of = [&](int e) { return e < kprev ? pids[e] : c0 + (e - kprev); };

  // 1. Radix select: the key of the kk-th best entry.
  uint32_t prefix = 0, mask = 0;
  int need = kk;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int b = tid; b < 256; b += blockDim.x) hist[b] = 0;
    __syncthreads();
    for (int e = tid; e < n; e += blockDim.x) {
      const uint32_t u = order_key(row[col(e)]);
      if ((u & mask) == prefix) atomicAdd(&hist[(u >> shift) & 255u], 1);
    }
    __syncthreads();
    if (tid == 0) {
      int cum = 0, b = 255;
      for (; b > 0; b--) {
        if (cum + hist[b] >= need) break;
        cum += hist[b];
      }
      sh_prefix = prefix | (uint32_t(b) << shift);
      sh_need = need - cum;
    }
    __syncthreads();
    prefix = sh_prefix;
    need = sh_need;
    mask |= 255u << shift;
  }
  // Now: `need` entries equal to the threshold key are taken, and all kk - need entries above it.
  const uint32_t thr = prefix;
  const int n_gt = kk - need;

  // 2. Gather: entries above the threshold in any order, equal ones in position order.
  if (tid == 0) sh_gt_count = 0, sh_eq_base = 0;
  __syncthreads();
  for (int base = 0; base < n; base += blockDim.x) {
    const int e = base + tid;
    float sc = 0.f;
    uint32_t u = 0;
    if (e < n) {
      sc = row[col(e)];
      u = order_key(sc);
      if (u > thr) {
        const int slot = atomicAdd(&sh_gt_count, 1);
        cs[slot] = sc;
        ci[slot] = id_of(e);
      }
    }
    const bool eq = e < n && u == thr;
    const unsigned ballot = __ballot_sync(0xffffffffu, eq);
    if (lane == 0) sh_warp_eq[warp] = __popc(ballot);
    __syncthreads();
    int before = sh_eq_base, total = 0;
    for (int w = 0; w < int(blockDim.x >> 5); w++) {
      if (w < warp) before += sh_warp_eq[w];
      total += sh_warp_eq[w];
    }
    before += __popc(ballot & ((1u << lane) - 1u));
    if (eq && before < need) {
      cs[n_gt + before] = sc;
      ci[n_gt + before] = id_of(e);
    }
    __syncthreads();  // everyone has read sh_eq_base and sh_warp_eq
    if (tid == 0) sh_eq_base += total;
    __syncthreads();
  }

  // 3. Bitonic sort of the kk winners (padded to a power of two with entries that rank last).
  int P = 1;
  while (P < kk) P <<= 1;
  for (int i = kk + tid; i < P; i += blockDim.x) cs[i] = -INFINITY, ci[i] = INT_MAX;
  __syncthreads();
  for (int size = 2; size <= P; size <<= 1) {
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      for (int t = tid; t < P / 2; t += blockDim.x) {
        const int i = 2 * stride * (t / stride) + (t % stride), j = i + stride;
        const bool up = (i & size) == 0;  // this pair's run sorts best-first
        const bool swap = up ? ranks_before(cs[j], ci[j], cs[i], ci[i]) : ranks_before(cs[i], ci[i], cs[j], ci[j]);
        if (swap) {
          const float s = cs[i];
          cs[i] = cs[j], cs[j] = s;
          const int32_t x = ci[i];
          ci[i] = ci[j], ci[j] = x;
        }
      }
      __syncthreads();
    }
  }

  // 4. The new running best (or the result, on the last corpus block).
  for (int i = tid; i < kk; i += blockDim.x) {
    if (out_scores) {
      out_scores[int64_t(r) * k + i] = cs[i];
      out_ids[int64_t(r) * k + i] = ci[i];
    } else {
      row[i] = cs[i];
      pids[i] = ci[i];
    }
  }
}

// first[0] = min over i of the flat index of a non-finite x[i] (unchanged when all are finite).
__global__ void __launch_bounds__(kThreads)
    first_nonfinite_kernel(unsigned long long* first, const float* __restrict__ x, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    if (!isfinite(x[i])) atomicMin(first, (unsigned long long)i);
}

size_t align_up(size_t x) { return (x + 255) & ~size_t(255); }

void check_finite_device(const float* x, int64_t n, int64_t d, const char* what, unsigned long long* flag,
                         cudaStream_t stream) {
  if (n * d == 0) return;
  const unsigned long long none = ~0ull;
  XLIR_CUDA_CHECK(cudaMemcpyAsync(flag, &none, sizeof none, cudaMemcpyHostToDevice, stream));
  int64_t blocks = (n * d + kThreads - 1) / kThreads;
  first_nonfinite_kernel<<<unsigned(blocks < 4096 ? blocks : 4096), kThreads, 0, stream>>>(flag, x, n * d);
  XLIR_CUDA_LAUNCH_CHECK();
  unsigned long long first = 0;
  XLIR_CUDA_CHECK(cudaMemcpyAsync(&first, flag, sizeof first, cudaMemcpyDeviceToHost, stream));
  XLIR_CUDA_CHECK(cudaStreamSynchronize(stream));
  if (first == none) return;
  float v = 0.f;
  XLIR_CUDA_CHECK(cudaMemcpy(&v, x + first, sizeof v, cudaMemcpyDeviceToHost));
  XLIR_CHECK(false, what << " holds a non-finite value (" << v << ") at row " << int64_t(first) / d << ", column "
                         << int64_t(first) % d);
}

}  // namespace

size_t search_scratch_bytes(int64_t nq, int64_t k, const SearchBlocks& blocks) {
  const int64_t qb = nq < blocks.queries ? nq : blocks.queries;
  return align_up(size_t(qb) * size_t(k + blocks.corpus) * sizeof(float)) + align_up(size_t(qb) * size_t(k) * 4) + 256;
}

void search_topk(const float* queries, int64_t nq, const float* corpus, int64_t nc, int64_t d, int64_t k, float* scores,
                 int32_t* ids, void* scratch, size_t scratch_bytes, cudaStream_t stream, const SearchBlocks& blocks) {
  check_search_shape(nq, nc, d, k, "search_topk");
  XLIR_CHECK(k <= kMaxSearchK, "search_topk on CUDA: k = " << k << " exceeds " << kMaxSearchK);
  XLIR_CHECK(blocks.queries >= 1 && blocks.corpus >= 1 && blocks.queries < 65536,
             "search_topk on CUDA: bad blocks " << blocks.queries << " x " << blocks.corpus);
  XLIR_CHECK(scratch && scratch_bytes >= search_scratch_bytes(nq, k, blocks),
             "search_topk on CUDA: scratch of " << scratch_bytes << " bytes, need " << search_scratch_bytes(nq, k, blocks));
  if (nq == 0) return;
  XLIR_CHECK(queries && corpus && scores && ids, "search_topk on CUDA: null pointer");
  const int64_t qb = nq < blocks.queries ? nq : blocks.queries, cb = blocks.corpus;
  const int64_t ldb = k + cb;
  char* base = static_cast<char*>(scratch);
  float* buf = reinterpret_cast<float*>(base);
  int32_t* prev_ids = reinterpret_cast<int32_t*>(base + align_up(size_t(qb) * size_t(ldb) * sizeof(float)));
  auto* flag = reinterpret_cast<unsigned long long*>(reinterpret_cast<char*>(prev_ids) + align_up(size_t(qb) * size_t(k) * 4));
  check_finite_device(queries, nq, d, "search_topk: queries", flag, stream);
  check_finite_device(corpus, nc, d, "search_topk: corpus", flag, stream);

  for (int64_t q0 = 0; q0 < nq; q0 += qb) {
    const int64_t qn = nq - q0 < qb ? nq - q0 : qb;
    int kprev = 0;
    for (int64_t c0 = 0; c0 < nc; c0 += cb) {
      const int64_t cn = nc - c0 < cb ? nc - c0 : cb;
      Gemm g;  // buf[:, k .. k + cn) = Q_block C_block^T
      g.transB = true;
      g.M = qn, g.N = cn, g.K = d, g.lda = d, g.ldb = d, g.ldc = ldb;
      gemm_f32(g, queries + q0 * d, corpus + c0 * d, buf + k, stream);
      const bool last = c0 + cn >= nc;
      const int kk = int(k < kprev + cn ? k : kprev + cn);
      topk_select_kernel<<<unsigned(qn), kThreads, 0, stream>>>(buf, ldb, prev_ids, int(k), kprev, int(cn), int(c0), kk,
                                                                last ? scores + q0 * k : nullptr,
                                                                last ? ids + q0 * k : nullptr);
      XLIR_CUDA_LAUNCH_CHECK();
      kprev = kk;
    }
  }
}

void score_matrix(const float* queries, int64_t nq, const float* corpus, int64_t nc, int64_t d, float* out,
                  cudaStream_t stream) {
  XLIR_CHECK(d >= 1 && nq >= 0 && nc >= 0, "score_matrix on CUDA: bad sizes");
  if (nq == 0 || nc == 0) return;
  XLIR_CHECK(queries && corpus && out, "score_matrix on CUDA: null pointer");
  Gemm g;
  g.transB = true;
  g.M = nq, g.N = nc, g.K = d, g.lda = d, g.ldb = d, g.ldc = nc;
  gemm_f32(g, queries, corpus, out, stream);
}

}  // namespace cuda
}  // namespace xlir
