// Packed multi-head attention on tensor cores (attention_tc.cuh).
// Shapes: qkv [T, 3H], ctx and dctx [T, H], lse and D [T, heads], offsets int32 [B + 1]; d = H / heads
// in {32, 64, 128}. Grid: (ceil(max_len / 64), B, heads); a block of 4 warps takes 64 rows (queries,
// or keys in the dk/dv kernel) of one sequence and head, warp w rows [16 w, 16 w + 16); blocks past a
// short sequence's end exit before any barrier, so a batch mixing 10- and 200-token sequences costs
// roughly its real tiles. Rows of a tile past the sequence's end are zero-filled (q, k, v, dO) and
// masked (keys: -inf scores; queries: lse -inf, so P = dS = 0) and never written back.
//
// Shared memory (bytes; bf16 tiles have rows of d + 8 elements, fp32 score tiles rows of 64 + 4, the
// fp32 output tile rows of d + 4: the pads shift consecutive rows across banks, and keep every
// fragment pointer 32-byte aligned as WMMA requires; every region is a multiple of 128 bytes):
//   forward  Q, K, V bf16 [64][d+8] + S fp32 [64][68] + P bf16 [64][72] + O fp32 [64][d+4] + 512
//            = 51,712 (d=32), 72,192 (d=64), 113,152 (d=128)
//   dq       Q, dO, K, V bf16 + S, dP fp32 + dS bf16 + 768
//            = 65,280 (d=32), 81,664 (d=64), 114,432 (d=128)
//   dk/dv    K, V, Q, dO bf16 + S^T, dP^T fp32 + P^T, dS^T bf16 + 1,280
//            = 74,752 (d=32), 91,392 (d=64), 124,160 (d=128)
// All above the 48 KB default, so the launchers opt in (cudaFuncAttributeMaxDynamicSharedMemorySize);
// the largest, 124,160, fits sm_80's 163 KB (166,912 B) and sm_90's 227 KB per block.
#include <mma.h>

#include <algorithm>
#include <cmath>

#include "activation.cuh"
#include "attention.cuh"
#include "attention_tc.cuh"
#include "common.cuh"

