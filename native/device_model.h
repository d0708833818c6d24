// The encoder on an accelerator: Model::forward / backward and the AdamW step written once over an
// "Ops" back end that supplies memory and the fused kernels (the CUDA kernels of native/cuda/, or
// their CPU emulation in host_ops.h). The layer sequence is the CPU Model's (model.cc), op for op,
// with the device kernels' fusions:
//   embedding gather + LayerNorm + dropout;  linear products with the bias in the product's
//   epilogue;  dropout, residual add and LayerNorm in one kernel (and in backward, the LayerNorm's
//   input gradient together with the branch's gradient after dropout);  bias + erf GELU (backward:
//   with the bias gradient's column sums);  flash-style attention (the log-sum-exp per row saved,
//   no L x L matrix kept);  pooling and L2 normalisation.
// Precision: fp32 products (checking mode) or bf16 products with fp32 accumulation and fp32
// outputs, reading bf16 copies that the producing kernel writes alongside its fp32 output (LayerNorm,
// attention, GELU, and in backward the gradients that feed products), and bf16 working weights that
// the AdamW kernel rewrites from the fp32 master weights in the same pass. Where only a product
// reads a tensor, bf16 mode writes only the bf16 copy (the GELU output, the GELU's input gradient,
// and where the back end's attention works from bf16 copies alone, attention's output, its output
// gradient and dqkv). Attention in bf16 mode rounds q, k, v and the probabilities to bf16 for its
// products (tensor cores on CUDA, the CPU's bf16 attention when emulated) and keeps its softmax
// statistics in fp32; LayerNorm, GELU and the arithmetic of every gradient are fp32. The pooler and
// the sentence-transformers Dense head are [B, H] products and stay fp32.
// Memory traffic is what these fusions are for: the bf16 step is bandwidth-bound outside the
// products, and each fusion removes a read or a write of a [tokens, hidden or ffn] tensor.
// Memory: parameters, gradients and bf16 weights are one allocation; AdamW moments a second (made
// when an optimizer first attaches); activations and batch arrays one arena, planned per batch
// shape and grown only when a larger batch arrives (a steady-state step allocates nothing). A
// forward without `keep` (inference, gradient caching's first pass) keeps one layer's activations.
// Gradients accumulate (+=) across backward calls until zero_grad, as on the CPU.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "device_backend.h"
#include "embedding.h"
#include "model.h"
#include "pooling.h"

namespace xlir {

template <class Ops>
class DeviceModel final : public DeviceBackend {
  using bf16 = typename Ops::bf16;

 public:
  DeviceModel(const Model& host, Ops ops, std::string name) : host_(host), ops_(std::move(ops)), name_(std::move(name)) {
    const ModelConfig& c = host_.config();
    n_ = host_.num_params();
    // One allocation: W (fp32), G (fp32), W16 (bf16); each part 256-byte aligned.
    const size_t wb = align(size_t(n_) * 4), w16b = align(size_t(n_) * 2);
    params_mem_ = static_cast<char*>(ops_.alloc(2 * wb + w16b, "parameters, gradients and bf16 weights"));
    W_ = reinterpret_cast<float*>(params_mem_);
    G_ = reinterpret_cast<float*>(params_mem_ + wb);
    W16_ = reinterpret_cast<bf16*>(params_mem_ + 2 * wb);
    allocated_ = int64_t(2 * wb + w16b);
    ops_.zero(G_, size_t(n_) * 4);
    auto off = [&](const std::string& n) { return host_.param(n).offset; };
    word_ = off("embeddings.word_embeddings.weight");
    pos_ = off("embeddings.position_embeddings.weight");
    type_ = off("embeddings.token_type_embeddings.weight");
    eln_w_ = off("embeddings.LayerNorm.weight");
    eln_b_ = off("embeddings.LayerNorm.bias");
    for (int64_t l = 0; l < c.layers; l++) lp_.push_back(host_.layer_offsets(l));
    if (c.has_pooler) pool_w_ = off("pooler.dense.weight"), pool_b_ = off("pooler.dense.bias");
    if (c.dense_out) {
      dense_w_ = off("dense.linear.weight");
      if (c.dense_bias) dense_b_ = off("dense.linear.bias");
    }
  }
  ~DeviceModel() override {
    try {
      ops_.sync();  // queued work may still read the memory freed below
    } catch (...) {
      // A failed kernel leaves the device in an error state; freeing is all that is left to do,
      // and a destructor must not throw.
    }
    ops_.free(params_mem_);
    if (moments_mem_) ops_.free(moments_mem_);
    if (arena_) ops_.free(arena_);
    if (opt_mem_) ops_.free(opt_mem_);
  }
  DeviceModel(const DeviceModel&) = delete;
  DeviceModel& operator=(const DeviceModel&) = delete;

