// The CUDA back end of the Model (backend.h): DeviceModel (device_model.h) over the kernels of this
// folder, plus host-array entry points for search and InfoNCE.
// Design: one stream per model; every kernel and host-to-device copy is queued on it and nothing
// waits for the GPU except the copies that bring results back (embeddings, hidden states, the
// gradient norm, parameters read from TypeScript). Host-to-device copies come from pageable
// memory, which CUDA stages before returning, so the caller may reuse its arrays at once. Each
// entry point sets the model's device first: calls arrive on libuv's worker threads and on the
// JavaScript thread, and the current device is per thread.
#include <cuda_runtime.h>

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "../device_model.h"
#include "activation.cuh"
#include "adamw.cuh"
#include "attention.cuh"
#include "attention_tc.cuh"
#include "backend.h"
#include "common.cuh"
#include "device.cuh"
#include "embedding.cuh"
#include "infonce.cuh"
#include "layernorm.cuh"
#include "matmul.cuh"
#include "pooling.cuh"
#include "search.cuh"

namespace xlir {
namespace cuda {

namespace {

struct CudaOps {
  using bf16 = __nv_bfloat16;
  int index = 0;  // device.cuh numbering
  cudaStream_t stream = nullptr;

  void* alloc(size_t bytes, const char* what) {
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
      cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      XLIR_CHECK(false, "cuda:" << index << ": cannot allocate " << double(bytes) / (1 << 20) << " MiB for " << what
                                << " (" << double(free_b) / (1 << 20) << " MiB free of " << double(total_b) / (1 << 20)
                                << "): " << cudaGetErrorString(e)
                                << "; a smaller batch or sub-batch (gradient caching) needs less");
    }
    return p;
  }
  void free(void* p) { cudaFree(p); }
  void sync() { XLIR_CUDA_CHECK(cudaStreamSynchronize(stream)); }
  void upload(void* dst, const void* src, size_t bytes) {
    if (bytes) XLIR_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream));
  }
  void download(void* dst, const void* src, size_t bytes) {
    if (bytes) XLIR_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream));
    sync();  // also surfaces any error of the queued kernels
  }
  void zero(void* p, size_t bytes) {
    if (bytes) XLIR_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, stream));
  }

  void gemm(const Gemm& g, const void* A, const void* B, float* C, bool bf) {
    cuda::gemm(g, A, B, C, bf ? DType::BF16 : DType::F32, DType::F32, stream);
  }
  void linear(const void* X, const void* W, const float* bias, float* Y, int64_t M, int64_t N, int64_t K, bool bf) {
    cuda::linear(X, W, bias, Y, M, N, K, 0.f, bf ? DType::BF16 : DType::F32, DType::F32, stream);
  }
  void to_bf16(bf16* dst, const float* src, int64_t n) { cuda::to_bf16(dst, src, n, stream); }

  void embedding_layernorm_forward(float* x, float* y, bf16* y16, float* mean, float* rstd, const int32_t* ids,
                                   const int32_t* pos_ids, const int32_t* type_ids, const float* word, const float* pos,
                                   const float* type, int64_t vocab, int64_t max_pos, int64_t type_vocab,
                                   const float* w, const float* beta, int64_t T, int64_t C, float eps,
                                   const RowDropout& drop) {
    cuda::embedding_layernorm_forward(x, y, y16, mean, rstd, ids, pos_ids, type_ids, word, pos, type, vocab, max_pos,
                                      type_vocab, w, beta, T, C, eps, stream, drop);
  }
  void residual_layernorm_forward(float* x, float* y, bf16* y16, float* mean, float* rstd, const float* a,
                                  const float* b, const float* w, const float* beta, int64_t N, int64_t C, float eps,
                                  const RowDropout& drop) {
    cuda::residual_layernorm_forward(x, y, y16, mean, rstd, a, b, w, beta, N, C, eps, stream, drop);
  }
  int64_t layernorm_backward_scratch_floats(int64_t N, int64_t C) { return cuda::layernorm_backward_scratch_floats(N, C); }
  void layernorm_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w,
                          const float* mean, const float* rstd, int64_t N, int64_t C, bool accumulate, float* scratch,
                          float* dxd, bf16* dxd16, float* dbias, const RowDropout& drop) {
    cuda::layernorm_backward(dx, dw, db, dy, x, w, mean, rstd, N, C, accumulate, scratch, stream,
                             cuda::BranchGrad{dxd, dxd16, dbias, drop});
  }
  bool layernorm_backward_sums_fused(int64_t C) { return cuda::layernorm_backward_fused(C); }
  void dropout_rows(float* y, const float* x, int64_t N, int64_t C, float p, uint64_t site, const uint64_t* keys) {
    cuda::dropout_rows(y, x, N, C, p, site, keys, stream);
  }
  void bias_gelu_forward(float* pre, float* y, bf16* y16, const float* x, const float* bias, int64_t N, int64_t C) {
    cuda::bias_gelu_forward(pre, y, y16, x, bias, N, C, stream);
  }
  void bias_gelu_backward(float* dx, bf16* dx16, float* dbias, const float* dy, const float* pre, int64_t N, int64_t C,
                          float* scratch) {
    cuda::bias_gelu_backward(dx, dx16, dbias, dy, pre, N, C, scratch, stream);
  }
  int64_t bias_backward_scratch_floats(int64_t N, int64_t C) { return cuda::bias_backward_scratch_floats(N, C); }
  void bias_backward(float* dbias, const float* dy, int64_t N, int64_t C, float* scratch) {
    cuda::bias_backward(dbias, dy, N, C, scratch, stream);
  }
  void tanh_forward(float* y, const float* x, int64_t n) { cuda::tanh_forward(y, x, n, stream); }
  void tanh_backward(float* dx, const float* dy, const float* y, int64_t n) { cuda::tanh_backward(dx, dy, y, n, stream); }
  // bf16 mode: the tensor-core kernels (attention_tc.cuh: bf16 q, k, v and probabilities, fp32
  // accumulation and statistics) when the head size allows; fp32 mode, or another head size: the
  // fp32 kernels. Whether the tensor cores apply is asked once (it queries the device).
  int tc = -1;
  bool use_tc(bool bf, int64_t H, int64_t heads) {
    if (!bf) return false;
    if (tc < 0) tc = attention_tc_supported(H / heads) ? 1 : 0;
    return tc == 1;
  }
  void attention_forward(float* ctx, bf16* ctx16, float* lse, const float* qkv, const int32_t* off32, int64_t B,
                         int64_t max_len, int64_t T, int64_t H, int64_t heads, float p, uint64_t site,
                         const uint64_t* seq_keys, bool bf) {
    if (use_tc(bf, H, heads))
      cuda::attention_forward_tc(ctx, ctx16, lse, qkv, off32, B, max_len, T, H, heads, nullptr, p, site, seq_keys, stream);
    else
      cuda::attention_forward(ctx, ctx16, lse, qkv, off32, B, max_len, T, H, heads, nullptr, p, site, seq_keys, stream);
  }
  int64_t attention_backward_scratch_floats(int64_t T, int64_t B, int64_t H, int64_t heads) {
    return std::max(cuda::attention_backward_scratch_floats(T, heads),
                    attention_backward_tc_scratch_floats(T, B, H, heads));
  }
  // Whether attention in this precision works from bf16 copies alone: no fp32 ctx written, dctx
  // taken in bf16, no fp32 dqkv (the backward reads ctx16 and dctx16, writes dqkv16 and sums the
  // bias gradient itself). The tensor-core kernels do.
  bool attention_bf16_only(bool bf, int64_t H, int64_t heads) { return use_tc(bf, H, heads); }
  // A product with bf16 operands and a bf16 result (fp32 accumulation, rounded once): the output
  // product's dctx where attention_bf16_only.
  void gemm16(const Gemm& g, const void* A, const void* B, bf16* C) {
    cuda::gemm(g, A, B, C, DType::BF16, DType::BF16, stream);
  }
  // dqkv16 (may be null): the bf16 copy of dqkv, written by the tensor-core kernels' own stores, or
  // by a conversion pass after the fp32 kernel. dbias (may be null): += the column sums of dqkv, in
  // the tensor-core kernels, else by bias_backward over dqkv (which the fp32 kernel needs anyway).
  // Where attention_bf16_only, dctx and ctx may be null: dctx16 and ctx16 are read instead.
  void attention_backward(float* dqkv, bf16* dqkv16, float* dbias, const float* dctx, const bf16* dctx16,
                          const float* ctx, const bf16* ctx16, const float* lse, const float* qkv, const int32_t* off32,
                          int64_t B, int64_t max_len, int64_t T, int64_t H, int64_t heads, float p, uint64_t site,
                          const uint64_t* seq_keys, float* scratch, bool bf) {
    if (use_tc(bf, H, heads)) {
      cuda::TcBackwardIo io;
      io.dctx16 = dctx16, io.ctx16 = ctx16, io.dqkv16 = dqkv16, io.dbias = dbias;
      cuda::attention_backward_tc(dqkv, dctx, ctx, lse, qkv, off32, B, max_len, T, H, heads, nullptr, p, site, seq_keys,
                                  scratch, stream, io);
      return;
    }
    cuda::attention_backward(dqkv, dctx, ctx, lse, qkv, off32, B, max_len, T, H, heads, nullptr, p, site, seq_keys,
                             scratch, stream);
    if (dqkv16) cuda::to_bf16(dqkv16, dqkv, T * 3 * H, stream);
    if (dbias) cuda::bias_backward(dbias, dqkv, T, 3 * H, scratch, stream);  // the scratch is free again
  }
  void pool_forward(float* out, const float* h, const int32_t* off32, int64_t B, int64_t C, PoolMode mode) {
    cuda::pool_forward(out, h, off32, B, C, mode, stream);
  }
  void pool_backward(float* dh, const float* dout, const int32_t* off32, int64_t B, int64_t C, PoolMode mode) {
    cuda::pool_backward(dh, dout, off32, B, C, mode, stream);
  }
  void l2norm_forward(float* y, float* norms, const float* x, int64_t B, int64_t D) {
    cuda::l2norm_forward(y, norms, x, B, D, stream);
  }
  void l2norm_backward(float* dx, const float* dy, const float* y, const float* norms, int64_t B, int64_t D) {
    cuda::l2norm_backward(dx, dy, y, norms, B, D, stream);
  }
  void embedding_backward(float* dtable, const float* dx, const int32_t* order, const int32_t* seg_start,
                          const int32_t* seg_row, int64_t segments, int64_t C) {
    cuda::embedding_backward(dtable, dx, order, seg_start, seg_row, segments, C, stream);
  }
  int64_t norm_scratch_doubles(int64_t ranges) { return global_norm_scratch_doubles(ranges); }
  void global_norm(float* norm, float* clip, const float* g, const int64_t* begin, const int64_t* size, int64_t ranges,
                   float max_norm, double* scratch) {
    cuda::global_norm(norm, clip, g, begin, size, ranges, max_norm, scratch, stream);
  }
  void sum_squares_rows_partial(double* partial, const float* g, const int32_t* rows, int64_t num_rows, int64_t width) {
    cuda::sum_squares_rows_partial(partial, g, rows, num_rows, width, stream);
  }
  void norm_from_partials(float* norm, float* clip, const double* partial, int64_t count, float max_norm) {
    cuda::norm_from_partials(norm, clip, partial, count, max_norm, stream);
  }
  void adamw_update(float* p, bf16* p16, const float* g, float* m, float* v, int64_t n, float lr, float beta1,
                    float beta2, float eps, float wd, const float* grad_scale, int64_t t) {
    cuda::adamw_update(p, p16, g, m, v, n, lr, beta1, beta2, eps, wd, grad_scale, t, stream);
  }
  void adamw_update_rows(float* p, bf16* p16, const float* g, float* m, float* v, const int32_t* rows, int64_t num_rows,
                         int64_t width, float lr, float beta1, float beta2, float eps, float wd, const float* grad_scale,
                         int64_t t) {
    cuda::adamw_update_rows(p, p16, g, m, v, rows, num_rows, width, lr, beta1, beta2, eps, wd, grad_scale, t, stream);
  }
};