namespace xlir {
namespace cuda {

namespace {

using bf16 = __nv_bfloat16;
namespace wmma = nvcuda::wmma;

constexpr int kRows = 64;   // rows a block owns
constexpr int kTile = 64;   // streamed rows per tile
constexpr int kWarps = 4;   // 16 rows each
constexpr int kThreads = kWarps * 32;
constexpr int kLdS = kTile + 4;  // fp32 score tiles [64][68]
constexpr int kLdP = kTile + 8;  // bf16 probability tiles [64][72]
const unsigned kFull = 0xffffffffu;

using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major>;
using FragB = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major>;    // B stored [k][n]
using FragBt = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major>;   // B^T stored [n][k]
using FragC = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;

template <int D>
struct Dims {
  static_assert(D == 32 || D == 64 || D == 128, "head size 32, 64 or 128");
  static constexpr int kLdH = D + 8;  // bf16 [64][d] tiles
  static constexpr int kLdO = D + 4;  // fp32 [64][d] output tiles
  static constexpr int kHalf = kRows * kLdH * 2;  // bytes of one bf16 [64][d+8] tile
  static constexpr int kS = kRows * kLdS * 4;     // fp32 [64][68]
  static constexpr int kP = kRows * kLdP * 2;     // bf16 [64][72]
  static constexpr int kO = kRows * kLdO * 4;     // fp32 [64][d+4]
  static constexpr int kFwd = 3 * kHalf + kS + kP + kO + 512;
  static constexpr int kDq = 4 * kHalf + 2 * kS + kP + 768;
  static constexpr int kDkv = 4 * kHalf + 2 * kS + 2 * kP + 1280;
  static_assert(kHalf % 128 == 0 && kS % 128 == 0 && kP % 128 == 0 && kO % 128 == 0, "regions stay 128-byte aligned");
  // The output staging areas reuse regions no longer read (see the kernels).
  static_assert(kO <= 2 * kS && kO <= 2 * kHalf, "staging fits");
};

// Two consecutive values as a bf16 pair: rounded from fp32, or copied from bf16.
__device__ __forceinline__ __nv_bfloat162 bf16_pair(const float* s) {
  __nv_bfloat162 v;
  v.x = to_bf16(s[0]);
  v.y = to_bf16(s[1]);
  return v;
}
__device__ __forceinline__ __nv_bfloat162 bf16_pair(const bf16* s) { return *reinterpret_cast<const __nv_bfloat162*>(s); }

// rows [r0, r0 + 64) of a [*, stride] fp32 (rounded on the way) or bf16 matrix (row 0 at src, d
// columns) into a bf16 tile; rows at or past L become zeros. Two columns per thread: one 4-byte
// store.
template <int D, typename Src>
__device__ __forceinline__ void load_tile(bf16* __restrict__ dst, const Src* __restrict__ src, int64_t stride, int r0,
                                          int L) {
  constexpr int kPairs = D / 2;
  for (int idx = threadIdx.x; idx < kRows * kPairs; idx += kThreads) {
    const int r = idx / kPairs, c = 2 * (idx - r * kPairs), row = r0 + r;
    __nv_bfloat162 v;
    if (row < L) {
      v = bf16_pair(src + int64_t(row) * stride + c);
    } else {
      v.x = to_bf16(0.f);
      v.y = v.x;
    }
    *reinterpret_cast<__nv_bfloat162*>(dst + r * Dims<D>::kLdH + c) = v;
  }
}
// dO rows from dctx, or from its bf16 copy when dctx is null (bf16 training).
template <int D>
__device__ __forceinline__ void load_do_tile(bf16* __restrict__ dst, const float* dctx, const bf16* dctx16,
                                             int64_t offset, int64_t stride, int r0, int L) {
  if (dctx) load_tile<D>(dst, dctx + offset, stride, r0, L);
  else load_tile<D>(dst, dctx16 + offset, stride, r0, L);
}

// dst (16 x 64 fp32, row stride kLdS) = A (16 x D, fragments a[]) . B^T, B stored [64][kLdH] bf16 ([n][k]),
// skipping 16-column blocks at or past `valid` (their scores are masked by the callers).
template <int D>
__device__ __forceinline__ void scores16(float* dst, const FragA (&a)[D / 16], const bf16* B, int valid) {
#pragma unroll
  for (int n = 0; n < kTile / 16; n++) {
    if (16 * n >= valid) break;  // warp-uniform
    FragC c;
    wmma::fill_fragment(c, 0.f);
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
      FragBt b;
      wmma::load_matrix_sync(b, B + 16 * n * Dims<D>::kLdH + 16 * kk, Dims<D>::kLdH);
      wmma::mma_sync(c, a[kk], b, c);
    }
    wmma::store_matrix_sync(dst + 16 * n, c, kLdS, wmma::mem_row_major);
  }
}

// acc[n] += A (16 x 64, bf16 rows of kLdP at A) . B (64 x D, bf16 [64][kLdH] at B, [k][n]), k blocks
// at or past `valid` skipped (their A entries are zero).
template <int D>
__device__ __forceinline__ void accumulate16(FragC (&acc)[D / 16], const bf16* A, const bf16* B, int valid) {
#pragma unroll
  for (int kk = 0; kk < kTile / 16; kk++) {
    if (16 * kk >= valid) break;  // warp-uniform
    FragA a;
    wmma::load_matrix_sync(a, A + 16 * kk, kLdP);
#pragma unroll
    for (int n = 0; n < D / 16; n++) {
      FragB b;
      wmma::load_matrix_sync(b, B + 16 * kk * Dims<D>::kLdH + 16 * n, Dims<D>::kLdH);
      wmma::mma_sync(acc[n], a, b, acc[n]);
    }
  }
}

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#define XLIR_TC_UNSUPPORTED_ARCH 1  // bf16 WMMA needs sm_80; attention_tc_supported refuses older devices
#endif

// ---------------------------------------------------------------------------------------------
// Forward. Warp w: S = Q_w K^T (16 x 64) into shared memory; lanes 2r and 2r+1 own row r of the
// warp's 16 (32 keys each): online softmax (running max m and sum l, kept in both lanes), P =
// dropout(exp(S - m)) rounded to bf16, the row's O rescaled by exp(m_old - m_new); then
// O_w += P_w V through fragments loaded from and stored back to the fp32 O tile.
template <int D>
__global__ void __launch_bounds__(kThreads)
    attention_tc_forward_kernel(float* __restrict__ ctx, bf16* __restrict__ ctx16, float* __restrict__ lse,
                                const float* __restrict__ qkv, const int32_t* __restrict__ offsets,
                                const uint8_t* __restrict__ key_keep, int H, int nh, float scale, float p,
                                uint64_t site, const uint64_t* __restrict__ seq_keys) {
#ifdef XLIR_TC_UNSUPPORTED_ARCH
  __trap();
#else
  using Dm = Dims<D>;
  extern __shared__ __align__(128) unsigned char smem[];
  const int s = blockIdx.y, h = blockIdx.z;
  const int start = offsets[s], L = offsets[s + 1] - start;
  const int q0 = blockIdx.x * kRows;
  if (q0 >= L) return;  // whole block, before any barrier
  bf16* Qs = reinterpret_cast<bf16*>(smem);
  bf16* Ks = reinterpret_cast<bf16*>(smem + Dm::kHalf);
  bf16* Vs = reinterpret_cast<bf16*>(smem + 2 * Dm::kHalf);
  float* Ss = reinterpret_cast<float*>(smem + 3 * Dm::kHalf);
  bf16* Ps = reinterpret_cast<bf16*>(smem + 3 * Dm::kHalf + Dm::kS);
  float* Os = reinterpret_cast<float*>(smem + 3 * Dm::kHalf + Dm::kS + Dm::kP);
  int* kvalid = reinterpret_cast<int*>(smem + 3 * Dm::kHalf + Dm::kS + Dm::kP + Dm::kO);  // [64]
  float* row_inv = reinterpret_cast<float*>(kvalid + kTile);                           // [64]

  const int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t row3 = 3 * int64_t(H);
  const float* base = qkv + int64_t(start) * row3 + int64_t(h) * D;  // q of the sequence's first token
  load_tile<D>(Qs, base, row3, q0, L);
  for (int idx = threadIdx.x; idx < kRows * Dm::kLdO; idx += kThreads) Os[idx] = 0.f;

  // This lane's row of the softmax and its half of the 64 keys.
  const int r = 16 * w + (lane >> 1), half = lane & 1, i = q0 + r;
  const bool drop = p > 0.f;
  const float inv_keep = drop ? 1.f / (1.f - p) : 1.f;
  uint64_t rk = 0;
  if (drop && i < L) rk = d_hash_key(d_hash_key(site, seq_keys[s]), uint64_t(h) * uint64_t(L) + uint64_t(i));
  float m = -INFINITY, l = 0.f;

  __syncthreads();  // Qs
  FragA qa[D / 16];
#pragma unroll
  for (int kk = 0; kk < D / 16; kk++) wmma::load_matrix_sync(qa[kk], Qs + 16 * w * Dm::kLdH + 16 * kk, Dm::kLdH);
  FragC acc[D / 16];

  float* Sw = Ss + 16 * w * kLdS;
  bf16* Pw = Ps + 16 * w * kLdP;
  float* Ow = Os + 16 * w * Dm::kLdO;
  for (int k0 = 0; k0 < L; k0 += kTile) {
    __syncthreads();  // every warp is done with the previous K, V tile
    load_tile<D>(Ks, base + H, row3, k0, L);
    load_tile<D>(Vs, base + 2 * H, row3, k0, L);
    if (threadIdx.x < kTile) {
      const int key = k0 + threadIdx.x;
      kvalid[threadIdx.x] = key < L && (!key_keep || key_keep[start + key]);
    }
    __syncthreads();
    const int kn = min(kTile, L - k0);
    scores16<D>(Sw, qa, Ks, kn);
    __syncwarp();

    const float* srow = Sw + (lane >> 1) * kLdS + 32 * half;
    bf16* prow = Pw + (lane >> 1) * kLdP + 32 * half;
    float sv[32];
    float mt = -INFINITY;
#pragma unroll
    for (int c = 0; c < 32; c++) {
      sv[c] = kvalid[32 * half + c] ? srow[c] * scale : -INFINITY;
      mt = fmaxf(mt, sv[c]);
    }
    mt = fmaxf(mt, __shfl_xor_sync(kFull, mt, 1));
    const float mn = fmaxf(m, mt);
    // mn == -inf: no valid key for this row yet (both lanes agree); P = 0 and nothing changes. The
    // shuffle below stays outside the branch: every lane of the warp must reach it.
    const bool any = mn != -INFINITY;
    const float corr = any ? expf(m - mn) : 1.f;  // 0 while m is still -inf
    float rs = 0.f;
#pragma unroll
    for (int c = 0; c < 32; c++) {
      const float e = any ? expf(sv[c] - mn) : 0.f;  // 0 for masked keys
      rs += e;
      const float pe = drop ? (d_dropout_keep(rk, uint64_t(k0 + 32 * half + c), p) ? e * inv_keep : 0.f) : e;
      prow[c] = to_bf16(pe);
    }
    rs += __shfl_xor_sync(kFull, rs, 1);
    if (any) {
      l = l * corr + rs;
      m = mn;
    }
    if (corr != 1.f) {
      float* orow = Ow + (lane >> 1) * Dm::kLdO + half * (D / 2);
#pragma unroll
      for (int c = 0; c < D / 2; c++) orow[c] *= corr;
    }
    __syncwarp();  // P and the rescaled O rows are visible to the whole warp

#pragma unroll
    for (int n = 0; n < D / 16; n++) wmma::load_matrix_sync(acc[n], Ow + 16 * n, Dm::kLdO, wmma::mem_row_major);
    accumulate16<D>(acc, Pw, Vs, kn);
#pragma unroll
    for (int n = 0; n < D / 16; n++) wmma::store_matrix_sync(Ow + 16 * n, acc[n], Dm::kLdO, wmma::mem_row_major);
    __syncwarp();  // O stored before the next tile's rescale reads it
  }

  if (half == 0) {
    row_inv[r] = l > 0.f ? 1.f / l : 0.f;
    if (i < L) lse[(int64_t(start) + i) * nh + h] = l > 0.f ? m + logf(l) : -INFINITY;
  }
  __syncwarp();
  for (int idx = lane; idx < 16 * D; idx += 32) {
    const int rr = 16 * w + idx / D, c = idx % D, ii = q0 + rr;
    if (ii >= L) continue;
    const float v = Os[rr * Dm::kLdO + c] * row_inv[rr];
    const int64_t o = (int64_t(start) + ii) * H + int64_t(h) * D + c;
    if (ctx) ctx[o] = v;
    if (ctx16) ctx16[o] = to_bf16(v);
  }
#endif
}

// The bias gradient's partial sums: one row of 3H floats per 64-row tile of a sequence, at
// tile_slot = offsets[s] / 64 + s + tile. Distinct tiles get distinct slots (with
// o = offsets[s], L its length: o / 64 + ceil(L / 64) <= (o + L) / 64 + 1, so a sequence's last slot
// is below the next one's first), and every slot is below T / 64 + B: the scratch is bounded by the
// batch, not by B x the longest sequence. Unused slots stay zero (the launcher clears them).
__device__ __forceinline__ int64_t tile_slot(int start, int s, int tile) {
  return int64_t(start / kRows) + s + tile;
}
// dst[c] = sum over rows r < rows of tile[r][c] (a [64][d+4] fp32 stage), c < d, in row order: a
// thread per column, consecutive threads on consecutive words (no bank conflicts).
template <int D>
__device__ __forceinline__ void tile_column_sums(float* __restrict__ dst, const float* tile, int rows) {
#pragma unroll 1
  for (int c = threadIdx.x; c < D; c += kThreads) {
    float sum = 0.f;
#pragma unroll 8  // the loads ahead of the (ordered) adds
    for (int r = 0; r < rows; r++) sum += tile[r * Dims<D>::kLdO + c];
    dst[c] = sum;
  }
}

// ---------------------------------------------------------------------------------------------
// dq: a block owns 64 queries and streams the keys. Warp w: S = Q_w K^T and dPd = dO_w V^T into
// shared memory; lanes (two per row) form dS = P (dPd M / (1-p) - D) with P = exp(S - lse), rounded to
// bf16; dq_w += dS_w K in fragments held across the loop; dq = scale * that.
template <int D>
__global__ void __launch_bounds__(kThreads)
    attention_tc_dq_kernel(float* __restrict__ dqkv, bf16* __restrict__ dqkv16, float* __restrict__ bias_part,
                           const float* __restrict__ dctx, const bf16* __restrict__ dctx16,
                           const float* __restrict__ lse,
                           const float* __restrict__ Dsum, const float* __restrict__ qkv,
                           const int32_t* __restrict__ offsets, const uint8_t* __restrict__ key_keep, int H, int nh,
                           float scale, float p, uint64_t site, const uint64_t* __restrict__ seq_keys) {
#ifdef XLIR_TC_UNSUPPORTED_ARCH
  __trap();
#else
  using Dm = Dims<D>;
  extern __shared__ __align__(128) unsigned char smem[];
  const int s = blockIdx.y, h = blockIdx.z;
  const int start = offsets[s], L = offsets[s + 1] - start;
  const int q0 = blockIdx.x * kRows;
  if (q0 >= L) return;
  bf16* Qs = reinterpret_cast<bf16*>(smem);
  bf16* DOs = reinterpret_cast<bf16*>(smem + Dm::kHalf);
  bf16* Ks = reinterpret_cast<bf16*>(smem + 2 * Dm::kHalf);
  bf16* Vs = reinterpret_cast<bf16*>(smem + 3 * Dm::kHalf);
  float* Ss = reinterpret_cast<float*>(smem + 4 * Dm::kHalf);
  float* dPs = reinterpret_cast<float*>(smem + 4 * Dm::kHalf + Dm::kS);
  bf16* dSs = reinterpret_cast<bf16*>(smem + 4 * Dm::kHalf + 2 * Dm::kS);
  int* kvalid = reinterpret_cast<int*>(smem + 4 * Dm::kHalf + 2 * Dm::kS + Dm::kP);  // [64]
  float* lse_t = reinterpret_cast<float*>(kvalid + kTile);                          // [64]
  float* D_t = lse_t + kRows;                                                       // [64]

  const int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t row3 = 3 * int64_t(H);
  const float* base = qkv + int64_t(start) * row3 + int64_t(h) * D;
  load_tile<D>(Qs, base, row3, q0, L);
  load_do_tile<D>(DOs, dctx, dctx16, int64_t(start) * H + int64_t(h) * D, H, q0, L);
  if (threadIdx.x < kRows) {
    const int q = q0 + threadIdx.x;
    lse_t[threadIdx.x] = q < L ? lse[(int64_t(start) + q) * nh + h] : -INFINITY;
    D_t[threadIdx.x] = q < L ? Dsum[(int64_t(start) + q) * nh + h] : 0.f;
  }
  const int r = 16 * w + (lane >> 1), half = lane & 1, i = q0 + r;
  const bool drop = p > 0.f;
  const float inv_keep = drop ? 1.f / (1.f - p) : 1.f;
  uint64_t rk = 0;
  if (drop && i < L) rk = d_hash_key(d_hash_key(site, seq_keys[s]), uint64_t(h) * uint64_t(L) + uint64_t(i));

  __syncthreads();  // Qs, DOs, lse_t, D_t
  const float lse_i = lse_t[r], D_i = D_t[r];
  FragA qa[D / 16], da[D / 16];
#pragma unroll
  for (int kk = 0; kk < D / 16; kk++) {
    wmma::load_matrix_sync(qa[kk], Qs + 16 * w * Dm::kLdH + 16 * kk, Dm::kLdH);
    wmma::load_matrix_sync(da[kk], DOs + 16 * w * Dm::kLdH + 16 * kk, Dm::kLdH);
  }
  FragC acc[D / 16];
#pragma unroll
  for (int n = 0; n < D / 16; n++) wmma::fill_fragment(acc[n], 0.f);

  float* Sw = Ss + 16 * w * kLdS;
  float* dPw = dPs + 16 * w * kLdS;
  bf16* dSw = dSs + 16 * w * kLdP;
  for (int k0 = 0; k0 < L; k0 += kTile) {
    __syncthreads();
    load_tile<D>(Ks, base + H, row3, k0, L);
    load_tile<D>(Vs, base + 2 * H, row3, k0, L);
    if (threadIdx.x < kTile) {
      const int key = k0 + threadIdx.x;
      kvalid[threadIdx.x] = key < L && (!key_keep || key_keep[start + key]);
    }
    __syncthreads();
    const int kn = min(kTile, L - k0);
    scores16<D>(Sw, qa, Ks, kn);
    scores16<D>(dPw, da, Vs, kn);
    __syncwarp();
    const float* srow = Sw + (lane >> 1) * kLdS + 32 * half;
    const float* dprow = dPw + (lane >> 1) * kLdS + 32 * half;
    bf16* dsrow = dSw + (lane >> 1) * kLdP + 32 * half;
#pragma unroll
    for (int c = 0; c < 32; c++) {
      const int j = 32 * half + c;
      float ds = 0.f;
      if (kvalid[j] && lse_i != -INFINITY) {
        const float pij = expf(srow[c] * scale - lse_i);
        const float mult = drop ? (d_dropout_keep(rk, uint64_t(k0 + j), p) ? inv_keep : 0.f) : 1.f;
        ds = pij * (dprow[c] * mult - D_i);
      }
      dsrow[c] = to_bf16(ds);
    }
    __syncwarp();
    accumulate16<D>(acc, dSw, Ks, kn);
  }

  __syncthreads();  // every warp is done with Ss and dPs: they become the [64][d+4] staging tile
  float* stage = Ss + 16 * w * Dm::kLdO;
#pragma unroll
  for (int n = 0; n < D / 16; n++) {
#pragma unroll
    for (int e = 0; e < acc[n].num_elements; e++) acc[n].x[e] *= scale;
    wmma::store_matrix_sync(stage + 16 * n, acc[n], Dm::kLdO, wmma::mem_row_major);
  }
  __syncwarp();
  for (int idx = lane; idx < 16 * D; idx += 32) {
    const int rr = idx / D, c = idx % D, ii = q0 + 16 * w + rr;
    if (ii >= L) continue;
    const int64_t o = (int64_t(start) + ii) * row3 + int64_t(h) * D + c;
    const float v = stage[rr * Dm::kLdO + c];
    if (dqkv) dqkv[o] = v;
    if (dqkv16) dqkv16[o] = to_bf16(v);  // the bf16 products' operand, without a pass over dqkv
  }
  if (bias_part) {  // the q bias's column sums over this tile's rows (the block's [64][d+4] stage)
    __syncthreads();
    float* dst = bias_part + tile_slot(start, s, blockIdx.x) * row3 + int64_t(h) * D;
    tile_column_sums<D>(dst, Ss, min(kRows, L - q0));
  }
#endif
}

// dk, dv: a block owns 64 keys and streams the queries. Warp w: S^T = K_w Q^T and dPd^T = V_w dO^T
// into shared memory; lanes (two per key row) form P^T (after dropout) and dS^T, rounded to bf16;
// dv_w += Pd^T dO and dk_w += dS^T Q in fragments held across the loop; dk = scale * that.
// The dropout row keys of a query tile (one per query) are hashed once into shared memory.
template <int D>
__global__ void __launch_bounds__(kThreads)
    attention_tc_dkv_kernel(float* __restrict__ dqkv, bf16* __restrict__ dqkv16, float* __restrict__ bias_part,
                            const float* __restrict__ dctx, const bf16* __restrict__ dctx16,
                            const float* __restrict__ lse,
                            const float* __restrict__ Dsum, const float* __restrict__ qkv,
                            const int32_t* __restrict__ offsets, const uint8_t* __restrict__ key_keep, int H, int nh,
                            float scale, float p, uint64_t site, const uint64_t* __restrict__ seq_keys) {
#ifdef XLIR_TC_UNSUPPORTED_ARCH
  __trap();
#else
  using Dm = Dims<D>;
  extern __shared__ __align__(128) unsigned char smem[];
  const int s = blockIdx.y, h = blockIdx.z;
  const int start = offsets[s], L = offsets[s + 1] - start;
  const int k0 = blockIdx.x * kRows;
  if (k0 >= L) return;
  bf16* Ks = reinterpret_cast<bf16*>(smem);
  bf16* Vs = reinterpret_cast<bf16*>(smem + Dm::kHalf);
  bf16* Qs = reinterpret_cast<bf16*>(smem + 2 * Dm::kHalf);
  bf16* DOs = reinterpret_cast<bf16*>(smem + 3 * Dm::kHalf);
  float* Ss = reinterpret_cast<float*>(smem + 4 * Dm::kHalf);
  float* dPs = reinterpret_cast<float*>(smem + 4 * Dm::kHalf + Dm::kS);
  bf16* Pts = reinterpret_cast<bf16*>(smem + 4 * Dm::kHalf + 2 * Dm::kS);
  bf16* dSs = reinterpret_cast<bf16*>(smem + 4 * Dm::kHalf + 2 * Dm::kS + Dm::kP);
  unsigned char* tail = smem + 4 * Dm::kHalf + 2 * Dm::kS + 2 * Dm::kP;
  uint64_t* qkey = reinterpret_cast<uint64_t*>(tail);              // [64] dropout row keys
  float* lse_t = reinterpret_cast<float*>(tail + 8 * kTile);       // [64]
  float* D_t = lse_t + kTile;                                      // [64]
  int* kok = reinterpret_cast<int*>(D_t + kTile);                  // [64]

  const int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t row3 = 3 * int64_t(H);
  const float* base = qkv + int64_t(start) * row3 + int64_t(h) * D;
  const int64_t dbase = int64_t(start) * H + int64_t(h) * D;  // dO rows of this sequence and head
  load_tile<D>(Ks, base + H, row3, k0, L);
  load_tile<D>(Vs, base + 2 * H, row3, k0, L);
  if (threadIdx.x < kRows) {
    const int key = k0 + threadIdx.x;
    kok[threadIdx.x] = key < L && (!key_keep || key_keep[start + key]);
  }
  const int r = 16 * w + (lane >> 1), half = lane & 1, j = k0 + r;
  const bool drop = p > 0.f;
  const float inv_keep = drop ? 1.f / (1.f - p) : 1.f;
  const uint64_t seq_key = drop ? d_hash_key(site, seq_keys[s]) : 0;
  __syncthreads();  // Ks, Vs, kok
  const bool key_ok = kok[r] != 0;
  FragA ka[D / 16], va[D / 16];
#pragma unroll
  for (int kk = 0; kk < D / 16; kk++) {
    wmma::load_matrix_sync(ka[kk], Ks + 16 * w * Dm::kLdH + 16 * kk, Dm::kLdH);
    wmma::load_matrix_sync(va[kk], Vs + 16 * w * Dm::kLdH + 16 * kk, Dm::kLdH);
  }
  FragC dk[D / 16], dv[D / 16];
#pragma unroll
  for (int n = 0; n < D / 16; n++) {
    wmma::fill_fragment(dk[n], 0.f);
    wmma::fill_fragment(dv[n], 0.f);
  }

  float* Sw = Ss + 16 * w * kLdS;
  float* dPw = dPs + 16 * w * kLdS;
  bf16* Pw = Pts + 16 * w * kLdP;
  bf16* dSw = dSs + 16 * w * kLdP;
  for (int q0 = 0; q0 < L; q0 += kTile) {
    __syncthreads();
    load_tile<D>(Qs, base, row3, q0, L);
    load_do_tile<D>(DOs, dctx, dctx16, dbase, H, q0, L);
    if (threadIdx.x < kTile) {
      const int q = q0 + threadIdx.x;
      const bool in = q < L;
      lse_t[threadIdx.x] = in ? lse[(int64_t(start) + q) * nh + h] : -INFINITY;
      D_t[threadIdx.x] = in ? Dsum[(int64_t(start) + q) * nh + h] : 0.f;
      qkey[threadIdx.x] = drop && in ? d_hash_key(seq_key, uint64_t(h) * uint64_t(L) + uint64_t(q)) : 0;
    }
    __syncthreads();
    const int qn = min(kTile, L - q0);
    scores16<D>(Sw, ka, Qs, qn);
    scores16<D>(dPw, va, DOs, qn);
    __syncwarp();
    const float* srow = Sw + (lane >> 1) * kLdS + 32 * half;
    const float* dprow = dPw + (lane >> 1) * kLdS + 32 * half;
    bf16* prow = Pw + (lane >> 1) * kLdP + 32 * half;
    bf16* dsrow = dSw + (lane >> 1) * kLdP + 32 * half;
#pragma unroll
    for (int c = 0; c < 32; c++) {
      const int qi = 32 * half + c;
      float pd = 0.f, ds = 0.f;
      const float lq = lse_t[qi];
      if (key_ok && lq != -INFINITY) {  // lse -inf: a query past the end, or one with every key masked
        const float pij = expf(srow[c] * scale - lq);
        const float mult = drop ? (d_dropout_keep(qkey[qi], uint64_t(j), p) ? inv_keep : 0.f) : 1.f;
        pd = pij * mult;
        ds = pij * (dprow[c] * mult - D_t[qi]);
      }
      prow[c] = to_bf16(pd);
      dsrow[c] = to_bf16(ds);
    }
    __syncwarp();
    accumulate16<D>(dv, Pw, DOs, qn);
    accumulate16<D>(dk, dSw, Qs, qn);
  }

  __syncthreads();  // Ss, dPs (dk) and Qs, DOs (dv) become [64][d+4] fp32 staging tiles
  float* stage_k = Ss + 16 * w * Dm::kLdO;
  float* stage_v = reinterpret_cast<float*>(Qs) + 16 * w * Dm::kLdO;
#pragma unroll
  for (int n = 0; n < D / 16; n++) {
#pragma unroll
    for (int e = 0; e < dk[n].num_elements; e++) dk[n].x[e] *= scale;
    wmma::store_matrix_sync(stage_k + 16 * n, dk[n], Dm::kLdO, wmma::mem_row_major);
    wmma::store_matrix_sync(stage_v + 16 * n, dv[n], Dm::kLdO, wmma::mem_row_major);
  }
  __syncwarp();
  for (int idx = lane; idx < 16 * D; idx += 32) {
    const int rr = idx / D, c = idx % D, jj = k0 + 16 * w + rr;
    if (jj >= L) continue;
    const int64_t o = (int64_t(start) + jj) * row3 + int64_t(h) * D + c;
    const float vk = stage_k[rr * Dm::kLdO + c], vv = stage_v[rr * Dm::kLdO + c];
    if (dqkv) dqkv[o + H] = vk, dqkv[o + 2 * H] = vv;
    if (dqkv16) dqkv16[o + H] = to_bf16(vk), dqkv16[o + 2 * H] = to_bf16(vv);
  }
  if (bias_part) {  // the k and v biases' column sums over this tile's keys
    __syncthreads();
    float* dst = bias_part + tile_slot(start, s, blockIdx.x) * row3 + int64_t(h) * D;
    const int rows = min(kRows, L - k0);
    tile_column_sums<D>(dst + H, Ss, rows);
    tile_column_sums<D>(dst + 2 * H, reinterpret_cast<const float*>(Qs), rows);
  }
#endif
}

template <int D>
int max_smem_bytes() {
  return std::max(Dims<D>::kFwd, std::max(Dims<D>::kDq, Dims<D>::kDkv));
}

// The opt-in above 48 KB is a per-kernel, per-device attribute; setting it each launch is a cheap
// driver call and stays right when the caller switches devices.
template <typename K>
void opt_in(K kernel, int bytes) {
  XLIR_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
}

template <int D>
void forward_d(const AttentionLaunch& l, float* ctx, bf16* ctx16, float* lse, const float* qkv, const int32_t* offsets,
               int64_t hidden, int64_t heads, const uint8_t* key_keep, float p, uint64_t site, const uint64_t* seq_keys,
               cudaStream_t stream) {
  opt_in(attention_tc_forward_kernel<D>, Dims<D>::kFwd);
  attention_tc_forward_kernel<D><<<l.grid, kThreads, Dims<D>::kFwd, stream>>>(
      ctx, ctx16, lse, qkv, offsets, key_keep, int(hidden), int(heads), l.scale, p, site, seq_keys);
  XLIR_CUDA_LAUNCH_CHECK();
}

template <int D>
void backward_d(const AttentionLaunch& l, float* dqkv, bf16* dqkv16, float* bias_part, const float* dctx,
                const bf16* dctx16, const float* lse, const float* Dsum,
                const float* qkv, const int32_t* offsets, int64_t hidden, int64_t heads, const uint8_t* key_keep, float p,
                uint64_t site, const uint64_t* seq_keys, cudaStream_t stream) {
  opt_in(attention_tc_dkv_kernel<D>, Dims<D>::kDkv);
  attention_tc_dkv_kernel<D><<<l.grid, kThreads, Dims<D>::kDkv, stream>>>(
      dqkv, dqkv16, bias_part, dctx, dctx16, lse, Dsum, qkv, offsets, key_keep, int(hidden), int(heads), l.scale, p,
      site, seq_keys);
  XLIR_CUDA_LAUNCH_CHECK();
  opt_in(attention_tc_dq_kernel<D>, Dims<D>::kDq);
  attention_tc_dq_kernel<D><<<l.grid, kThreads, Dims<D>::kDq, stream>>>(
      dqkv, dqkv16, bias_part, dctx, dctx16, lse, Dsum, qkv, offsets, key_keep, int(hidden), int(heads), l.scale, p,
      site, seq_keys);
  XLIR_CUDA_LAUNCH_CHECK();
}

const char* const kHeadRefusal =
    " is not supported here (32, 64 or 128 on sm_80 or newer; check attention_tc_supported and use attention.cuh "
    "otherwise)";

}  // namespace

bool attention_tc_supported(int64_t head_dim) {
  int need = 0;
  if (head_dim == 32) need = max_smem_bytes<32>();
  else if (head_dim == 64) need = max_smem_bytes<64>();
  else if (head_dim == 128) need = max_smem_bytes<128>();
  else return false;
  int dev = 0, major = 0, optin = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess) {
    cudaGetLastError();  // no device: not supported, and no sticky error left for the caller
    return false;
  }
  return major >= 8 && optin >= need;
}

