// Packed multi-head attention kernels (attention.cuh).
// Shapes: qkv [T, 3H] (q | k | v, head h at columns h d .. h d + d - 1 of each part), ctx and dctx
// [T, H], lse and D [T, heads]; offsets int32 [B + 1]. Grid: (ceil(max_len / 8), B, heads); a block
// takes 8 rows (queries, or keys in the dk/dv kernel) of one sequence and head, one warp per row;
// blocks past a short sequence's end exit at once, so a batch mixing 10- and 200-token sequences
// costs roughly its real tokens. Shared memory: the warps' own rows [8][d] and the streamed tile
// [32][d + 1] (the +1 keeps lane j's reads of row j free of bank conflicts), at most 41 KB for d = 128.
#include <cmath>

#include "attention.cuh"
#include "common.cuh"

namespace xlir {
namespace cuda {

namespace {

const int kRows = 8;   // rows per block, one warp each
const int kTile = 32;  // streamed rows per tile, one per lane
const int kMaxD = 128;
const int kSlots = kMaxD / 32;  // head dimensions per lane
const unsigned kFull = 0xffffffffu;

__device__ __forceinline__ float dot_row(const float* a, const float* b, int d) {
  float s = 0.f;
  for (int c = 0; c < d; c++) s += a[c] * b[c];
  return s;
}

__global__ void __launch_bounds__(kRows * 32)
    attention_forward_kernel(float* __restrict__ ctx, __nv_bfloat16* __restrict__ ctx16, float* __restrict__ lse,
                             const float* __restrict__ qkv, const int32_t* __restrict__ offsets,
                             const uint8_t* __restrict__ key_keep, int H, int nh, int d, float scale, float p,
                             uint64_t site, const uint64_t* __restrict__ seq_keys) {
  extern __shared__ float smem[];
  __shared__ bool kvalid[kTile];
  const int s = blockIdx.y, h = blockIdx.z;
  const int start = offsets[s], L = offsets[s + 1] - start;
  const int q0 = blockIdx.x * kRows;
  if (q0 >= L) return;  // whole block: before any barrier
  const int w = threadIdx.x >> 5, lane = threadIdx.x & 31, ld = d + 1;
  const int64_t row3 = 3 * int64_t(H);
  float* Qs = smem;               // [kRows][d]
  float* Ks = Qs + kRows * d;     // [kTile][ld]
  float* Vs = Ks + kTile * ld;    // [kTile][ld]
  const int i = q0 + w;
  const bool active = i < L;  // warp-uniform
  if (active)
    for (int c = lane; c < d; c += 32) Qs[w * d + c] = qkv[(start + i) * row3 + h * d + c];
  const bool drop = p > 0.f;
  const float inv_keep = drop ? 1.f / (1.f - p) : 1.f;
  uint64_t rk = 0;
  if (drop && active) rk = d_hash_key(d_hash_key(site, seq_keys[s]), uint64_t(h) * uint64_t(L) + uint64_t(i));
  float m = -INFINITY, l = 0.f, acc[kSlots];
#pragma unroll
  for (int u = 0; u < kSlots; u++) acc[u] = 0.f;

  for (int k0 = 0; k0 < L; k0 += kTile) {
    __syncthreads();  // the previous tile is consumed (and Qs written, on the first pass)
    for (int idx = threadIdx.x; idx < kTile * d; idx += blockDim.x) {
      const int j = idx / d, c = idx - j * d, key = k0 + j;
      float kv = 0.f, vv = 0.f;
      if (key < L) {
        const float* r = qkv + (start + key) * row3 + h * d + c;
        kv = r[H];
        vv = r[2 * H];
      }
      Ks[j * ld + c] = kv;
      Vs[j * ld + c] = vv;
    }
    if (threadIdx.x < kTile) {
      const int key = k0 + threadIdx.x;
      kvalid[threadIdx.x] = key < L && (!key_keep || key_keep[start + key]);
    }
    __syncthreads();
    if (!active) continue;
    const float sj = kvalid[lane] ? dot_row(Qs + w * d, Ks + lane * ld, d) * scale : -INFINITY;
    const float mn = fmaxf(m, warp_max(sj));
    if (mn == -INFINITY) continue;  // no valid key yet (warp-uniform)
    const float e = kvalid[lane] ? expf(sj - mn) : 0.f;
    const float corr = expf(m - mn);  // 0 while m is still -inf
    l = l * corr + warp_sum(e);
    const float pe = drop ? (d_dropout_keep(rk, uint64_t(k0 + lane), p) ? e * inv_keep : 0.f) : e;
#pragma unroll
    for (int u = 0; u < kSlots; u++) acc[u] *= corr;
    const int kn = min(kTile, L - k0);
    for (int j = 0; j < kn; j++) {
      const float pj = __shfl_sync(kFull, pe, j);
#pragma unroll
      for (int u = 0; u < kSlots; u++) {
        const int c = lane + 32 * u;
        if (c < d) acc[u] += pj * Vs[j * ld + c];
      }
    }
    m = mn;
  }
  if (!active) return;
  const float inv_l = l > 0.f ? 1.f / l : 0.f;
  const int64_t o = (start + i) * int64_t(H) + h * d;
#pragma unroll
  for (int u = 0; u < kSlots; u++) {
    const int c = lane + 32 * u;
    if (c < d) {
      const float v = acc[u] * inv_l;
      ctx[o + c] = v;
      if (ctx16) ctx16[o + c] = to_bf16(v);
    }
  }
  if (lane == 0) lse[(start + i) * int64_t(nh) + h] = l > 0.f ? m + logf(l) : -INFINITY;
}

// D[t, h] = dctx[t, head h] . ctx[t, head h]: the row sums of dP * P that softmax's backward needs
// (with dropout too: sum_j P_ij M_ij dPd_ij = dO_i . O_i). ctx in fp32, or its bf16 copy.
__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return from_bf16(x); }
template <typename DctxT, typename CtxT>
__global__ void __launch_bounds__(kRows * 32)
    attention_rowdot_kernel(float* __restrict__ D, const DctxT* __restrict__ dctx,
                            const CtxT* __restrict__ ctx, int64_t rows, int nh, int d) {
  const int64_t r = int64_t(blockIdx.x) * kRows + (threadIdx.x >> 5);
  if (r >= rows) return;
  const int lane = threadIdx.x & 31;
  const int64_t t = r / nh;
  const int h = int(r - t * nh);
  const int64_t o = t * int64_t(nh) * d + int64_t(h) * d;
  float s = 0.f;
  for (int c = lane; c < d; c += 32) s += to_f32(dctx[o + c]) * to_f32(ctx[o + c]);
  s = warp_sum(s);
  if (lane == 0) D[r] = s;
}

// dq: a warp per query, streaming the keys and values of its sequence.
__global__ void __launch_bounds__(kRows * 32)
    attention_backward_dq_kernel(float* __restrict__ dqkv, const float* __restrict__ dctx, const float* __restrict__ lse,
                                 const float* __restrict__ D, const float* __restrict__ qkv,
                                 const int32_t* __restrict__ offsets, const uint8_t* __restrict__ key_keep, int H,
                                 int nh, int d, float scale, float p, uint64_t site,
                                 const uint64_t* __restrict__ seq_keys) {
  extern __shared__ float smem[];
  __shared__ bool kvalid[kTile];
  const int s = blockIdx.y, h = blockIdx.z;
  const int start = offsets[s], L = offsets[s + 1] - start;
  const int q0 = blockIdx.x * kRows;
  if (q0 >= L) return;
  const int w = threadIdx.x >> 5, lane = threadIdx.x & 31, ld = d + 1;
  const int64_t row3 = 3 * int64_t(H);
  float* Qs = smem;              // [kRows][d]
  float* DOs = Qs + kRows * d;   // [kRows][d]
  float* Ks = DOs + kRows * d;   // [kTile][ld]
  float* Vs = Ks + kTile * ld;   // [kTile][ld]
  const int i = q0 + w;
  const bool active = i < L;
  float lse_i = -INFINITY, D_i = 0.f;
  if (active) {
    for (int c = lane; c < d; c += 32) {
      Qs[w * d + c] = qkv[(start + i) * row3 + h * d + c];
      DOs[w * d + c] = dctx[(start + i) * int64_t(H) + h * d + c];
    }
    lse_i = lse[(start + i) * int64_t(nh) + h];
    D_i = D[(start + i) * int64_t(nh) + h];
  }
  const bool drop = p > 0.f;
  const float inv_keep = drop ? 1.f / (1.f - p) : 1.f;
  uint64_t rk = 0;
  if (drop && active) rk = d_hash_key(d_hash_key(site, seq_keys[s]), uint64_t(h) * uint64_t(L) + uint64_t(i));
  float acc[kSlots];
#pragma unroll
  for (int u = 0; u < kSlots; u++) acc[u] = 0.f;

  for (int k0 = 0; k0 < L; k0 += kTile) {
    __syncthreads();
    for (int idx = threadIdx.x; idx < kTile * d; idx += blockDim.x) {
      const int j = idx / d, c = idx - j * d, key = k0 + j;
      float kv = 0.f, vv = 0.f;
      if (key < L) {
        const float* r = qkv + (start + key) * row3 + h * d + c;
        kv = r[H];
        vv = r[2 * H];
      }
      Ks[j * ld + c] = kv;
      Vs[j * ld + c] = vv;
    }
    if (threadIdx.x < kTile) {
      const int key = k0 + threadIdx.x;
      kvalid[threadIdx.x] = key < L && (!key_keep || key_keep[start + key]);
    }
    __syncthreads();
    if (!active || lse_i == -INFINITY) continue;
    float ds = 0.f;
    if (kvalid[lane]) {
      const float pj = expf(dot_row(Qs + w * d, Ks + lane * ld, d) * scale - lse_i);
      const float dpd = dot_row(DOs + w * d, Vs + lane * ld, d);
      const float mult = drop ? (d_dropout_keep(rk, uint64_t(k0 + lane), p) ? inv_keep : 0.f) : 1.f;
      ds = pj * (dpd * mult - D_i);
    }
    const int kn = min(kTile, L - k0);
    for (int j = 0; j < kn; j++) {
      const float dsj = __shfl_sync(kFull, ds, j);
#pragma unroll
      for (int u = 0; u < kSlots; u++) {
        const int c = lane + 32 * u;
        if (c < d) acc[u] += dsj * Ks[j * ld + c];
      }
    }
  }
  if (!active) return;
  const int64_t o = (start + i) * row3 + h * d;
#pragma unroll
  for (int u = 0; u < kSlots; u++) {
    const int c = lane + 32 * u;
    if (c < d) dqkv[o + c] = acc[u] * scale;
  }
}

// dk, dv: a warp per key, streaming the queries (with their output gradients, lse and D).
__global__ void __launch_bounds__(kRows * 32)
    attention_backward_dkv_kernel(float* __restrict__ dqkv, const float* __restrict__ dctx,
                                  const float* __restrict__ lse, const float* __restrict__ D,
                                  const float* __restrict__ qkv, const int32_t* __restrict__ offsets,
                                  const uint8_t* __restrict__ key_keep, int H, int nh, int d, float scale, float p,
                                  uint64_t site, const uint64_t* __restrict__ seq_keys) {
  extern __shared__ float smem[];
  __shared__ float lse_t[kTile], D_t[kTile];
  const int s = blockIdx.y, h = blockIdx.z;
  const int start = offsets[s], L = offsets[s + 1] - start;
  const int k0 = blockIdx.x * kRows;
  if (k0 >= L) return;
  const int w = threadIdx.x >> 5, lane = threadIdx.x & 31, ld = d + 1;
  const int64_t row3 = 3 * int64_t(H);
  float* Kw = smem;              // [kRows][d]
  float* Vw = Kw + kRows * d;    // [kRows][d]
  float* Qt = Vw + kRows * d;    // [kTile][ld]
  float* DOt = Qt + kTile * ld;  // [kTile][ld]
  const int j = k0 + w;
  const bool active = j < L;
  const bool key_ok = active && (!key_keep || key_keep[start + j]);
  if (active)
    for (int c = lane; c < d; c += 32) {
      Kw[w * d + c] = qkv[(start + j) * row3 + H + h * d + c];
      Vw[w * d + c] = qkv[(start + j) * row3 + 2 * H + h * d + c];
    }
  const bool drop = p > 0.f;
  const float inv_keep = drop ? 1.f / (1.f - p) : 1.f;
  const uint64_t seq_key = drop ? d_hash_key(site, seq_keys[s]) : 0;
  float dk[kSlots], dv[kSlots];
#pragma unroll
  for (int u = 0; u < kSlots; u++) dk[u] = dv[u] = 0.f;

  for (int q0 = 0; q0 < L; q0 += kTile) {
    __syncthreads();
    for (int idx = threadIdx.x; idx < kTile * d; idx += blockDim.x) {
      const int ii = idx / d, c = idx - ii * d, q = q0 + ii;
      float qv = 0.f, dov = 0.f;
      if (q < L) {
        qv = qkv[(start + q) * row3 + h * d + c];
        dov = dctx[(start + q) * int64_t(H) + h * d + c];
      }
      Qt[ii * ld + c] = qv;
      DOt[ii * ld + c] = dov;
    }
    if (threadIdx.x < kTile) {
      const int q = q0 + threadIdx.x;
      lse_t[threadIdx.x] = q < L ? lse[(start + q) * int64_t(nh) + h] : -INFINITY;
      D_t[threadIdx.x] = q < L ? D[(start + q) * int64_t(nh) + h] : 0.f;
    }
    __syncthreads();
    if (!key_ok) continue;
    float pd = 0.f, ds = 0.f;
    const int q = q0 + lane;
    if (q < L && lse_t[lane] != -INFINITY) {
      const float pij = expf(dot_row(Qt + lane * ld, Kw + w * d, d) * scale - lse_t[lane]);
      const float dpd = dot_row(DOt + lane * ld, Vw + w * d, d);
      float mult = 1.f;
      if (drop) {
        const uint64_t rk = d_hash_key(seq_key, uint64_t(h) * uint64_t(L) + uint64_t(q));
        mult = d_dropout_keep(rk, uint64_t(j), p) ? inv_keep : 0.f;
      }
      pd = pij * mult;
      ds = pij * (dpd * mult - D_t[lane]);
    }
    const int qn = min(kTile, L - q0);
    for (int ii = 0; ii < qn; ii++) {
      const float pdi = __shfl_sync(kFull, pd, ii), dsi = __shfl_sync(kFull, ds, ii);
#pragma unroll
      for (int u = 0; u < kSlots; u++) {
        const int c = lane + 32 * u;
        if (c < d) {
          dv[u] += pdi * DOt[ii * ld + c];
          dk[u] += dsi * Qt[ii * ld + c];
        }
      }
    }
  }
  if (!active) return;
  const int64_t o = (start + j) * row3 + h * d;
#pragma unroll
  for (int u = 0; u < kSlots; u++) {
    const int c = lane + 32 * u;
    if (c < d) {
      dqkv[o + H + c] = dk[u] * scale;
      dqkv[o + 2 * H + c] = dv[u];
    }
  }
}

bool head_fits(int64_t d) { return d <= kMaxD; }
const char* const kHeadRefusal = " exceeds 128";
static_assert(kMaxD == 128, "kHeadRefusal names the limit");

}  // namespace

AttentionLaunch attention_launch(const char* what, int64_t rows, bool (*head_ok)(int64_t d), const char* refusal,
                                 const float* qkv, const int32_t* offsets, int64_t num_seqs, int64_t max_len, int64_t T,
                                 int64_t hidden, int64_t heads, float p, const uint64_t* seq_keys) {
  XLIR_CHECK(heads >= 1 && hidden >= heads && hidden % heads == 0,
             what << ": hidden size " << hidden << " is not a multiple of " << heads << " heads");
  XLIR_CHECK(head_ok(hidden / heads), what << ": head size " << hidden / heads << refusal);
  XLIR_CHECK(num_seqs >= 0 && num_seqs < 65536, what << ": " << num_seqs << " sequences (at most 65535 per call)");
  XLIR_CHECK(heads < 65536, what << ": too many heads");
  XLIR_CHECK(T >= 0 && 3 * hidden * T < (int64_t(1) << 62) && T < (int64_t(1) << 31), what << ": bad token count " << T);
  XLIR_CHECK(max_len >= 0 && max_len <= T, what << ": max_len " << max_len << " outside [0, T = " << T << "]");
  XLIR_CHECK(p >= 0.f && p < 1.f, what << ": dropout p must be in [0, 1) (got " << p << ")");
  XLIR_CHECK(p == 0.f || seq_keys, what << ": dropout needs the sequence keys");
  XLIR_CHECK(T == 0 || (qkv && offsets), what << ": null pointer");
  AttentionLaunch l;
  l.grid = dim3(unsigned((max_len + rows - 1) / rows), unsigned(num_seqs), unsigned(heads));
  l.d = int(hidden / heads);
  l.scale = float(1.0 / std::sqrt(double(l.d)));  // as the CPU computes it
  return l;
}

void attention_forward(float* ctx, __nv_bfloat16* ctx16, float* lse, const float* qkv, const int32_t* offsets,
                       int64_t num_seqs, int64_t max_len, int64_t T, int64_t hidden, int64_t heads,
                       const uint8_t* key_keep, float p, uint64_t site, const uint64_t* seq_keys, cudaStream_t stream) {
  const AttentionLaunch l = attention_launch("cuda attention_forward", kRows, head_fits, kHeadRefusal, qkv, offsets,
                                             num_seqs, max_len, T, hidden, heads, p, seq_keys);
  XLIR_CHECK(T == 0 || (ctx && lse), "cuda attention_forward: null output");
  if (T == 0 || num_seqs == 0 || max_len == 0) return;
  const size_t shm = size_t(kRows * l.d + 2 * kTile * (l.d + 1)) * sizeof(float);
  attention_forward_kernel<<<l.grid, kRows * 32, shm, stream>>>(ctx, ctx16, lse, qkv, offsets, key_keep, int(hidden),
                                                                int(heads), l.d, l.scale, p, site, seq_keys);
  XLIR_CUDA_LAUNCH_CHECK();
}

int64_t attention_backward_scratch_floats(int64_t T, int64_t heads) { return T * heads; }

namespace {
template <typename DctxT, typename CtxT>
void rowdot(float* D, const DctxT* dctx, const CtxT* ctx, int64_t T, int64_t heads, int d, cudaStream_t stream) {
  if (T * heads == 0) return;
  attention_rowdot_kernel<DctxT, CtxT>
      <<<ceil_div(T * heads, kRows), kRows * 32, 0, stream>>>(D, dctx, ctx, T * heads, int(heads), d);
  XLIR_CUDA_LAUNCH_CHECK();
}
}  // namespace

void attention_rowdot(float* D, const float* dctx, const float* ctx, int64_t T, int64_t heads, int d,
                      cudaStream_t stream) {
  rowdot(D, dctx, ctx, T, heads, d, stream);
}
void attention_rowdot(float* D, const float* dctx, const __nv_bfloat16* dctx16, const float* ctx,
                      const __nv_bfloat16* ctx16, int64_t T, int64_t heads, int d, cudaStream_t stream) {
  XLIR_CHECK((dctx || dctx16) && (ctx || ctx16), "cuda attention_rowdot: null operand");
  if (dctx && ctx) rowdot(D, dctx, ctx, T, heads, d, stream);
  else if (dctx) rowdot(D, dctx, ctx16, T, heads, d, stream);
  else if (ctx) rowdot(D, dctx16, ctx, T, heads, d, stream);
  else rowdot(D, dctx16, ctx16, T, heads, d, stream);
}

void attention_backward(float* dqkv, const float* dctx, const float* ctx, const float* lse, const float* qkv,
                        const int32_t* offsets, int64_t num_seqs, int64_t max_len, int64_t T, int64_t hidden,
                        int64_t heads, const uint8_t* key_keep, float p, uint64_t site, const uint64_t* seq_keys,
                        float* scratch, cudaStream_t stream) {
  const AttentionLaunch l = attention_launch("cuda attention_backward", kRows, head_fits, kHeadRefusal, qkv, offsets,
                                             num_seqs, max_len, T, hidden, heads, p, seq_keys);
  XLIR_CHECK(T == 0 || (dqkv && dctx && ctx && lse && scratch),
             "cuda attention_backward: null pointer (scratch: attention_backward_scratch_floats)");
  if (T == 0) return;
  // Tokens outside every sequence (none when offsets cover [0, T)) and masked keys get zeros.
  XLIR_CUDA_CHECK(cudaMemsetAsync(dqkv, 0, size_t(T * 3 * hidden) * sizeof(float), stream));
  if (num_seqs == 0 || max_len == 0) return;
  float* D = scratch;
  attention_rowdot(D, dctx, ctx, T, heads, l.d, stream);
  const size_t shm = size_t(2 * kRows * l.d + 2 * kTile * (l.d + 1)) * sizeof(float);
  attention_backward_dq_kernel<<<l.grid, kRows * 32, shm, stream>>>(dqkv, dctx, lse, D, qkv, offsets, key_keep,
                                                                    int(hidden), int(heads), l.d, l.scale, p, site,
                                                                    seq_keys);
  XLIR_CUDA_LAUNCH_CHECK();
  attention_backward_dkv_kernel<<<l.grid, kRows * 32, shm, stream>>>(dqkv, dctx, lse, D, qkv, offsets, key_keep,
                                                                     int(hidden), int(heads), l.d, l.scale, p, site,
                                                                     seq_keys);
  XLIR_CUDA_LAUNCH_CHECK();
}

}  // namespace cuda
}  // namespace xlir
