// Op-level checks of the CPU engine, ggml test-backend-ops style:
//  - the fast path (oneDNN fp32, oneDNN bf16) against the reference path (plain loops, double sums);
//  - every op's backward against central finite differences of its forward;
//  - a whole tiny model (BERT and RoBERTa, every pooling, Dense, dropout on) against finite
//    differences with respect to every parameter tensor.
// Prints one line per check, "ok <name> ..." or "not ok <name> ...", and exits non-zero on failure.
// test/native-ops.test.ts runs it under node's test runner.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "activation.h"
#include "attention.h"
#include "embedding.h"
#include "infonce.h"
#include "layernorm.h"
#include "matmul.h"
#include "model.h"
#include "pooling.h"
#include "search.h"
#include "tests/search_checks.h"
#include "vmath.h"

using namespace xlir;
using Vec = std::vector<float>;

static int g_failed = 0;

static void report(const std::string& name, double err, double tol) {
  const bool ok = err <= tol && std::isfinite(err);
  if (!ok) g_failed++;
  std::printf("%s %s rel_err=%.3g tol=%.3g\n", ok ? "ok" : "not ok", name.c_str(), err, tol);
}

static Vec randn(size_t n, std::mt19937& rng, float scale = 1.f) {
  std::normal_distribution<float> d(0.f, scale);
  Vec v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// ||a - b|| / max(||a||, ||b||, floor): one number per tensor, robust to individual tiny entries.
static double rel_err(const Vec& a, const Vec& b, double floor = 1e-6) {
  double d = 0, na = 0, nb = 0;
  for (size_t i = 0; i < a.size(); i++) {
    d += double(a[i] - b[i]) * (a[i] - b[i]);
    na += double(a[i]) * a[i];
    nb += double(b[i]) * b[i];
  }
  return std::sqrt(d) / std::max({std::sqrt(na), std::sqrt(nb), floor});
}

// Central differences of loss() w.r.t. x at the given indices (all if empty).
static Vec numeric_grad(Vec& x, const std::function<double()>& loss, const std::vector<size_t>& at, float eps) {
  Vec g(at.size());
  for (size_t k = 0; k < at.size(); k++) {
    const float old = x[at[k]];
    x[at[k]] = old + eps;
    const double lp = loss();
    x[at[k]] = old - eps;
    const double lm = loss();
    x[at[k]] = old;
    g[k] = float((lp - lm) / (2.0 * double(eps)));
  }
  return g;
}
static std::vector<size_t> all_idx(size_t n) {
  std::vector<size_t> v(n);
  for (size_t i = 0; i < n; i++) v[i] = i;
  return v;
}
static Vec pick(const Vec& v, const std::vector<size_t>& at) {
  Vec r;
  for (auto i : at) r.push_back(v[i]);
  return r;
}
static double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); i++) s += double(a[i]) * b[i];
  return s;
}

// Finite differences in fp32 with eps 1e-2 on O(1) smooth functions: truncation ~eps^2 and
// rounding ~1e-7/eps keep the relative error near 1e-4..1e-3; 1e-2 leaves room without hiding a
// wrong formula (a wrong term is an O(1) relative error).
static const double kFdTol = 1e-2;
static const float kEps = 1e-2f;