// Owns the stream; destroyed after the DeviceModel (which synchronises and frees its memory first).
class CudaModel final : public DeviceBackend {
 public:
  CudaModel(const Model& model, int index) {
    use_device(index);
    XLIR_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    try {
      impl_ = std::make_unique<DeviceModel<CudaOps>>(model, CudaOps{index, stream_}, "cuda:" + std::to_string(index));
    } catch (...) {
      matmul_forget_stream(stream_);
      cudaStreamDestroy(stream_);
      throw;
    }
    index_ = index;
    cudaGetDevice(&device_ordinal_);
  }
  ~CudaModel() override {
    cudaSetDevice(device_ordinal_);  // not use_device: a destructor must not throw
    impl_.reset();
    matmul_forget_stream(stream_);  // its cuBLASLt workspace
    cudaStreamDestroy(stream_);
  }
  std::string name() const override { return impl_->name(); }
  int64_t bytes_allocated() const override { return impl_->bytes_allocated(); }
  void upload_weights(const float* w) override { on([&] { impl_->upload_weights(w); }); }
  void download_weights(float* w) override { on([&] { impl_->download_weights(w); }); }
  void upload_grads(const float* g) override { on([&] { impl_->upload_grads(g); }); }
  void download_grads(float* g) override { on([&] { impl_->download_grads(g); }); }
  void upload_moments(const float* m, const float* v) override { on([&] { impl_->upload_moments(m, v); }); }
  void download_moments(float* m, float* v) override { on([&] { impl_->download_moments(m, v); }); }
  void forward(const PackedBatch& b, Precision prec, float* out, bool dropout, bool keep, bool recompute, uint64_t seed,
               float* hidden_out) override {
    on([&] { impl_->forward(b, prec, out, dropout, keep, recompute, seed, hidden_out); });
  }
  void backward(const float* dout) override { on([&] { impl_->backward(dout); }); }
  void zero_grad() override { on([&] { impl_->zero_grad(); }); }
  double adamw_step(const AdamWHyper& h, const std::vector<int32_t>& rows) override {
    double r = 0;
    on([&] { r = impl_->adamw_step(h, rows); });
    return r;
  }