  std::string name() const override { return name_; }
  int64_t bytes_allocated() const override { return allocated_; }

  void upload_weights(const float* w) override {
    ops_.upload(W_, w, size_t(n_) * 4);
    w16_current_ = false;
  }
  void download_weights(float* w) override { ops_.download(w, W_, size_t(n_) * 4); }
  void upload_grads(const float* g) override { ops_.upload(G_, g, size_t(n_) * 4); }
  void download_grads(float* g) override { ops_.download(g, G_, size_t(n_) * 4); }
  void upload_moments(const float* m, const float* v) override {
    ensure_moments();
    ops_.upload(M_, m, size_t(n_) * 4);
    ops_.upload(V_, v, size_t(n_) * 4);
  }
  void download_moments(float* m, float* v) override {
    XLIR_CHECK(moments_mem_, "download_moments: no optimizer state on " << name_);
    ops_.download(m, M_, size_t(n_) * 4);
    ops_.download(v, V_, size_t(n_) * 4);
  }

  void zero_grad() override { ops_.zero(G_, size_t(n_) * 4); }

  void forward(const PackedBatch& b, Precision prec, float* out, bool dropout, bool keep, bool recompute, uint64_t seed,
               float* hidden_out) override {
    const ModelConfig& c = host_.config();
    have_train_forward_ = false;
    bf_ = prec == Precision::BF16;
    keep_ = keep;
    recompute_ = keep && recompute;
    seed_ = seed;
    plan(b, keep, bf_);
    upload_batch(b, keep);
    if (bf_ && !w16_current_) {  // after an upload; AdamW keeps the copies current afterwards
      ops_.to_bf16(W16_, W_, n_);
      w16_current_ = true;
    }
    const int64_t T = T_, B = B_, H = c.hidden, D = dim();
    const float hp = dropout ? c.hidden_dropout : 0.f, ap = dropout ? c.attn_dropout : 0.f;

    // Dropout follows the embedding LayerNorm (in the same kernel), and the bf16 copy follows it.
    ops_.embedding_layernorm_forward(a_.emb_sum, xs_[0], bf_ ? xs16_[0] : nullptr, a_.emb_mean, a_.emb_rstd, a_.ids,
                                     a_.pos_ids, a_.type_ids, W_ + word_, W_ + pos_, W_ + type_, c.vocab, c.max_pos,
                                     c.type_vocab, W_ + eln_w_, W_ + eln_b_, T, H, c.ln_eps,
                                     RowDropout{hp, site_key(seed, -1, 0), a_.tok_keys});
    hp_ = hp, ap_ = ap;
    for (int64_t l = 0; l < c.layers; l++) layer_forward(l);
    const float* h = xs_[c.layers];
    const PoolMode mode = c.pooling == Pooling::Mean ? PoolMode::Mean : PoolMode::CLS;
    ops_.pool_forward(a_.cls, h, a_.off32, B, H, mode);
    const float* s = a_.cls;
    if (c.pooling == Pooling::Pooler) {
      ops_.linear(a_.cls, W_ + pool_w_, W_ + pool_b_, a_.pooled, B, H, H, false);
      ops_.tanh_forward(a_.pooled, a_.pooled, B * H);
      s = a_.pooled;
    }
    if (c.dense_out) {
      ops_.linear(s, W_ + dense_w_, dense_b_ >= 0 ? W_ + dense_b_ : nullptr, a_.dense, B, D, H, false);
      if (c.dense_tanh) ops_.tanh_forward(a_.dense, a_.dense, B * D);
      s = a_.dense;
    }
    if (c.normalize) {
      ops_.l2norm_forward(a_.out, a_.norms, s, B, D);
      s = a_.out;
    }
    if (hidden_out) ops_.download(hidden_out, h, size_t(T * H) * 4);
    ops_.download(out, s, size_t(B * D) * 4);
    have_train_forward_ = keep;
  }

