// faiss-node's binding with xlir's typed-array extension, built as one addon (faiss-node.node).
//
// faiss-node 0.5.1 takes and returns plain JavaScript number arrays: every add/train/search walks
// the array element by element through N-API, and search builds two arrays of boxed numbers. For
// the evaluation's corpora (13k x 768 and more) that conversion costs far more than the search, so
// this file adds, to the prototype of each of the package's classes (Index, IndexFlatL2,
// IndexFlatIP), methods that read and write typed arrays in place:
//   addF32(x: Float32Array)                    add n = x.length / d vectors
//   trainF32(x: Float32Array)                  train on n vectors
//   searchF32(x: Float32Array, k) -> { distances: Float32Array, labels: Int32Array }  row-major [n, k]
//   setParam(name: string, value: number)      faiss::ParameterSpace ("nprobe", "efSearch", ...)
// and to the module: setNumThreads(n) / getNumThreads(), FAISS's OpenMP threads for calls made from
// the calling (JavaScript) thread, as faiss.omp_set_num_threads does in Python.
// All run synchronously on the calling thread, as faiss-node's own methods do.
//
// The package's source (node_modules/faiss-node/src/faiss.cc) is compiled unedited inside this
// translation unit: faiss_compat.h supplies `faiss::idx_t` for Debian's FAISS 1.7.3, and the
// package's module registration is swallowed so that the Init below registers instead (it calls
// the package's Init, then attaches the methods above). Built with
// NODE_ADDON_API_CPP_EXCEPTIONS_ALL so that a FaissException (e.g. adding to an untrained IVF
// index) becomes a JavaScript exception instead of terminating the process.
#include <napi.h>

#include <faiss/AutoTune.h>
#include <faiss/utils/utils.h>
#include <omp.h>

#include <climits>
#include <cmath>
#include <string>
#include <vector>

#include "faiss_compat.h"

#pragma push_macro("NODE_API_MODULE")
#undef NODE_API_MODULE
#define NODE_API_MODULE(modname, regfunc)
#include "faiss.cc"  // faiss-node's src/ is on the include path (CMakeLists.txt)
#undef NODE_API_MODULE
#pragma pop_macro("NODE_API_MODULE")