 private:
  template <class F>
  void on(F f) {
    use_device(index_);
    f();
  }
  cudaStream_t stream_ = nullptr;
  int index_ = 0, device_ordinal_ = 0;  // device.cuh's numbering, and the CUDA ordinal it maps to
  std::unique_ptr<DeviceModel<CudaOps>> impl_;
};

// A device array that frees itself (search and InfoNCE over host arrays).
template <typename T>
struct DevArray {
  T* p = nullptr;
  DevArray(size_t n, const char* what) {
    cudaError_t e = cudaMalloc(&p, (n ? n : 1) * sizeof(T));
    if (e != cudaSuccess) {
      cudaGetLastError();
      XLIR_CHECK(false, "cannot allocate " << double(n * sizeof(T)) / (1 << 20) << " MiB on the GPU for " << what << ": "
                                           << cudaGetErrorString(e));
    }
  }
  ~DevArray() { cudaFree(p); }
  DevArray(const DevArray&) = delete;
  DevArray& operator=(const DevArray&) = delete;
};

// What search_topk_host and infonce_host run on: one stream per device, kept for the process (with
// its cuBLASLt workspace), so that the trainer's InfoNCE call of every step creates no stream and,
// for batches no larger than before, allocates nothing. Calls on one device take turns (the mutex).
struct HostCalls {
  std::mutex mutex;
  cudaStream_t stream = nullptr;
  // InfoNCE's arrays, grown when a batch needs more, in one allocation: q, p, dq, dp, the loss and
  // the similarity scratch.
  float* infonce = nullptr;
  size_t infonce_floats = 0;
};

