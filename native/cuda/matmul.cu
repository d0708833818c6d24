// cuBLASLt products (matmul.cuh). Row-major C[M,N] = op(A) op(B) is the column-major product
// C^T[N,M] = op(B)^T op(A)^T: a row-major matrix with leading dimension ld is the column-major
// view of its transpose with the same ld, so cuBLASLt's first operand is our B and its second our A.
#include <cublasLt.h>

#include <map>
#include <mutex>
#include <tuple>
#include <utility>

#include "common.cuh"
#include "matmul.cuh"

namespace xlir {
namespace cuda {

#define XLIR_CUBLAS_CHECK(call)                                                                          \
  do {                                                                                                 \
    cublasStatus_t xlir_s_ = (call);                                                                   \
    XLIR_CHECK(xlir_s_ == CUBLAS_STATUS_SUCCESS, "cuBLASLt error " << int(xlir_s_) << " in " #call " at " \
                                                                    << __FILE__ << ":" << __LINE__);    \
  } while (0)

namespace {

const size_t kWorkspaceBytes = size_t(32) << 20;  // what NVIDIA recommends for Hopper

// Everything the heuristic's answer depends on.
using AlgoKey = std::tuple<int, bool, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                           int64_t, int64_t, int, int, int, bool, uint32_t, uint32_t, uint32_t, uint32_t>;

std::mutex g_mutex;
// The tables below are never destroyed (matmul_release empties them): the handles and workspaces
// they point to stay reachable until exit rather than outliving a destroyed map (CUDA may already
// be shutting down when static destructors run, so nothing is freed then).
std::map<int, cublasLtHandle_t>& g_handles = *new std::map<int, cublasLtHandle_t>;  // one per device
std::map<AlgoKey, cublasLtMatmulAlgo_t>& g_algos = *new std::map<AlgoKey, cublasLtMatmulAlgo_t>;
// One workspace per (device, stream), as PyTorch keeps one per (handle, stream): a product still
// running on one stream may be using its workspace while another stream's product starts, so two
// streams must never share one (a model's stream and the InfoNCE/search stream, or two models used
// from two threads). Allocated at a stream's first product; matmul_forget_stream frees it.
std::map<std::pair<int, cudaStream_t>, void*>& g_workspaces = *new std::map<std::pair<int, cudaStream_t>, void*>;

cublasLtHandle_t handle_for(int device) {
  cublasLtHandle_t& h = g_handles[device];
  if (!h) XLIR_CUBLAS_CHECK(cublasLtCreate(&h));
  return h;
}

void* workspace_for(int device, cudaStream_t stream) {
  void*& w = g_workspaces[{device, stream}];
  if (!w) {
    const cudaError_t e = cudaMalloc(&w, kWorkspaceBytes);
    if (e != cudaSuccess) {
      cudaGetLastError();
      w = nullptr;
      XLIR_CHECK(false, "cannot allocate the " << (kWorkspaceBytes >> 20) << " MiB cuBLASLt workspace of a stream on "
                                               << "CUDA device " << device << ": " << cudaGetErrorString(e));
    }
  }
  return w;
}

// Largest power of two (up to 256) dividing the address: cuBLASLt's heuristic assumes 256-byte
// alignment unless told otherwise, and attention's per-head views or the search score buffer are
// offset into larger arrays.
uint32_t alignment(const void* p) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  uint32_t r = 256;
  while (r > 1 && (a % r) != 0) r >>= 1;
  return r;
}

cudaDataType_t lt_type(DType t) { return t == DType::F32 ? CUDA_R_32F : CUDA_R_16BF; }
size_t type_size(DType t) { return t == DType::F32 ? 4 : 2; }

struct Layouts {
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  ~Layouts() {
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (c) cublasLtMatrixLayoutDestroy(c);
  }
};
struct Desc {
  cublasLtMatmulDesc_t d = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  ~Desc() {
    if (d) cublasLtMatmulDescDestroy(d);
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
  }
};

void set_batch(cublasLtMatrixLayout_t l, int64_t batch, int64_t stride) {
  if (batch == 1) return;
  int32_t b = int32_t(batch);
  XLIR_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &b, sizeof b));
  XLIR_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride));
}

}  // namespace

