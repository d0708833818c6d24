// N-API surface of the engine (declared for TypeScript in src/native.ts).
// Heavy calls (encode, forward, backward, optimizer step) run on libuv's thread pool and return
// promises; token arrays are read in place (the worker holds a reference so they stay alive);
// engine errors become JavaScript exceptions / rejections. A model runs one call at a time: a
// second call while one is in flight is an error rather than a data race.
#include <napi.h>
#include <omp.h>

#include <chrono>
#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <dnnl.hpp>

#include "adamw.h"
#include "device_backend.h"
#include "infonce.h"
#include "model.h"
#include "search.h"
#ifdef XLIR_WITH_CUDA
#include "cuda/backend.h"
#include "cuda/device.cuh"
#endif

using namespace xlir;

namespace {

// Device names: "cpu", "cuda" (= "cuda:0"), "cuda:N", and "emulated" (the device code path over
// the CPU functions, device_backend.h: for tests). Returns -1 for cpu, -2 for emulated, else N.
const int kCpu = -1, kEmulated = -2;
int parse_device(const std::string& d) {
  if (d == "cpu") return kCpu;
  if (d == "emulated") return kEmulated;
  if (d == "cuda") return 0;
  if (d.rfind("cuda:", 0) == 0 && d.size() > 5 && d.size() < 12 &&
      d.find_first_not_of("0123456789", 5) == std::string::npos)
    return std::stoi(d.substr(5));
  throw Error("unknown device '" + d + "': expected 'cpu' or 'cuda:N'");
}
// Throws unless CUDA device n can be used (built with CUDA, driver and device present).
void require_cuda(int n) {
#ifdef XLIR_WITH_CUDA
  cuda::use_device(n);
#else
  throw Error("device 'cuda:" + std::to_string(n) + "' requested but CUDA is unavailable (" XLIR_CUDA_REASON ")");
#endif
}
std::unique_ptr<DeviceBackend> make_backend(const Model& m, int dev) {
  if (dev == kCpu) return nullptr;
  if (dev == kEmulated) return make_emulated_backend(m);
  require_cuda(dev);
#ifdef XLIR_WITH_CUDA
  return cuda::make_model_backend(m, dev);
#else
  return nullptr;
#endif
}

int g_threads = 0;  // 0: OpenMP's default (all cores)
void apply_threads() {
  // OpenMP's thread count is per calling thread, and work runs on libuv's pool: set it there.
  if (g_threads > 0) omp_set_num_threads(g_threads);
}

// Runs `work` off the JavaScript thread and settles a promise with `done(env)` or the error.
class PromiseWorker : public Napi::AsyncWorker {
 public:
  PromiseWorker(Napi::Env env, std::function<void()> work, std::function<Napi::Value(Napi::Env)> done,
                std::function<void()> finally)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)),
        done_(std::move(done)), finally_(std::move(finally)) {}
  Napi::Promise promise() { return deferred_.Promise(); }
  void keep(Napi::Value v) { refs_.push_back(Napi::Persistent(v)); }
  void Execute() override {
    try {
      apply_threads();
      work_();
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override {
    finally_();
    Napi::Env env = Env();
    try {
      deferred_.Resolve(done_(env));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }
  void OnError(const Napi::Error& e) override {
    finally_();
    deferred_.Reject(e.Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<void()> work_;
  std::function<Napi::Value(Napi::Env)> done_;
  std::function<void()> finally_;
  std::vector<Napi::Reference<Napi::Value>> refs_;
};

[[noreturn]] void throw_js(Napi::Env env, const std::string& msg) { throw Napi::Error::New(env, msg); }

double num_field(Napi::Object o, const char* name, const char* what) {
  Napi::Value v = o.Get(name);
  if (!v.IsNumber()) throw_js(o.Env(), std::string(what) + ": field '" + name + "' must be a number");
  return v.As<Napi::Number>().DoubleValue();
}
bool bool_field(Napi::Object o, const char* name, const char* what) {
  Napi::Value v = o.Get(name);
  if (!v.IsBoolean()) throw_js(o.Env(), std::string(what) + ": field '" + name + "' must be a boolean");
  return v.As<Napi::Boolean>().Value();
}
std::string str_field(Napi::Object o, const char* name, const char* what) {
  Napi::Value v = o.Get(name);
  if (!v.IsString()) throw_js(o.Env(), std::string(what) + ": field '" + name + "' must be a string");
  return v.As<Napi::String>().Utf8Value();
}
int64_t int_field(Napi::Object o, const char* name, const char* what) {
  double d = num_field(o, name, what);
  if (d != double(int64_t(d))) throw_js(o.Env(), std::string(what) + ": field '" + name + "' must be an integer");
  return int64_t(d);
}

template <typename T, napi_typedarray_type K>
Napi::TypedArrayOf<T> typed(Napi::Env env, Napi::Value v, const std::string& what, const char* type_name) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != K)
    throw_js(env, what + " must be a " + type_name);
  return v.As<Napi::TypedArrayOf<T>>();
}

ModelConfig parse_config(Napi::Object o) {
  const char* w = "model config";
  ModelConfig c;
  std::string arch = str_field(o, "arch", w);
  if (arch != "bert" && arch != "roberta") throw_js(o.Env(), "model config: arch must be 'bert' or 'roberta', got '" + arch + "'");
  c.roberta = arch == "roberta";
  c.vocab = int_field(o, "vocabSize", w);
  c.hidden = int_field(o, "hiddenSize", w);
  c.layers = int_field(o, "numLayers", w);
  c.heads = int_field(o, "numHeads", w);
  c.ffn = int_field(o, "intermediateSize", w);
  c.max_pos = int_field(o, "maxPositions", w);
  c.type_vocab = int_field(o, "typeVocabSize", w);
  c.ln_eps = float(num_field(o, "layerNormEps", w));
  c.pad_id = int32_t(int_field(o, "padTokenId", w));
  c.hidden_dropout = float(num_field(o, "hiddenDropout", w));
  c.attn_dropout = float(num_field(o, "attentionDropout", w));
  std::string pool = str_field(o, "pooling", w);
  if (pool == "cls") c.pooling = Pooling::CLS;
  else if (pool == "mean") c.pooling = Pooling::Mean;
  else if (pool == "pooler") c.pooling = Pooling::Pooler;
  else throw_js(o.Env(), "model config: pooling must be 'cls', 'mean' or 'pooler', got '" + pool + "'");
  c.has_pooler = bool_field(o, "hasPooler", w);
  c.normalize = bool_field(o, "normalize", w);
  c.seed = uint64_t(int_field(o, "seed", w));
  Napi::Value d = o.Get("dense");
  if (d.IsObject()) {
    Napi::Object dd = d.As<Napi::Object>();
    c.dense_out = int_field(dd, "outFeatures", "model config dense");
    std::string act = str_field(dd, "activation", "model config dense");
    if (act != "tanh" && act != "identity") throw_js(o.Env(), "model config: dense.activation must be 'tanh' or 'identity'");
    c.dense_tanh = act == "tanh";
    c.dense_bias = bool_field(dd, "bias", "model config dense");
  }
  return c;
}

class ModelWrap : public Napi::ObjectWrap<ModelWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Model",
                       {InstanceAccessor<&ModelWrap::EmbeddingDim>("embeddingDim"),
                        InstanceAccessor<&ModelWrap::HiddenSize>("hiddenSize"),
                        InstanceAccessor<&ModelWrap::NumParameters>("numParameters"),
                        InstanceMethod<&ModelWrap::Parameters>("parameters"),
                        InstanceMethod<&ModelWrap::GetParameter>("getParameter"),
                        InstanceMethod<&ModelWrap::SetParameter>("setParameter"),
                        InstanceMethod<&ModelWrap::GetGradient>("getGradient"),
                        InstanceMethod<&ModelWrap::SetPrecision>("setPrecision"),
                        InstanceMethod<&ModelWrap::SetFrozen>("setFrozen"),
                        InstanceMethod<&ModelWrap::Encode>("encode"),
                        InstanceMethod<&ModelWrap::HiddenStates>("hiddenStates"),
                        InstanceMethod<&ModelWrap::Forward>("forward"),
                        InstanceMethod<&ModelWrap::Backward>("backward"),
                        InstanceMethod<&ModelWrap::ZeroGrad>("zeroGrad"),
                        InstanceMethod<&ModelWrap::ToDevice>("toDevice"),
                        InstanceMethod<&ModelWrap::SetActivationRecompute>("setActivationRecompute"),
                        InstanceAccessor<&ModelWrap::Device>("device"),
                        InstanceAccessor<&ModelWrap::DeviceBytes>("deviceBytes"),
                        InstanceMethod<&ModelWrap::Dispose>("dispose")});
  }

  ModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelWrap>(info) {
    if (info.Length() < 1 || !info[0].IsObject()) throw_js(info.Env(), "new Model(config): config object expected");
    ModelConfig c = parse_config(info[0].As<Napi::Object>());
    try {
      model_ = std::make_unique<Model>(c);
    } catch (const std::exception& e) {
      throw_js(info.Env(), e.what());
    }
    // Parameters + gradients: V8 counts this against its heap limit and collects unreferenced
    // models sooner (activations are not counted: they grow later and are freed with the model).
    external_ = int64_t(model_->num_params()) * 8;
    Napi::MemoryManagement::AdjustExternalMemory(info.Env(), external_);
  }
  ~ModelWrap() override {
    if (external_) Napi::MemoryManagement::AdjustExternalMemory(Env(), -external_);
  }

  // Used by the optimizer, which runs on the same model.
  Model& model(Napi::Env env) {
    if (!model_) throw_js(env, "model was disposed");
    return *model_;
  }
  void acquire(Napi::Env env) {
    model(env);
    if (busy_) throw_js(env, "model is busy: await the previous call before starting another");
    busy_ = true;
  }
  void release() { busy_ = false; }
  Model* raw() { return model_.get(); }  // for workers: no Napi calls off the JavaScript thread

 private:
  Napi::Value EmbeddingDim(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), double(model(info.Env()).embedding_dim()));
  }
  Napi::Value HiddenSize(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), double(model(info.Env()).config().hidden));
  }
  Napi::Value NumParameters(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), double(model(info.Env()).num_params()));
  }
  // toDevice('cpu' | 'cuda:N' | 'emulated'): moves the model (weights, gradients, optimizer state).
  void ToDevice(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (busy_) throw_js(env, "model is busy: await the previous call before toDevice()");
    if (info.Length() < 1 || !info[0].IsString()) throw_js(env, "toDevice(device): 'cpu' or 'cuda:N' expected");
    try {
      Model& m = model(env);
      const int dev = parse_device(info[0].As<Napi::String>().Utf8Value());
      if (m.device() == info[0].As<Napi::String>().Utf8Value() || (dev == 0 && m.device() == "cuda:0")) return;
      // First back to the host (freeing the old device's memory); if the new device cannot be
      // used, the model stays there, on the CPU, with all its values.
      m.to_device(nullptr);
      m.to_device(make_backend(m, dev));
    } catch (const Napi::Error&) {
      throw;
    } catch (const std::exception& e) {
      throw_js(env, e.what());
    }
  }
  void SetActivationRecompute(const Napi::CallbackInfo& info) {
    if (info.Length() < 1 || !info[0].IsBoolean()) throw_js(info.Env(), "setActivationRecompute(on: boolean) expected");
    model(info.Env()).set_recompute(info[0].As<Napi::Boolean>().Value());
  }
  Napi::Value Device(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), model(info.Env()).device()); }
  Napi::Value DeviceBytes(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), double(model(info.Env()).device_bytes()));
  }
  Napi::Value Parameters(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const auto& ps = model(env).params();
    Napi::Array arr = Napi::Array::New(env, ps.size());
    for (size_t i = 0; i < ps.size(); i++) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", ps[i].name);
      Napi::Array shape = Napi::Array::New(env, ps[i].shape.size());
      for (size_t k = 0; k < ps[i].shape.size(); k++) shape.Set(uint32_t(k), Napi::Number::New(env, double(ps[i].shape[k])));
      o.Set("shape", shape);
      o.Set("trainable", ps[i].trainable);
      o.Set("offset", Napi::Number::New(env, double(ps[i].offset)));
      arr.Set(uint32_t(i), o);
    }
    return arr;
  }
  const ParamInfo& named(const Napi::CallbackInfo& info) {
    if (info.Length() < 1 || !info[0].IsString()) throw_js(info.Env(), "parameter name (string) expected");
    try {
      return model(info.Env()).param(info[0].As<Napi::String>().Utf8Value());
    } catch (const Error& e) {
      throw_js(info.Env(), e.what());
    }
  }
  Napi::Value copy_out(Napi::Env env, const float* src, int64_t n) {
    Napi::Float32Array a = Napi::Float32Array::New(env, size_t(n));
    std::copy(src, src + n, a.Data());
    return a;
  }
  Napi::Value GetParameter(const Napi::CallbackInfo& info) {
    if (busy_) throw_js(info.Env(), "model is busy: await the previous call before reading parameters");
    const ParamInfo& p = named(info);
    try {
      return copy_out(info.Env(), std::as_const(model(info.Env())).weights() + p.offset, p.size);
    } catch (const Error& e) {
      throw_js(info.Env(), e.what());
    }
  }
  Napi::Value GetGradient(const Napi::CallbackInfo& info) {
    if (busy_) throw_js(info.Env(), "model is busy: await the previous call before reading gradients");
    const ParamInfo& p = named(info);
    try {
      return copy_out(info.Env(), std::as_const(model(info.Env())).grads() + p.offset, p.size);
    } catch (const Error& e) {
      throw_js(info.Env(), e.what());
    }
  }
  void SetParameter(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (busy_) throw_js(env, "model is busy: await the previous call before setting parameters");
    const ParamInfo& p = named(info);
    auto data = typed<float, napi_float32_array>(env, info[1], "setParameter('" + p.name + "'): data", "Float32Array");
    if (info.Length() < 3 || !info[2].IsArray()) throw_js(env, "setParameter('" + p.name + "'): shape array expected");
    Napi::Array sa = info[2].As<Napi::Array>();
    std::vector<int64_t> shape;
    for (uint32_t i = 0; i < sa.Length(); i++) shape.push_back(int64_t(sa.Get(i).As<Napi::Number>().DoubleValue()));
    if (shape != p.shape)
      throw_js(env, "tensor '" + p.name + "' has shape " + shape_str(shape) + " but the model expects " + shape_str(p.shape));
    if (int64_t(data.ElementLength()) != p.size)
      throw_js(env, "tensor '" + p.name + "': " + std::to_string(data.ElementLength()) + " values for shape " +
                        shape_str(p.shape));
    try {
      std::copy(data.Data(), data.Data() + p.size, model(env).weights() + p.offset);
    } catch (const Error& e) {
      throw_js(env, e.what());
    }
  }
  void SetPrecision(const Napi::CallbackInfo& info) {
    std::string p = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
    if (p != "fp32" && p != "bf16") throw_js(info.Env(), "precision must be 'fp32' or 'bf16'");
    model(info.Env()).set_precision(p == "bf16" ? Precision::BF16 : Precision::FP32);
  }
  void SetFrozen(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) throw_js(env, "setFrozen({freezeWordEmbeddings, freezeLayers}) expected");
    Napi::Object o = info[0].As<Napi::Object>();
    try {
      model(env).set_frozen(bool_field(o, "freezeWordEmbeddings", "setFrozen"), int_field(o, "freezeLayers", "setFrozen"));
    } catch (const Error& e) {
      throw_js(env, e.what());
    }
  }

  // Reads a TokenBatch without copying; the worker keeps the arrays alive.
  Batch parse_batch(Napi::Env env, Napi::Value v, PromiseWorker* w) {
    if (!v.IsObject()) throw_js(env, "batch object {ids, lengths} expected");
    Napi::Object o = v.As<Napi::Object>();
    auto ids = typed<int32_t, napi_int32_array>(env, o.Get("ids"), "batch.ids", "Int32Array");
    auto lengths = typed<int32_t, napi_int32_array>(env, o.Get("lengths"), "batch.lengths", "Int32Array");
    Batch b;
    b.ids = ids.Data();
    b.lengths = lengths.Data();
    b.T = int64_t(ids.ElementLength());
    b.B = int64_t(lengths.ElementLength());
    w->keep(ids);
    w->keep(lengths);
    Napi::Value t = o.Get("typeIds");
    if (!t.IsUndefined() && !t.IsNull()) {
      auto ta = typed<int32_t, napi_int32_array>(env, t, "batch.typeIds", "Int32Array");
      if (int64_t(ta.ElementLength()) != b.T)
        throw_js(env, "batch.typeIds has " + std::to_string(ta.ElementLength()) + " entries, ids has " + std::to_string(b.T));
      b.type_ids = ta.Data();
      w->keep(ta);
    }
    Napi::Value s = o.Get("seqIds");
    if (!s.IsUndefined() && !s.IsNull()) {
      auto sa = typed<uint32_t, napi_uint32_array>(env, s, "batch.seqIds", "Uint32Array");
      if (int64_t(sa.ElementLength()) != b.B)
        throw_js(env, "batch.seqIds has " + std::to_string(sa.ElementLength()) + " entries, lengths has " + std::to_string(b.B));
      b.seq_ids = sa.Data();
      w->keep(sa);
    }
    return b;
  }

  // Starts fn(model, out-buffer) on the pool; resolves with a Float32Array of n(model) floats.
  Napi::Value run_forward(const Napi::CallbackInfo& info, bool train, bool hidden) {
    Napi::Env env = info.Env();
    acquire(env);
    try {
      auto out = std::make_shared<std::vector<float>>();
      auto* self = this;
      uint64_t seed = 0;
      bool keep = train;
      if (train) {
        if (info.Length() < 2 || !info[1].IsObject()) throw_js(env, "forward(batch, {dropoutSeed}) expected");
        Napi::Object o = info[1].As<Napi::Object>();
        seed = uint64_t(int_field(o, "dropoutSeed", "forward options"));
        if (!o.Get("keepActivations").IsUndefined()) keep = bool_field(o, "keepActivations", "forward options");
      }
      auto batch = std::make_shared<Batch>();
      PromiseWorker* w = new PromiseWorker(
          env,
          [self, out, batch, train, hidden, seed, keep]() {
            Model& m = *self->model_;
            std::vector<float> emb(size_t(batch->B * m.embedding_dim()));
            if (hidden) out->resize(size_t(batch->T * m.config().hidden));
            m.forward(*batch, emb.data(), train, seed, hidden ? out->data() : nullptr, keep);
            if (!hidden) *out = std::move(emb);
          },
          [out](Napi::Env e) -> Napi::Value {
            Napi::Float32Array a = Napi::Float32Array::New(e, out->size());
            std::copy(out->begin(), out->end(), a.Data());
            return a;
          },
          [self]() { self->release(); });
      try {
        *batch = parse_batch(env, info[0], w);
      } catch (...) {
        delete w;
        throw;
      }
      w->keep(info.This());
      Napi::Promise p = w->promise();
      w->Queue();
      return p;
    } catch (...) {
      release();
      throw;
    }
  }
  Napi::Value Encode(const Napi::CallbackInfo& info) { return run_forward(info, false, false); }
  Napi::Value HiddenStates(const Napi::CallbackInfo& info) { return run_forward(info, false, true); }
  Napi::Value Forward(const Napi::CallbackInfo& info) { return run_forward(info, true, false); }

  Napi::Value Backward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto g = typed<float, napi_float32_array>(env, info[0], "backward(gradEmbeddings)", "Float32Array");
    const int64_t want = model(env).last_batch_size() * model(env).embedding_dim();
    if (int64_t(g.ElementLength()) != want)
      throw_js(env, "backward: gradEmbeddings has " + std::to_string(g.ElementLength()) +
                        " values, the last forward produced " + std::to_string(want) + " (batch x embeddingDim)");
    acquire(env);
    auto* self = this;
    const float* gp = g.Data();
    size_t n = g.ElementLength();
    PromiseWorker* w = new PromiseWorker(
        env,
        [self, gp, n]() {
          Model& m = *self->model_;
          (void)n;
          m.backward(gp);
        },
        [](Napi::Env e) -> Napi::Value { return e.Undefined(); }, [self]() { self->release(); });
    w->keep(g);
    w->keep(info.This());
    Napi::Promise p = w->promise();
    w->Queue();
    return p;
  }
  void ZeroGrad(const Napi::CallbackInfo& info) {
    if (busy_) throw_js(info.Env(), "model is busy: await the previous call before zeroGrad()");
    try {
      model(info.Env()).zero_grad();
    } catch (const Error& e) {
      throw_js(info.Env(), e.what());
    }
  }
  void Dispose(const Napi::CallbackInfo& info) {
    if (busy_) throw_js(info.Env(), "model is busy: await the previous call before dispose()");
    model_.reset();  // frees device memory too
    if (external_) Napi::MemoryManagement::AdjustExternalMemory(info.Env(), -external_);
    external_ = 0;
  }

  std::unique_ptr<Model> model_;
  int64_t external_ = 0;
  bool busy_ = false;
};

