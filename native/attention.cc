#include "attention.h"

#include <omp.h>

#include <algorithm>
#include <cmath>

#include "activation.h"
#include "common.h"
#include "vmath.h"

namespace xlir {

int64_t attention_scratch_floats(int64_t heads, int64_t max_len) { return 3 * heads * max_len * max_len; }

namespace {

// Rows of P are converted to bf16 in chunks of this many values through a stack buffer.
constexpr int64_t kMaxRow = 512;

// Batched over heads: op(A)[L, *] * op(B) for each head h, with head h's slice at column h * d.
Gemm heads_gemm(int64_t nh, int64_t M, int64_t N, int64_t K) {
  Gemm g;
  g.batch = nh;
  g.M = M, g.N = N, g.K = K;
  return g;
}

void softmax_rows(float* P, int64_t rows, int64_t L) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    float* row = P + r * L;
    float mx = row[0];
    for (int64_t j = 1; j < L; j++) mx = row[j] > mx ? row[j] : mx;
    float sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < L; j++) sum += (row[j] = exp_approx(row[j] - mx));
    float inv = 1.f / sum;
    for (int64_t j = 0; j < L; j++) row[j] *= inv;
  }
}

Gemm scores_gemm(int64_t L, int64_t H, int64_t nh) {
  const int64_t d = H / nh;
  Gemm g = heads_gemm(nh, L, L, d);
  g.transB = true;
  g.lda = 3 * H, g.strideA = d;
  g.ldb = 3 * H, g.strideB = d;
  g.ldc = L, g.strideC = L * L;
  g.alpha = float(1.0 / std::sqrt(double(d)));
  return g;
}

// The other products of one sequence, batched over heads; q/k/v/dq/dk/dv rows are 3H wide,
// ctx/dctx rows H, probability-sized matrices [L, L]. The fp32 and bf16 paths share them.
Gemm ctx_gemm(int64_t L, int64_t H, int64_t nh) {  // ctx_h = P_h v_h
  const int64_t d = H / nh;
  Gemm g = heads_gemm(nh, L, d, L);
  g.lda = L, g.strideA = L * L;
  g.ldb = 3 * H, g.strideB = d;
  g.ldc = H, g.strideC = d;
  return g;
}
Gemm dv_gemm(int64_t L, int64_t H, int64_t nh) {  // dv_h = Pd_h^T dctx_h
  const int64_t d = H / nh;
  Gemm g = heads_gemm(nh, L, d, L);
  g.transA = true;
  g.lda = L, g.strideA = L * L;
  g.ldb = H, g.strideB = d;
  g.ldc = 3 * H, g.strideC = d;
  return g;
}
Gemm dP_gemm(int64_t L, int64_t H, int64_t nh) {  // dPd_h = dctx_h v_h^T
  const int64_t d = H / nh;
  Gemm g = heads_gemm(nh, L, L, d);
  g.transB = true;
  g.lda = H, g.strideA = d;
  g.ldb = 3 * H, g.strideB = d;
  g.ldc = L, g.strideC = L * L;
  return g;
}
// dq_h = scale * dS_h k_h (transA false), dk_h = scale * dS_h^T q_h (transA true).
Gemm dqk_gemm(int64_t L, int64_t H, int64_t nh, bool transA) {
  const int64_t d = H / nh;
  Gemm g = heads_gemm(nh, L, d, L);
  g.transA = transA;
  g.lda = L, g.strideA = L * L;
  g.ldb = 3 * H, g.strideB = d;
  g.ldc = 3 * H, g.strideC = d;
  g.alpha = float(1.0 / std::sqrt(double(d)));
  return g;
}

// probs[nh, L, L] = softmax(scale * q k^T) for one sequence.
void scores_softmax(float* P, const float* q, const float* k, int64_t L, int64_t H, int64_t nh, Precision prec) {
  gemm(scores_gemm(L, H, nh), q, k, P, prec);
  softmax_rows(P, nh * L, L);
}
// The same over bf16 q and k.
void scores_softmax(float* P, const uint16_t* q, const uint16_t* k, int64_t L, int64_t H, int64_t nh) {
  gemm_bf16(scores_gemm(L, H, nh), q, k, P);
  softmax_rows(P, nh * L, L);
}

void apply_dropout(float* dst, const float* src, int64_t nh, int64_t L, float p, uint64_t key) {
  const float scale = 1.f / (1.f - p);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < nh * L; r++) {
    const uint64_t rk = hash_key(key, uint64_t(r));
    for (int64_t j = 0; j < L; j++) dst[r * L + j] = dropout_keep(rk, uint64_t(j), p) ? src[r * L + j] * scale : 0.f;
  }
}