static void test_gemm() {
  std::mt19937 rng(1);
  struct Case { bool ta, tb; int64_t M, N, K, batch; float alpha, beta; };
  const Case cases[] = {{false, false, 7, 5, 3, 1, 1.f, 0.f}, {false, true, 33, 17, 65, 1, 1.f, 1.f},
                        {true, false, 16, 48, 9, 1, 0.5f, 0.f}, {true, true, 5, 6, 7, 3, 1.f, 1.f},
                        {false, true, 64, 64, 32, 4, 0.125f, 0.f}, {true, false, 64, 16, 64, 4, 1.f, 0.f}};
  for (const Case& c : cases) {
    Gemm g;
    g.transA = c.ta, g.transB = c.tb, g.M = c.M, g.N = c.N, g.K = c.K, g.alpha = c.alpha, g.beta = c.beta;
    g.lda = (c.ta ? c.M : c.K) + 3;  // padded leading dimensions, as the attention views use
    g.ldb = (c.tb ? c.K : c.N) + 1;
    g.ldc = c.N + 2;
    g.batch = c.batch;
    g.strideA = (c.ta ? c.K : c.M) * g.lda;
    g.strideB = (c.tb ? c.N : c.K) * g.ldb;
    g.strideC = c.M * g.ldc;
    Vec A = randn(size_t(g.strideA * c.batch), rng), B = randn(size_t(g.strideB * c.batch), rng);
    Vec C0 = randn(size_t(g.strideC * c.batch), rng), Cref = C0, Cf = C0, Cb = C0;
    gemm_reference(g, A.data(), B.data(), Cref.data());
    gemm(g, A.data(), B.data(), Cf.data(), Precision::FP32);
    gemm(g, A.data(), B.data(), Cb.data(), Precision::BF16);
    char name[160];
    std::snprintf(name, sizeof name, "gemm ta=%d tb=%d %ldx%ldx%ld batch=%ld alpha=%g beta=%g", c.ta, c.tb, long(c.M),
                  long(c.N), long(c.K), long(c.batch), c.alpha, c.beta);
    // fp32: only summation order differs from the double-accumulated reference.
    report(std::string(name) + " onednn-fp32 vs reference", rel_err(Cf, Cref), 1e-5);
    // bf16 inputs carry 8 significant bits (relative rounding 2^-9 per operand); with fp32
    // accumulation the product's relative error over random data stays below ~1e-2.
    report(std::string(name) + " onednn-bf16 vs reference", rel_err(Cb, Cref), 1e-2);
  }
  // bf16 keeps 8 significant bits: round to nearest has relative error at most 2^-8 (unit roundoff).
  Vec x = randn(4096, rng, 3.f);
  double worst = 0;
  for (float v : x) worst = std::max(worst, double(std::fabs(bf16_to_f32(f32_to_bf16(v)) - v) / std::fabs(v)));
  report("bf16 round trip relative error <= 2^-8", worst, 1.0 / 256);
}

static void test_layernorm() {
  std::mt19937 rng(2);
  const int64_t N = 5, C = 16;
  Vec x = randn(N * C, rng), w = randn(C, rng), b = randn(C, rng), c = randn(N * C, rng);
  Vec y(N * C), mean(N), rstd(N);
  auto loss = [&]() {
    layernorm_forward(y.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), N, C, 1e-5f);
    return dot(y, c);
  };
  loss();
  Vec dx(N * C), dw(C, 0.f), db(C, 0.f);
  layernorm_backward(dx.data(), dw.data(), db.data(), c.data(), x.data(), w.data(), mean.data(), rstd.data(), N, C);
  report("layernorm d/dx vs finite differences", rel_err(dx, numeric_grad(x, loss, all_idx(x.size()), kEps)), kFdTol);
  report("layernorm d/dw vs finite differences", rel_err(dw, numeric_grad(w, loss, all_idx(C), kEps)), kFdTol);
  report("layernorm d/db vs finite differences", rel_err(db, numeric_grad(b, loss, all_idx(C), kEps)), kFdTol);
}