class AdamWWrap : public Napi::ObjectWrap<AdamWWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "AdamW",
                       {InstanceMethod<&AdamWWrap::Step>("step"), InstanceMethod<&AdamWWrap::GetState>("getState"),
                        InstanceMethod<&AdamWWrap::SetState>("setState")});
  }
  AdamWWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<AdamWWrap>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsObject())
      throw_js(env, "new AdamW(model, {beta1, beta2, eps, weightDecay, maxGradNorm}) expected");
    model_obj_ = Napi::Persistent(info[0].As<Napi::Object>());
    wrap_ = Napi::ObjectWrap<ModelWrap>::Unwrap(info[0].As<Napi::Object>());
    Napi::Object o = info[1].As<Napi::Object>();
    const char* w = "AdamW options";
    beta1_ = float(num_field(o, "beta1", w));
    beta2_ = float(num_field(o, "beta2", w));
    eps_ = float(num_field(o, "eps", w));
    wd_ = float(num_field(o, "weightDecay", w));
    max_norm_ = float(num_field(o, "maxGradNorm", w));
    if (!o.Get("sparseEmbeddings").IsUndefined()) sparse_embeddings_ = bool_field(o, "sparseEmbeddings", w);
    // The moments live in the model (they follow it between devices); a new optimizer starts them
    // at zero.
    wrap_->model(env).init_moments();
  }

 private:
  Napi::Value Step(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsNumber()) throw_js(env, "step(lr): learning rate (number) expected");
    const float lr = float(info[0].As<Napi::Number>().DoubleValue());
    wrap_->acquire(env);
    auto* self = this;
    auto norm = std::make_shared<double>(0.0);
    PromiseWorker* w = new PromiseWorker(
        env, [self, lr, norm]() { *norm = self->step(lr); },
        [norm](Napi::Env e) -> Napi::Value {
          Napi::Object o = Napi::Object::New(e);
          o.Set("gradNorm", Napi::Number::New(e, *norm));
          return o;
        },
        [self]() { self->wrap_->release(); });
    w->keep(info.This());
    Napi::Promise p = w->promise();
    w->Queue();
    return p;
  }
  double step(float lr) {
    t_++;
    AdamWHyper h;
    h.lr = lr, h.beta1 = beta1_, h.beta2 = beta2_, h.eps = eps_, h.weight_decay = wd_, h.max_grad_norm = max_norm_;
    h.step = t_, h.sparse_embeddings = sparse_embeddings_;
    return wrap_model()->adamw_step(h);
  }
  Model* wrap_model() { return wrap_->raw(); }
  Napi::Value GetState(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    o.Set("step", Napi::Number::New(env, double(t_)));
    wrap_->acquire(env);  // not while a step runs; the moments may come from the device
    Model& mod = *wrap_model();
    const size_t n = size_t(mod.num_params());
    Napi::Float32Array m = Napi::Float32Array::New(env, n), v = Napi::Float32Array::New(env, n);
    try {
      std::copy(mod.moments_m(), mod.moments_m() + n, m.Data());
      std::copy(mod.moments_v(), mod.moments_v() + n, v.Data());
    } catch (const std::exception& e) {
      wrap_->release();
      throw_js(env, e.what());
    }
    wrap_->release();
    o.Set("m", m);
    o.Set("v", v);
    return o;
  }
  void SetState(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) throw_js(env, "setState({step, m, v}) expected");
    Napi::Object o = info[0].As<Napi::Object>();
    auto m = typed<float, napi_float32_array>(env, o.Get("m"), "optimizer state m", "Float32Array");
    auto v = typed<float, napi_float32_array>(env, o.Get("v"), "optimizer state v", "Float32Array");
    Model& mod = wrap_->model(env);
    const size_t n = size_t(mod.num_params());
    if (m.ElementLength() != n || v.ElementLength() != n)
      throw_js(env, "optimizer state has " + std::to_string(m.ElementLength()) + " / " + std::to_string(v.ElementLength()) +
                        " values, the model has " + std::to_string(n) + " parameters");
    const int64_t step = int_field(o, "step", "optimizer state");
    wrap_->acquire(env);
    try {
      std::copy(m.Data(), m.Data() + n, mod.moments_m());
      std::copy(v.Data(), v.Data() + n, mod.moments_v());
    } catch (const std::exception& e) {
      wrap_->release();
      throw_js(env, e.what());
    }
    wrap_->release();
    t_ = step;
  }

  Napi::ObjectReference model_obj_;
  ModelWrap* wrap_ = nullptr;
  int64_t t_ = 0;
  float beta1_, beta2_, eps_, wd_, max_norm_;
  bool sparse_embeddings_ = false;  // row-sparse AdamW of the word-embedding table (adamw.h)
};