// The bf16 path (prec == BF16). The products take bf16 operands; instead of letting gemm() convert
// the strided q/k/v views on every call (each view's extent spans the whole [L, 3H] block, so q, k
// and v were each converted as 3 blocks, several times per sequence), the layer's qkv is converted
// once, and the probability-side operands (dropped-out P, dS) are written in bf16 by the same pass
// that computes them. The values fed to the products are exactly those gemm() would have converted,
// so the results equal the fp32-operand bf16 path bit for bit; test_attention compares the bf16 path
// with the fp32 one.

// Pb[nh, L, L] = bf16(dropout(P)) (no dropout when p == 0), one pass over P.
void probs_to_bf16(uint16_t* Pb, const float* P, int64_t nh, int64_t L, float p, uint64_t key) {
  const float scale = p > 0.f ? 1.f / (1.f - p) : 1.f;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < nh * L; r++) {
    const uint64_t rk = hash_key(key, uint64_t(r));
    float row[kMaxRow];
    for (int64_t j0 = 0; j0 < L; j0 += kMaxRow) {
      const int64_t n = std::min<int64_t>(kMaxRow, L - j0);
      const float* src = P + r * L + j0;
      if (p > 0.f) {
        for (int64_t j = 0; j < n; j++) row[j] = dropout_keep(rk, uint64_t(j0 + j), p) ? src[j] * scale : 0.f;
        to_bf16_serial(row, Pb + r * L + j0, n);
      } else {
        to_bf16_serial(src, Pb + r * L + j0, n);
      }
    }
  }
}

// dSb = bf16(P * (dPd - sum_j dPd * P)) where dPd = dropout'(dP) (the same mask and scale as forward).
void softmax_backward_bf16(uint16_t* dSb, float* dP, const float* P, int64_t nh, int64_t L, float p, uint64_t key) {
  const float scale = p > 0.f ? 1.f / (1.f - p) : 1.f;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < nh * L; r++) {
    const float* pr = P + r * L;
    float* g = dP + r * L;
    if (p > 0.f) {
      const uint64_t rk = hash_key(key, uint64_t(r));
      for (int64_t j = 0; j < L; j++) g[j] = dropout_keep(rk, uint64_t(j), p) ? g[j] * scale : 0.f;
    }
    float dot = 0;
    for (int64_t j = 0; j < L; j++) dot += g[j] * pr[j];
    for (int64_t j = 0; j < L; j++) g[j] = pr[j] * (g[j] - dot);
    to_bf16_serial(g, dSb + r * L, L);
  }
}

// Per-thread bf16 copies (grow-only: planned by the first batch of a shape, then reused).
struct Bf16Scratch {
  Buffer<uint16_t> qkv, dctx, probs, dS;
};
Bf16Scratch& bf16_scratch() {
  thread_local Bf16Scratch s;
  return s;
}
int64_t total_tokens(const AttentionShape& s) {
  int64_t T = 0;
  for (int64_t i = 0; i < s.num_seqs; i++) T = std::max<int64_t>(T, s.offsets[i] + s.lengths[i]);
  return T;
}

void attention_forward_bf16(float* ctx, const float* qkv, const AttentionShape& s, float p, uint64_t site,
                            float* scratch) {
  const int64_t H = s.hidden, nh = s.heads, T = total_tokens(s);
  int64_t maxL = 0;
  for (int64_t i = 0; i < s.num_seqs; i++) maxL = std::max<int64_t>(maxL, s.lengths[i]);
  Bf16Scratch& b = bf16_scratch();
  uint16_t* qkv16 = b.qkv.ensure(size_t(T * 3 * H));
  uint16_t* Pb = b.probs.ensure(size_t(nh * maxL * maxL));
  to_bf16(qkv, qkv16, T * 3 * H);
  for (int64_t i = 0; i < s.num_seqs; i++) {
    const int64_t L = s.lengths[i];
    if (L == 0) continue;
    const uint16_t* q = qkv16 + s.offsets[i] * 3 * H;
    float* P = scratch;
    scores_softmax(P, q, q + H, L, H, nh);
    probs_to_bf16(Pb, P, nh, L, p, hash_key(site, s.seq_keys[i]));
    gemm_bf16(ctx_gemm(L, H, nh), Pb, q + 2 * H, ctx + s.offsets[i] * H);  // ctx_h = P_h v_h
  }
}

