// The emulated device: DeviceModel (device_model.h) over "kernels" that are the CPU engine's
// functions, each given exactly the contract of its CUDA counterpart in native/cuda/*.cuh (which
// native/tests/cuda_tests.cu checks against these same CPU functions). "Device memory" is host
// memory. What this buys: the device code path (arena plan, fusions, gradient routing, bf16
// copies, optimizer, the Model's host/device synchronisation and the addon's device selection) runs
// and is tested on any machine, against the CPU Model, without a GPU. It is a test back end, not a
// fast one (`toDevice('emulated')`).
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "activation.h"
#include "adamw.h"
#include "attention.h"
#include "device_model.h"
#include "layernorm.h"

namespace xlir {

namespace {

struct HostOps {
  using bf16 = uint16_t;

  void* alloc(size_t bytes, const char* what) {
    void* p = std::aligned_alloc(256, std::max<size_t>((bytes + 255) & ~size_t(255), 256));
    XLIR_CHECK(p, "emulated device: out of memory allocating " << bytes << " bytes for " << what);
    return p;
  }
  void free(void* p) { std::free(p); }
  void sync() {}
  void upload(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }
  void download(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }
  void zero(void* p, size_t bytes) { std::memset(p, 0, bytes); }

  // Products: fp32 through the CPU gemm; bf16 operands through gemm_bf16 (fp32 accumulation).
  void gemm(const Gemm& g, const void* A, const void* B, float* C, bool bf) {
    if (bf) xlir::gemm_bf16(g, static_cast<const uint16_t*>(A), static_cast<const uint16_t*>(B), C);
    else xlir::gemm(g, static_cast<const float*>(A), static_cast<const float*>(B), C, Precision::FP32);
  }
  // Y = X W^T + bias, as cuda::linear with the Bias epilogue (and as model.cc's linear_fwd).
  void linear(const void* X, const void* W, const float* bias, float* Y, int64_t M, int64_t N, int64_t K, bool bf) {
    Gemm g;
    g.transB = true;
    g.M = M, g.N = N, g.K = K, g.lda = K, g.ldb = K, g.ldc = N;
    gemm(g, X, W, Y, bf);
    if (bias) bias_add(Y, bias, M, N);
  }
  void to_bf16(bf16* dst, const float* src, int64_t n) { xlir::to_bf16(src, dst, n); }

  void embedding_layernorm_forward(float* x, float* y, bf16* y16, float* mean, float* rstd, const int32_t* ids,
                                   const int32_t* pos_ids, const int32_t* type_ids, const float* word, const float* pos,
                                   const float* type, int64_t, int64_t, int64_t, const float* w, const float* beta,
                                   int64_t T, int64_t C, float eps, const RowDropout& drop) {
    std::vector<float> tmp(x ? 0 : size_t(T * C));  // x is null in inference (nothing reads it)
    if (!x) x = tmp.data();
    embedding_forward(x, ids, pos_ids, type_ids, word, pos, type, T, C);
    layernorm_forward(y, mean, rstd, x, w, beta, T, C, eps);
    xlir::dropout_rows(y, y, T, C, drop.p, drop.site, drop.row_keys);  // of the output
    if (y16) to_bf16(y16, y, T * C);
  }
  void residual_layernorm_forward(float* x, float* y, bf16* y16, float* mean, float* rstd, const float* a,
                                  const float* b, const float* w, const float* beta, int64_t N, int64_t C, float eps,
                                  const RowDropout& drop) {
    std::vector<float> tmp(x ? 0 : size_t(N * C));  // x is null in inference (nothing reads it)
    if (!x) x = tmp.data();
    xlir::dropout_rows(x, a, N, C, drop.p, drop.site, drop.row_keys);  // of the branch, then the residual add
    if (b)
      for (int64_t i = 0; i < N * C; i++) x[i] = x[i] + b[i];
    layernorm_forward(y, mean, rstd, x, w, beta, N, C, eps);
    if (y16) to_bf16(y16, y, N * C);
  }
  int64_t layernorm_backward_scratch_floats(int64_t N, int64_t C) { return N * C; }
  void layernorm_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w,
                          const float* mean, const float* rstd, int64_t N, int64_t C, bool accumulate, float* scratch,
                          float* dxd, bf16* dxd16, float* dbias, const RowDropout& drop) {
    XLIR_CHECK(!(dxd || dxd16 || dbias) || !accumulate,
               "emulated layernorm_backward: the branch gradient needs accumulate = false");
    float* out = accumulate ? scratch : dx;
    xlir::layernorm_backward(out, dw, db, dy, x, w, mean, rstd, N, C);
    if (accumulate)
      for (int64_t i = 0; i < N * C; i++) dx[i] += out[i];
    if (!dxd && !dxd16 && !dbias) return;
    std::vector<float> tmp(dxd ? 0 : size_t(N * C));
    float* d = dxd ? dxd : tmp.data();
    xlir::dropout_rows(d, dx, N, C, drop.p, drop.site, drop.row_keys);
    if (dxd16) to_bf16(dxd16, d, N * C);
    if (dbias) xlir::bias_backward(dbias, d, N, C);
  }
  bool layernorm_backward_sums_fused(int64_t) { return true; }
  void dropout_rows(float* y, const float* x, int64_t N, int64_t C, float p, uint64_t site, const uint64_t* keys) {
    xlir::dropout_rows(y, x, N, C, p, site, keys);
  }
  void bias_gelu_forward(float* pre, float* y, bf16* y16, const float* x, const float* bias, int64_t N, int64_t C) {
    std::vector<float> tmp(y ? 0 : size_t(N * C));  // y may be null when only the bf16 copy is wanted
    if (!y) y = tmp.data();
    if (bias) {
      float* h = pre ? pre : y;
      if (h != x) std::memcpy(h, x, size_t(N * C) * 4);
      xlir::bias_gelu_forward(h, bias, y, N, C);
    } else {
      if (pre && pre != x) std::memcpy(pre, x, size_t(N * C) * 4);
      gelu_forward(y, x, N * C);
    }
    if (y16) to_bf16(y16, y, N * C);
  }
  void bias_gelu_backward(float* dx, bf16* dx16, float* dbias, const float* dy, const float* pre, int64_t N, int64_t C,
                          float*) {
    std::vector<float> tmp(dx ? 0 : size_t(N * C));  // dx may be null when only the bf16 copy is wanted
    if (!dx) dx = tmp.data();
    gelu_backward(dx, dy, pre, N * C);
    if (dx16) to_bf16(dx16, dx, N * C);
    if (dbias) xlir::bias_backward(dbias, dx, N, C);
  }
  int64_t bias_backward_scratch_floats(int64_t, int64_t) { return 1; }
  void bias_backward(float* dbias, const float* dy, int64_t N, int64_t C, float*) { xlir::bias_backward(dbias, dy, N, C); }
  void tanh_forward(float* y, const float* x, int64_t n) { xlir::tanh_forward(y, x, n); }
  void tanh_backward(float* dx, const float* dy, const float* y, int64_t n) { xlir::tanh_backward(dx, dy, y, n); }

