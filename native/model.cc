#include "model.h"

#include <omp.h>

#include <algorithm>
#include <cmath>

#include "activation.h"
#include "adamw.h"
#include "attention.h"
#include "embedding.h"
#include "layernorm.h"

namespace xlir {

void ModelConfig::validate() const {
  XLIR_CHECK(vocab > 0 && hidden > 0 && layers >= 0 && heads > 0 && ffn > 0 && max_pos > 0 && type_vocab > 0,
             "model config: vocab, hidden, heads, intermediate size, positions and type vocabulary must be positive");
  XLIR_CHECK(hidden % heads == 0, "model config: hidden size " << hidden << " is not divisible by the number of heads "
                                                               << heads);
  XLIR_CHECK(hidden_dropout >= 0 && hidden_dropout < 1 && attn_dropout >= 0 && attn_dropout < 1,
             "model config: dropout probabilities must be in [0, 1)");
  XLIR_CHECK(pooling != Pooling::Pooler || has_pooler, "model config: pooling 'pooler' needs the pooler weights");
  XLIR_CHECK(!roberta || (pad_id >= 0 && pad_id + 1 < max_pos),
             "model config: RoBERTa positions start at pad_token_id + 1 = " << pad_id + 1 << ", beyond the "
                                                                             << max_pos << "-entry position table");
  XLIR_CHECK(dense_out >= 0, "model config: dense output size must be >= 0");
}

void Model::add_param(const std::string& name, std::vector<int64_t> shape) {
  ParamInfo p;
  p.name = name;
  p.shape = shape;
  p.size = 1;
  for (auto s : shape) p.size *= s;
  p.offset = params_.empty() ? 0 : params_.back().offset + params_.back().size;
  p.decay = shape.size() >= 2;
  index_[name] = params_.size();
  params_.push_back(p);
}

Model::Model(const ModelConfig& cfg) : cfg_(cfg) {
  cfg_.validate();
  const int64_t H = cfg_.hidden, F = cfg_.ffn;
  add_param("embeddings.word_embeddings.weight", {cfg_.vocab, H});
  add_param("embeddings.position_embeddings.weight", {cfg_.max_pos, H});
  add_param("embeddings.token_type_embeddings.weight", {cfg_.type_vocab, H});
  add_param("embeddings.LayerNorm.weight", {H});
  add_param("embeddings.LayerNorm.bias", {H});
  for (int64_t l = 0; l < cfg_.layers; l++) {
    const std::string p = "encoder.layer." + std::to_string(l) + ".";
    // q, k, v adjacent (weights, then biases): one [3H, H] product computes all three.
    add_param(p + "attention.self.query.weight", {H, H});
    add_param(p + "attention.self.key.weight", {H, H});
    add_param(p + "attention.self.value.weight", {H, H});
    add_param(p + "attention.self.query.bias", {H});
    add_param(p + "attention.self.key.bias", {H});
    add_param(p + "attention.self.value.bias", {H});
    add_param(p + "attention.output.dense.weight", {H, H});
    add_param(p + "attention.output.dense.bias", {H});
    add_param(p + "attention.output.LayerNorm.weight", {H});
    add_param(p + "attention.output.LayerNorm.bias", {H});
    add_param(p + "intermediate.dense.weight", {F, H});
    add_param(p + "intermediate.dense.bias", {F});
    add_param(p + "output.dense.weight", {H, F});
    add_param(p + "output.dense.bias", {H});
    add_param(p + "output.LayerNorm.weight", {H});
    add_param(p + "output.LayerNorm.bias", {H});
  }
  if (cfg_.has_pooler) {
    add_param("pooler.dense.weight", {H, H});
    add_param("pooler.dense.bias", {H});
  }
  if (cfg_.dense_out) {
    add_param("dense.linear.weight", {cfg_.dense_out, H});
    if (cfg_.dense_bias) add_param("dense.linear.bias", {cfg_.dense_out});
  }
  const int64_t n = params_.back().offset + params_.back().size;
  W_.assign(size_t(n), 0.f);
  G_.assign(size_t(n), 0.f);
  trainable_flag_.assign(params_.size(), 1);
  word_index_ = index_.at("embeddings.word_embeddings.weight");
  row_touched_.assign(size_t(cfg_.vocab), 0);
  touched_rows_.reserve(size_t(cfg_.vocab));

  word_ = P("embeddings.word_embeddings.weight");
  pos_ = P("embeddings.position_embeddings.weight");
  type_ = P("embeddings.token_type_embeddings.weight");
  eln_w_ = P("embeddings.LayerNorm.weight");
  eln_b_ = P("embeddings.LayerNorm.bias");
  for (int64_t l = 0; l < cfg_.layers; l++) {
    const LayerOffsets o = layer_offsets(l);
    float* w = W_.data();
    lp_.push_back({w + o.qkv_w, w + o.qkv_b, w + o.ao_w, w + o.ao_b, w + o.ln1_w, w + o.ln1_b, w + o.i_w, w + o.i_b,
                   w + o.o_w, w + o.o_b, w + o.ln2_w, w + o.ln2_b});
  }
  if (cfg_.has_pooler) pool_w_ = P("pooler.dense.weight"), pool_b_ = P("pooler.dense.bias");
  if (cfg_.dense_out) {
    dense_w_ = P("dense.linear.weight");
    if (cfg_.dense_bias) dense_b_ = P("dense.linear.bias");
  }
  init_weights();
}

Model::LayerOffsets Model::layer_offsets(int64_t l) const {
  const std::string p = "encoder.layer." + std::to_string(l) + ".";
  auto o = [&](const std::string& n) { return param(p + n).offset; };
  return {o("attention.self.query.weight"), o("attention.self.query.bias"), o("attention.output.dense.weight"),
          o("attention.output.dense.bias"), o("attention.output.LayerNorm.weight"), o("attention.output.LayerNorm.bias"),
          o("intermediate.dense.weight"), o("intermediate.dense.bias"), o("output.dense.weight"), o("output.dense.bias"),
          o("output.LayerNorm.weight"), o("output.LayerNorm.bias")};
}

const ParamInfo& Model::param(const std::string& name) const {
  auto it = index_.find(name);
  XLIR_CHECK(it != index_.end(), "model has no parameter named '" << name << "'");
  return params_[it->second];
}

void Model::init_weights() {
  // As transformers initialises BERT: weights ~ normal(0, 0.02), biases 0, LayerNorm weights 1,
  // the padding row of the word embeddings 0. Box-Muller over the counter-based RNG: reproducible
  // for a seed whatever the thread count.
  for (size_t k = 0; k < params_.size(); k++) {
    const ParamInfo& p = params_[k];
    float* w = W_.data() + p.offset;
    const bool is_ln = p.name.find("LayerNorm.weight") != std::string::npos;
    if (p.shape.size() == 1) {
      std::fill(w, w + p.size, is_ln ? 1.f : 0.f);
      continue;
    }
    const uint64_t key = hash_key(cfg_.seed, k + 1);
    for (int64_t i = 0; i < p.size; i++) {
      float u1 = uniform01(key, uint64_t(2 * i)) + (0.5f / 16777216.f), u2 = uniform01(key, uint64_t(2 * i + 1));
      w[i] = 0.02f * std::sqrt(-2.f * std::log(u1)) * std::cos(6.2831853f * u2);
    }
  }
  if (cfg_.pad_id >= 0 && cfg_.pad_id < cfg_.vocab) std::fill(word_ + cfg_.pad_id * cfg_.hidden, word_ + (cfg_.pad_id + 1) * cfg_.hidden, 0.f);
}

void Model::set_frozen(bool freeze_word_embeddings, int64_t freeze_layers) {
  XLIR_CHECK(freeze_layers >= 0 && freeze_layers <= cfg_.layers,
             "freezeLayers must be in [0, " << cfg_.layers << "], got " << freeze_layers);
  for (size_t k = 0; k < params_.size(); k++) {
    const std::string& n = params_[k].name;
    bool frozen = false;
    if (n == "embeddings.word_embeddings.weight") frozen = freeze_word_embeddings;
    if (n.rfind("encoder.layer.", 0) == 0) frozen = std::stoll(n.substr(14)) < freeze_layers;
    trainable_flag_[k] = !frozen;
    params_[k].trainable = !frozen;
  }
}

bool Model::trainable(const float* p) const { return trainable_at(p - W_.data()); }

bool Model::trainable_at(int64_t off) const {
  // Parameter views point at tensor starts, so the owning tensor is the one at that offset.
  auto it = std::lower_bound(params_.begin(), params_.end(), off,
                             [](const ParamInfo& a, int64_t o) { return a.offset < o; });
  return it != params_.end() && it->offset == off && trainable_flag_[size_t(it - params_.begin())];
}

std::vector<char> Model::trains_at_or_below() const {
  std::vector<char> below(size_t(cfg_.layers + 1), 0);
  bool any = trainable(word_) || trainable(pos_) || trainable(type_) || trainable(eln_w_) || trainable(eln_b_);
  below[0] = any;
  for (int64_t l = 0; l < cfg_.layers; l++) {
    any = any || trainable(lp_[size_t(l)].qkv_w);
    below[size_t(l + 1)] = any;
  }
  return below;
}

void Model::zero_grad() {
  if (dev_) {
    dev_->zero_grad();
    where_[kGrads] = Where::Device;
    for (int32_t r : touched_rows_) row_touched_[size_t(r)] = 0;
    touched_rows_.clear();
    return;
  }
  const ParamInfo& wp = word_embedding_param();
  float* g = G_.data();
  std::fill(g, g + wp.offset, 0.f);
  std::fill(g + wp.offset + wp.size, g + G_.size(), 0.f);
  const int64_t H = cfg_.hidden;
  for (int32_t r : touched_rows_) {
    std::fill(g + wp.offset + r * H, g + wp.offset + (r + 1) * H, 0.f);
    row_touched_[size_t(r)] = 0;
  }
  touched_rows_.clear();
}

void Model::prepare_batch(const Batch& b) {
  XLIR_CHECK(b.B > 0, "empty batch: at least one sequence is needed");
  int64_t total = 0, max_len = 0;
  for (int64_t s = 0; s < b.B; s++) {
    XLIR_CHECK(b.lengths[s] > 0, "sequence " << s << " of the batch is empty (length " << b.lengths[s] << ")");
    total += b.lengths[s];
    max_len = std::max<int64_t>(max_len, b.lengths[s]);
  }
  XLIR_CHECK(total == b.T, "batch lengths add up to " << total << " tokens but ids holds " << b.T);
  const int64_t usable = cfg_.roberta ? cfg_.max_pos - cfg_.pad_id - 1 : cfg_.max_pos;
  T_ = b.T, B_ = b.B, max_len_ = max_len;
  ids_.assign(b.ids, b.ids + b.T);
  lengths_.assign(b.lengths, b.lengths + b.B);
  type_ids_.assign(size_t(b.T), 0);
  if (b.type_ids) type_ids_.assign(b.type_ids, b.type_ids + b.T);
  offsets_.resize(size_t(b.B));
  seq_keys_.resize(size_t(b.B));
  pos_ids_.resize(size_t(b.T));
  tok_keys_.resize(size_t(b.T));
  int64_t off = 0;
  for (int64_t s = 0; s < b.B; s++) {
    const int64_t L = b.lengths[s];
    XLIR_CHECK(L <= usable, "sequence " << s << " has " << L << " tokens but the position table allows at most "
                                        << usable << " (max_position_embeddings " << cfg_.max_pos << ")");
    offsets_[s] = off;
    seq_keys_[s] = mix64(b.seq_ids ? uint64_t(b.seq_ids[s]) : uint64_t(s));
    int64_t nonpad = 0;
    for (int64_t i = 0; i < L; i++) {
      const int64_t t = off + i;
      const int32_t id = b.ids[t];
      XLIR_CHECK(id >= 0 && id < cfg_.vocab, "token id " << id << " at position " << i << " of sequence " << s
                                                         << " is outside the vocabulary [0, " << cfg_.vocab << ")");
      XLIR_CHECK(type_ids_[t] >= 0 && type_ids_[t] < cfg_.type_vocab,
                 "token type id " << type_ids_[t] << " at position " << i << " of sequence " << s
                                  << " is outside [0, " << cfg_.type_vocab << ")");
      if (cfg_.roberta) {
        // transformers: position = cumsum(id != pad) * (id != pad) + pad.
        const bool real = id != cfg_.pad_id;
        nonpad += real;
        pos_ids_[t] = int32_t(real ? nonpad + cfg_.pad_id : cfg_.pad_id);
      } else {
        pos_ids_[t] = int32_t(i);
      }
      tok_keys_[t] = hash_key(seq_keys_[s], uint64_t(i));
    }
    off += L;
  }
}

PackedBatch Model::packed() const {
  PackedBatch p;
  p.T = T_, p.B = B_, p.max_len = max_len_;
  p.ids = ids_.data(), p.pos_ids = pos_ids_.data(), p.type_ids = type_ids_.data(), p.lengths = lengths_.data();
  p.offsets = offsets_.data(), p.seq_keys = seq_keys_.data(), p.tok_keys = tok_keys_.data();
  return p;
}

void Model::init_moments() {
  M_.assign(W_.size(), 0.f);
  V_.assign(W_.size(), 0.f);
  where_[kMoments] = Where::Host;
}

float* Model::moment(int which) {
  XLIR_CHECK(has_moments(), "the model has no optimizer state (create an AdamW for it first)");
  pull(kMoments);
  where_[kMoments] = Where::Host;
  return which == 0 ? M_.data() : V_.data();
}

void Model::pull(Part p) const {
  if (where_[p] != Where::Device) return;
  if (p == kWeights) {
    dev_->download_weights(W_.data());
    bf16_weights_current_ = false;  // the CPU's bf16 copies were made from the old host weights
  }
  if (p == kGrads) dev_->download_grads(G_.data());
  if (p == kMoments) dev_->download_moments(M_.data(), V_.data());
  where_[p] = Where::Both;
}

void Model::push(Part p) {
  if (where_[p] != Where::Host) return;
  if (p == kWeights) dev_->upload_weights(W_.data());
  if (p == kGrads) dev_->upload_grads(G_.data());
  if (p == kMoments) dev_->upload_moments(M_.data(), V_.data());
  where_[p] = Where::Both;
}

void Model::to_device(std::unique_ptr<DeviceBackend> backend) {
  if (dev_) {
    for (Part p : {kWeights, kGrads, kMoments}) pull(p);
    dev_.reset();
  }
  for (auto& w : where_) w = Where::Host;
  have_train_forward_ = false;  // a forward's activations live with the device that ran it
  dev_ = std::move(backend);
}

double Model::adamw_step(const AdamWHyper& h) {
  XLIR_CHECK(has_moments(), "the model has no optimizer state (create an AdamW for it first)");
  if (dev_) {
    push(kWeights);
    push(kGrads);
    push(kMoments);
    const double norm = dev_->adamw_step(h, touched_rows_);
    where_[kWeights] = Where::Device;
    where_[kMoments] = Where::Device;
    return norm;
  }
  // The word-embedding table's gradient is zero outside the touched rows, so its norm and, in
  // row-sparse mode, its update visit those rows only.
  const ParamInfo& wp = word_embedding_param();
  const int64_t width = wp.shape[1], nrows = int64_t(touched_rows_.size());
  const float* g = G_.data();
  float* w = weights();  // marks the bf16 copies stale
  float *m = M_.data(), *v = V_.data();
  double ss = 0;
  for (const auto& p : params_) {
    if (!p.trainable) continue;
    ss += p.offset == wp.offset ? sum_squares_rows(g + p.offset, touched_rows_.data(), nrows, width)
                                : sum_squares(g + p.offset, p.size);
  }
  const double norm = std::sqrt(ss);
  float scale = 1.f;
  if (h.max_grad_norm > 0) {
    // torch.nn.utils.clip_grad_norm_: coef = max_norm / (norm + 1e-6), clamped to 1.
    const float coef = float(double(h.max_grad_norm) / (norm + 1e-6));
    scale = coef < 1.f ? coef : 1.f;
  }
  for (const auto& p : params_) {
    if (!p.trainable) continue;
    const float wd = p.decay ? h.weight_decay : 0.f;
    if (h.sparse_embeddings && p.offset == wp.offset) {
      adamw_update_rows(w + p.offset, g + p.offset, m + p.offset, v + p.offset, touched_rows_.data(), nrows, width, h.lr,
                        h.beta1, h.beta2, h.eps, wd, scale, h.step);
      continue;
    }
    adamw_update(w + p.offset, g + p.offset, m + p.offset, v + p.offset, p.size, h.lr, h.beta1, h.beta2, h.eps, wd, scale,
                 h.step);
  }
  return norm;
}

void Model::plan(bool train) {
  const int64_t T = T_, B = B_, H = cfg_.hidden, F = cfg_.ffn, nl = cfg_.layers;
  const int64_t per_layer = T * (3 * H + H + H + 2 + H + F + H + 2);
  const int64_t n_layer_slots = train ? nl : (nl > 0 ? 1 : 0);
  const int64_t n_xs = train ? nl + 1 : 2;
  const int64_t heads_out = embedding_dim();
  const int64_t total = T * H + 2 * T + n_xs * T * H + n_layer_slots * per_layer + 3 * B * H + B * heads_out +
                        B * heads_out + B;
  float* a = arena_.ensure(size_t(total));
  auto take = [&](int64_t n) {
    float* p = a;
    a += n;
    return p;
  };
  emb_sum_ = take(T * H);
  emb_mean_ = take(T);
  emb_rstd_ = take(T);
  xs_.assign(size_t(nl + 1), nullptr);
  if (train) {
    for (int64_t l = 0; l <= nl; l++) xs_[l] = take(T * H);
  } else {
    float* x0 = take(T * H);
    float* x1 = take(T * H);
    for (int64_t l = 0; l <= nl; l++) xs_[l] = (l % 2) ? x1 : x0;  // ping-pong: only the current layer lives
  }
  // Layer activation slots start here; layer_acts() addresses them.
  float* layer_base = a;
  a += n_layer_slots * per_layer;
  cls_ = take(B * H);
  pooled_ = take(B * H);
  take(B * H);
  dense_ = take(B * heads_out);
  out_ = take(B * heads_out);
  norms_ = take(B);
  (void)layer_base;
  attn_scratch_.ensure(size_t(attention_scratch_floats(cfg_.heads, max_len_)));
  if (prec_ == Precision::BF16) {
    wbf_.ensure(size_t(nl * (4 * H * H + 2 * H * F)));
    ybf_.ensure(size_t(T * std::max(3 * H, F)));
    gbf_.ensure(size_t(T * F));
  }
  // Backward scratch: dh, dtmp [T, H]; dqkv [T, 3H]; dffn, gelu recompute [T, F].
  if (train) scratch_.ensure(size_t(T * (5 * H + 2 * F)));
}

Model::LayerActs Model::layer_acts(int64_t l, bool train) {
  const int64_t T = T_, H = cfg_.hidden, F = cfg_.ffn, nl = cfg_.layers;
  const int64_t per_layer = T * (3 * H + H + H + 2 + H + F + H + 2);
  const int64_t n_xs = train ? nl + 1 : 2;
  float* base = arena_.data() + T * H + 2 * T + n_xs * T * H + (train ? l : 0) * per_layer;
  LayerActs a;
  a.qkv = base, base += T * 3 * H;
  a.ctx = base, base += T * H;
  a.r1 = base, base += T * H;
  a.mean1 = base, base += T;
  a.rstd1 = base, base += T;
  a.a1 = base, base += T * H;
  a.h1 = base, base += T * F;
  a.r2 = base, base += T * H;
  a.mean2 = base, base += T;
  a.rstd2 = base;
  return a;
}

Model::LayerBf16 Model::layer_bf16(int64_t l) {
  const int64_t H = cfg_.hidden, F = cfg_.ffn;
  uint16_t* base = wbf_.data() + l * (4 * H * H + 2 * H * F);
  LayerBf16 w;
  w.qkv_w = base, base += 3 * H * H;
  w.ao_w = base, base += H * H;
  w.i_w = base, base += F * H;
  w.o_w = base;
  return w;
}

namespace {
// Linear layer pieces over weights stored [N, K] as torch stores them.
void linear_fwd(float* Y, const float* X, const float* W, const float* b, int64_t M, int64_t N, int64_t K,
                Precision p) {
  linear_gemm(X, W, Y, M, N, K, 0.f, p);
  if (b) bias_add(Y, b, M, N);
}
// dW[N, K] += dY^T X ; db[N] += colsum(dY).
void linear_bwd_w(float* dW, float* db, const float* dY, const float* X, int64_t M, int64_t N, int64_t K,
                  Precision p) {
  Gemm g;
  g.transA = true;
  g.M = N, g.N = K, g.K = M, g.lda = N, g.ldb = K, g.ldc = K, g.beta = 1.f;
  gemm(g, dY, X, dW, p);
  if (db) bias_backward(db, dY, M, N);
}
// dX[M, K] (=, or += with beta 1) dY W.
void linear_bwd_x(float* dX, const float* dY, const float* W, int64_t M, int64_t N, int64_t K, float beta,
                  Precision p) {
  Gemm g;
  g.M = M, g.N = K, g.K = N, g.lda = N, g.ldb = K, g.ldc = K, g.beta = beta;
  gemm(g, dY, W, dX, p);
}
// The bf16 forms of the three linear products, over operands converted by the caller (A16, W16,
// dY16: bf16 copies of the fp32 tensors the fp32 forms take) or, for fp32 pointers, by gemm_bf16.
Gemm linear_desc(int64_t M, int64_t N, int64_t K, float beta) {  // Y[M, N] (+)= X[M, K] W[N, K]^T
  Gemm g;
  g.transB = true;
  g.M = M, g.N = N, g.K = K, g.lda = K, g.ldb = K, g.ldc = N, g.beta = beta;
  return g;
}
Gemm linear_bwd_w_desc(int64_t M, int64_t N, int64_t K) {  // dW[N, K] += dY[M, N]^T X[M, K]
  Gemm g;
  g.transA = true;
  g.M = N, g.N = K, g.K = M, g.lda = N, g.ldb = K, g.ldc = K, g.beta = 1.f;
  return g;
}
Gemm linear_bwd_x_desc(int64_t M, int64_t N, int64_t K, float beta) {  // dX[M, K] (+)= dY[M, N] W[N, K]
  Gemm g;
  g.M = M, g.N = K, g.K = N, g.lda = N, g.ldb = K, g.ldc = K, g.beta = beta;
  return g;
}
// Linear forward over bf16 weights: the input converted here (fp32 X) or by the caller (bf16 X).
template <typename In>
void linear_fwd_bf16(float* Y, const In* X, const uint16_t* W16, const float* b, int64_t M, int64_t N, int64_t K) {
  gemm_bf16(linear_desc(M, N, K, 0.f), X, W16, Y);
  if (b) bias_add(Y, b, M, N);
}
uint64_t site_key(uint64_t seed, int64_t layer, int64_t site) { return hash_key(seed, uint64_t(layer * 8 + site + 1)); }
}  // namespace

void Model::forward(const Batch& batch, float* out, bool train, uint64_t dropout_seed, float* hidden_out, bool keep) {
  have_train_forward_ = false;
  const bool dropout = train;
  train = train && keep;  // from here on, "train" means: activations are laid out for backward()
  prepare_batch(batch);
  dropout_seed_ = dropout_seed;
  if (dev_) {
    push(kWeights);
    dev_->forward(packed(), prec_, out, dropout, train, recompute_, dropout_seed, hidden_out);
    have_train_forward_ = train;
    return;
  }
  plan(train);
  const int64_t T = T_, B = B_, H = cfg_.hidden, F = cfg_.ffn, D = embedding_dim();
  const float hp = dropout ? cfg_.hidden_dropout : 0.f, ap = dropout ? cfg_.attn_dropout : 0.f;
  const AttentionShape shape{B, lengths_.data(), offsets_.data(), seq_keys_.data(), H, cfg_.heads};

  embedding_forward(emb_sum_, ids_.data(), pos_ids_.data(), type_ids_.data(), word_, pos_, type_, T, H);
  layernorm_forward(xs_[0], emb_mean_, emb_rstd_, emb_sum_, eln_w_, eln_b_, T, H, cfg_.ln_eps);
  dropout_rows(xs_[0], xs_[0], T, H, hp, site_key(dropout_seed, -1, 0), tok_keys_.data());

  const bool bf = prec_ == Precision::BF16;
  bf16_forward_ = bf;
  if (bf && !bf16_weights_current_) {  // backward's dX products reuse these copies too
    for (int64_t l = 0; l < cfg_.layers; l++) {
      const LayerParams& w = lp_[l];
      const LayerBf16 w16 = layer_bf16(l);
      to_bf16(w.qkv_w, w16.qkv_w, 3 * H * H);
      to_bf16(w.ao_w, w16.ao_w, H * H);
      to_bf16(w.i_w, w16.i_w, F * H);
      to_bf16(w.o_w, w16.o_w, H * F);
    }
    bf16_weights_current_ = true;
  }
  for (int64_t l = 0; l < cfg_.layers; l++) {
    const LayerParams& w = lp_[l];
    LayerActs a = layer_acts(l, train);
    const float* x = xs_[l];
    const LayerBf16 w16 = bf ? layer_bf16(l) : LayerBf16{};
    if (bf) linear_fwd_bf16(a.qkv, x, w16.qkv_w, w.qkv_b, T, 3 * H, H);
    else linear_fwd(a.qkv, x, w.qkv_w, w.qkv_b, T, 3 * H, H, prec_);
    attention_forward(a.ctx, a.qkv, shape, ap, site_key(dropout_seed, l, 0), attn_scratch_.data(), prec_);
    // Output projection, then its bias, dropout and the residual in one pass (r1 = x + dropout(ao)).
    if (bf) linear_fwd_bf16(a.r1, a.ctx, w16.ao_w, nullptr, T, H, H);
    else linear_fwd(a.r1, a.ctx, w.ao_w, nullptr, T, H, H, prec_);
    bias_dropout_residual(a.r1, w.ao_b, x, T, H, hp, site_key(dropout_seed, l, 1), tok_keys_.data());
    layernorm_forward(a.a1, a.mean1, a.rstd1, a.r1, w.ln1_w, w.ln1_b, T, H, cfg_.ln_eps);
    // FFN input; its bias is added by the GELU pass (h1 keeps the biased pre-activation for backward).
    if (bf) linear_fwd_bf16(a.h1, a.a1, w16.i_w, nullptr, T, F, H);
    else linear_fwd(a.h1, a.a1, w.i_w, nullptr, T, F, H, prec_);
    // The GELU output is not kept (backward recomputes it from h1): in training it goes to the
    // backward scratch, in inference over h1 itself; in bf16 it is only ever a product operand, so
    // it is written in bf16 directly.
    if (bf) {
      bias_gelu_forward_bf16(a.h1, w.i_b, gbf_.data(), T, F);
      linear_fwd_bf16(a.r2, gbf_.data(), w16.o_w, nullptr, T, H, F);
    } else {
      float* g = train ? scratch_.data() : a.h1;
      bias_gelu_forward(a.h1, w.i_b, g, T, F);
      linear_fwd(a.r2, g, w.o_w, nullptr, T, H, F, prec_);
    }
    bias_dropout_residual(a.r2, w.o_b, a.a1, T, H, hp, site_key(dropout_seed, l, 2), tok_keys_.data());
    layernorm_forward(xs_[l + 1], a.mean2, a.rstd2, a.r2, w.ln2_w, w.ln2_b, T, H, cfg_.ln_eps);
  }
  const float* h = xs_[cfg_.layers];
  if (hidden_out) std::copy(h, h + T * H, hidden_out);

  pool_forward(cls_, h, lengths_.data(), offsets_.data(), B, H,
               cfg_.pooling == Pooling::Mean ? PoolMode::Mean : PoolMode::CLS);
  const float* s = cls_;
  if (cfg_.pooling == Pooling::Pooler) {
    linear_fwd(pooled_, cls_, pool_w_, pool_b_, B, H, H, prec_);
    tanh_forward(pooled_, pooled_, B * H);
    s = pooled_;
  }
  if (cfg_.dense_out) {
    linear_fwd(dense_, s, dense_w_, dense_b_, B, D, H, prec_);
    if (cfg_.dense_tanh) tanh_forward(dense_, dense_, B * D);
    s = dense_;
  }
  if (cfg_.normalize) {
    l2norm_forward(out_, norms_, s, B, D);
    s = out_;
  }
  std::copy(s, s + B * D, out);
  have_train_forward_ = train;
}

void Model::backward(const float* dout) {
  XLIR_CHECK(have_train_forward_, "backward() needs a training forward() first (and only one backward per forward)");
  have_train_forward_ = false;
  if (trainable(word_))
    for (int64_t t = 0; t < T_; t++)
      if (!row_touched_[size_t(ids_[t])]) {
        row_touched_[size_t(ids_[t])] = 1;
        touched_rows_.push_back(ids_[t]);
      }
  if (dev_) {
    push(kWeights);
    push(kGrads);
    dev_->backward(dout);
    where_[kGrads] = Where::Device;
    return;
  }
  const int64_t T = T_, B = B_, H = cfg_.hidden, F = cfg_.ffn, D = embedding_dim();
  const float hp = cfg_.hidden_dropout, ap = cfg_.attn_dropout;
  const AttentionShape shape{B, lengths_.data(), offsets_.data(), seq_keys_.data(), H, cfg_.heads};
  float* dh = scratch_.data();   // gradient w.r.t. the current layer's output [T, H]
  float* dtmp = dh + T * H;      // [T, H]
  float* dqkv = dtmp + T * H;    // [T, 3H]
  float* dffn = dqkv + 3 * T * H;  // [T, F]
  float* gel = dffn + T * F;     // [T, F] GELU output recomputed
  auto G = [&](float* p) { return trainable(p) ? Gr(p) : nullptr; };
  const bool bf = bf16_forward_;  // not prec_: the precision may have been switched since forward()

  // Head: normalisation, Dense, pooler, pooling. Small [B, *] tensors.
  float* d1 = head_grad_.ensure(size_t(B * D + 2 * B * H));  // [B, D], then d2 and dz [B, H]
  float* d2 = d1 + B * D;
  float* dz = d2 + B * H;
  std::copy(dout, dout + B * D, d1);
  if (cfg_.normalize) {
    const float* y = out_;
    l2norm_backward(d1, dout, y, norms_, B, D);
  }
  const float* pooled_in = cfg_.pooling == Pooling::Pooler ? pooled_ : cls_;
  float* dpool = d1;
  if (cfg_.dense_out) {
    if (cfg_.dense_tanh) tanh_backward(d1, d1, dense_, B * D);
    if (float* gw = G(dense_w_)) linear_bwd_w(gw, dense_b_ ? G(dense_b_) : nullptr, d1, pooled_in, B, D, H, prec_);
    linear_bwd_x(d2, d1, dense_w_, B, D, H, 0.f, prec_);
    dpool = d2;
  }
  if (cfg_.pooling == Pooling::Pooler) {
    tanh_backward(dz, dpool, pooled_, B * H);
    if (float* gw = G(pool_w_)) linear_bwd_w(gw, G(pool_b_), dz, cls_, B, H, H, prec_);
    linear_bwd_x(dpool, dz, pool_w_, B, H, H, 0.f, prec_);
  }
  std::fill(dh, dh + T * H, 0.f);
  pool_backward(dh, dpool, lengths_.data(), offsets_.data(), B, H,
                cfg_.pooling == Pooling::Mean ? PoolMode::Mean : PoolMode::CLS);

  const std::vector<char> below = trains_at_or_below();  // stop back-propagating where nothing trains

  for (int64_t l = cfg_.layers - 1; l >= 0; l--) {
    if (!below[l + 1]) return;
    const LayerParams& w = lp_[l];
    LayerActs a = layer_acts(l, true);
    const float* x = xs_[l];
    const bool tr = trainable(w.qkv_w);
    // LN2: dh -> dr2 (in dtmp)
    layernorm_backward(dtmp, tr ? Gr(w.ln2_w) : nullptr, tr ? Gr(w.ln2_b) : nullptr, dh, a.r2, w.ln2_w, a.mean2,
                       a.rstd2, T, H);
    // FFN output: r2 = a1 + dropout(o). do goes into dh (free now).
    dropout_rows(dh, dtmp, T, H, hp, site_key(dropout_seed_, l, 2), tok_keys_.data());
    float* dctx = dffn;  // [T, H] fits in [T, F]
    const bool dx = l > 0 ? below[l] : below[0];
    if (bf) {
      // Each dY is converted once for both its products (dW and dX); the weights come from the
      // forward's bf16 copies, the GELU output is recomputed straight into bf16.
      const LayerBf16 w16 = layer_bf16(l);
      uint16_t* y16 = ybf_.data();
      to_bf16(dh, y16, T * H);
      if (tr) {
        gelu_forward_bf16(gbf_.data(), a.h1, T * F);
        gemm_bf16(linear_bwd_w_desc(T, H, F), y16, gbf_.data(), Gr(w.o_w));
        bias_backward(Gr(w.o_b), dh, T, H);
      }
      gemm_bf16(linear_bwd_x_desc(T, H, F, 0.f), y16, w16.o_w, dffn);
      gelu_backward(dffn, dffn, a.h1, T * F);
      to_bf16(dffn, y16, T * F);
      if (tr) {
        gemm_bf16(linear_bwd_w_desc(T, F, H), y16, a.a1, Gr(w.i_w));
        bias_backward(Gr(w.i_b), dffn, T, F);
      }
      gemm_bf16(linear_bwd_x_desc(T, F, H, 1.f), y16, w16.i_w, dtmp);  // da1 = dr2 + dffn Wi
      layernorm_backward(dh, tr ? Gr(w.ln1_w) : nullptr, tr ? Gr(w.ln1_b) : nullptr, dtmp, a.r1, w.ln1_w, a.mean1,
                         a.rstd1, T, H);
      dropout_rows(dtmp, dh, T, H, hp, site_key(dropout_seed_, l, 1), tok_keys_.data());
      to_bf16(dtmp, y16, T * H);
      if (tr) {
        gemm_bf16(linear_bwd_w_desc(T, H, H), y16, a.ctx, Gr(w.ao_w));
        bias_backward(Gr(w.ao_b), dtmp, T, H);
      }
      gemm_bf16(linear_bwd_x_desc(T, H, H, 0.f), y16, w16.ao_w, dctx);
      attention_backward(dqkv, dctx, a.qkv, shape, ap, site_key(dropout_seed_, l, 0), attn_scratch_.data(), prec_);
      to_bf16(dqkv, y16, T * 3 * H);
      if (tr) {
        gemm_bf16(linear_bwd_w_desc(T, 3 * H, H), y16, x, Gr(w.qkv_w));
        bias_backward(Gr(w.qkv_b), dqkv, T, 3 * H);
      }
      if (dx) gemm_bf16(linear_bwd_x_desc(T, 3 * H, H, 1.f), y16, w16.qkv_w, dh);  // dx = dr1 + ...
      continue;
    }
    if (tr) {
      gelu_forward(gel, a.h1, T * F);
      linear_bwd_w(Gr(w.o_w), Gr(w.o_b), dh, gel, T, H, F, prec_);
    }
    linear_bwd_x(dffn, dh, w.o_w, T, H, F, 0.f, prec_);
    gelu_backward(dffn, dffn, a.h1, T * F);
    if (tr) linear_bwd_w(Gr(w.i_w), Gr(w.i_b), dffn, a.a1, T, F, H, prec_);
    linear_bwd_x(dtmp, dffn, w.i_w, T, F, H, 1.f, prec_);  // da1 = dr2 + dffn Wi
    // LN1: da1 -> dr1 (in dh)
    layernorm_backward(dh, tr ? Gr(w.ln1_w) : nullptr, tr ? Gr(w.ln1_b) : nullptr, dtmp, a.r1, w.ln1_w, a.mean1,
                       a.rstd1, T, H);
    // Attention output: r1 = x + dropout(ao).
    dropout_rows(dtmp, dh, T, H, hp, site_key(dropout_seed_, l, 1), tok_keys_.data());
    if (tr) linear_bwd_w(Gr(w.ao_w), Gr(w.ao_b), dtmp, a.ctx, T, H, H, prec_);
    linear_bwd_x(dctx, dtmp, w.ao_w, T, H, H, 0.f, prec_);
    attention_backward(dqkv, dctx, a.qkv, shape, ap, site_key(dropout_seed_, l, 0), attn_scratch_.data(), prec_);
    if (tr) linear_bwd_w(Gr(w.qkv_w), Gr(w.qkv_b), dqkv, x, T, 3 * H, H, prec_);
    if (dx) linear_bwd_x(dh, dqkv, w.qkv_w, T, 3 * H, H, 1.f, prec_);  // dx = dr1 + ...
  }
  if (!below[0]) return;
  // Embeddings: dropout, LayerNorm, gather.
  dropout_rows(dtmp, dh, T, H, hp, site_key(dropout_seed_, -1, 0), tok_keys_.data());
  const bool ln_tr = trainable(eln_w_);
  layernorm_backward(dh, ln_tr ? Gr(eln_w_) : nullptr, ln_tr ? Gr(eln_b_) : nullptr, dtmp, emb_sum_, eln_w_, emb_mean_,
                     emb_rstd_, T, H);
  embedding_backward(G(word_), G(pos_), G(type_), dh, ids_.data(), pos_ids_.data(), type_ids_.data(), T, H);
}

}  // namespace xlir