  void backward(const float* dout) override {
    XLIR_CHECK(have_train_forward_, "backward() needs a training forward() first (and only one backward per forward)");
    have_train_forward_ = false;
    const ModelConfig& c = host_.config();
    const int64_t T = T_, B = B_, H = c.hidden, F = c.ffn, D = dim();
    const float hp = c.hidden_dropout, ap = c.attn_dropout;
    const uint64_t seed = seed_;
    float* dh = a_.dh;
    float* dtmp = a_.dtmp;
    float* dbr = a_.dbr;
    float* dqkv = a_.dqkv;
    float* dffn = a_.dffn;
    bf16* y16 = a_.y16;
    float* scr = a_.red;
    auto G = [&](int64_t off) { return trainable(off) ? G_ + off : nullptr; };

    // Head: normalisation, Dense, pooler, pooling ([B, *] tensors, fp32).
    float* d1 = a_.d1;
    float* d2 = a_.d2;
    float* dz = a_.dz;
    ops_.upload(d1, dout, size_t(B * D) * 4);
    if (c.normalize) ops_.l2norm_backward(d1, d1, a_.out, a_.norms, B, D);
    const float* pooled_in = c.pooling == Pooling::Pooler ? a_.pooled : a_.cls;
    float* dpool = d1;
    if (c.dense_out) {
      if (c.dense_tanh) ops_.tanh_backward(d1, d1, a_.dense, B * D);
      if (float* gw = G(dense_w_)) {
        ops_.gemm(linear_bwd_w_desc(B, D, H), d1, pooled_in, gw, false);
        if (dense_b_ >= 0) ops_.bias_backward(G_ + dense_b_, d1, B, D, scr);
      }
      ops_.gemm(linear_bwd_x_desc(B, D, H, 0.f), d1, W_ + dense_w_, d2, false);
      dpool = d2;
    }
    if (c.pooling == Pooling::Pooler) {
      ops_.tanh_backward(dz, dpool, a_.pooled, B * H);
      if (float* gw = G(pool_w_)) {
        ops_.gemm(linear_bwd_w_desc(B, H, H), dz, a_.cls, gw, false);
        ops_.bias_backward(G_ + pool_b_, dz, B, H, scr);
      }
      ops_.gemm(linear_bwd_x_desc(B, H, H, 0.f), dz, W_ + pool_w_, dpool, false);
    }
    ops_.zero(dh, size_t(T * H) * 4);
    ops_.pool_backward(dh, dpool, a_.off32, B, H, c.pooling == Pooling::Mean ? PoolMode::Mean : PoolMode::CLS);

    const std::vector<char> below = host_.trains_at_or_below();  // stop where nothing trains
    // bf16 mode: a gradient that feeds two products (dW and dX) is in y16 as bf16, written by the
    // kernel that produces the gradient (LayerNorm backward, GELU backward, attention backward).
    // dbr, the branch gradient after a LayerNorm in fp32, exists only where it is needed (plan()).
    for (int64_t l = c.layers - 1; l >= 0; l--) {
      if (!below[size_t(l + 1)]) return;
      if (recompute_) layer_forward(l);
      const LayerOff& w = lp_[size_t(l)];
      const Acts a = layer_acts(l);
      const bool tr = trainable(w.qkv_w);
      // LayerNorm 2 backward: dtmp = dr2 (the residual's gradient) and, in the same pass, the FFN
      // branch's gradient after its dropout (fp32 in dbr for fp32 products, else its bf16 copy in
      // y16) and its column sums, the FFN output bias gradient.
      ops_.layernorm_backward(dtmp, tr ? G_ + w.ln2_w : nullptr, tr ? G_ + w.ln2_b : nullptr, dh, a.r2, W_ + w.ln2_w,
                              a.mean2, a.rstd2, T, H, false, scr, dbr, bf_ ? y16 : nullptr,
                              tr ? G_ + w.o_b : nullptr, RowDropout{hp, site_key(seed, l, 2), a_.tok_keys});
      // FFN output product: dWo += dY^T gelu(pre), dffn = dY Wo.
      const void* dY = bf_ ? static_cast<const void*>(y16) : dbr;
      if (tr) {
        // The GELU output: kept by the forward in bf16 mode, recomputed into scratch in fp32 mode.
        if (!bf_) ops_.bias_gelu_forward(nullptr, a_.gel, nullptr, a.pre, nullptr, T, F);
        ops_.gemm(linear_bwd_w_desc(T, H, F), dY, in(a_.gel, a.gel16), G_ + w.o_w, bf_);
      }
      ops_.gemm(linear_bwd_x_desc(T, H, F, 0.f), dY, wt(w.o_w), dffn, bf_);
      // GELU backward (and the bias gradient's column sums) in one pass. bf16 mode: only the bf16
      // copy of the gradient is written, which is all the two products below read (y16 is free
      // again: the products above have read it, in stream order).
      ops_.bias_gelu_backward(bf_ ? nullptr : dffn, bf_ ? y16 : nullptr, tr ? G_ + w.i_b : nullptr, dffn, a.pre, T, F,
                              scr);
      dY = bf_ ? static_cast<const void*>(y16) : dffn;
      if (tr) ops_.gemm(linear_bwd_w_desc(T, F, H), dY, in(a.a1, a.a116), G_ + w.i_w, bf_);
      ops_.gemm(linear_bwd_x_desc(T, F, H, 1.f), dY, wt(w.i_w), dtmp, bf_);  // da1 = dr2 + dffn Wi
      // LayerNorm 1 backward: dh = dr1, and the attention branch's gradient after its dropout with
      // its column sums (the attention output bias gradient).
      ops_.layernorm_backward(dh, tr ? G_ + w.ln1_w : nullptr, tr ? G_ + w.ln1_b : nullptr, dtmp, a.r1, W_ + w.ln1_w,
                              a.mean1, a.rstd1, T, H, false, scr, dbr, bf_ ? y16 : nullptr,
                              tr ? G_ + w.ao_b : nullptr, RowDropout{hp, site_key(seed, l, 1), a_.tok_keys});
      dY = bf_ ? static_cast<const void*>(y16) : dbr;
      if (tr) ops_.gemm(linear_bwd_w_desc(T, H, H), dY, in(a.ctx, a.ctx16), G_ + w.ao_w, bf_);
      // dctx into dffn's space ([T, H] fits in [T, F]): in bf16 where the back end's attention
      // works from bf16 copies alone (plan(): then dqkv and a.ctx are null too, and the attention
      // backward reads ctx16 and dctx16 and writes only dqkv's bf16 copy and the bias sums).
      float* dctx = attn16_ ? nullptr : dffn;
      bf16* dctx16 = attn16_ ? reinterpret_cast<bf16*>(dffn) : nullptr;
      if (attn16_) ops_.gemm16(linear_bwd_x_desc(T, H, H, 0.f), dY, wt(w.ao_w), dctx16);
      else ops_.gemm(linear_bwd_x_desc(T, H, H, 0.f), dY, wt(w.ao_w), dctx, bf_);
      ops_.attention_backward(dqkv, bf_ ? y16 : nullptr, tr ? G_ + w.qkv_b : nullptr, dctx, dctx16, a.ctx, a.ctx16,
                              a.lse, a.qkv, a_.off32, B, max_len_, T, H, c.heads, ap, site_key(seed, l, 0),
                              a_.seq_keys, scr, bf_);
      dY = bf_ ? static_cast<const void*>(y16) : dqkv;
      if (tr) ops_.gemm(linear_bwd_w_desc(T, 3 * H, H), dY, in(xs_[l], xs16_[l]), G_ + w.qkv_w, bf_);
      if (below[size_t(l)]) ops_.gemm(linear_bwd_x_desc(T, 3 * H, H, 1.f), dY, wt(w.qkv_w), dh, bf_);  // dx = dr1 + ...
    }
    if (!below[0]) return;
    ops_.dropout_rows(dtmp, dh, T, H, hp, site_key(seed, -1, 0), a_.tok_keys);
    const bool ln_tr = trainable(eln_w_);
    ops_.layernorm_backward(dh, ln_tr ? G_ + eln_w_ : nullptr, ln_tr ? G_ + eln_b_ : nullptr, dtmp, a_.emb_sum,
                            W_ + eln_w_, a_.emb_mean, a_.emb_rstd, T, H, false, scr, nullptr, nullptr, nullptr,
                            RowDropout{});
    for (int k = 0; k < 3; k++) {
      const int64_t table = k == 0 ? word_ : k == 1 ? pos_ : type_;
      if (!trainable(table)) continue;
      ops_.embedding_backward(G_ + table, dh, a_.plan[k].order, a_.plan[k].seg_start, a_.plan[k].seg_row,
                              plan_segments_[k], H);
    }
  }

