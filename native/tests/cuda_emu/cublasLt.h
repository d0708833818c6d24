// CUDA emulation: the part of the cuBLASLt API that native/cuda/matmul.cu uses, implemented from
// cuBLASLt's documented semantics with plain loops, independently of matmul.cu's reasoning, so that
// the emulated run checks matmul.cu's row-major to column-major mapping rather than repeating it.
//
// What is implemented (cuBLAS documentation, "cuBLASLt API": cublasLtMatmul, cublasLtMatrixLayout_t,
// cublasLtMatmulDescAttributes_t, cublasLtEpilogue_t):
//  - every matrix is column-major: element (i, j) of a layout with `rows`, `cols`, `ld` is at
//    i + j * ld, and ld >= rows; a batch of BATCH_COUNT matrices lies STRIDED_BATCH_OFFSET
//    elements apart;
//  - D = epilogue(alpha * op(A) op(B) + beta * C) with op(A) m x k, op(B) k x n, C and D m x n,
//    where TRANSA = N means A's layout is m x k and T means it is k x m (B likewise: k x n or n x k);
//    with beta == 0, C is not read;
//  - CUBLASLT_EPILOGUE_BIAS adds the bias vector, "broadcast" over columns: its length must match
//    the number of rows of D and element i is added to every element of row i of D;
//    CUBLASLT_EPILOGUE_GELU_BIAS then applies GELU, the tanh approximation
//    0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))); the bias is applied after the alpha/beta sum;
//  - compute type CUBLAS_COMPUTE_32F with scale type CUDA_R_32F; A and B both CUDA_R_32F (C, D
//    CUDA_R_32F) or both CUDA_R_16BF (C, D CUDA_R_16BF or CUDA_R_32F); the bias CUDA_R_32F.
// The products accumulate in double and are rounded once (to fp32, or to bf16 to nearest even).
// Beyond the documentation, as a check of the caller: the algorithm returned by the heuristic
// remembers the problem and the pointer alignments it was chosen for, and cublasLtMatmul refuses
// another problem or a pointer less aligned than the preference promised (CUBLAS_STATUS_INVALID_VALUE,
// with a message); attribute sizes must match the documented attribute types; a workspace serves one
// stream at a time (emu::use_workspace in cuda_runtime.h).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "cuda_bf16.h"
#include "cuda_runtime.h"
#include "library_types.h"

enum cublasStatus_t {
  CUBLAS_STATUS_SUCCESS = 0,
  CUBLAS_STATUS_NOT_INITIALIZED = 1,
  CUBLAS_STATUS_ALLOC_FAILED = 3,
  CUBLAS_STATUS_INVALID_VALUE = 7,
  CUBLAS_STATUS_NOT_SUPPORTED = 15,
};
enum cublasOperation_t { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1, CUBLAS_OP_C = 2 };
enum cublasComputeType_t { CUBLAS_COMPUTE_32F = 68, CUBLAS_COMPUTE_32F_FAST_TF32 = 77 };
enum cublasLtEpilogue_t { CUBLASLT_EPILOGUE_DEFAULT = 1, CUBLASLT_EPILOGUE_BIAS = 4, CUBLASLT_EPILOGUE_GELU_BIAS = 36 };
enum cublasLtMatrixLayoutAttribute_t {
  CUBLASLT_MATRIX_LAYOUT_TYPE = 0,
  CUBLASLT_MATRIX_LAYOUT_ORDER = 1,
  CUBLASLT_MATRIX_LAYOUT_ROWS = 2,
  CUBLASLT_MATRIX_LAYOUT_COLS = 3,
  CUBLASLT_MATRIX_LAYOUT_LD = 4,
  CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT = 5,
  CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET = 6,
};
enum cublasLtMatmulDescAttributes_t {
  CUBLASLT_MATMUL_DESC_COMPUTE_TYPE = 0,
  CUBLASLT_MATMUL_DESC_SCALE_TYPE = 1,
  CUBLASLT_MATMUL_DESC_TRANSA = 3,
  CUBLASLT_MATMUL_DESC_TRANSB = 4,
  CUBLASLT_MATMUL_DESC_EPILOGUE = 7,
  CUBLASLT_MATMUL_DESC_BIAS_POINTER = 8,
  CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE = 26,
};
enum cublasLtMatmulPreferenceAttributes_t {
  CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1,
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES = 5,
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES = 6,
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES = 7,
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES = 8,
};

