// The encoder: BERT / XLM-RoBERTa exactly as transformers' BertModel and XLMRobertaModel define it
// (post-LayerNorm layers, erf GELU, absolute positions), plus sentence pooling, an optional
// sentence-transformers Dense layer and L2 normalisation.
//
// Design:
// - Parameters, gradients and AdamW moments are each ONE flat fp32 allocation addressed through a
//   table (name, shape, offset). The table keeps transformers' names, and query/key/value weights
//   (and biases) of a layer are adjacent, so the three projections run as one [3H, H] product.
// - Batches are packed (no padding); see attention.h.
// - A training forward keeps what backward needs (O(T * H) per layer; attention probabilities and
//   the GELU output are recomputed in backward). Buffers grow to the largest batch seen and are
//   then reused: a steady-state step allocates nothing.
// - Dropout is keyed by (dropout seed, site, sequence key, position), so replaying a sub-batch with
//   the same seed and sequence keys reproduces its masks exactly (gradient caching).
// - Devices: with a backend attached (to_device; device_backend.h) forward, backward, zero_grad and
//   the AdamW step run there. The host arrays stay the reference copy that parameter reads and
//   writes, checkpoints and device changes go through: each of weights, gradients and AdamW
//   moments records where its newest copy is (host, device or both) and moves only when the
//   other side needs it, so a training loop on the GPU copies nothing but batches and embeddings.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common.h"
#include "device_backend.h"
#include "matmul.h"
#include "pooling.h"

namespace xlir {

enum class Pooling { CLS, Mean, Pooler };

struct ModelConfig {
  bool roberta = false;
  int64_t vocab = 0, hidden = 0, layers = 0, heads = 0, ffn = 0, max_pos = 0, type_vocab = 0;
  float ln_eps = 1e-12f;
  int32_t pad_id = 0;
  float hidden_dropout = 0.1f, attn_dropout = 0.1f;
  Pooling pooling = Pooling::Mean;
  bool has_pooler = false;
  int64_t dense_out = 0;  // 0: no sentence-transformers Dense layer
  bool dense_tanh = false, dense_bias = true;
  bool normalize = true;
  uint64_t seed = 0;
  void validate() const;
};

struct ParamInfo {
  std::string name;
  std::vector<int64_t> shape;
  int64_t offset = 0, size = 0;
  bool trainable = true;
  bool decay = true;  // weight decay applies to matrices only, not biases and LayerNorm weights
};

struct Batch {
  const int32_t* ids = nullptr;       // [T]
  const int32_t* lengths = nullptr;   // [B]
  const int32_t* type_ids = nullptr;  // [T] or null (all 0)
  const uint32_t* seq_ids = nullptr;  // [B] or null (index in batch)
  int64_t T = 0, B = 0;
};

class Model {
 public:
  explicit Model(const ModelConfig& cfg);

  const ModelConfig& config() const { return cfg_; }
  int64_t embedding_dim() const { return cfg_.dense_out ? cfg_.dense_out : cfg_.hidden; }
  const std::vector<ParamInfo>& params() const { return params_; }
  const ParamInfo& param(const std::string& name) const;
  int64_t num_params() const { return int64_t(W_.size()); }
  // Writable view of every parameter (AdamW, setParameter): the bf16 weight copies count as stale
  // after any call, and the next bf16 forward converts the weights again. On a device, the device
  // copy is fetched first and counts as stale afterwards.
  float* weights() {
    pull(kWeights);
    where_[kWeights] = Where::Host;
    bf16_weights_current_ = false;
    return W_.data();
  }
  const float* weights() const {  // reading leaves the copies current
    pull(kWeights);
    return W_.data();
  }
  float* grads() {
    pull(kGrads);
    where_[kGrads] = Where::Host;
    return G_.data();
  }
  const float* grads() const {
    pull(kGrads);
    return G_.data();
  }

  // AdamW moments (first m, second v), one per parameter, made (zero) by init_moments when an
  // optimizer attaches to the model; same synchronisation as the weights.
  void init_moments();
  bool has_moments() const { return !M_.empty(); }
  float* moments_m() { return moment(0); }
  float* moments_v() { return moment(1); }

  // Moves the model to a device backend (null: back to the CPU). Nothing is copied now: each part
  // follows when first needed. Gradients and moments travel with the weights.
  void to_device(std::unique_ptr<DeviceBackend> backend);
  std::string device() const { return dev_ ? dev_->name() : "cpu"; }
  bool on_device() const { return bool(dev_); }
  int64_t device_bytes() const { return dev_ ? dev_->bytes_allocated() : 0; }
  // One AdamW step with global-norm clipping over every trainable tensor, on the model's device
  // (adamw.h's arithmetic; the word-embedding table's norm and, with h.sparse_embeddings, its
  // update visit only touched_word_rows()). h.step is t, 1-based. Returns the norm before clipping.
  double adamw_step(const AdamWHyper& h);

  void set_precision(Precision p) { prec_ = p; }
  Precision precision() const { return prec_; }
  void set_frozen(bool freeze_word_embeddings, int64_t freeze_layers);
  // Activation recompute (device back ends): a training forward keeps only each layer's input and
  // backward rebuilds the layer's activations first (about one more forward of compute; activation
  // memory from ~11 H floats per token and layer to ~1 H, plus one layer's worth). Gradients are
  // identical. The CPU path keeps its activations whatever this says (host memory is rarely the
  // limit there, and gradient caching bounds it).
  void set_recompute(bool on) { recompute_ = on; }
  bool recompute() const { return recompute_; }