HostCalls& host_calls(int index) {
  static std::mutex registry;
  static auto* calls = new std::map<int, std::unique_ptr<HostCalls>>;  // never freed: used until exit
  std::lock_guard<std::mutex> lock(registry);
  std::unique_ptr<HostCalls>& c = (*calls)[index];
  if (!c) {
    auto made = std::make_unique<HostCalls>();
    XLIR_CUDA_CHECK(cudaStreamCreateWithFlags(&made->stream, cudaStreamNonBlocking));
    c = std::move(made);
  }
  return *c;
}

}  // namespace

std::unique_ptr<DeviceBackend> make_model_backend(const Model& model, int index) {
  return std::make_unique<CudaModel>(model, index);
}

void search_topk_host(int index, const float* queries, int64_t nq, const float* corpus, int64_t nc, int64_t d, int64_t k,
                      float* scores, int32_t* ids) {
  use_device(index);
  XLIR_CHECK(k <= kMaxSearchK, "GPU search: k = " << k << " is above the GPU selection's limit of " << kMaxSearchK
                                                  << " (use the CPU search for larger k)");
  HostCalls& hc = host_calls(index);
  std::lock_guard<std::mutex> lock(hc.mutex);
  const cudaStream_t s = hc.stream;
  DevArray<float> q(size_t(nq * d), "the queries"), c(size_t(nc * d), "the corpus"), sc(size_t(nq * k), "the scores");
  DevArray<int32_t> id(size_t(nq * k), "the result ids");
  const size_t scratch_bytes = search_scratch_bytes(nq, k);
  DevArray<char> scratch(scratch_bytes, "the search's score blocks");
  XLIR_CUDA_CHECK(cudaMemcpyAsync(q.p, queries, size_t(nq * d) * 4, cudaMemcpyHostToDevice, s));
  XLIR_CUDA_CHECK(cudaMemcpyAsync(c.p, corpus, size_t(nc * d) * 4, cudaMemcpyHostToDevice, s));
  search_topk(q.p, nq, c.p, nc, d, k, sc.p, id.p, scratch.p, scratch_bytes, s);
  XLIR_CUDA_CHECK(cudaMemcpyAsync(scores, sc.p, size_t(nq * k) * 4, cudaMemcpyDeviceToHost, s));
  XLIR_CUDA_CHECK(cudaMemcpyAsync(ids, id.p, size_t(nq * k) * 4, cudaMemcpyDeviceToHost, s));
  XLIR_CUDA_CHECK(cudaStreamSynchronize(s));
}