struct cublasLtMatmulAlgo_t {
  uint64_t data[8];
};
struct cublasLtMatmulHeuristicResult_t {
  cublasLtMatmulAlgo_t algo;
  size_t workspaceSize;
  cublasStatus_t state;
  float wavesCount;
  int reserved[4];
};

struct cublasLtContext {
  int device;
};
struct cublasLtMatrixLayoutOpaque_t {
  cudaDataType_t type;
  uint64_t rows, cols;
  int64_t ld;
  int32_t batch = 1;
  int64_t stride = 0;
};
struct cublasLtMatmulDescOpaque_t {
  cublasComputeType_t compute;
  cudaDataType_t scale;
  int32_t transa = CUBLAS_OP_N, transb = CUBLAS_OP_N;
  uint32_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  const void* bias = nullptr;
  int32_t bias_type = -1;  // -1: the default, D's type
};
struct cublasLtMatmulPreferenceOpaque_t {
  uint64_t max_workspace = 0;
  uint32_t align[4] = {256, 256, 256, 256};  // A, B, C, D; cuBLASLt assumes 256 unless told
};
typedef cublasLtContext* cublasLtHandle_t;
typedef cublasLtMatrixLayoutOpaque_t* cublasLtMatrixLayout_t;
typedef cublasLtMatmulDescOpaque_t* cublasLtMatmulDesc_t;
typedef cublasLtMatmulPreferenceOpaque_t* cublasLtMatmulPreference_t;

namespace emu_lt {

template <typename T>
cublasStatus_t set(T& field, const void* buf, size_t size) {
  if (!buf || size != sizeof(T)) return CUBLAS_STATUS_INVALID_VALUE;
  std::memcpy(&field, buf, sizeof(T));
  return CUBLAS_STATUS_SUCCESS;
}

inline uint64_t problem_hash(const cublasLtMatmulDescOpaque_t* d, const cublasLtMatrixLayoutOpaque_t* a,
                             const cublasLtMatrixLayoutOpaque_t* b, const cublasLtMatrixLayoutOpaque_t* c,
                             const cublasLtMatrixLayoutOpaque_t* dd) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](uint64_t v) { h = (h ^ v) * 1099511628211ull; };
  mix(uint64_t(d->compute)), mix(uint64_t(d->transa)), mix(uint64_t(d->transb)), mix(d->epilogue), mix(uint64_t(d->bias_type));
  for (auto* l : {a, b, c, dd}) mix(uint64_t(l->type)), mix(l->rows), mix(l->cols), mix(uint64_t(l->ld)), mix(uint64_t(l->batch));
  return h;
}