void gemm(const Gemm& g, const void* A, const void* B, void* C, DType ab, DType c, cudaStream_t stream, Epilogue ep,
          const float* bias) {
  XLIR_CHECK(g.M >= 0 && g.N >= 0 && g.K >= 0, "cuda gemm: negative size " << g.M << "x" << g.N << "x" << g.K);
  XLIR_CHECK(g.beta == 0.f || g.beta == 1.f, "cuda gemm: beta must be 0 or 1 (got " << g.beta << ")");
  XLIR_CHECK(g.lda >= (g.transA ? g.M : g.K) && g.ldb >= (g.transB ? g.K : g.N) && g.ldc >= g.N && g.lda > 0 &&
                 g.ldb > 0 && g.ldc > 0,
             "cuda gemm: leading dimensions lda=" << g.lda << " ldb=" << g.ldb << " ldc=" << g.ldc << " too small for "
                                                   << g.M << "x" << g.N << "x" << g.K);
  XLIR_CHECK(g.batch >= 1 && g.batch < (int64_t(1) << 31), "cuda gemm: batch " << g.batch << " out of range");
  XLIR_CHECK(ep == Epilogue::None || (c == DType::F32 && bias && g.batch == 1),
             "cuda gemm: a bias epilogue needs an fp32 output, a bias vector and batch 1");
  XLIR_CHECK(A && B && C, "cuda gemm: null matrix pointer");
  if (g.M == 0 || g.N == 0) return;
  if (g.K == 0) {  // cuBLASLt rejects k = 0; the product is empty: C = beta C (+ bias), done by hand
    XLIR_CHECK(ep == Epilogue::None, "cuda gemm: K = 0 with an epilogue");
    if (g.beta == 0.f)
      for (int64_t b = 0; b < g.batch; b++)
        XLIR_CUDA_CHECK(cudaMemset2DAsync(static_cast<char*>(C) + b * g.strideC * type_size(c), g.ldc * type_size(c), 0,
                                          g.N * type_size(c), g.M, stream));
    return;
  }

  int device = 0;
  XLIR_CUDA_CHECK(cudaGetDevice(&device));
  const uint32_t alA = alignment(B), alB = alignment(A), alC = alignment(C), alBias = bias ? alignment(bias) : 256;
  std::lock_guard<std::mutex> lock(g_mutex);
  const cublasLtHandle_t handle = handle_for(device);
  void* const workspace = workspace_for(device, stream);

  // cuBLASLt operand 1 = our B, operand 2 = our A, output = our C, all column-major views.
  const cublasOperation_t op1 = g.transB ? CUBLAS_OP_T : CUBLAS_OP_N, op2 = g.transA ? CUBLAS_OP_T : CUBLAS_OP_N;
  Layouts L;
  XLIR_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&L.a, lt_type(ab), g.transB ? g.K : g.N, g.transB ? g.N : g.K, g.ldb));
  XLIR_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&L.b, lt_type(ab), g.transA ? g.M : g.K, g.transA ? g.K : g.M, g.lda));
  XLIR_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&L.c, lt_type(c), g.N, g.M, g.ldc));
  set_batch(L.a, g.batch, g.strideB);
  set_batch(L.b, g.batch, g.strideA);
  set_batch(L.c, g.batch, g.strideC);

  Desc D;
  XLIR_CUBLAS_CHECK(cublasLtMatmulDescCreate(&D.d, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  XLIR_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(D.d, CUBLASLT_MATMUL_DESC_TRANSA, &op1, sizeof op1));
  XLIR_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(D.d, CUBLASLT_MATMUL_DESC_TRANSB, &op2, sizeof op2));
  if (ep != Epilogue::None) {
    cublasLtEpilogue_t e = ep == Epilogue::Bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_GELU_BIAS;
    XLIR_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(D.d, CUBLASLT_MATMUL_DESC_EPILOGUE, &e, sizeof e));
    XLIR_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(D.d, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    cudaDataType_t bt = CUDA_R_32F;
    XLIR_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(D.d, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt));
  }

  const AlgoKey key{device, g.transA, g.transB, g.M, g.N, g.K, g.lda, g.ldb, g.ldc, g.batch, g.strideA, g.strideB,
                    g.strideC, int(ab), int(c), int(ep), g.beta != 0.f, alA, alB, alC, alBias};
  auto it = g_algos.find(key);
  if (it == g_algos.end()) {
    XLIR_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&D.pref));
    uint64_t ws = kWorkspaceBytes;
    XLIR_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(D.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    XLIR_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(D.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &alA, sizeof alA));
    XLIR_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(D.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &alB, sizeof alB));
    XLIR_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(D.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &alC, sizeof alC));
    XLIR_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(D.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &alC, sizeof alC));
    cublasLtMatmulHeuristicResult_t result;
    int found = 0;
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(handle, D.d, L.a, L.b, L.c, L.c, D.pref, 1, &result, &found);
    XLIR_CHECK(st == CUBLAS_STATUS_SUCCESS && found > 0,
               "cuBLASLt has no algorithm for " << (ab == DType::F32 ? "fp32" : "bf16") << " gemm " << g.M << "x" << g.N << "x"
                                                << g.K << " (transA=" << g.transA << " transB=" << g.transB << " lda=" << g.lda
                                                << " ldb=" << g.ldb << " ldc=" << g.ldc << " batch=" << g.batch
                                                << ", status " << int(st) << ")");
    it = g_algos.emplace(key, result.algo).first;
  }
  const float alpha = g.alpha, beta = g.beta;
  XLIR_CUBLAS_CHECK(cublasLtMatmul(handle, D.d, &alpha, B, L.a, A, L.b, &beta, C, L.c, C, L.c, &it->second,
                                   workspace, kWorkspaceBytes, stream));
}

void linear(const void* X, const void* W, const float* bias, void* Y, int64_t M, int64_t N, int64_t K, float beta,
            DType ab, DType y, cudaStream_t stream) {
  Gemm g;
  g.transB = true;
  g.M = M, g.N = N, g.K = K, g.lda = K, g.ldb = K, g.ldc = N, g.beta = beta;
  gemm(g, X, W, Y, ab, y, stream, bias ? Epilogue::Bias : Epilogue::None, bias);
}

void matmul_forget_stream(cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(g_mutex);
  int current = 0;
  cudaGetDevice(&current);
  for (auto it = g_workspaces.begin(); it != g_workspaces.end();) {
    if (it->first.second != stream) {
      ++it;
      continue;
    }
    cudaSetDevice(it->first.first);
    cudaFree(it->second);  // waits for the device, so for any product still using it
    it = g_workspaces.erase(it);
  }
  cudaSetDevice(current);
}

void matmul_release() {
  std::lock_guard<std::mutex> lock(g_mutex);
  int current = 0;
  cudaGetDevice(&current);
  for (auto& [key, w] : g_workspaces) {
    cudaSetDevice(key.first);
    cudaFree(w);
  }
  for (auto& [device, h] : g_handles) {
    cudaSetDevice(device);
    if (h) cublasLtDestroy(h);
  }
  cudaSetDevice(current);
  g_workspaces.clear();
  g_handles.clear();
  g_algos.clear();
}

}  // namespace cuda
}  // namespace xlir