  // Attention: the CPU's, which recomputes the probabilities in backward instead of reading the
  // saved output and log-sum-exp (lse is left untouched: nothing on this path reads it). bf: the
  // CPU's bf16 attention (q, k, v and the probabilities rounded to bf16 for the products), the
  // counterpart of the GPU's tensor-core kernel.
  struct Shape {
    std::vector<int32_t> lengths;
    std::vector<int64_t> offsets;
  };
  static Shape shape_of(const int32_t* off32, int64_t B) {
    Shape s;
    for (int64_t b = 0; b < B; b++) s.lengths.push_back(off32[b + 1] - off32[b]), s.offsets.push_back(off32[b]);
    return s;
  }
  void attention_forward(float* ctx, bf16* ctx16, float*, const float* qkv, const int32_t* off32, int64_t B,
                         int64_t max_len, int64_t T, int64_t H, int64_t heads, float p, uint64_t site,
                         const uint64_t* seq_keys, bool bf) {
    const Shape s = shape_of(off32, B);
    std::vector<float> scr(size_t(attention_scratch_floats(heads, max_len)));
    std::vector<float> tmp(ctx ? 0 : size_t(T * H));  // ctx is null when only the bf16 copy is wanted
    if (!ctx) ctx = tmp.data();
    xlir::attention_forward(ctx, qkv, AttentionShape{B, s.lengths.data(), s.offsets.data(), seq_keys, H, heads}, p, site,
                            scr.data(), bf ? Precision::BF16 : Precision::FP32);
    if (ctx16) to_bf16(ctx16, ctx, T * H);
  }
  int64_t attention_backward_scratch_floats(int64_t, int64_t, int64_t, int64_t) { return 1; }
  // As the tensor-core kernels: no fp32 ctx, dctx or dqkv from the caller in bf16 mode (temporaries
  // here), so the device model's path without them runs in these tests too. The CPU's bf16
  // attention reads dctx only through its bf16 rounding, so a bf16 dctx gives the same bits.
  bool attention_bf16_only(bool, int64_t, int64_t) { return true; }
  void gemm16(const Gemm& g, const void* A, const void* B, bf16* C) {
    XLIR_CHECK(g.beta == 0.f && g.batch == 1, "emulated gemm16: one product, written (beta 0)");
    std::vector<float> tmp(size_t(g.M * g.ldc));
    gemm(g, A, B, tmp.data(), true);
    for (int64_t r = 0; r < g.M; r++) to_bf16(C + r * g.ldc, tmp.data() + r * g.ldc, g.N);
  }
  void attention_backward(float* dqkv, bf16* dqkv16, float* dbias, const float* dctx, const bf16* dctx16,
                          const float*, const bf16*, const float*, const float* qkv, const int32_t* off32, int64_t B,
                          int64_t max_len, int64_t T, int64_t H, int64_t heads, float p, uint64_t site,
                          const uint64_t* seq_keys, float*, bool bf) {
    const Shape s = shape_of(off32, B);
    std::vector<float> scr(size_t(attention_scratch_floats(heads, max_len)));
    std::vector<float> tmp(dqkv ? 0 : size_t(T * 3 * H)), dc(dctx ? 0 : size_t(T * H));
    if (!dqkv) dqkv = tmp.data();
    if (!dctx) {
      for (int64_t i = 0; i < T * H; i++) dc[size_t(i)] = bf16_to_f32(dctx16[i]);
      dctx = dc.data();
    }
    xlir::attention_backward(dqkv, dctx, qkv, AttentionShape{B, s.lengths.data(), s.offsets.data(), seq_keys, H, heads},
                             p, site, scr.data(), bf ? Precision::BF16 : Precision::FP32);
    if (dqkv16) to_bf16(dqkv16, dqkv, T * 3 * H);
    if (dbias) xlir::bias_backward(dbias, dqkv, T, 3 * H);
  }
  void pool_forward(float* out, const float* h, const int32_t* off32, int64_t B, int64_t C, PoolMode mode) {
    const Shape s = shape_of(off32, B);
    xlir::pool_forward(out, h, s.lengths.data(), s.offsets.data(), B, C, mode);
  }
  void pool_backward(float* dh, const float* dout, const int32_t* off32, int64_t B, int64_t C, PoolMode mode) {
    const Shape s = shape_of(off32, B);
    xlir::pool_backward(dh, dout, s.lengths.data(), s.offsets.data(), B, C, mode);
  }
  void l2norm_forward(float* y, float* norms, const float* x, int64_t B, int64_t D) {
    xlir::l2norm_forward(y, norms, x, B, D);
  }
  void l2norm_backward(float* dx, const float* dy, const float* y, const float* norms, int64_t B, int64_t D) {
    xlir::l2norm_backward(dx, dy, y, norms, B, D);
  }
  // The device scatter's contract: segment by segment, each segment's tokens in order.
  void embedding_backward(float* dtable, const float* dx, const int32_t* order, const int32_t* seg_start,
                          const int32_t* seg_row, int64_t segments, int64_t C) {
    for (int64_t s = 0; s < segments; s++) {
      float* dst = dtable + int64_t(seg_row[s]) * C;
      for (int32_t i = seg_start[s]; i < seg_start[s + 1]; i++) {
        const float* src = dx + int64_t(order[i]) * C;
        for (int64_t c = 0; c < C; c++) dst[c] += src[c];
      }
    }
  }