void attention_forward_tc(float* ctx, __nv_bfloat16* ctx16, float* lse, const float* qkv, const int32_t* offsets,
                          int64_t num_seqs, int64_t max_len, int64_t T, int64_t hidden, int64_t heads,
                          const uint8_t* key_keep, float p, uint64_t site, const uint64_t* seq_keys,
                          cudaStream_t stream) {
  const AttentionLaunch l = attention_launch("cuda attention_forward_tc", kRows, attention_tc_supported, kHeadRefusal, qkv,
                                             offsets, num_seqs, max_len, T, hidden, heads, p, seq_keys);
  XLIR_CHECK(T == 0 || ((ctx || ctx16) && lse), "cuda attention_forward_tc: null output (lse, and ctx or ctx16)");
  if (T == 0 || num_seqs == 0 || max_len == 0) return;
  switch (l.d) {
    case 32: return forward_d<32>(l, ctx, ctx16, lse, qkv, offsets, hidden, heads, key_keep, p, site, seq_keys, stream);
    case 64: return forward_d<64>(l, ctx, ctx16, lse, qkv, offsets, hidden, heads, key_keep, p, site, seq_keys, stream);
    default: return forward_d<128>(l, ctx, ctx16, lse, qkv, offsets, hidden, heads, key_keep, p, site, seq_keys, stream);
  }
}