static void test_elementwise() {
  std::mt19937 rng(3);
  const int64_t n = 64;
  Vec x = randn(n, rng, 2.f), c = randn(n, rng), y(n), dx(n);
  auto gl = [&]() { gelu_forward(y.data(), x.data(), n); return dot(y, c); };
  gl();
  gelu_backward(dx.data(), c.data(), x.data(), n);
  report("gelu vs finite differences", rel_err(dx, numeric_grad(x, gl, all_idx(n), kEps)), kFdTol);
  // GELU(erf) values against closed-form points: 0 -> 0, 1 -> 0.841344746, -1 -> -0.158655254.
  float pts[3] = {0.f, 1.f, -1.f}, out[3];
  gelu_forward(out, pts, 3);
  report("gelu known values", std::fabs(out[0]) + std::fabs(out[1] - 0.841344746f) + std::fabs(out[2] + 0.158655254f), 1e-6);
  // Vectorised exp / erf (vmath.h) against double libm on a dense grid, and GELU's fast path against
  // its libm reference. Bounds from vmath.h: exp relative 2e-7 (~2 ulp), erf absolute 6e-7;
  // GELU forward/backward within 1e-6 * max(1, |x|).
  {
    const int64_t m = 400001;
    Vec g(m), yf(m), yr(m), dyv(m, 1.f), df(m), dr(m);
    double exp_rel = 0, erf_abs = 0, gf = 0, gb = 0;
    for (int64_t i = 0; i < m; i++) {
      const float v = -20.f + 40.f * float(i) / float(m - 1);
      g[i] = v;
      if (v > -80.f) exp_rel = std::max(exp_rel, std::fabs(exp_approx(v) - std::exp(double(v))) / std::exp(double(v)));
      erf_abs = std::max(erf_abs, std::fabs(erf_approx(v) - std::erf(double(v))));
    }
    gelu_forward(yf.data(), g.data(), m);
    gelu_forward_reference(yr.data(), g.data(), m);
    gelu_backward(df.data(), dyv.data(), g.data(), m);
    gelu_backward_reference(dr.data(), dyv.data(), g.data(), m);
    for (int64_t i = 0; i < m; i++) {
      const double s = std::max(1.f, std::fabs(g[i]));
      gf = std::max(gf, std::fabs(double(yf[i]) - yr[i]) / s);
      gb = std::max(gb, std::fabs(double(df[i]) - dr[i]) / s);
    }
    report("exp_approx vs exp (max relative error on [-20, 20])", exp_rel, 2e-7);
    report("erf_approx vs erf (max absolute error on [-20, 20])", erf_abs, 6e-7);
    report("gelu fast vs libm reference (forward, / max(1,|x|))", gf, 1e-6);
    report("gelu fast vs libm reference (backward, / max(1,|x|))", gb, 1e-6);
    // The fused GELU + bf16 conversion computes the same floats as gelu_forward and rounds them
    // as to_bf16 does, so it should match bit for bit; the tolerance allows one bf16 rounding step
    // (2^-8 relative) in case the compiler contracts the two loops' arithmetic differently.
    std::vector<uint16_t> b_fused(m), b_ref(m);
    gelu_forward_bf16(b_fused.data(), g.data(), m);
    to_bf16(yf.data(), b_ref.data(), m);
    double bw = 0;
    for (int64_t i = 0; i < m; i++) {
      const double r = bf16_to_f32(b_ref[i]), f = bf16_to_f32(b_fused[i]);
      bw = std::max(bw, std::fabs(f - r) / std::max(1e-30, std::fabs(r)));
    }
    report("gelu_forward_bf16 vs to_bf16(gelu_forward) (max relative difference)", bw, 1.0 / 256);
  }
  auto th = [&]() { tanh_forward(y.data(), x.data(), n); return dot(y, c); };
  th();
  tanh_backward(dx.data(), c.data(), y.data(), n);
  report("tanh vs finite differences", rel_err(dx, numeric_grad(x, th, all_idx(n), kEps)), kFdTol);
  // Dropout: the mask is reproducible, the kept fraction is 1 - p, backward applies the same mask.
  const int64_t R = 200, C = 100;
  Vec big(R * C, 1.f), d1(R * C), d2(R * C);
  std::vector<uint64_t> keys(R);
  for (int64_t r = 0; r < R; r++) keys[r] = mix64(uint64_t(r));
  dropout_rows(d1.data(), big.data(), R, C, 0.25f, 42, keys.data());
  dropout_rows(d2.data(), big.data(), R, C, 0.25f, 42, keys.data());
  double kept = 0;
  for (float v : d1) kept += v != 0.f;
  report("dropout replays the same mask", rel_err(d1, d2), 0.0);
  // 20000 Bernoulli(0.75) draws: standard deviation of the kept fraction is 0.003; allow 5 sigma.
  report("dropout keeps 1 - p of the elements", std::fabs(kept / double(R * C) - 0.75), 0.015);
  report("dropout scales kept values by 1 / (1 - p)", std::fabs(*std::max_element(d1.begin(), d1.end()) - 1.f / 0.75f), 1e-6);
}