Napi::Value InfoNCE(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto q = typed<float, napi_float32_array>(env, info[0], "infonce: queries", "Float32Array");
  auto p = typed<float, napi_float32_array>(env, info[1], "infonce: passages", "Float32Array");
  if (!info[2].IsNumber() || !info[3].IsNumber() || !info[4].IsObject())
    throw_js(env, "infonce(queries, passages, numQueries, dim, {scale, symmetric}) expected");
  const int64_t nq = info[2].As<Napi::Number>().Int64Value(), D = info[3].As<Napi::Number>().Int64Value();
  Napi::Object o = info[4].As<Napi::Object>();
  const float scale = float(num_field(o, "scale", "infonce options"));
  const bool sym = bool_field(o, "symmetric", "infonce options");
  int dev = kCpu;
  try {
    if (!o.Get("device").IsUndefined()) dev = parse_device(str_field(o, "device", "infonce options"));
  } catch (const Error& e) {
    throw_js(env, std::string("infonce: ") + e.what());
  }
  if (D <= 0 || nq <= 0 || int64_t(q.ElementLength()) != nq * D || int64_t(p.ElementLength()) % D != 0)
    throw_js(env, "infonce: queries must hold numQueries x dim = " + std::to_string(nq) + " x " + std::to_string(D) +
                      " floats (got " + std::to_string(q.ElementLength()) + ") and passages a multiple of dim (got " +
                      std::to_string(p.ElementLength()) + ")");
  const int64_t np = int64_t(p.ElementLength()) / D;
  Napi::Float32Array dq = Napi::Float32Array::New(env, q.ElementLength()), dp = Napi::Float32Array::New(env, p.ElementLength());
  float loss;
  try {
    apply_threads();
    if (dev >= 0) {
#ifdef XLIR_WITH_CUDA
      XLIR_CHECK(np >= nq, "infonce: " << np << " passages for " << nq << " queries (need at least one per query)");
      loss = cuda::infonce_host(dev, dq.Data(), dp.Data(), q.Data(), p.Data(), nq, np, D, scale, sym);
#else
      require_cuda(dev);
#endif
    } else {
      loss = infonce_forward_backward(dq.Data(), dp.Data(), q.Data(), p.Data(), nq, np, D, scale, sym);
    }
  } catch (const std::exception& e) {
    throw_js(env, e.what());
  }
  Napi::Object r = Napi::Object::New(env);
  r.Set("loss", Napi::Number::New(env, loss));
  r.Set("gradQueries", dq);
  r.Set("gradPassages", dp);
  return r;
}

