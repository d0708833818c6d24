// Matrix products through oneDNN, with a plain reference loop to check them against.
// oneDNN primitives are created per shape and cached: creating one costs far more than running a
// small one, and a training run sees few distinct shapes (token counts repeat, sequence lengths are
// bounded by the position table).
#include "matmul.h"

#include <dnnl.hpp>
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "common.h"

#if defined(__AVX512BF16__)
#include <immintrin.h>
#endif

namespace xlir {

static GemmPath g_path = GemmPath::OneDNN;
void set_gemm_path(GemmPath p) { g_path = p; }
GemmPath gemm_path() { return g_path; }

const char* build_isa() {
#if defined(__AVX512BF16__)
  return "avx512_bf16";
#elif defined(__AVX512F__)
  return "avx512";
#elif defined(__AVX2__)
  return "avx2";
#else
  return "generic";
#endif
}

uint16_t f32_to_bf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // quiet NaN stays NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}
float bf16_to_f32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

void to_bf16_serial(const float* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
#if defined(__AVX512BF16__)
  for (; i + 32 <= n; i += 32) {
    __m512 a = _mm512_loadu_ps(src + i), b = _mm512_loadu_ps(src + i + 16);
    // cvtne2ps packs b into the low half and a into the high half; both round to nearest even.
    __m512bh r = _mm512_cvtne2ps_pbh(b, a);
    _mm512_storeu_si512(reinterpret_cast<void*>(dst + i), reinterpret_cast<__m512i&>(r));
  }
#endif
  for (; i < n; i++) dst[i] = f32_to_bf16(src[i]);
}

static void convert_to_bf16(const float* src, uint16_t* dst, int64_t n) {
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i0 = 0; i0 < n; i0 += 4096) to_bf16_serial(src + i0, dst + i0, std::min<int64_t>(4096, n - i0));
}

void gemm_reference(const Gemm& g, const float* A, const float* B, float* C) {
  for (int64_t b = 0; b < g.batch; b++) {
    const float* a = A + b * g.strideA;
    const float* bb = B + b * g.strideB;
    float* c = C + b * g.strideC;
    for (int64_t i = 0; i < g.M; i++)
      for (int64_t j = 0; j < g.N; j++) {
        double s = 0;
        for (int64_t k = 0; k < g.K; k++) {
          float av = g.transA ? a[k * g.lda + i] : a[i * g.lda + k];
          float bv = g.transB ? bb[j * g.ldb + k] : bb[k * g.ldb + j];
          s += double(av) * double(bv);
        }
        float prev = g.beta != 0.f ? c[i * g.ldc + j] : 0.f;
        c[i * g.ldc + j] = float(g.alpha * s) + g.beta * prev;
      }
  }
}

namespace {

using dnnl::memory;

struct Key {
  bool ta, tb, sum, bf16;
  int64_t M, N, K, lda, ldb, ldc, batch, sa, sb, sc;
  float alpha;
  bool operator<(const Key& o) const {
    return std::tie(ta, tb, sum, bf16, M, N, K, lda, ldb, ldc, batch, sa, sb, sc, alpha) <
           std::tie(o.ta, o.tb, o.sum, o.bf16, o.M, o.N, o.K, o.lda, o.ldb, o.ldc, o.batch, o.sa, o.sb, o.sc,
                    o.alpha);
  }
};

struct Cached {
  dnnl::matmul prim;
  memory::desc a, b, c;
};

struct Onednn {
  dnnl::engine eng{dnnl::engine::kind::cpu, 0};
  std::mutex mu;
  std::map<Key, Cached> cache;
};

Onednn& onednn() {
  static Onednn* o = new Onednn();  // never destroyed: primitives may outlive static destruction order
  return *o;
}

memory::desc make_md(int64_t batch, int64_t rows, int64_t cols, int64_t ld, bool trans, int64_t stride,
                     memory::data_type dt) {
  // Logical [rows, cols] over storage that is row-major [rows, ld] or, transposed, [cols, ld].
  memory::dims rs = trans ? memory::dims{1, ld} : memory::dims{ld, 1};
  if (batch == 1) return memory::desc({rows, cols}, dt, rs);
  return memory::desc({batch, rows, cols}, dt, {stride, rs[0], rs[1]});
}

const Cached& get_primitive(const Key& k) {
  Onednn& o = onednn();
  std::lock_guard<std::mutex> lock(o.mu);
  auto it = o.cache.find(k);
  if (it != o.cache.end()) return it->second;
  if (o.cache.size() > 16384) o.cache.clear();  // bound memory on pathological shape churn
  auto in_dt = k.bf16 ? memory::data_type::bf16 : memory::data_type::f32;
  Cached c;
  c.a = make_md(k.batch, k.M, k.K, k.lda, k.ta, k.sa, in_dt);
  c.b = make_md(k.batch, k.K, k.N, k.ldb, k.tb, k.sb, in_dt);
  c.c = make_md(k.batch, k.M, k.N, k.ldc, false, k.sc, memory::data_type::f32);
  dnnl::primitive_attr attr;
  if (k.alpha != 1.f) attr.set_output_scales(0, {k.alpha});
  if (k.sum) {
    dnnl::post_ops po;
    po.append_sum(1.f);
    attr.set_post_ops(po);
  }
  dnnl::matmul::desc d(c.a, c.b, c.c);
  dnnl::matmul::primitive_desc pd(d, attr, o.eng);
  c.prim = dnnl::matmul(pd);
  return o.cache.emplace(k, std::move(c)).first->second;
}

// Extent in elements of a strided operand: what must be converted to bf16.
int64_t extent(int64_t batch, int64_t stride, int64_t rows_stored, int64_t ld, int64_t cols_stored) {
  return (batch - 1) * stride + (rows_stored - 1) * ld + cols_stored;
}

}  // namespace