// The fused linear-layer epilogues do the separate ops' arithmetic in the same order, so they are
// checked for exact equality with the composition they replace (tolerance 0).
static void test_fused_epilogues() {
  std::mt19937 rng(15);
  const int64_t N = 37, C = 1100;  // C > 1024: more than one chunk of the bf16 variant's row buffer
  Vec y0 = randn(N * C, rng), b = randn(C, rng), r = randn(N * C, rng);
  std::vector<uint64_t> keys(N);
  for (int64_t i = 0; i < N; i++) keys[i] = 1000 + 7 * i;
  for (float p : {0.f, 0.3f}) {
    Vec ref = y0, fused = y0;
    bias_add(ref.data(), b.data(), N, C);
    dropout_rows(ref.data(), ref.data(), N, C, p, 9, keys.data());
    for (int64_t i = 0; i < N * C; i++) ref[i] += r[i];
    bias_dropout_residual(fused.data(), b.data(), r.data(), N, C, p, 9, keys.data());
    char name[96];
    std::snprintf(name, sizeof name, "bias_dropout_residual equals bias_add + dropout_rows + sum (p %.1f)", p);
    report(name, rel_err(fused, ref), 0.0);
  }
  Vec h_ref = y0, g_ref(N * C), h_f = y0, g_f(N * C), h_b = y0;
  bias_add(h_ref.data(), b.data(), N, C);
  gelu_forward(g_ref.data(), h_ref.data(), N * C);
  bias_gelu_forward(h_f.data(), b.data(), g_f.data(), N, C);
  report("bias_gelu_forward equals bias_add + gelu_forward (h and gelu(h))",
         std::max(rel_err(h_f, h_ref), rel_err(g_f, g_ref)), 0.0);
  Vec h_in = y0;  // in place, as inference runs it
  bias_gelu_forward(h_in.data(), b.data(), h_in.data(), N, C);
  report("bias_gelu_forward in place equals gelu(h + bias)", rel_err(h_in, g_ref), 0.0);
  std::vector<uint16_t> gb(N * C), gb_ref(N * C);
  bias_gelu_forward_bf16(h_b.data(), b.data(), gb.data(), N, C);
  to_bf16(g_ref.data(), gb_ref.data(), N * C);
  report("bias_gelu_forward_bf16 equals to_bf16(bias_add + gelu_forward)",
         (gb == gb_ref && rel_err(h_b, h_ref) == 0.0) ? 0.0 : 1.0, 0.0);
}

static void test_attention(float p) {
  std::mt19937 rng(4);
  const int64_t H = 16, nh = 4;
  std::vector<int32_t> lengths = {5, 1, 8, 3};
  std::vector<int64_t> offsets;
  int64_t T = 0, maxL = 0;
  for (auto L : lengths) offsets.push_back(T), T += L, maxL = std::max<int64_t>(maxL, L);
  std::vector<uint64_t> keys = {11, 22, 33, 44};
  AttentionShape s{int64_t(lengths.size()), lengths.data(), offsets.data(), keys.data(), H, nh};
  Vec qkv = randn(T * 3 * H, rng), c = randn(T * H, rng), ctx(T * H), scratch(attention_scratch_floats(nh, maxL));
  auto loss = [&]() {
    attention_forward(ctx.data(), qkv.data(), s, p, 7, scratch.data(), Precision::FP32);
    return dot(ctx, c);
  };
  loss();
  Vec dqkv(T * 3 * H);
  attention_backward(dqkv.data(), c.data(), qkv.data(), s, p, 7, scratch.data(), Precision::FP32);
  char name[96];
  std::snprintf(name, sizeof name, "attention (packed, dropout %.2f) vs finite differences", p);
  report(name, rel_err(dqkv, numeric_grad(qkv, loss, all_idx(qkv.size()), kEps)), kFdTol);
  // Packing: a sequence's output does not depend on its neighbours (the implicit key padding mask).
  if (p == 0.f) {
    std::vector<int32_t> one = {8};
    std::vector<int64_t> off0 = {0};
    std::vector<uint64_t> k1 = {33};
    AttentionShape s1{1, one.data(), off0.data(), k1.data(), H, nh};
    Vec q1(qkv.begin() + offsets[2] * 3 * H, qkv.begin() + (offsets[2] + 8) * 3 * H), c1(8 * H);
    attention_forward(c1.data(), q1.data(), s1, 0.f, 7, scratch.data(), Precision::FP32);
    attention_forward(ctx.data(), qkv.data(), s, 0.f, 7, scratch.data(), Precision::FP32);
    Vec part(ctx.begin() + offsets[2] * H, ctx.begin() + (offsets[2] + 8) * H);
    report("attention: a packed sequence equals the same sequence alone", rel_err(part, c1), 1e-6);
  }
}