float infonce_host(int index, float* dq, float* dp, const float* q, const float* p, int64_t nq, int64_t np, int64_t D,
                   float scale, bool symmetric) {
  use_device(index);
  XLIR_CHECK(nq >= 0 && np >= 0 && D >= 1, "cuda infonce: bad sizes (nq=" << nq << " np=" << np << " D=" << D << ")");
  HostCalls& hc = host_calls(index);
  std::lock_guard<std::mutex> lock(hc.mutex);
  const cudaStream_t s = hc.stream;
  // 64-float (256-byte) aligned parts, as cudaMalloc's own, for cuBLASLt's heuristic
  const auto part = [](int64_t n) { return size_t((n + 63) / 64 * 64); };
  const size_t nqd = part(nq * D), npd = part(np * D);
  const size_t need = 2 * nqd + 2 * npd + part(1) + part(infonce_scratch_floats(nq, np));
  if (need > hc.infonce_floats) {
    if (hc.infonce) {
      XLIR_CUDA_CHECK(cudaStreamSynchronize(s));
      cudaFree(hc.infonce);
      hc.infonce = nullptr, hc.infonce_floats = 0;
    }
    const cudaError_t e = cudaMalloc(&hc.infonce, need * sizeof(float));
    if (e != cudaSuccess) {
      cudaGetLastError();
      hc.infonce = nullptr;
      XLIR_CHECK(false, "cannot allocate " << double(need * sizeof(float)) / (1 << 20)
                                           << " MiB on the GPU for InfoNCE's embeddings, gradients and similarity matrix: "
                                           << cudaGetErrorString(e));
    }
    hc.infonce_floats = need;
  }
  float* const q_d = hc.infonce;
  float* const p_d = q_d + nqd;
  float* const dq_d = p_d + npd;
  float* const dp_d = dq_d + nqd;
  float* const loss = dp_d + npd;
  float* const scratch = loss + part(1);
  XLIR_CUDA_CHECK(cudaMemcpyAsync(q_d, q, size_t(nq * D) * 4, cudaMemcpyHostToDevice, s));
  XLIR_CUDA_CHECK(cudaMemcpyAsync(p_d, p, size_t(np * D) * 4, cudaMemcpyHostToDevice, s));
  infonce_forward_backward(loss, dq_d, dp_d, q_d, p_d, nq, np, D, scale, symmetric, scratch, s);
  float l = 0;
  XLIR_CUDA_CHECK(cudaMemcpyAsync(dq, dq_d, size_t(nq * D) * 4, cudaMemcpyDeviceToHost, s));
  XLIR_CUDA_CHECK(cudaMemcpyAsync(dp, dp_d, size_t(np * D) * 4, cudaMemcpyDeviceToHost, s));
  XLIR_CUDA_CHECK(cudaMemcpyAsync(&l, loss, 4, cudaMemcpyDeviceToHost, s));
  XLIR_CUDA_CHECK(cudaStreamSynchronize(s));
  return l;
}

}  // namespace cuda
}  // namespace xlir