namespace {

// Checks sizes and handles the empty cases; false when there is nothing left for oneDNN to do.
bool gemm_prologue(const Gemm& g, float* C) {
  XLIR_CHECK(g.M >= 0 && g.N >= 0 && g.K >= 0 && g.batch >= 1, "gemm: bad sizes");
  if (g.M == 0 || g.N == 0) return false;
  if (g.K == 0) {  // an empty sum: C = beta * C
    for (int64_t b = 0; b < g.batch; b++)
      for (int64_t i = 0; i < g.M; i++)
        for (int64_t j = 0; j < g.N; j++) {
          float& c = C[b * g.strideC + i * g.ldc + j];
          c = g.beta != 0.f ? c : 0.f;
        }
    return false;
  }
  return true;
}

int64_t extent_a(const Gemm& g) {
  return g.transA ? extent(g.batch, g.strideA, g.K, g.lda, g.M) : extent(g.batch, g.strideA, g.M, g.lda, g.K);
}
int64_t extent_b(const Gemm& g) {
  return g.transB ? extent(g.batch, g.strideB, g.N, g.ldb, g.K) : extent(g.batch, g.strideB, g.K, g.ldb, g.N);
}

void run_onednn(const Gemm& g, const void* A, const void* B, float* C, bool bf16) {
  Key k{g.transA, g.transB, g.beta != 0.f, bf16, g.M, g.N, g.K, g.lda, g.ldb, g.ldc, g.batch,
        g.strideA, g.strideB, g.strideC, g.alpha};
  const Cached& c = get_primitive(k);
  Onednn& o = onednn();
  thread_local dnnl::stream strm(o.eng);
  memory am(c.a, o.eng, const_cast<void*>(A));
  memory bm(c.b, o.eng, const_cast<void*>(B));
  memory cm(c.c, o.eng, C);
  c.prim.execute(strm, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
  strm.wait();
}

// Per-thread conversion buffers for operands given in fp32 to a bf16 product (grow-only).
const uint16_t* converted_a(const Gemm& g, const float* A) {
  thread_local Buffer<uint16_t> buf;
  const int64_t n = extent_a(g);
  to_bf16(A, buf.ensure(size_t(n)), n);
  return buf.data();
}
const uint16_t* converted_b(const Gemm& g, const float* B) {
  thread_local Buffer<uint16_t> buf;
  const int64_t n = extent_b(g);
  to_bf16(B, buf.ensure(size_t(n)), n);
  return buf.data();
}

}  // namespace

void to_bf16(const float* src, uint16_t* dst, int64_t n) { convert_to_bf16(src, dst, n); }

void gemm(const Gemm& g, const float* A, const float* B, float* C, Precision p) {
  if (!gemm_prologue(g, C)) return;
  if (p == Precision::FP32) {
    if (g_path == GemmPath::Reference) return gemm_reference(g, A, B, C);
    return run_onednn(g, A, B, C, false);
  }
  run_onednn(g, converted_a(g, A), converted_b(g, B), C, true);
}

void gemm_bf16(const Gemm& g, const uint16_t* A, const uint16_t* B, float* C) {
  if (gemm_prologue(g, C)) run_onednn(g, A, B, C, true);
}
void gemm_bf16(const Gemm& g, const float* A, const uint16_t* B, float* C) {
  if (gemm_prologue(g, C)) run_onednn(g, converted_a(g, A), B, C, true);
}
void gemm_bf16(const Gemm& g, const uint16_t* A, const float* B, float* C) {
  if (gemm_prologue(g, C)) run_onednn(g, A, converted_b(g, B), C, true);
}

void linear_gemm(const float* X, const float* W, float* Y, int64_t M, int64_t N, int64_t K, float beta,
                 Precision p) {
  Gemm g;
  g.transB = true;
  g.M = M, g.N = N, g.K = K;
  g.lda = K, g.ldb = K, g.ldc = N;
  g.beta = beta;
  gemm(g, X, W, Y, p);
}

}  // namespace xlir