// The bf16 attention path (operands converted once per layer, probabilities written in bf16 by the
// softmax/dropout pass) against the fp32 path. Every product takes bf16 operands (relative
// rounding 2^-9 each, fp32 accumulation); forward chains two products through the softmax and
// backward three, so over random O(1) data the outputs differ from fp32 by a few 1e-3 relative
// (measured 3.5e-3 forward, 4.2e-3 backward); 2e-2 leaves room for the chaining while a wrong
// mask, scale or transpose gives O(1).
// The 600-token sequence exercises rows longer than the conversion's 512-value chunks.
static void test_attention_bf16(float p) {
  std::mt19937 rng(14);
  const int64_t H = 32, nh = 4;
  std::vector<int32_t> lengths = {5, 1, 37, 600, 3};
  std::vector<int64_t> offsets;
  int64_t T = 0, maxL = 0;
  for (auto L : lengths) offsets.push_back(T), T += L, maxL = std::max<int64_t>(maxL, L);
  std::vector<uint64_t> keys = {11, 22, 33, 44, 55};
  AttentionShape s{int64_t(lengths.size()), lengths.data(), offsets.data(), keys.data(), H, nh};
  Vec qkv = randn(T * 3 * H, rng), dc = randn(T * H, rng), scratch(attention_scratch_floats(nh, maxL));
  Vec c32(T * H), c16(T * H), d32(T * 3 * H), d16(T * 3 * H);
  attention_forward(c32.data(), qkv.data(), s, p, 7, scratch.data(), Precision::FP32);
  attention_backward(d32.data(), dc.data(), qkv.data(), s, p, 7, scratch.data(), Precision::FP32);
  attention_forward(c16.data(), qkv.data(), s, p, 7, scratch.data(), Precision::BF16);
  attention_backward(d16.data(), dc.data(), qkv.data(), s, p, 7, scratch.data(), Precision::BF16);
  char name[96];
  std::snprintf(name, sizeof name, "attention bf16 forward vs fp32 (dropout %.2f)", p);
  report(name, rel_err(c16, c32), 2e-2);
  std::snprintf(name, sizeof name, "attention bf16 backward vs fp32 (dropout %.2f)", p);
  report(name, rel_err(d16, d32), 2e-2);
  // bf16 really used: identical results would mean the fp32 path ran.
  std::snprintf(name, sizeof name, "attention bf16 differs from fp32 (dropout %.2f)", p);
  report(name, rel_err(c16, c32) > 1e-6 ? 0.0 : 1.0, 0.0);
}