// Checks the problem; fills m, n, k.
inline cublasStatus_t validate(const cublasLtMatmulDescOpaque_t* d, const cublasLtMatrixLayoutOpaque_t* A,
                               const cublasLtMatrixLayoutOpaque_t* B, const cublasLtMatrixLayoutOpaque_t* C,
                               const cublasLtMatrixLayoutOpaque_t* D, int64_t& m, int64_t& n, int64_t& k) {
  if (!d || !A || !B || !C || !D) return CUBLAS_STATUS_INVALID_VALUE;
  if (d->compute != CUBLAS_COMPUTE_32F || d->scale != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (d->transa == CUBLAS_OP_C || d->transb == CUBLAS_OP_C) return CUBLAS_STATUS_NOT_SUPPORTED;
  m = int64_t(D->rows), n = int64_t(D->cols);
  const int64_t am = int64_t(d->transa == CUBLAS_OP_N ? A->rows : A->cols), ak = int64_t(d->transa == CUBLAS_OP_N ? A->cols : A->rows);
  const int64_t bk = int64_t(d->transb == CUBLAS_OP_N ? B->rows : B->cols), bn = int64_t(d->transb == CUBLAS_OP_N ? B->cols : B->rows);
  k = ak;
  if (am != m || bn != n || bk != k || C->rows != D->rows || C->cols != D->cols) return CUBLAS_STATUS_INVALID_VALUE;
  if (k == 0) return CUBLAS_STATUS_INVALID_VALUE;
  for (auto* l : {A, B, C, D})
    if (l->ld < int64_t(l->rows) || l->ld < 1 || l->batch < 1) return CUBLAS_STATUS_INVALID_VALUE;
  if (A->batch != D->batch || B->batch != D->batch || C->batch != D->batch) return CUBLAS_STATUS_INVALID_VALUE;
  if (A->type != B->type) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (C->type != D->type) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (A->type == CUDA_R_32F && D->type != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (A->type == CUDA_R_16BF && D->type != CUDA_R_32F && D->type != CUDA_R_16BF) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (A->type != CUDA_R_32F && A->type != CUDA_R_16BF) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (d->epilogue != CUBLASLT_EPILOGUE_DEFAULT) {
    if (d->epilogue != CUBLASLT_EPILOGUE_BIAS && d->epilogue != CUBLASLT_EPILOGUE_GELU_BIAS) return CUBLAS_STATUS_NOT_SUPPORTED;
    const int32_t bt = d->bias_type == -1 ? int32_t(D->type) : d->bias_type;
    if (bt != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  return CUBLAS_STATUS_SUCCESS;
}

inline uint32_t alignment_of(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  uint32_t r = 256;
  while (r > 1 && a % r) r >>= 1;
  return r;
}

inline double load(const void* base, cudaDataType_t t, int64_t i) {
  if (t == CUDA_R_32F) return double(static_cast<const float*>(base)[i]);
  return double(__bfloat162float(static_cast<const __nv_bfloat16*>(base)[i]));
}
inline void store(void* base, cudaDataType_t t, int64_t i, double v) {
  if (t == CUDA_R_32F)
    static_cast<float*>(base)[i] = float(v);
  else
    static_cast<__nv_bfloat16*>(base)[i] = __float2bfloat16_rn(float(v));
}

}  // namespace emu_lt

inline cublasStatus_t cublasLtCreate(cublasLtHandle_t* h) {
  *h = new cublasLtContext{0};
  cudaGetDevice(&(*h)->device);
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtDestroy(cublasLtHandle_t h) {
  delete h;
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* l, cudaDataType_t type, uint64_t rows,
                                                 uint64_t cols, int64_t ld) {
  *l = new cublasLtMatrixLayoutOpaque_t{type, rows, cols, ld};
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
  delete l;
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t l, cublasLtMatrixLayoutAttribute_t a,
                                                       const void* buf, size_t size) {
  switch (a) {
    case CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT: return emu_lt::set(l->batch, buf, size);
    case CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET: return emu_lt::set(l->stride, buf, size);
    default: return CUBLAS_STATUS_NOT_SUPPORTED;  // not emulated
  }
}
inline cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* d, cublasComputeType_t compute, cudaDataType_t scale) {
  *d = new cublasLtMatmulDescOpaque_t{compute, scale};
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) {
  delete d;
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a,
                                                     const void* buf, size_t size) {
  switch (a) {
    case CUBLASLT_MATMUL_DESC_TRANSA: return emu_lt::set(d->transa, buf, size);  // int32_t
    case CUBLASLT_MATMUL_DESC_TRANSB: return emu_lt::set(d->transb, buf, size);
    case CUBLASLT_MATMUL_DESC_EPILOGUE: return emu_lt::set(d->epilogue, buf, size);  // uint32_t
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER: return emu_lt::set(d->bias, buf, size);  // void*
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE: return emu_lt::set(d->bias_type, buf, size);  // int32_t
    default: return CUBLAS_STATUS_NOT_SUPPORTED;
  }
}
inline cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* p) {
  *p = new cublasLtMatmulPreferenceOpaque_t;
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) {
  delete p;
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                                           cublasLtMatmulPreferenceAttributes_t a, const void* buf,
                                                           size_t size) {
  switch (a) {
    case CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES: return emu_lt::set(p->max_workspace, buf, size);  // uint64_t
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES: return emu_lt::set(p->align[0], buf, size);    // uint32_t
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES: return emu_lt::set(p->align[1], buf, size);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES: return emu_lt::set(p->align[2], buf, size);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES: return emu_lt::set(p->align[3], buf, size);
    default: return CUBLAS_STATUS_NOT_SUPPORTED;
  }
}
// One "algorithm": data[0] the problem's hash, data[1..4] the alignments promised for A, B, C, D.
inline cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t h, cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t A,
                                                     cublasLtMatrixLayout_t B, cublasLtMatrixLayout_t C,
                                                     cublasLtMatrixLayout_t D, cublasLtMatmulPreference_t pref,
                                                     int requested, cublasLtMatmulHeuristicResult_t* results,
                                                     int* returned) {
  if (!h || !pref || requested < 1 || !results || !returned) return CUBLAS_STATUS_INVALID_VALUE;
  int64_t m, n, k;
  const cublasStatus_t st = emu_lt::validate(d, A, B, C, D, m, n, k);
  *returned = 0;
  if (st != CUBLAS_STATUS_SUCCESS) return st;
  std::memset(&results[0], 0, sizeof results[0]);
  results[0].algo.data[0] = emu_lt::problem_hash(d, A, B, C, D);
  for (int i = 0; i < 4; i++) results[0].algo.data[1 + i] = pref->align[i];
  results[0].state = CUBLAS_STATUS_SUCCESS;
  results[0].wavesCount = 1.f;
  *returned = 1;
  return CUBLAS_STATUS_SUCCESS;
}

// Not instrumented under ThreadSanitizer (XLIR_CUDA_EMU_TSAN): the product runs on the host thread
// between kernels, which are ordered with it, so there is no race to find; it halves the gemm
// group's time there.
EMU_NO_TSAN
inline cublasStatus_t cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t desc, const void* alpha_p, const void* Ap,
                                     cublasLtMatrixLayout_t A, const void* Bp, cublasLtMatrixLayout_t B,
                                     const void* beta_p, const void* Cp, cublasLtMatrixLayout_t C, void* Dp,
                                     cublasLtMatrixLayout_t D, const cublasLtMatmulAlgo_t* algo, void* workspace,
                                     size_t workspace_bytes, cudaStream_t stream) {
  if (!h || !alpha_p || !beta_p || !Ap || !Bp || !Dp) return CUBLAS_STATUS_INVALID_VALUE;
  if (!emu::use_workspace(workspace, workspace_bytes, stream)) return CUBLAS_STATUS_INVALID_VALUE;
  int64_t m, n, k;
  const cublasStatus_t st = emu_lt::validate(desc, A, B, C, D, m, n, k);
  if (st != CUBLAS_STATUS_SUCCESS) return st;
  if (algo) {
    if (algo->data[0] != emu_lt::problem_hash(desc, A, B, C, D)) {
      emu::fail("cublasLtMatmul: the algorithm was chosen by the heuristic for another problem");
      return CUBLAS_STATUS_INVALID_VALUE;
    }
    const void* ptrs[4] = {Ap, Bp, Cp, Dp};
    for (int i = 0; i < 4; i++)
      if (ptrs[i] && emu_lt::alignment_of(ptrs[i]) < algo->data[1 + i]) {
        emu::fail("cublasLtMatmul: operand %c at %p is %u-byte aligned but the heuristic was promised %u bytes", "ABCD"[i],
                  ptrs[i], emu_lt::alignment_of(ptrs[i]), unsigned(algo->data[1 + i]));
        return CUBLAS_STATUS_INVALID_VALUE;
      }
  }
  for (const void* p : {Ap, Bp, static_cast<const void*>(Dp), desc->bias})
    if (p && !emu::is_device_pointer(p)) {
      emu::fail("cublasLtMatmul: pointer %p is outside every cudaMalloc allocation", p);
      return CUBLAS_STATUS_INVALID_VALUE;
    }
  const float alpha = *static_cast<const float*>(alpha_p), beta = *static_cast<const float*>(beta_p);
  if (beta != 0.f && !Cp) return CUBLAS_STATUS_INVALID_VALUE;
  const bool has_bias = desc->epilogue != CUBLASLT_EPILOGUE_DEFAULT;
  if (has_bias && !desc->bias) return CUBLAS_STATUS_INVALID_VALUE;
  const float* bias = static_cast<const float*>(desc->bias);  // length m: one value per row of D
  const bool ta = desc->transa == CUBLAS_OP_T, tb = desc->transb == CUBLAS_OP_T;
  std::vector<double> out(size_t(m * n)), opa(size_t(m * k)), opb(size_t(n * k));
  for (int32_t bt = 0; bt < D->batch; bt++) {
    const int64_t oa = bt * A->stride, ob = bt * B->stride, oc = bt * C->stride, od = bt * D->stride;
    // opa[i * k + l] = op(A)(i, l), which is A(l, i) when transposed; opb[j * k + l] = op(B)(l, j),
    // which is B(j, l) when transposed (A(r, c) is at r + c * ld).
    for (int64_t i = 0; i < m; i++)
      for (int64_t l = 0; l < k; l++) opa[size_t(i * k + l)] = emu_lt::load(Ap, A->type, oa + (ta ? l + i * A->ld : i + l * A->ld));
    for (int64_t j = 0; j < n; j++)
      for (int64_t l = 0; l < k; l++) opb[size_t(j * k + l)] = emu_lt::load(Bp, B->type, ob + (tb ? j + l * B->ld : l + j * B->ld));
    // Rows of op(A) in blocks of 64 (about 400 KB of doubles at k = 768) so they stay in cache
    // while every column of D is computed against them.
    const int64_t iblocks = (m + 63) / 64;
#pragma omp parallel for schedule(dynamic) collapse(2)
    for (int64_t ib = 0; ib < iblocks; ib++)
      for (int64_t j = 0; j < n; j++)
        for (int64_t i = ib * 64; i < std::min(m, ib * 64 + 64); i++) {
          const double* a = &opa[size_t(i * k)];
          const double* b = &opb[size_t(j * k)];
          double s = 0;
#pragma omp simd reduction(+ : s)
          for (int64_t l = 0; l < k; l++) s += a[l] * b[l];
          double v = double(alpha) * s;
          if (beta != 0.f) v += double(beta) * emu_lt::load(Cp, C->type, oc + i + j * C->ld);
          if (has_bias) v += double(bias[i]);  // element i of the bias goes to row i of D
          if (desc->epilogue == CUBLASLT_EPILOGUE_GELU_BIAS)
            v = 0.5 * v * (1.0 + std::tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
          out[size_t(i + j * m)] = v;
        }
    // D may alias C: written only after the whole batch entry is computed.
    for (int64_t j = 0; j < n; j++)
      for (int64_t i = 0; i < m; i++) emu_lt::store(Dp, D->type, od + i + j * D->ld, out[size_t(i + j * m)]);
  }
  return CUBLAS_STATUS_SUCCESS;
}
