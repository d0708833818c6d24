#include "attention.h"

#include <omp.h>

#include <cmath>

#include "activation.h"
#include "common.h"
#include "vmath.h"

namespace xlir {

int64_t attention_scratch_floats(int64_t heads, int64_t max_len) { return 3 * heads * max_len * max_len; }

namespace {

// Batched over heads: op(A)[L, *] * op(B) for each head h, with head h's slice at column h * d.
Gemm heads_gemm(int64_t nh, int64_t M, int64_t N, int64_t K) {
  Gemm g;
  g.batch = nh;
  g.M = M, g.N = N, g.K = K;
  return g;
}

// probs[nh, L, L] = softmax(scale * q k^T) for one sequence.
void scores_softmax(float* P, const float* q, const float* k, int64_t L, int64_t H, int64_t nh, Precision prec) {
  int64_t d = H / nh;
  Gemm g = heads_gemm(nh, L, L, d);
  g.transB = true;
  g.lda = 3 * H, g.strideA = d;
  g.ldb = 3 * H, g.strideB = d;
  g.ldc = L, g.strideC = L * L;
  g.alpha = float(1.0 / std::sqrt(double(d)));
  gemm(g, q, k, P, prec);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < nh * L; r++) {
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

void apply_dropout(float* dst, const float* src, int64_t nh, int64_t L, float p, uint64_t key) {
  const float scale = 1.f / (1.f - p);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < nh * L; r++) {
    const uint64_t rk = hash_key(key, uint64_t(r));
    for (int64_t j = 0; j < L; j++) dst[r * L + j] = dropout_keep(rk, uint64_t(j), p) ? src[r * L + j] * scale : 0.f;
  }
}

}  // namespace

void attention_forward(float* ctx, const float* qkv, const AttentionShape& s, float p, uint64_t site,
                       float* scratch, Precision prec) {
  const int64_t H = s.hidden, nh = s.heads, d = H / nh;
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
    // ctx_h = P_h v_h
    Gemm g = heads_gemm(nh, L, d, L);
    g.lda = L, g.strideA = L * L;
    g.ldb = 3 * H, g.strideB = d;
    g.ldc = H, g.strideC = d;
    gemm(g, Pd, q + 2 * H, ctx + s.offsets[i] * H, prec);
  }
}

void attention_backward(float* dqkv, const float* dctx, const float* qkv, const AttentionShape& s, float p,
                        uint64_t site, float* scratch, Precision prec) {
  const int64_t H = s.hidden, nh = s.heads, d = H / nh;
  const float scale = float(1.0 / std::sqrt(double(d)));
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
    {  // dv_h = Pd_h^T dctx_h
      Gemm g = heads_gemm(nh, L, d, L);
      g.transA = true;
      g.lda = L, g.strideA = L * L;
      g.ldb = H, g.strideB = d;
      g.ldc = 3 * H, g.strideC = d;
      gemm(g, Pused, dc, dv, prec);
    }
    {  // dPd_h = dctx_h v_h^T
      Gemm g = heads_gemm(nh, L, L, d);
      g.transB = true;
      g.lda = H, g.strideA = d;
      g.ldb = 3 * H, g.strideB = d;
      g.ldc = L, g.strideC = L * L;
      gemm(g, dc, v, dP, prec);
    }
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
    {  // dq_h = scale * dS_h k_h
      Gemm g = heads_gemm(nh, L, d, L);
      g.lda = L, g.strideA = L * L;
      g.ldb = 3 * H, g.strideB = d;
      g.ldc = 3 * H, g.strideC = d;
      g.alpha = scale;
      gemm(g, dP, k, dq, prec);
    }
    {  // dk_h = scale * dS_h^T q_h
      Gemm g = heads_gemm(nh, L, d, L);
      g.transA = true;
      g.lda = L, g.strideA = L * L;
      g.ldb = 3 * H, g.strideB = d;
      g.ldc = 3 * H, g.strideC = d;
      g.alpha = scale;
      gemm(g, dP, q, dk, prec);
    }
  }
}

}  // namespace xlir