static void test_pooling() {
  std::mt19937 rng(5);
  const int64_t C = 6;
  std::vector<int32_t> lengths = {3, 1, 4};
  std::vector<int64_t> offsets = {0, 3, 4};
  const int64_t T = 8, B = 3;
  for (PoolMode mode : {PoolMode::CLS, PoolMode::Mean}) {
    Vec h = randn(T * C, rng), c = randn(B * C, rng), out(B * C);
    auto loss = [&]() {
      pool_forward(out.data(), h.data(), lengths.data(), offsets.data(), B, C, mode);
      return dot(out, c);
    };
    loss();
    Vec dh(T * C, 0.f);
    pool_backward(dh.data(), c.data(), lengths.data(), offsets.data(), B, C, mode);
    report(mode == PoolMode::CLS ? "cls pooling vs finite differences" : "mean pooling vs finite differences",
           rel_err(dh, numeric_grad(h, loss, all_idx(h.size()), kEps)), kFdTol);
  }
  Vec x = randn(B * C, rng), c = randn(B * C, rng), y(B * C), norms(B), dx(B * C);
  auto loss = [&]() { l2norm_forward(y.data(), norms.data(), x.data(), B, C); return dot(y, c); };
  loss();
  l2norm_backward(dx.data(), c.data(), y.data(), norms.data(), B, C);
  report("l2 normalisation vs finite differences", rel_err(dx, numeric_grad(x, loss, all_idx(x.size()), kEps)), kFdTol);
}

static void test_infonce() {
  std::mt19937 rng(6);
  const int64_t nq = 4, np = 7, D = 8;
  for (bool sym : {false, true}) {
    Vec q = randn(nq * D, rng, 0.3f), p = randn(np * D, rng, 0.3f), dq(nq * D), dp(np * D);
    auto loss = [&]() {
      Vec a(nq * D), b(np * D);
      return double(infonce_forward_backward(a.data(), b.data(), q.data(), p.data(), nq, np, D, 5.f, sym));
    };
    infonce_forward_backward(dq.data(), dp.data(), q.data(), p.data(), nq, np, D, 5.f, sym);
    const std::string tag = sym ? "symmetric" : "one-way";
    report("infonce " + tag + " d/dq vs finite differences", rel_err(dq, numeric_grad(q, loss, all_idx(q.size()), kEps)), kFdTol);
    report("infonce " + tag + " d/dp vs finite differences", rel_err(dp, numeric_grad(p, loss, all_idx(p.size()), kEps)), kFdTol);
  }
  // A hand-made value: two orthogonal unit queries, each equal to its positive, scale 1:
  // loss = log(e^1 + e^0) - 1 = log(1 + e^-1).
  Vec q = {1, 0, 0, 1}, dq(4), dp(4);
  const double l = infonce_forward_backward(dq.data(), dp.data(), q.data(), q.data(), 2, 2, 2, 1.f, false);
  report("infonce hand-made value", std::fabs(l - std::log(1.0 + std::exp(-1.0))), 1e-6);
}