  double adamw_step(const AdamWHyper& h, const std::vector<int32_t>& touched_rows) override {
    ensure_moments();
    const std::vector<ParamInfo>& ps = host_.params();
    // Norm partials in the CPU's order (adamw in addon.cc sums tensor by tensor in table order,
    // the word table first): the listed rows of the word table, then every other trainable tensor.
    std::vector<int64_t> begin, size;
    bool word_trains = false;
    for (const ParamInfo& p : ps) {
      if (!p.trainable) continue;
      if (p.offset == word_) {
        word_trains = true;
        continue;
      }
      begin.push_back(p.offset);
      size.push_back(p.size);
    }
    const int64_t per = ops_.norm_scratch_doubles(1), R = int64_t(begin.size());
    const int64_t nrows = int64_t(touched_rows.size());
    ensure_opt_mem(R + 1, nrows);
    if (word_trains && nrows) ops_.upload(rows_, touched_rows.data(), size_t(nrows) * 4);
    ops_.sum_squares_rows_partial(norm_scratch_, G_ + word_, rows_, word_trains ? nrows : 0, host_.config().hidden);
    ops_.global_norm(norm_, nullptr, G_, begin.data(), size.data(), R, 0.f, norm_scratch_ + per);
    ops_.norm_from_partials(norm_, clip_, norm_scratch_, (R + 1) * per, h.max_grad_norm);
    // The update is element-wise, so neighbouring tensors in the flat array with the same weight
    // decay are one launch (about 2 per layer instead of 16); the row-sparse table stands alone.
    int64_t run_begin = -1, run_end = -1;
    float run_wd = 0.f;
    auto flush = [&]() {
      if (run_begin < 0) return;
      ops_.adamw_update(W_ + run_begin, W16_ + run_begin, G_ + run_begin, M_ + run_begin, V_ + run_begin,
                        run_end - run_begin, h.lr, h.beta1, h.beta2, h.eps, run_wd, clip_, h.step);
      run_begin = -1;
    };
    for (const ParamInfo& p : ps) {
      const float wd = p.decay ? h.weight_decay : 0.f;
      const int64_t o = p.offset;
      if (!p.trainable || (h.sparse_embeddings && o == word_)) {
        flush();
        if (p.trainable)
          ops_.adamw_update_rows(W_ + o, W16_ + o, G_ + o, M_ + o, V_ + o, rows_, nrows, p.shape[1], h.lr, h.beta1,
                                 h.beta2, h.eps, wd, clip_, h.step);
        continue;
      }
      if (run_begin >= 0 && (o != run_end || wd != run_wd)) flush();
      if (run_begin < 0) run_begin = o, run_wd = wd;
      run_end = o + p.size;
    }
    flush();
    float norm = 0;
    ops_.download(&norm, norm_, 4);
    return double(norm);
  }