namespace xlir_faiss {

// Reaches the package's protected members (the wrapped faiss::Index and the class constructor)
// through a derived type; never instantiated.
template <class T, class Y>
struct Access : IndexBase<T, Y> {
  static faiss::Index* index(T* w) { return (w->*(&Access::index_)).get(); }
  static Napi::FunctionReference* ctor() { return Access::constructor; }
};

template <class T, class Y>
faiss::Index* self(const Napi::CallbackInfo& info, const std::string& method) {
  Napi::Env env = info.Env();
  Napi::FunctionReference* ctor = Access<T, Y>::ctor();
  if (!info.This().IsObject() || ctor == nullptr || !info.This().As<Napi::Object>().InstanceOf(ctor->Value()))
    throw Napi::TypeError::New(env, method + ": must be called on a faiss-node " + T::CLASS_NAME);
  T* w = Napi::ObjectWrap<T>::Unwrap(info.This().As<Napi::Object>());
  faiss::Index* idx = w ? Access<T, Y>::index(w) : nullptr;
  if (idx == nullptr)
    throw Napi::Error::New(env, method + ": the index holds no faiss index (create it with a dimension, fromFactory or read)");
  return idx;
}

// The n x d matrix in a Float32Array argument; its length must be a positive multiple of d.
Napi::Float32Array matrix_arg(const Napi::CallbackInfo& info, size_t i, const std::string& method, const faiss::Index* idx,
                              int64_t* n) {
  Napi::Env env = info.Env();
  if (info.Length() <= i || !info[i].IsTypedArray() ||
      info[i].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw Napi::TypeError::New(env, method + ": argument " + std::to_string(i + 1) + " must be a Float32Array");
  Napi::Float32Array x = info[i].As<Napi::Float32Array>();
  const int64_t len = int64_t(x.ElementLength()), d = int64_t(idx->d);
  if (len == 0 || len % d != 0)
    throw Napi::Error::New(env, method + ": the Float32Array holds " + std::to_string(len) +
                                    " floats, not a positive multiple of the index dimension " + std::to_string(d));
  *n = len / d;
  return x;
}

template <class T, class Y>
Napi::Value AddF32(const Napi::CallbackInfo& info) {
  faiss::Index* idx = self<T, Y>(info, "addF32");
  int64_t n;
  Napi::Float32Array x = matrix_arg(info, 0, "addF32", idx, &n);
  if (idx->ntotal + n > int64_t(INT32_MAX))
    throw Napi::Error::New(info.Env(), "addF32: more than 2^31 - 1 vectors (labels are returned as Int32Array)");
  idx->add(n, x.Data());
  return info.Env().Undefined();
}

template <class T, class Y>
Napi::Value TrainF32(const Napi::CallbackInfo& info) {
  faiss::Index* idx = self<T, Y>(info, "trainF32");
  int64_t n;
  Napi::Float32Array x = matrix_arg(info, 0, "trainF32", idx, &n);
  idx->train(n, x.Data());
  return info.Env().Undefined();
}

template <class T, class Y>
Napi::Value SearchF32(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  faiss::Index* idx = self<T, Y>(info, "searchF32");
  int64_t nq;
  Napi::Float32Array x = matrix_arg(info, 0, "searchF32", idx, &nq);
  if (info.Length() < 2 || !info[1].IsNumber()) throw Napi::TypeError::New(env, "searchF32: k (number) expected");
  const double kd = info[1].As<Napi::Number>().DoubleValue();
  if (!(kd >= 1) || kd != std::floor(kd) || kd > double(idx->ntotal))
    throw Napi::Error::New(env, "searchF32: k must be an integer in [1, ntotal = " + std::to_string(idx->ntotal) + "], got " +
                                    info[1].ToString().Utf8Value());
  const int64_t k = int64_t(kd);
  Napi::Float32Array distances = Napi::Float32Array::New(env, size_t(nq * k));
  std::vector<faiss::idx_t> labels64(size_t(nq * k));
  idx->search(nq, x.Data(), k, distances.Data(), labels64.data());
  Napi::Int32Array labels = Napi::Int32Array::New(env, size_t(nq * k));
  for (size_t i = 0; i < labels64.size(); i++) labels.Data()[i] = int32_t(labels64[i]);  // < 2^31 (checked on add)
  Napi::Object r = Napi::Object::New(env);
  r.Set("distances", distances);
  r.Set("labels", labels);
  return r;
}

template <class T, class Y>
Napi::Value SetParam(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  faiss::Index* idx = self<T, Y>(info, "setParam");
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsNumber())
    throw Napi::TypeError::New(env, "setParam(name: string, value: number) expected");
  faiss::ParameterSpace().set_index_parameter(idx, info[0].As<Napi::String>().Utf8Value(),
                                              info[1].As<Napi::Number>().DoubleValue());
  return env.Undefined();
}

template <class T, class Y>
void attach(Napi::Env env, Napi::Object exports) {
  Napi::Object proto = exports.Get(T::CLASS_NAME).template As<Napi::Function>().Get("prototype").template As<Napi::Object>();
  proto.Set("addF32", Napi::Function::New(env, AddF32<T, Y>, "addF32"));
  proto.Set("trainF32", Napi::Function::New(env, TrainF32<T, Y>, "trainF32"));
  proto.Set("searchF32", Napi::Function::New(env, SearchF32<T, Y>, "searchF32"));
  proto.Set("setParam", Napi::Function::New(env, SetParam<T, Y>, "setParam"));
}

Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const double n = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : 0;
  if (!(n >= 1) || n != std::floor(n) || n > 4096) throw Napi::Error::New(env, "setNumThreads(n): a positive integer expected");
  omp_set_num_threads(int(n));
  return env.Undefined();
}

Napi::Value GetNumThreads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), omp_get_max_threads()); }

Napi::Object InitAll(Napi::Env env, Napi::Object exports) {
  exports = ::Init(env, exports);  // faiss-node's own classes
  attach<::Index, faiss::IndexFlatL2>(env, exports);
  attach<::IndexFlatL2, faiss::IndexFlatL2>(env, exports);
  attach<::IndexFlatIP, faiss::IndexFlatIP>(env, exports);
  Napi::Object build = Napi::Object::New(env);
  build.Set("typedArrays", true);
  build.Set("faiss", std::to_string(FAISS_VERSION_MAJOR) + "." + std::to_string(FAISS_VERSION_MINOR) + "." +
                         std::to_string(FAISS_VERSION_PATCH));
  build.Set("compileOptions", faiss::get_compile_options());
  exports.Set("xlirBuild", build);
  exports.Set("setNumThreads", Napi::Function::New(env, SetNumThreads, "setNumThreads"));
  exports.Set("getNumThreads", Napi::Function::New(env, GetNumThreads, "getNumThreads"));
  return exports;
}

}  // namespace xlir_faiss

static Napi::Object XlirFaissInit(Napi::Env env, Napi::Object exports) { return xlir_faiss::InitAll(env, exports); }
NODE_API_MODULE(faiss_node, XlirFaissInit)