// Whole model: loss = c . embeddings, gradient w.r.t. every parameter tensor (sampled entries).
static void test_model(bool roberta, Pooling pooling, int64_t dense, bool normalize, float dropout) {
  ModelConfig cfg;
  cfg.roberta = roberta;
  cfg.vocab = 30, cfg.hidden = 16, cfg.layers = 2, cfg.heads = 2, cfg.ffn = 24, cfg.max_pos = 20, cfg.type_vocab = 2;
  cfg.ln_eps = 1e-5f, cfg.pad_id = 1, cfg.hidden_dropout = dropout, cfg.attn_dropout = dropout;
  cfg.pooling = pooling, cfg.has_pooler = true, cfg.dense_out = dense, cfg.dense_tanh = true, cfg.normalize = normalize;
  cfg.seed = 3;
  Model m(cfg);
  std::mt19937 rng(7);
  // Larger weights than the 0.02 init so every path carries signal the differences can see.
  for (const auto& p : m.params()) {
    Vec r = randn(size_t(p.size), rng, 0.3f);
    bool ln_w = p.name.find("LayerNorm.weight") != std::string::npos;
    for (int64_t i = 0; i < p.size; i++) m.weights()[p.offset + i] = r[size_t(i)] + (ln_w ? 1.f : 0.f);
  }
  std::vector<int32_t> lengths = {4, 7, 2};
  std::vector<int32_t> ids = {0, 5, 9, 2, 0, 3, 3, 17, 29, 8, 2, 0, 2};
  std::vector<int32_t> types = {0, 0, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 1};
  Batch b;
  b.ids = ids.data(), b.lengths = lengths.data(), b.type_ids = types.data(), b.T = 13, b.B = 3;
  const int64_t D = m.embedding_dim();
  Vec c = randn(size_t(3 * D), rng), out(size_t(3 * D));
  Vec W(m.weights(), m.weights() + m.num_params());
  auto loss = [&]() {
    std::copy(W.begin(), W.end(), m.weights());
    m.forward(b, out.data(), true, 99, nullptr);
    return dot(out, c);
  };
  loss();
  m.zero_grad();
  m.backward(c.data());
  Vec G(m.grads(), m.grads() + m.num_params());
  char tag[160];
  std::snprintf(tag, sizeof tag, "model %s pooling=%s dense=%ld normalize=%d dropout=%.1f", roberta ? "roberta" : "bert",
                pooling == Pooling::CLS ? "cls" : pooling == Pooling::Mean ? "mean" : "pooler", long(dense), normalize,
                dropout);
  std::vector<Vec> fds, ans;
  double total = 0;
  for (const auto& p : m.params()) {
    std::vector<size_t> at;
    for (int64_t i = 0; i < p.size; i += std::max<int64_t>(1, p.size / 12)) at.push_back(size_t(p.offset + i));
    fds.push_back(numeric_grad(W, loss, at, kEps));
    ans.push_back(pick(G, at));
    total += dot(ans.back(), ans.back());
  }
  // Some gradients are zero in exact arithmetic (the key bias: softmax ignores a shift shared by
  // all keys; the pooler under mean pooling) and finite differences give rounding noise there.
  // So each tensor's error is relative to max(its own norm, 1e-3 x the whole gradient's norm).
  double worst = 0;
  std::string worst_name;
  for (size_t k = 0; k < fds.size(); k++) {
    double e = rel_err(ans[k], fds[k], 1e-3 * std::sqrt(total));
    if (e > worst) worst = e, worst_name = m.params()[k].name;
  }
  report(std::string(tag) + " all parameters vs finite differences (worst: " + worst_name + ")", worst, 2e-2);
}