 private:
  using LayerOff = Model::LayerOffsets;
  // One layer's saved activations (a training forward keeps one set per layer).
  struct Acts {
    float *qkv, *ctx, *lse, *r1, *mean1, *rstd1, *a1, *pre, *r2, *mean2, *rstd2;
    bf16 *ctx16, *a116, *gel16;  // gel16: the GELU output, kept in bf16 mode only (ctx: see plan())
  };
  struct GradPlanDev {
    int32_t *order = nullptr, *seg_start = nullptr, *seg_row = nullptr;
  };
  // Everything in the arena (batch arrays, activations, scratch).
  struct Arena {
    int32_t *ids, *pos_ids, *type_ids, *off32;
    uint64_t *seq_keys, *tok_keys;
    GradPlanDev plan[3];
    float *emb_sum, *emb_mean, *emb_rstd, *tmp, *gel, *cls, *pooled, *dense, *out, *norms;
    float *dh, *dtmp, *dbr, *dqkv, *dffn, *red, *d1, *d2, *dz;
    bf16* y16;
  };

  // One encoder layer's forward from xs_[l] into layer_acts(l) and xs_[l + 1], with the dropout of
  // the current forward (hp_, ap_, seed_): run by forward(), and again by backward() for each layer
  // when activations are recomputed (same inputs, same masks, deterministic kernels: the same bits).
  void layer_forward(int64_t l) {
    const ModelConfig& c = host_.config();
    const int64_t T = T_, B = B_, H = c.hidden, F = c.ffn;
    const float hp = hp_, ap = ap_;
    const uint64_t seed = seed_;
    const LayerOff& w = lp_[size_t(l)];
    const Acts a = layer_acts(l);
    ops_.linear(in(xs_[l], xs16_[l]), wt(w.qkv_w), W_ + w.qkv_b, a.qkv, T, 3 * H, H, bf_);
    ops_.attention_forward(a.ctx, bf_ ? a.ctx16 : nullptr, a.lse, a.qkv, a_.off32, B, max_len_, T, H, c.heads, ap,
                           site_key(seed, l, 0), a_.seq_keys, bf_);
    // r1 = x + dropout(ctx Wao^T + b): the bias in the product, the dropout and the residual add in
    // the LayerNorm kernel.
    ops_.linear(in(a.ctx, a.ctx16), wt(w.ao_w), W_ + w.ao_b, a_.tmp, T, H, H, bf_);
    ops_.residual_layernorm_forward(a.r1, a.a1, bf_ ? a.a116 : nullptr, a.mean1, a.rstd1, a_.tmp, xs_[l], W_ + w.ln1_w,
                                    W_ + w.ln1_b, T, H, c.ln_eps, RowDropout{hp, site_key(seed, l, 1), a_.tok_keys});
    // FFN: pre = a1 Wi^T + bi is kept (backward's GELU derivative reads it). The GELU output: in
    // fp32 mode scratch that backward recomputes; in bf16 mode only its bf16 copy (all the next
    // product reads), kept per layer for the backward's product (half the bytes of recomputing).
    ops_.linear(in(a.a1, a.a116), wt(w.i_w), W_ + w.i_b, a.pre, T, F, H, bf_);
    ops_.bias_gelu_forward(nullptr, bf_ ? nullptr : a_.gel, bf_ ? a.gel16 : nullptr, a.pre, nullptr, T, F);
    ops_.linear(in(a_.gel, a.gel16), wt(w.o_w), W_ + w.o_b, a_.tmp, T, H, F, bf_);
    ops_.residual_layernorm_forward(a.r2, xs_[l + 1], bf_ ? xs16_[l + 1] : nullptr, a.mean2, a.rstd2, a_.tmp, a.a1,
                                    W_ + w.ln2_w, W_ + w.ln2_b, T, H, c.ln_eps,
                                    RowDropout{hp, site_key(seed, l, 2), a_.tok_keys});
  }

