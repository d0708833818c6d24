// The interface between the Model (native/model.h) and an accelerator that runs it.
// Design: the Model stays the one object users hold, on any device: it owns the parameter table,
// validates and packs every batch on the host (positions, dropout keys: the same arrays for every
// back end, so masks and positions agree) and keeps host copies of the weights, gradients and
// AdamW moments. A backend holds the device copies and runs forward, backward and the optimizer
// step there; the Model decides when a copy must move (model.h, "Where"), so a parameter read or
// written from TypeScript, a checkpoint or a device change always sees the newest values.
// Two backends implement it, both through the one template in device_model.h: CUDA
// (native/cuda/model.cu) and an emulation over the CPU functions (native/host_ops.h) that lets the
// device code path itself (buffer plan, order of ops, gradient routing, optimizer) be tested on a
// machine without a GPU.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "matmul.h"

namespace xlir {

class Model;

// A batch as Model::prepare_batch leaves it on the host: validated, packed, with positions and
// dropout keys computed.
struct PackedBatch {
  int64_t T = 0, B = 0, max_len = 0;
  const int32_t* ids = nullptr;        // [T]
  const int32_t* pos_ids = nullptr;    // [T]
  const int32_t* type_ids = nullptr;   // [T]
  const int32_t* lengths = nullptr;    // [B]
  const int64_t* offsets = nullptr;    // [B]
  const uint64_t* seq_keys = nullptr;  // [B]
  const uint64_t* tok_keys = nullptr;  // [T]
};

struct AdamWHyper {
  float lr = 0, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weight_decay = 0, max_grad_norm = 0;
  int64_t step = 0;                // t, 1-based, after increment
  bool sparse_embeddings = false;  // row-sparse update of the word-embedding table (adamw.h)
};

class DeviceBackend {
 public:
  virtual ~DeviceBackend() = default;
  // "cuda:0", "emulated".
  virtual std::string name() const = 0;

  // Whole-array copies between the Model's host arrays and the device (n = num_params()).
  virtual void upload_weights(const float* w) = 0;
  virtual void download_weights(float* w) = 0;
  virtual void upload_grads(const float* g) = 0;
  virtual void download_grads(float* g) = 0;
  virtual void upload_moments(const float* m, const float* v) = 0;
  virtual void download_moments(float* m, float* v) = 0;

  // Model::forward / backward on the device. out[B, D] and hidden_out[T, H] (optional) are host arrays.
  // recompute (with keep): keep only each layer's input and rebuild its activations in backward.
  virtual void forward(const PackedBatch& b, Precision prec, float* out, bool dropout, bool keep, bool recompute,
                       uint64_t seed, float* hidden_out) = 0;
  virtual void backward(const float* dout) = 0;
  virtual void zero_grad() = 0;
  // Clipping + AdamW over every trainable tensor; the word-embedding table's gradient is non-zero
  // only in `touched_rows` (Model::touched_word_rows), which the norm and, when
  // h.sparse_embeddings, the update visit. Returns the gradient norm before clipping.
  virtual double adamw_step(const AdamWHyper& h, const std::vector<int32_t>& touched_rows) = 0;
  // Device memory held (bytes), for reports.
  virtual int64_t bytes_allocated() const = 0;
};

// The CPU-emulated backend (host_ops.cc): the device code path run with the CPU functions.
std::unique_ptr<DeviceBackend> make_emulated_backend(const Model& model);

}  // namespace xlir