  // Sentence embeddings out[B, embedding_dim()]. train: dropout on. keep: activations kept for
  // backward() (a training forward); without keep only one layer's activations live at a time
  // (inference, and the first pass of gradient caching, which needs dropout but no backward).
  // hidden_out (optional): last-layer hidden states [T, hidden].
  void forward(const Batch& batch, float* out, bool train, uint64_t dropout_seed, float* hidden_out = nullptr,
               bool keep = true);
  // Gradients of the parameters (+=) from dout[B, embedding_dim()] of the last training forward.
  void backward(const float* dout);
  // Zeroes every gradient; of the word-embedding table only the rows in touched_word_rows().
  void zero_grad();
  int64_t last_batch_size() const { return B_; }

  // The word-embedding table, and the rows of it whose gradient may be non-zero since the last
  // zero_grad() (the token ids of the batches back-propagated since), in first-seen order. Every
  // other row's gradient is exactly zero (backward writes this table only through the embedding
  // scatter), so zero_grad(), the gradient norm and the row-sparse AdamW visit only these rows:
  // a batch touches a few thousand of XLM-R's 250,002.
  const ParamInfo& word_embedding_param() const { return params_[word_index_]; }

  // Offsets (in the flat parameter array) of layer l's tensors, for the device back ends.
  struct LayerOffsets {
    int64_t qkv_w, qkv_b, ao_w, ao_b, ln1_w, ln1_b, i_w, i_b, o_w, o_b, ln2_w, ln2_b;
  };
  LayerOffsets layer_offsets(int64_t l) const;
  // Whether the tensor starting at this offset trains (set_frozen), and, per layer boundary l
  // (0: the embeddings), whether anything at or below it trains: backward stops where nothing does.
  bool trainable_at(int64_t offset) const;
  std::vector<char> trains_at_or_below() const;
  const std::vector<int32_t>& touched_word_rows() const { return touched_rows_; }

 private:
  struct LayerParams {
    float *qkv_w, *qkv_b, *ao_w, *ao_b, *ln1_w, *ln1_b, *i_w, *i_b, *o_w, *o_b, *ln2_w, *ln2_b;
  };
  // bf16 copies of a layer's weight matrices, made by a bf16 forward and reused by its backward
  // (the dX products), so each weight is converted once per step instead of twice.
  struct LayerBf16 {
    uint16_t *qkv_w, *ao_w, *i_w, *o_w;
  };
  struct LayerActs {
    float *qkv, *ctx, *r1, *mean1, *rstd1, *a1, *h1, *r2, *mean2, *rstd2;
  };
  float* P(const std::string& name) { return W_.data() + param(name).offset; }
  float* Gr(float* p) { return G_.data() + (p - W_.data()); }
  bool trainable(const float* p) const;
  void add_param(const std::string& name, std::vector<int64_t> shape);
  void init_weights();
  void prepare_batch(const Batch& b);
  PackedBatch packed() const;
  float* moment(int which);
  // Where the newest copy of each part is; pull makes the host copy current, push the device's.
  enum Part { kWeights = 0, kGrads = 1, kMoments = 2 };
  enum class Where { Host, Device, Both };
  void pull(Part p) const;
  void push(Part p);
  void plan(bool train);
  LayerActs layer_acts(int64_t l, bool train);
  LayerBf16 layer_bf16(int64_t l);

  ModelConfig cfg_;
  std::vector<ParamInfo> params_;
  std::unordered_map<std::string, size_t> index_;
  mutable std::vector<float> W_, G_, M_, V_;  // mutable: a const read may fetch the device copy
  std::unique_ptr<DeviceBackend> dev_;
  mutable Where where_[3] = {Where::Host, Where::Host, Where::Host};
  std::vector<char> trainable_flag_;  // per parameter tensor
  size_t word_index_ = 0;                // params_ index of the word-embedding table
  std::vector<char> row_touched_;        // [vocab]: row listed in touched_rows_
  std::vector<int32_t> touched_rows_;    // capacity reserved for the whole vocabulary: never reallocates
  Precision prec_ = Precision::FP32;
  bool recompute_ = false;

  // Parameter views.
  float *word_, *pos_, *type_, *eln_w_, *eln_b_, *pool_w_ = nullptr, *pool_b_ = nullptr, *dense_w_ = nullptr,
        *dense_b_ = nullptr;
  std::vector<LayerParams> lp_;

  // The batch of the last forward (copied: the caller's arrays may be gone by backward()).
  int64_t T_ = 0, B_ = 0, max_len_ = 0;
  std::vector<int32_t> ids_, pos_ids_, type_ids_, lengths_;
  std::vector<int64_t> offsets_;
  std::vector<uint64_t> seq_keys_, tok_keys_;
  uint64_t dropout_seed_ = 0;
  bool have_train_forward_ = false;
  bool bf16_forward_ = false;  // the last forward ran in bf16 (its weight copies feed backward)
  // wbf_ holds bf16(W_) of the layers' matrices: set by a bf16 forward, cleared by weights(). The
  // weights change only at optimizer steps and loads, so an inference run or the sub-batches of a
  // gradient-cached step convert them once, not once per forward.
  mutable bool bf16_weights_current_ = false;  // mutable: a const read that fetches device weights stales them

  // Activations and scratch (grow-only).
  Buffer<float> arena_, scratch_, attn_scratch_, head_grad_;
  // bf16 path: the layers' weight copies (LayerBf16), one product operand converted once for
  // several products (dY for dW and dX) [T, max(3H, F)], and the GELU output in bf16 [T, F].
  Buffer<uint16_t> wbf_, ybf_, gbf_;
  float *emb_sum_, *emb_mean_, *emb_rstd_;
  std::vector<float*> xs_;  // layer inputs; xs_[layers] = last hidden state
  float *cls_, *pooled_, *dense_, *out_, *norms_;
};

}  // namespace xlir