  static size_t align(size_t b) { return (b + 255) & ~size_t(255); }
  // Hands out 256-byte aligned pieces of one allocation (base null: only measures).
  struct Carver {
    char* base = nullptr;
    size_t at = 0;
    template <typename P>
    P* take(int64_t n) {
      at = align(at);
      P* p = reinterpret_cast<P*>(reinterpret_cast<uintptr_t>(base) + at);  // no arithmetic on null
      at += size_t(std::max<int64_t>(n, 0)) * sizeof(P);
      return p;
    }
  };
  static uint64_t site_key(uint64_t seed, int64_t layer, int64_t site) {
    return hash_key(seed, uint64_t(layer * 8 + site + 1));  // as model.cc
  }
  static Gemm linear_bwd_w_desc(int64_t M, int64_t N, int64_t K) {  // dW[N, K] += dY[M, N]^T X[M, K]
    Gemm g;
    g.transA = true;
    g.M = N, g.N = K, g.K = M, g.lda = N, g.ldb = K, g.ldc = K, g.beta = 1.f;
    return g;
  }
  static Gemm linear_bwd_x_desc(int64_t M, int64_t N, int64_t K, float beta) {  // dX[M, K] (+)= dY[M, N] W[N, K]
    Gemm g;
    g.M = M, g.N = K, g.K = N, g.lda = N, g.ldb = K, g.ldc = K, g.beta = beta;
    return g;
  }
  int64_t dim() const { return host_.embedding_dim(); }
  bool trainable(int64_t offset) const { return host_.trainable_at(offset); }
  // A product operand: the bf16 copy in bf16 mode, else the fp32 tensor.
  const void* in(const float* f, const bf16* h) const { return bf_ ? static_cast<const void*>(h) : f; }
  const void* wt(int64_t off) const { return bf_ ? static_cast<const void*>(W16_ + off) : W_ + off; }

  void ensure_moments() {
    if (moments_mem_) return;
    const size_t b = align(size_t(n_) * 4);
    moments_mem_ = static_cast<char*>(ops_.alloc(2 * b, "AdamW moments"));
    allocated_ += int64_t(2 * b);
    M_ = reinterpret_cast<float*>(moments_mem_);
    V_ = reinterpret_cast<float*>(moments_mem_ + b);
    ops_.zero(moments_mem_, 2 * b);
  }
  // Norm, clip coefficient, norm partials and the touched-row list.
  void ensure_opt_mem(int64_t ranges, int64_t rows) {
    const size_t need = 256 + align(size_t(ops_.norm_scratch_doubles(ranges)) * 8) + align(size_t(std::max<int64_t>(rows, 1)) * 4);
    if (need > opt_bytes_) {
      if (opt_mem_) ops_.free(opt_mem_);
      allocated_ -= int64_t(opt_bytes_);
      opt_bytes_ = std::max(need, opt_bytes_ * 2);
      opt_mem_ = static_cast<char*>(ops_.alloc(opt_bytes_, "optimizer scratch"));
      allocated_ += int64_t(opt_bytes_);
    }
    norm_ = reinterpret_cast<float*>(opt_mem_);
    clip_ = norm_ + 1;
    norm_scratch_ = reinterpret_cast<double*>(opt_mem_ + 256);
    rows_ = reinterpret_cast<int32_t*>(opt_mem_ + 256 + align(size_t(ops_.norm_scratch_doubles(ranges)) * 8));
  }