// Exact search (search.h): the blocked oneDNN top-k against the reference (double sums, full sort).
// Gaussian data: scores may differ by fp32 summation order (relative ~1e-6 here), so ids are
// compared wherever the reference's neighbouring scores are more than 1e-4 apart: the worst-case
// fp32 summation error, d 2^-24 sum|q_i c_i|, is ~7e-5 for these 40-term sums of N(0,1) products
// (sum|q_i c_i| ~ 30), the typical one ~1e-6, so an order decided by a larger gap cannot flip.
// Integer-valued data in {-1, 0, 1}: every product and partial sum is exact in fp32 whatever the
// order, so scores tie exactly, and ids (ties broken by lower corpus index) must match exactly.
static void test_search() {
  std::mt19937 rng(11);
  const SearchBlocks small{16, 256}, dflt{};
  {
    const int64_t nq = 37, nc = 5000, d = 40, k = 10;
    Vec Q = randn(size_t(nq * d), rng), C = randn(size_t(nc * d), rng);
    Vec rs(size_t(nq * (k + 1)));
    std::vector<int32_t> ri(size_t(nq * (k + 1)));
    search_topk_reference(Q.data(), nq, C.data(), nc, d, k + 1, rs.data(), ri.data());
    for (const SearchBlocks* b : {&small, &dflt}) {
      Vec fs(size_t(nq * k)), want;
      std::vector<int32_t> fi(size_t(nq * k));
      search_topk(Q.data(), nq, C.data(), nc, d, k, fs.data(), fi.data(), *b);
      const xlir_tests::RankCheck rc = xlir_tests::unambiguous_ranks(rs, ri, nq, k, fi, want);
      char name[160];
      std::snprintf(name, sizeof name, "search_topk gaussian %ldx%ldx%ld k=%ld blocks=%ldx%ld", long(nq), long(nc),
                    long(d), long(k), long(b->queries), long(b->corpus));
      report(std::string(name) + " scores vs reference", rel_err(fs, want), 1e-5);
      report(std::string(name) + " ids vs reference at " + std::to_string(rc.checked) + " unambiguous ranks (mismatches)",
             double(rc.wrong), 0);
    }
  }
  struct TieCase { int64_t nq, nc, d, k; };
  for (const TieCase& c : {TieCase{21, 3000, 8, 25}, TieCase{5, 50, 4, 50}, TieCase{3, 10, 3, 1}}) {
    Vec Q = xlir_tests::tie_values(rng, size_t(c.nq * c.d)), C = xlir_tests::tie_values(rng, size_t(c.nc * c.d));
    xlir_tests::duplicate_rows(C, c.nc, c.d);
    Vec rs(size_t(c.nq * c.k));
    std::vector<int32_t> ri(size_t(c.nq * c.k));
    search_topk_reference(Q.data(), c.nq, C.data(), c.nc, c.d, c.k, rs.data(), ri.data());
    for (int variant = 0; variant < 3; variant++) {
      Vec fs(size_t(c.nq * c.k));
      std::vector<int32_t> fi(size_t(c.nq * c.k));
      const SearchBlocks blk = variant == 0 ? SearchBlocks{7, 100} : dflt;
      if (variant == 2) set_gemm_path(GemmPath::Reference);
      search_topk(Q.data(), c.nq, C.data(), c.nc, c.d, c.k, fs.data(), fi.data(), blk);
      set_gemm_path(GemmPath::OneDNN);
      int64_t wrong = 0;
      for (size_t i = 0; i < fi.size(); i++) wrong += fi[i] != ri[i] || fs[i] != rs[i];
      char name[192];
      std::snprintf(name, sizeof name, "search_topk ties %ldx%ldx%ld k=%ld %s: ids and scores equal the reference (mismatches)",
                    long(c.nq), long(c.nc), long(c.d), long(c.k),
                    variant == 0 ? "blocks=7x100" : variant == 1 ? "default blocks" : "reference gemm path");
      report(name, double(wrong), 0);
    }
  }
  {
    const int64_t nq = 45, nc = 700, d = 33;
    Vec Q = randn(size_t(nq * d), rng), C = randn(size_t(nc * d), rng), ref(size_t(nq * nc));
    score_matrix_reference(Q.data(), nq, C.data(), nc, d, ref.data());
    for (const SearchBlocks* b : {&small, &dflt}) {
      Vec out(size_t(nq * nc), -1.f);
      score_matrix(Q.data(), nq, C.data(), nc, d, out.data(), *b);
      report("score_matrix 45x700x33 query block " + std::to_string(b->queries) + " vs reference", rel_err(out, ref), 1e-5);
    }
  }
  {
    auto throws = [](const std::function<void()>& f, const char* needle) {
      try {
        f();
      } catch (const Error& e) {
        return std::string(e.what()).find(needle) != std::string::npos ? 0.0 : 2.0;
      }
      return 1.0;
    };
    Vec Q(6, 1.f), C(12, 1.f), s(12);
    std::vector<int32_t> i(12);
    report("search_topk rejects k > corpus size",
           throws([&] { search_topk(Q.data(), 2, C.data(), 4, 3, 5, s.data(), i.data()); }, "exceeds the corpus size"), 0);
    report("search_topk rejects k < 1", throws([&] { search_topk(Q.data(), 2, C.data(), 4, 3, 0, s.data(), i.data()); }, "k must be"), 0);
    C[7] = std::nanf("");
    report("search_topk rejects NaN (names row 2, column 1)",
           throws([&] { search_topk(Q.data(), 2, C.data(), 4, 3, 2, s.data(), i.data()); }, "at row 2, column 1"), 0);
  }
}

int main() {
  test_gemm();
  test_layernorm();
  test_elementwise();
  test_fused_epilogues();
  test_attention(0.f);
  test_attention(0.3f);
  test_attention_bf16(0.f);
  test_attention_bf16(0.3f);
  test_pooling();
  test_infonce();
  test_search();
  test_model(false, Pooling::Pooler, 0, true, 0.f);
  test_model(false, Pooling::CLS, 12, true, 0.2f);
  test_model(true, Pooling::Mean, 0, true, 0.2f);
  test_model(true, Pooling::Mean, 0, false, 0.f);
  std::printf("%d failed\n", g_failed);
  return g_failed ? 1 : 0;
}