int64_t attention_backward_tc_scratch_floats(int64_t T, int64_t B, int64_t hidden, int64_t heads) {
  return T * heads + (T / kRows + B) * 3 * hidden;
}

void attention_backward_tc(float* dqkv, const float* dctx, const float* ctx, const float* lse, const float* qkv,
                           const int32_t* offsets, int64_t num_seqs, int64_t max_len, int64_t T, int64_t hidden,
                           int64_t heads, const uint8_t* key_keep, float p, uint64_t site, const uint64_t* seq_keys,
                           float* scratch, cudaStream_t stream, const TcBackwardIo& io) {
  const AttentionLaunch l = attention_launch("cuda attention_backward_tc", kRows, attention_tc_supported, kHeadRefusal, qkv,
                                             offsets, num_seqs, max_len, T, hidden, heads, p, seq_keys);
  bf16* dqkv16 = io.dqkv16;
  float* dbias = io.dbias;
  XLIR_CHECK(T == 0 || ((dqkv || dqkv16) && (dctx || io.dctx16) && (ctx || io.ctx16) && lse && scratch),
             "cuda attention_backward_tc: null pointer (lse, scratch (attention_backward_tc_scratch_floats), and dqkv "
             "or dqkv16, dctx or dctx16, ctx or ctx16, are needed)");
  if (T == 0) return;
  if (num_seqs == 0 || max_len == 0) {  // no sequence to write the rows: zeros, as the fp32 kernel gives
    if (dqkv) XLIR_CUDA_CHECK(cudaMemsetAsync(dqkv, 0, size_t(T * 3 * hidden) * sizeof(float), stream));
    if (dqkv16) XLIR_CUDA_CHECK(cudaMemsetAsync(dqkv16, 0, size_t(T * 3 * hidden) * sizeof(bf16), stream));
    return;  // and dbias += 0
  }
  float* Dsum = scratch;
  float* part = dbias ? scratch + T * heads : nullptr;
  const int64_t parts = T / kRows + num_seqs;  // tile_slot's bound
  if (part) XLIR_CUDA_CHECK(cudaMemsetAsync(part, 0, size_t(parts * 3 * hidden) * sizeof(float), stream));
  attention_rowdot(Dsum, dctx, io.dctx16, ctx, io.ctx16, T, heads, l.d, stream);
  switch (l.d) {
    case 32:
      backward_d<32>(l, dqkv, dqkv16, part, dctx, io.dctx16, lse, Dsum, qkv, offsets, hidden, heads, key_keep, p, site,
                     seq_keys, stream);
      break;
    case 64:
      backward_d<64>(l, dqkv, dqkv16, part, dctx, io.dctx16, lse, Dsum, qkv, offsets, hidden, heads, key_keep, p, site,
                     seq_keys, stream);
      break;
    default:
      backward_d<128>(l, dqkv, dqkv16, part, dctx, io.dctx16, lse, Dsum, qkv, offsets, hidden, heads, key_keep, p, site,
                      seq_keys, stream);
  }
  if (dbias) column_reduce(dbias, part, parts, 3 * hidden, stream);
}

}  // namespace cuda
}  // namespace xlir