  // Lays out the arena for a batch of T tokens and B sequences (twice: once to measure, once to
  // assign), growing the allocation when needed.
  void plan(const PackedBatch& b, bool keep, bool bf) {
    const ModelConfig& c = host_.config();
    T_ = b.T, B_ = b.B, max_len_ = b.max_len;
    const int64_t T = T_, B = B_, H = c.hidden, F = c.ffn, nl = c.layers, D = dim();
    // Attention from bf16 copies alone (the back end's bf16 kernels): no fp32 ctx kept, dctx taken
    // in bf16, no fp32 dqkv. Otherwise those three are fp32 (fp32 products, or the fp32 kernels).
    attn16_ = bf && ops_.attention_bf16_only(bf, H, c.heads);
    // Recompute keeps the layer inputs only; each layer's activations are rebuilt in one slot.
    const int64_t slots = keep && !recompute_ ? nl : (nl > 0 ? 1 : 0), nxs = keep ? nl + 1 : 2;
    Carver cv;
    auto f = [&](int64_t n) { return cv.template take<float>(n); };
    auto h16 = [&](int64_t n) { return bf ? cv.template take<bf16>(n) : nullptr; };
    auto i32 = [&](int64_t n) { return cv.template take<int32_t>(n); };
    auto layout = [&]() {
      cv.at = 0;
      Arena& a = a_;
      a.ids = i32(T), a.pos_ids = i32(T), a.type_ids = i32(T), a.off32 = i32(B + 1);
      a.seq_keys = cv.template take<uint64_t>(B), a.tok_keys = cv.template take<uint64_t>(T);
      for (auto& p : a.plan) {
        p.order = keep ? i32(T) : nullptr;
        p.seg_start = keep ? i32(T + 1) : nullptr;
        p.seg_row = keep ? i32(T) : nullptr;
      }
      // The LayerNorms' inputs (emb_sum, r1, r2) only for a backward: inference does not write them.
      a.emb_sum = keep ? f(T * H) : nullptr, a.emb_mean = f(T), a.emb_rstd = f(T);
      xs_.assign(size_t(nl + 1), nullptr);
      xs16_.assign(size_t(nl + 1), nullptr);
      std::vector<float*> xf(static_cast<size_t>(nxs));
      std::vector<bf16*> xh(static_cast<size_t>(nxs));
      for (int64_t i = 0; i < nxs; i++) xf[size_t(i)] = f(T * H), xh[size_t(i)] = h16(T * H);
      for (int64_t l = 0; l <= nl; l++) {
        const size_t i = size_t(keep ? l : l % 2);  // inference: ping-pong, one layer lives at a time
        xs_[size_t(l)] = xf[i], xs16_[size_t(l)] = xh[i];
      }
      acts_.assign(size_t(slots), Acts{});
      for (auto& s : acts_) {
        s.qkv = f(T * 3 * H), s.ctx = attn16_ ? nullptr : f(T * H), s.ctx16 = h16(T * H), s.lse = f(T * c.heads);
        s.r1 = keep ? f(T * H) : nullptr;
        s.mean1 = f(T), s.rstd1 = f(T), s.a1 = f(T * H), s.a116 = h16(T * H), s.pre = f(T * F);
        s.r2 = keep ? f(T * H) : nullptr;
        s.mean2 = f(T), s.rstd2 = f(T), s.gel16 = h16(T * F);
      }
      a.tmp = f(T * H), a.gel = bf ? nullptr : f(T * F);  // fp32 mode: recomputed by backward
      a.cls = f(B * H), a.pooled = f(B * H), a.dense = f(B * D), a.out = f(B * D), a.norms = f(B);
      a.d1 = f(B * D), a.d2 = f(B * H), a.dz = f(B * H);
      const int64_t red = std::max({ops_.layernorm_backward_scratch_floats(std::max(T, B), H),
                                    ops_.bias_backward_scratch_floats(std::max(T, B), std::max({3 * H, F, D})),
                                    ops_.attention_backward_scratch_floats(T, B, H, c.heads), int64_t(1)});
      a.red = f(red);  // reductions of the backward ops, one at a time
      if (keep) {
        // dbr, a branch gradient after a LayerNorm in fp32: read by fp32 products, or by the bias
        // sums where the back end does not fuse them into the LayerNorm backward (wide rows).
        const bool dbr = !bf || !ops_.layernorm_backward_sums_fused(H);
        a.dh = f(T * H), a.dtmp = f(T * H), a.dbr = dbr ? f(T * H) : nullptr;
        a.dqkv = attn16_ ? nullptr : f(T * 3 * H), a.dffn = f(T * F);
        a.y16 = h16(T * std::max(3 * H, F));
      } else {
        a.dh = a.dtmp = a.dbr = a.dqkv = a.dffn = nullptr;
        a.y16 = nullptr;
      }
    };
    layout();
    const size_t need = align(cv.at);
    if (need > arena_bytes_) {
      ops_.sync();  // the old arena may still be read by queued work
      if (arena_) ops_.free(arena_);
      allocated_ -= int64_t(arena_bytes_);
      arena_bytes_ = 0;
      arena_ = nullptr;
      arena_ = static_cast<char*>(ops_.alloc(need, "activations"));
      arena_bytes_ = need;
      allocated_ += int64_t(need);
    }
    cv.base = arena_;
    layout();
  }
  Acts layer_acts(int64_t l) const { return acts_[size_t(keep_ && !recompute_ ? l : 0)]; }

