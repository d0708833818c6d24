// LayerNorm kernels (layernorm.cuh). Shapes: rows [N, C] row-major, C any size (BERT: 768, 1024).
// Forward: a warp per row, 8 rows per block; three passes over the row (sum; squared deviations;
// output) read x from L1/L2 after the first, which keeps the kernel generic in C and exact in the
// two-pass variance (no E[x^2] - E[x]^2 cancellation; BERT's eps is 1e-12).
// Backward (C <= 1024): one pass, a block per 64-row chunk holding each row in registers, writing dx
// (and the dropped branch gradient) and the chunk's column sums; a small kernel adds the chunks.
// Wider rows: a warp per row for dx, then column passes over dy and x for dw and db.
#include <algorithm>

#include "activation.cuh"  // bias_backward, for rows too wide for the fused backward
#include "common.cuh"
#include "layernorm.cuh"

namespace xlir {
namespace cuda {

namespace {

const int kRowsPerBlock = 8;    // warps per block in the row kernels
const int kChunkRows = 64;      // rows per partial column sum in the parameter-gradient kernels
const int kColumnThreads = 128; // the parameter-gradient kernels: a thread per column
const int kMaxColsPerLane = 32; // the fused backward holds a row of up to 32 x 32 = 1024 columns

enum class Source { Residual, Embedding };

template <Source S>
__global__ void __launch_bounds__(32 * kRowsPerBlock)
    layernorm_forward_kernel(float* x, float* __restrict__ y, __nv_bfloat16* __restrict__ y16,
                             float* __restrict__ mean, float* __restrict__ rstd, const float* a,
                             const float* b, const int32_t* __restrict__ ids,
                             const int32_t* __restrict__ pos_ids, const int32_t* __restrict__ type_ids,
                             const float* __restrict__ word, const float* __restrict__ pos,
                             const float* __restrict__ type, int64_t vocab, int64_t max_pos,
                             int64_t type_vocab, const float* __restrict__ w,
                             const float* __restrict__ beta, int64_t N, int C, float eps, float p,
                             float scale, uint64_t site, const uint64_t* __restrict__ row_keys) {
  const int lane = threadIdx.x & 31;
  const int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  if (row >= N) return;
  // x null (inference: no backward reads it): the output row is the scratch instead, overwritten by
  // the final values; each lane reads back only what it wrote itself, so y may alias a as x may.
  float* xr = (x ? x : y) + row * C;
  // Dropout: of the branch a (residual) or of the output y (embedding), as dropout_rows computes it.
  const uint64_t rk = p > 0.f ? d_hash_key(site, row_keys[row]) : 0;
  float sum = 0.f;
  if (S == Source::Residual) {
    const float* ar = a + row * C;
    const float* br = b ? b + row * C : nullptr;
    for (int c = lane; c < C; c += 32) {
      float d = ar[c];
      if (p > 0.f) d = d_dropout_keep(rk, uint64_t(c), p) ? d * scale : 0.f;
      float v = d + (br ? br[c] : 0.f);
      xr[c] = v;
      sum += v;
    }
  } else {
    const int32_t id = ids[row], p = pos_ids[row], t = type_ids[row];
    const bool ok = id >= 0 && id < vocab && p >= 0 && p < max_pos && t >= 0 && t < type_vocab;
    const float* wr = word + int64_t(ok ? id : 0) * C;
    const float* pr = pos + int64_t(ok ? p : 0) * C;
    const float* tr = type + int64_t(ok ? t : 0) * C;
    for (int c = lane; c < C; c += 32) {
      // The CPU's order: (word + pos) + type.
      float v = ok ? (wr[c] + pr[c]) + tr[c] : __int_as_float(0x7fc00000);
      xr[c] = v;
      sum += v;
    }
  }
  // Each lane reads back only the elements it wrote itself: no synchronisation needed.
  const float m = warp_sum(sum) / float(C);
  float var = 0.f;
  for (int c = lane; c < C; c += 32) {
    float d = xr[c] - m;
    var += d * d;
  }
  const float r = 1.f / sqrtf(warp_sum(var) / float(C) + eps);
  float* yr = y + row * C;
  for (int c = lane; c < C; c += 32) {
    float v = (xr[c] - m) * r * w[c] + beta[c];
    if (S == Source::Embedding && p > 0.f) v = d_dropout_keep(rk, uint64_t(c), p) ? v * scale : 0.f;
    yr[c] = v;
    if (y16) y16[row * C + c] = to_bf16(v);
  }
  if (lane == 0) {
    if (mean) mean[row] = m;
    if (rstd) rstd[row] = r;
  }
}

__global__ void __launch_bounds__(32 * kRowsPerBlock)
    layernorm_backward_dx_kernel(float* __restrict__ dx, float* __restrict__ dxd,
                                 __nv_bfloat16* __restrict__ dxd16, const float* __restrict__ dy,
                                 const float* __restrict__ x, const float* __restrict__ w,
                                 const float* __restrict__ mean, const float* __restrict__ rstd, int64_t N,
                                 int C, bool accumulate, float p, float scale, uint64_t site,
                                 const uint64_t* __restrict__ row_keys) {
  const int lane = threadIdx.x & 31;
  const int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  if (row >= N) return;
  const float* xr = x + row * C;
  const float* dyr = dy + row * C;
  const float m = mean[row], r = rstd[row];
  float sum_g = 0.f, sum_gx = 0.f;  // g = dy * w, x_hat = (x - m) * r
  for (int c = lane; c < C; c += 32) {
    float g = dyr[c] * w[c];
    sum_g += g;
    sum_gx += g * ((xr[c] - m) * r);
  }
  const float mg = warp_sum(sum_g) / float(C), mgx = warp_sum(sum_gx) / float(C);
  float* dxr = dx + row * C;
  const bool branch = dxd || dxd16;  // the dropped copy for the residual branch (accumulate is false)
  const uint64_t rk = branch && p > 0.f ? d_hash_key(site, row_keys[row]) : 0;
  for (int c = lane; c < C; c += 32) {
    float v = r * (dyr[c] * w[c] - mg - (xr[c] - m) * r * mgx);
    dxr[c] = accumulate ? dxr[c] + v : v;
    if (branch) {
      if (p > 0.f) v = d_dropout_keep(rk, uint64_t(c), p) ? v * scale : 0.f;
      if (dxd) dxd[row * C + c] = v;
      if (dxd16) dxd16[row * C + c] = to_bf16(v);
    }
  }
}

// The whole backward in one pass for C <= 32 NC: a block owns a 64-row chunk, each warp 8 of its
// rows, each lane columns lane + 32 k (k < NC) whose dy and x_hat it holds in registers for the row
// and whose column sums it keeps across its rows: dy x_hat (dw), dy (db) and the dropped branch
// gradient (its bias). The 8 warps' sums are added in warp order through shared memory, one
// quantity at a time, into partial[chunk][3 C] (dw | db | dbias), which layernorm_reduce_kernel adds
// up chunk by chunk. Every row's arithmetic is the dx kernel's, so dx and the branch are the same
// bits as there; only the column sums are added in another (fixed) order.
template <int NC>
__global__ void __launch_bounds__(32 * kRowsPerBlock)
    layernorm_backward_fused_kernel(float* __restrict__ dx, float* __restrict__ dxd,
                                    __nv_bfloat16* __restrict__ dxd16, float* __restrict__ partial,
                                    const float* __restrict__ dy, const float* __restrict__ x,
                                    const float* __restrict__ w, const float* __restrict__ mean,
                                    const float* __restrict__ rstd, int64_t N, int C, bool accumulate, bool params,
                                    bool bias_sums, float p, float scale, uint64_t site,
                                    const uint64_t* __restrict__ row_keys) {
  __shared__ float red[kRowsPerBlock][32 * NC];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t r0 = int64_t(blockIdx.x) * kChunkRows, r1 = min(N, r0 + kChunkRows);
  const bool branch = dxd || dxd16 || bias_sums;
  float sw[NC], sb[NC], sd[NC];
#pragma unroll
  for (int k = 0; k < NC; k++) sw[k] = sb[k] = sd[k] = 0.f;
  for (int64_t row = r0 + warp; row < r1; row += kRowsPerBlock) {
    const float* xr = x + row * C;
    const float* dyr = dy + row * C;
    const float m = mean[row], r = rstd[row];
    float g[NC], xh[NC];
    float sum_g = 0.f, sum_gx = 0.f;
#pragma unroll
    for (int k = 0; k < NC; k++) {
      const int c = lane + 32 * k;
      g[k] = c < C ? dyr[c] : 0.f;
      xh[k] = c < C ? (xr[c] - m) * r : 0.f;
    }
#pragma unroll
    for (int k = 0; k < NC; k++) {
      if (lane + 32 * k >= C) continue;
      const float gw = g[k] * w[lane + 32 * k];
      sum_g += gw;
      sum_gx += gw * xh[k];
    }
    const float mg = warp_sum(sum_g) / float(C), mgx = warp_sum(sum_gx) / float(C);
    const uint64_t rk = branch && p > 0.f ? d_hash_key(site, row_keys[row]) : 0;
#pragma unroll
    for (int k = 0; k < NC; k++) {
      const int c = lane + 32 * k;
      if (c >= C) continue;
      sw[k] += g[k] * xh[k];
      sb[k] += g[k];
      // As the dx kernel: (x - m) * r recomputed in the same order, so the same bits.
      float v = r * (g[k] * w[c] - mg - xh[k] * mgx);
      dx[row * C + c] = accumulate ? dx[row * C + c] + v : v;
      if (branch) {
        if (p > 0.f) v = d_dropout_keep(rk, uint64_t(c), p) ? v * scale : 0.f;
        if (dxd) dxd[row * C + c] = v;
        if (dxd16) dxd16[row * C + c] = to_bf16(v);
        sd[k] += v;
      }
    }
  }
  float* out = partial + int64_t(blockIdx.x) * 3 * C;
  for (int q = 0; q < 3; q++) {
    if (q < 2 ? !params : !bias_sums) continue;
#pragma unroll
    for (int k = 0; k < NC; k++) red[warp][lane + 32 * k] = q == 0 ? sw[k] : q == 1 ? sb[k] : sd[k];
    __syncthreads();
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
      float t = 0.f;
      for (int v = 0; v < kRowsPerBlock; v++) t += red[v][c];
      out[q * C + c] = t;
    }
    __syncthreads();  // red is rewritten for the next quantity
  }
}

// (C > 1024) partial[chunk][0..C) = sum over the chunk's rows of dy * x_hat, [C..2C) = of dy (the
// fused kernel's layout, rows of 3 C).
__global__ void __launch_bounds__(kColumnThreads)
    layernorm_param_partial_kernel(float* __restrict__ partial, const float* __restrict__ dy,
                                   const float* __restrict__ x, const float* __restrict__ mean,
                                   const float* __restrict__ rstd, int64_t N, int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const int64_t r0 = int64_t(blockIdx.y) * kChunkRows, r1 = min(N, r0 + kChunkRows);
  float sw = 0.f, sb = 0.f;
  for (int64_t r = r0; r < r1; r++) {
    float g = dy[r * C + c];
    sw += g * ((x[r * C + c] - mean[r]) * rstd[r]);
    sb += g;
  }
  partial[int64_t(blockIdx.y) * 3 * C + c] = sw;
  partial[int64_t(blockIdx.y) * 3 * C + C + c] = sb;
}

// dw, db, dbias (each may be null) += the chunks' partial sums, chunk by chunk in double.
__global__ void __launch_bounds__(kColumnThreads)
    layernorm_reduce_kernel(float* __restrict__ dw, float* __restrict__ db, float* __restrict__ dbias,
                            const float* __restrict__ partial, int chunks, int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  double sw = 0, sb = 0, sd = 0;
  for (int k = 0; k < chunks; k++) {
    const float* row = partial + int64_t(k) * 3 * C;
    if (dw) sw += row[c], sb += row[C + c];
    if (dbias) sd += row[2 * C + c];
  }
  if (dw) dw[c] += float(sw), db[c] += float(sb);
  if (dbias) dbias[c] += float(sd);
}

void check_rows(int64_t N, int64_t C, const char* what) {
  XLIR_CHECK(N >= 0 && C >= 1 && C < (int64_t(1) << 30), what << ": bad shape [" << N << ", " << C << "]");
}

// The kernels' dropout arguments; the scale as dropout_rows computes it, so the values match.
struct DropArgs {
  float p, scale;
  uint64_t site;
  const uint64_t* keys;
};
DropArgs drop_args(const RowDropout& d, const char* what) {
  XLIR_CHECK(d.p >= 0.f && d.p < 1.f, what << ": dropout p must be in [0, 1) (got " << d.p << ")");
  XLIR_CHECK(d.p == 0.f || d.row_keys, what << ": dropout needs row keys when p > 0");
  return DropArgs{d.p, d.p > 0.f ? 1.f / (1.f - d.p) : 1.f, d.site, d.row_keys};
}

}  // namespace

void residual_layernorm_forward(float* x, float* y, __nv_bfloat16* y16, float* mean, float* rstd, const float* a,
                                const float* b, const float* w, const float* beta, int64_t N, int64_t C, float eps,
                                cudaStream_t stream, const RowDropout& drop) {
  check_rows(N, C, "cuda residual_layernorm_forward");
  XLIR_CHECK(y && a && w && beta, "cuda residual_layernorm_forward: null pointer");
  const DropArgs d = drop_args(drop, "cuda residual_layernorm_forward");
  if (N == 0) return;
  layernorm_forward_kernel<Source::Residual><<<ceil_div(N, kRowsPerBlock), 32 * kRowsPerBlock, 0, stream>>>(
      x, y, y16, mean, rstd, a, b, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 0, 0, 0, w, beta, N, int(C), eps,
      d.p, d.scale, d.site, d.keys);
  XLIR_CUDA_LAUNCH_CHECK();
}

void embedding_layernorm_forward(float* x, float* y, __nv_bfloat16* y16, float* mean, float* rstd, const int32_t* ids,
                                 const int32_t* pos_ids, const int32_t* type_ids, const float* word, const float* pos,
                                 const float* type, int64_t vocab, int64_t max_pos, int64_t type_vocab, const float* w,
                                 const float* beta, int64_t T, int64_t C, float eps, cudaStream_t stream,
                                 const RowDropout& drop) {
  check_rows(T, C, "cuda embedding_layernorm_forward");
  XLIR_CHECK(y && ids && pos_ids && type_ids && word && pos && type && w && beta,
             "cuda embedding_layernorm_forward: null pointer");
  XLIR_CHECK(vocab >= 1 && max_pos >= 1 && type_vocab >= 1, "cuda embedding_layernorm_forward: empty table");
  const DropArgs d = drop_args(drop, "cuda embedding_layernorm_forward");
  if (T == 0) return;
  layernorm_forward_kernel<Source::Embedding><<<ceil_div(T, kRowsPerBlock), 32 * kRowsPerBlock, 0, stream>>>(
      x, y, y16, mean, rstd, nullptr, nullptr, ids, pos_ids, type_ids, word, pos, type, vocab, max_pos, type_vocab, w,
      beta, T, int(C), eps, d.p, d.scale, d.site, d.keys);
  XLIR_CUDA_LAUNCH_CHECK();
}

namespace {
int64_t g_max_fused = 32 * kMaxColsPerLane;  // layernorm_backward_set_max_fused
}  // namespace
bool layernorm_backward_fused(int64_t C) { return C >= 1 && C <= g_max_fused; }
void layernorm_backward_set_max_fused(int64_t C) { g_max_fused = std::min<int64_t>(C, 32 * kMaxColsPerLane); }

// [chunks][3 C] partial sums; also more than the C floats per chunk of bias_backward (wide rows).
int64_t layernorm_backward_scratch_floats(int64_t N, int64_t C) { return 3 * C * ((N + kChunkRows - 1) / kChunkRows); }

namespace {
template <int NC>
void launch_fused(float* dx, const BranchGrad& br, const DropArgs& d, float* partial, const float* dy, const float* x,
                  const float* w, const float* mean, const float* rstd, int64_t N, int64_t C, bool accumulate,
                  bool params, cudaStream_t stream) {
  layernorm_backward_fused_kernel<NC><<<ceil_div(N, kChunkRows), 32 * kRowsPerBlock, 0, stream>>>(
      dx, br.dx, br.dx16, partial, dy, x, w, mean, rstd, N, int(C), accumulate, params, br.dbias != nullptr, d.p,
      d.scale, d.site, d.keys);
  XLIR_CUDA_LAUNCH_CHECK();
}
}  // namespace

void layernorm_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w,
                        const float* mean, const float* rstd, int64_t N, int64_t C, bool accumulate, float* scratch,
                        cudaStream_t stream, const BranchGrad& branch) {
  check_rows(N, C, "cuda layernorm_backward");
  XLIR_CHECK(dx && dy && x && w && mean && rstd, "cuda layernorm_backward: null pointer");
  XLIR_CHECK((dw == nullptr) == (db == nullptr), "cuda layernorm_backward: dw and db must both be given or both null");
  const bool has_branch = branch.dx || branch.dx16 || branch.dbias, fused = layernorm_backward_fused(C);
  XLIR_CHECK(!(dw || branch.dbias) || scratch,
             "cuda layernorm_backward: column sums need scratch (layernorm_backward_scratch_floats)");
  XLIR_CHECK(!has_branch || !accumulate, "cuda layernorm_backward: the dropped branch gradient needs accumulate = false");
  XLIR_CHECK(!has_branch || (static_cast<void*>(branch.dx) != dx && static_cast<const void*>(branch.dx) != dy &&
                             static_cast<void*>(branch.dx16) != dx && static_cast<const void*>(branch.dx16) != dy),
             "cuda layernorm_backward: the branch gradient must not alias dx or dy");
  XLIR_CHECK(fused || !branch.dbias || branch.dx,
             "cuda layernorm_backward: with C = " << C << " > " << 32 * kMaxColsPerLane
                                                  << ", the branch's dbias is summed from branch.dx, which must be given");
  const DropArgs d = drop_args(has_branch ? branch.drop : RowDropout{}, "cuda layernorm_backward");
  if (N == 0) return;
  const int chunks = ceil_div(N, kChunkRows);
  XLIR_CHECK(chunks < 65536, "cuda layernorm_backward: " << N << " rows exceed " << 65535 * kChunkRows);
  if (fused) {
    // The smallest register tile that holds the row: 8, 16, 24 or 32 columns per lane.
    const bool params = dw != nullptr;
    switch ((C + 255) / 256) {
      case 1: launch_fused<8>(dx, branch, d, scratch, dy, x, w, mean, rstd, N, C, accumulate, params, stream); break;
      case 2: launch_fused<16>(dx, branch, d, scratch, dy, x, w, mean, rstd, N, C, accumulate, params, stream); break;
      case 3: launch_fused<24>(dx, branch, d, scratch, dy, x, w, mean, rstd, N, C, accumulate, params, stream); break;
      default: launch_fused<32>(dx, branch, d, scratch, dy, x, w, mean, rstd, N, C, accumulate, params, stream);
    }
    if (params || branch.dbias) {
      layernorm_reduce_kernel<<<ceil_div(C, kColumnThreads), kColumnThreads, 0, stream>>>(dw, db, branch.dbias, scratch,
                                                                                        chunks, int(C));
      XLIR_CUDA_LAUNCH_CHECK();
    }
    return;
  }
  // Wide rows: the row kernel, then the column sums in passes of their own.
  layernorm_backward_dx_kernel<<<ceil_div(N, kRowsPerBlock), 32 * kRowsPerBlock, 0, stream>>>(
      dx, branch.dx, branch.dx16, dy, x, w, mean, rstd, N, int(C), accumulate, d.p, d.scale, d.site, d.keys);
  XLIR_CUDA_LAUNCH_CHECK();
  if (dw) {
    layernorm_param_partial_kernel<<<dim3(ceil_div(C, kColumnThreads), chunks), kColumnThreads, 0, stream>>>(
        scratch, dy, x, mean, rstd, N, int(C));
    XLIR_CUDA_LAUNCH_CHECK();
    layernorm_reduce_kernel<<<ceil_div(C, kColumnThreads), kColumnThreads, 0, stream>>>(dw, db, nullptr, scratch,
                                                                                      chunks, int(C));
    XLIR_CUDA_LAUNCH_CHECK();
  }
  // After the reduce in stream order, so the scratch is free again.
  if (branch.dbias) bias_backward(branch.dbias, branch.dx, N, C, scratch, stream);
}

}  // namespace cuda
}  // namespace xlir