void attention_backward_bf16(float* dqkv, const float* dctx, const float* qkv, const AttentionShape& s, float p,
                             uint64_t site, float* scratch) {
  const int64_t H = s.hidden, nh = s.heads, T = total_tokens(s);
  int64_t maxL = 0;
  for (int64_t i = 0; i < s.num_seqs; i++) maxL = std::max<int64_t>(maxL, s.lengths[i]);
  Bf16Scratch& b = bf16_scratch();
  uint16_t* qkv16 = b.qkv.ensure(size_t(T * 3 * H));
  uint16_t* dctx16 = b.dctx.ensure(size_t(T * H));
  uint16_t* Pb = b.probs.ensure(size_t(nh * maxL * maxL));
  uint16_t* dSb = b.dS.ensure(size_t(nh * maxL * maxL));
  to_bf16(qkv, qkv16, T * 3 * H);
  to_bf16(dctx, dctx16, T * H);
  for (int64_t i = 0; i < s.num_seqs; i++) {
    const int64_t L = s.lengths[i];
    if (L == 0) continue;
    const uint16_t* q = qkv16 + s.offsets[i] * 3 * H;
    const uint16_t* k = q + H;
    const uint16_t* v = q + 2 * H;
    const uint16_t* dc = dctx16 + s.offsets[i] * H;
    float* dq = dqkv + s.offsets[i] * 3 * H;
    float* dk = dq + H;
    float* dv = dq + 2 * H;
    float* P = scratch;
    float* dP = scratch + 2 * nh * L * L;
    const uint64_t key = hash_key(site, s.seq_keys[i]);
    scores_softmax(P, q, k, L, H, nh);
    probs_to_bf16(Pb, P, nh, L, p, key);
    gemm_bf16(dv_gemm(L, H, nh), Pb, dc, dv);  // dv_h = Pd_h^T dctx_h
    gemm_bf16(dP_gemm(L, H, nh), dc, v, dP);   // dPd_h = dctx_h v_h^T
    softmax_backward_bf16(dSb, dP, P, nh, L, p, key);
    gemm_bf16(dqk_gemm(L, H, nh, false), dSb, k, dq);  // dq_h = scale * dS_h k_h
    gemm_bf16(dqk_gemm(L, H, nh, true), dSb, q, dk);   // dk_h = scale * dS_h^T q_h
  }
}

}  // namespace

void attention_forward(float* ctx, const float* qkv, const AttentionShape& s, float p, uint64_t site,
                       float* scratch, Precision prec) {
  if (prec == Precision::BF16) return attention_forward_bf16(ctx, qkv, s, p, site, scratch);
  const int64_t H = s.hidden, nh = s.heads;
  for (int64_t i = 0; i < s.num_seqs; i++) {
    const int64_t L = s.lengths[i];
    if (L == 0) continue;
    const float* q = qkv + s.offsets[i] * 3 * H;
    float* P = scratch;
    scores_softmax(P, q, q + H, L, H, nh, prec);
    const float* Pd = P;
    if (p > 0.f) {
      float* tmp = scratch + nh * L * L;
      apply_dropout(tmp, P, nh, L, p, hash_key(site, s.seq_keys[i]));
      Pd = tmp;
    }
    gemm(ctx_gemm(L, H, nh), Pd, q + 2 * H, ctx + s.offsets[i] * H, prec);  // ctx_h = P_h v_h
  }
}

void attention_backward(float* dqkv, const float* dctx, const float* qkv, const AttentionShape& s, float p,
                        uint64_t site, float* scratch, Precision prec) {
  if (prec == Precision::BF16) return attention_backward_bf16(dqkv, dctx, qkv, s, p, site, scratch);
  const int64_t H = s.hidden, nh = s.heads;
  for (int64_t i = 0; i < s.num_seqs; i++) {
    const int64_t L = s.lengths[i];
    if (L == 0) continue;
    const float* q = qkv + s.offsets[i] * 3 * H;
    const float* k = q + H;
    const float* v = q + 2 * H;
    const float* dc = dctx + s.offsets[i] * H;
    float* dq = dqkv + s.offsets[i] * 3 * H;
    float* dk = dq + H;
    float* dv = dq + 2 * H;
    float* P = scratch;
    float* Pd = scratch + nh * L * L;
    float* dP = scratch + 2 * nh * L * L;
    const uint64_t key = hash_key(site, s.seq_keys[i]);
    scores_softmax(P, q, k, L, H, nh, prec);
    const float* Pused = P;
    if (p > 0.f) {
      apply_dropout(Pd, P, nh, L, p, key);
      Pused = Pd;
    }
    gemm(dv_gemm(L, H, nh), Pused, dc, dv, prec);  // dv_h = Pd_h^T dctx_h
    gemm(dP_gemm(L, H, nh), dc, v, dP, prec);      // dPd_h = dctx_h v_h^T
    if (p > 0.f) apply_dropout(dP, dP, nh, L, p, key);  // same mask and scale: d/dP of dropout(P)
    // softmax backward: dS = P * (dP - sum_j dP * P), written over dP.
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < nh * L; r++) {
      const float* pr = P + r * L;
      float* g = dP + r * L;
      float dot = 0;
      for (int64_t j = 0; j < L; j++) dot += g[j] * pr[j];
      for (int64_t j = 0; j < L; j++) g[j] = pr[j] * (g[j] - dot);
    }
    gemm(dqk_gemm(L, H, nh, false), dP, k, dq, prec);  // dq_h = scale * dS_h k_h
    gemm(dqk_gemm(L, H, nh, true), dP, q, dk, prec);   // dk_h = scale * dS_h^T q_h
  }
}

}  // namespace xlir