// Exact inner-product search (native/search.h), off the JavaScript thread. Every error, bad
// arguments included, rejects the returned promise. The inputs are read in place and the outputs
// are allocated here and written by the worker, so nothing is copied; the caller must not modify
// (or transfer) the input arrays before the promise settles.
Napi::Value rejected(Napi::Env env, const std::string& msg) {
  auto d = Napi::Promise::Deferred::New(env);
  d.Reject(Napi::Error::New(env, msg).Value());
  return d.Promise();
}

struct SearchInputs {
  Napi::Float32Array q, c;
  int64_t nq = 0, nc = 0, d = 0;
};

// (queries: Float32Array, corpus: Float32Array, dim: number): lengths must be multiples of dim.
SearchInputs parse_search_inputs(const Napi::CallbackInfo& info, const std::string& fn) {
  Napi::Env env = info.Env();
  SearchInputs s;
  s.q = typed<float, napi_float32_array>(env, info[0], fn + ": queries", "Float32Array");
  s.c = typed<float, napi_float32_array>(env, info[1], fn + ": corpus", "Float32Array");
  const double dim = info[2].IsNumber() ? info[2].As<Napi::Number>().DoubleValue() : 0;
  if (!(dim >= 1) || dim != std::floor(dim) || dim > 1e9)
    throw_js(env, fn + ": dim must be a positive integer, got " + info[2].ToString().Utf8Value());
  s.d = int64_t(dim);
  const int64_t lq = int64_t(s.q.ElementLength()), lc = int64_t(s.c.ElementLength());
  if (lq % s.d != 0 || lc % s.d != 0)
    throw_js(env, fn + ": queries (" + std::to_string(lq) + " floats) and corpus (" + std::to_string(lc) +
                      " floats) must both hold whole rows of dim = " + std::to_string(s.d) + " floats");
  s.nq = lq / s.d;
  s.nc = lc / s.d;
  return s;
}