  // Norm: one partial per range (the CPU's sum_squares), summed in index order as the CUDA
  // finishing kernel does; clip coefficient as torch.nn.utils.clip_grad_norm_.
  int64_t norm_scratch_doubles(int64_t ranges) { return ranges; }
  void global_norm(float* norm, float* clip, const float* g, const int64_t* begin, const int64_t* size, int64_t ranges,
                   float max_norm, double* scratch) {
    for (int64_t r = 0; r < ranges; r++) scratch[r] = sum_squares(g + begin[r], size[r]);
    norm_from_partials(norm, clip, scratch, ranges, max_norm);
  }
  void sum_squares_rows_partial(double* partial, const float* g, const int32_t* rows, int64_t num_rows, int64_t width) {
    *partial = num_rows ? sum_squares_rows(g, rows, num_rows, width) : 0.0;
  }
  void norm_from_partials(float* norm, float* clip, const double* partial, int64_t count, float max_norm) {
    double s = 0;
    for (int64_t i = 0; i < count; i++) s += partial[i];
    const double nrm = std::sqrt(s);
    *norm = float(nrm);
    if (clip) {
      float scale = 1.f;
      if (max_norm > 0.f) {
        const float coef = float(double(max_norm) / (nrm + 1e-6));
        scale = coef < 1.f ? coef : 1.f;
      }
      *clip = scale;
    }
  }
  void adamw_update(float* p, bf16* p16, const float* g, float* m, float* v, int64_t n, float lr, float beta1,
                    float beta2, float eps, float wd, const float* grad_scale, int64_t t) {
    xlir::adamw_update(p, g, m, v, n, lr, beta1, beta2, eps, wd, grad_scale ? *grad_scale : 1.f, t);
    if (p16) to_bf16(p16, p, n);
  }
  void adamw_update_rows(float* p, bf16* p16, const float* g, float* m, float* v, const int32_t* rows, int64_t num_rows,
                         int64_t width, float lr, float beta1, float beta2, float eps, float wd, const float* grad_scale,
                         int64_t t) {
    xlir::adamw_update_rows(p, g, m, v, rows, num_rows, width, lr, beta1, beta2, eps, wd, grad_scale ? *grad_scale : 1.f,
                            t);
    if (p16)
      for (int64_t r = 0; r < num_rows; r++) to_bf16(p16 + int64_t(rows[r]) * width, p + int64_t(rows[r]) * width, width);
  }
};

}  // namespace

std::unique_ptr<DeviceBackend> make_emulated_backend(const Model& model) {
  return std::make_unique<DeviceModel<HostOps>>(model, HostOps{}, "emulated");
}

}  // namespace xlir