  void upload_batch(const PackedBatch& b, bool keep) {
    const ModelConfig& c = host_.config();
    const int64_t T = b.T, B = b.B;
    ops_.upload(a_.ids, b.ids, size_t(T) * 4);
    ops_.upload(a_.pos_ids, b.pos_ids, size_t(T) * 4);
    ops_.upload(a_.type_ids, b.type_ids, size_t(T) * 4);
    off32_.resize(size_t(B + 1));
    for (int64_t s = 0; s < B; s++) off32_[size_t(s)] = int32_t(b.offsets[s]);
    off32_[size_t(B)] = int32_t(T);
    ops_.upload(a_.off32, off32_.data(), size_t(B + 1) * 4);
    ops_.upload(a_.seq_keys, b.seq_keys, size_t(B) * 8);
    ops_.upload(a_.tok_keys, b.tok_keys, size_t(T) * 8);
    if (!keep) return;
    // The tokens of each table grouped by row for the deterministic gradient scatter.
    const int32_t* ids[3] = {b.ids, b.pos_ids, b.type_ids};
    const int64_t rows[3] = {c.vocab, c.max_pos, c.type_vocab};
    const char* what[3] = {"word", "position", "token type"};
    for (int k = 0; k < 3; k++) {
      embedding_grad_plan(plans_[k], ids[k], T, rows[k], what[k]);
      plan_segments_[k] = plans_[k].num_segments();
      ops_.upload(a_.plan[k].order, plans_[k].order.data(), plans_[k].order.size() * 4);
      ops_.upload(a_.plan[k].seg_start, plans_[k].seg_start.data(), plans_[k].seg_start.size() * 4);
      ops_.upload(a_.plan[k].seg_row, plans_[k].seg_row.data(), plans_[k].seg_row.size() * 4);
    }
  }

  const Model& host_;
  Ops ops_;
  std::string name_;
  int64_t n_ = 0, allocated_ = 0;
  char* params_mem_ = nullptr;
  char* moments_mem_ = nullptr;
  char* arena_ = nullptr;
  char* opt_mem_ = nullptr;
  size_t arena_bytes_ = 0, opt_bytes_ = 0;
  float *W_ = nullptr, *G_ = nullptr, *M_ = nullptr, *V_ = nullptr;
  bf16* W16_ = nullptr;
  float *norm_ = nullptr, *clip_ = nullptr;
  double* norm_scratch_ = nullptr;
  int32_t* rows_ = nullptr;
  bool w16_current_ = false;

  int64_t word_ = 0, pos_ = 0, type_ = 0, eln_w_ = 0, eln_b_ = 0, pool_w_ = -1, pool_b_ = -1, dense_w_ = -1,
          dense_b_ = -1;
  std::vector<LayerOff> lp_;

  // The last forward.
  int64_t T_ = 0, B_ = 0, max_len_ = 0;
  bool bf_ = false, keep_ = false, recompute_ = false, have_train_forward_ = false;
  bool attn16_ = false;  // plan(): attention from bf16 copies alone
  float hp_ = 0, ap_ = 0;  // the last forward's dropout probabilities
  uint64_t seed_ = 0;
  Arena a_{};
  std::vector<float*> xs_;
  std::vector<bf16*> xs16_;
  std::vector<Acts> acts_;
  std::vector<int32_t> off32_;
  EmbeddingGradPlan plans_[3];
  int64_t plan_segments_[3] = {0, 0, 0};
};

}  // namespace xlir