// Queues `work` (which reads the inputs in place: they are kept alive until it settles) and
// resolves with done(env).
Napi::Value queue_search(Napi::Env env, const SearchInputs& in, std::function<void()> work,
                         std::function<Napi::Value(Napi::Env)> done) {
  PromiseWorker* w = new PromiseWorker(env, std::move(work), std::move(done), []() {});
  w->keep(in.q);
  w->keep(in.c);
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

// Runs f; any error, thrown while checking arguments, becomes a rejected promise.
template <class F>
Napi::Value rejecting(Napi::Env env, F f) {
  try {
    return f();
  } catch (const Napi::Error& e) {
    return rejected(env, e.Message());
  } catch (const std::exception& e) {
    return rejected(env, e.what());
  }
}

Napi::Value SearchTopK(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return rejecting(env, [&]() -> Napi::Value {
    SearchInputs in = parse_search_inputs(info, "searchTopK");
    const double kd = info[3].IsNumber() ? info[3].As<Napi::Number>().DoubleValue() : 0;
    if (!(kd >= 1) || kd != std::floor(kd))
      throw_js(env, "searchTopK: k must be a positive integer, got " + info[3].ToString().Utf8Value());
    const int64_t k = kd > 9e15 ? int64_t(9e15) : int64_t(kd);
    check_search_shape(in.nq, in.nc, in.d, k, "searchTopK");
    // Optional 5th argument {device}: 'cuda:N' runs the exact GPU search (same contract and ties).
    int dev = kCpu;
    if (info.Length() > 4 && info[4].IsObject() && !info[4].As<Napi::Object>().Get("device").IsUndefined())
      dev = parse_device(str_field(info[4].As<Napi::Object>(), "device", "searchTopK options"));
    if (dev >= 0) require_cuda(dev);
    Napi::Float32Array scores = Napi::Float32Array::New(env, size_t(in.nq * k));
    Napi::Int32Array ids = Napi::Int32Array::New(env, size_t(in.nq * k));
    const float *q = in.q.Data(), *c = in.c.Data();
    float* sp = scores.Data();
    int32_t* ip = ids.Data();
    const int64_t nq = in.nq, nc = in.nc, d = in.d;
    auto sref = std::make_shared<Napi::Reference<Napi::Float32Array>>(Napi::Persistent(scores));
    auto iref = std::make_shared<Napi::Reference<Napi::Int32Array>>(Napi::Persistent(ids));
    return queue_search(
        env, in,
        [=]() {
#ifdef XLIR_WITH_CUDA
          if (dev >= 0) return cuda::search_topk_host(dev, q, nq, c, nc, d, k, sp, ip);
#endif
          search_topk(q, nq, c, nc, d, k, sp, ip);
        },
        [sref, iref](Napi::Env e) -> Napi::Value {
          Napi::Object r = Napi::Object::New(e);
          r.Set("scores", sref->Value());
          r.Set("ids", iref->Value());
          return r;
        });
  });
}

Napi::Value ScoreMatrix(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return rejecting(env, [&]() -> Napi::Value {
    SearchInputs in = parse_search_inputs(info, "scoreMatrix");
    const double n = double(in.nq) * double(in.nc);
    Napi::Float32Array out;
    try {
      out = Napi::Float32Array::New(env, size_t(in.nq * in.nc));
    } catch (const Napi::Error& e) {
      throw_js(env, "scoreMatrix: could not allocate " + std::to_string(in.nq) + " x " + std::to_string(in.nc) +
                        " scores (" + std::to_string(n * 4 / (1 << 30)) + " GiB): " + e.Message());
    }
    const float *q = in.q.Data(), *c = in.c.Data();
    float* op = out.Data();
    const int64_t nq = in.nq, nc = in.nc, d = in.d;
    auto oref = std::make_shared<Napi::Reference<Napi::Float32Array>>(Napi::Persistent(out));
    return queue_search(
        env, in, [=]() { score_matrix(q, nq, c, nc, d, op); },
        [oref](Napi::Env) -> Napi::Value { return oref->Value(); });
  });
}

// Matrix-product peak for benchmarks: seconds for `iters` products [M,K] x [K,N] through the
// engine's own gemm (the same oneDNN path the model uses), run synchronously.
Napi::Value BenchGemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 5) throw_js(env, "benchGemm(M, N, K, precision, iters) expected");
  const int64_t M = info[0].As<Napi::Number>().Int64Value(), N = info[1].As<Napi::Number>().Int64Value(),
                K = info[2].As<Napi::Number>().Int64Value();
  const bool bf16 = info[3].As<Napi::String>().Utf8Value() == "bf16";
  const int iters = info[4].As<Napi::Number>().Int32Value();
  apply_threads();
  std::vector<float> A(size_t(M * K), 0.5f), B(size_t(K * N), 0.25f), C(size_t(M * N));
  Gemm g;
  g.transB = true;
  g.M = M, g.N = N, g.K = K, g.lda = K, g.ldb = K, g.ldc = N;
  const Precision p = bf16 ? Precision::BF16 : Precision::FP32;
  gemm(g, A.data(), B.data(), C.data(), p);  // warm-up: primitive creation and JIT
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; i++) gemm(g, A.data(), B.data(), C.data(), p);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return Napi::Number::New(env, s);
}

void SetNumThreads(const Napi::CallbackInfo& info) {
  if (!info[0].IsNumber()) throw_js(info.Env(), "setNumThreads(n): number expected");
  g_threads = info[0].As<Napi::Number>().Int32Value();
  apply_threads();
}

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("version", XLIR_VERSION);
  o.Set("threads", Napi::Number::New(env, g_threads > 0 ? g_threads : omp_get_max_threads()));
#ifdef XLIR_WITH_CUDA
  // Built with CUDA: usable when a driver and a device (compute capability 8.0+) are present.
  const cuda::Status& st = cuda::status();
  o.Set("cuda", st.devices > 0);
  o.Set("cudaBuilt", true);
  o.Set("cudaReason", cuda::describe());
  o.Set("cudaDevices", Napi::Number::New(env, st.devices));
#else
  o.Set("cudaBuilt", false);
  o.Set("cudaDevices", Napi::Number::New(env, 0));
  o.Set("cuda", false);
  o.Set("cudaReason", XLIR_CUDA_REASON);
#endif
  o.Set("isa", build_isa());
  const dnnl_version_t* v = dnnl_version();
  o.Set("onednn", std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch));
  return o;
}

}  // namespace

Napi::Object InitAll(Napi::Env env, Napi::Object exports) {
  exports.Set("Model", ModelWrap::Init(env));
  exports.Set("AdamW", AdamWWrap::Init(env));
  exports.Set("infonce", Napi::Function::New(env, InfoNCE));
  exports.Set("setNumThreads", Napi::Function::New(env, SetNumThreads));
  exports.Set("benchGemm", Napi::Function::New(env, BenchGemm));
  exports.Set("info", Napi::Function::New(env, Info));
  exports.Set("searchTopK", Napi::Function::New(env, SearchTopK));
  exports.Set("scoreMatrix", Napi::Function::New(env, ScoreMatrix));
  return exports;
}

NODE_API_MODULE(xlir, InitAll)
