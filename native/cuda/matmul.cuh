// Matrix products on the GPU through cuBLASLt, with the same row-major meaning as the CPU gemm
// (native/matmul.h: xlir::Gemm, transposes, leading dimensions, strided batches, beta 0 or 1).
// Design: one readable library call per product. Row-major C = op(A) op(B) is computed as the
// column-major product C^T = op(B)^T op(A)^T, so no data is ever transposed or copied. Types:
//  - F32: fp32 inputs, fp32 accumulation (CUBLAS_COMPUTE_32F, no TF32): the mode for checking
//    against the CPU, bit-for-bit comparable up to summation order;
//  - BF16: bf16 inputs, fp32 accumulation, fp32 or bf16 output (the mixed-precision mode).
// Epilogues: Bias adds bias[N] to every row of C in the same call (linear layers). cuBLASLt's GELU
// epilogue is the tanh approximation, not the erf GELU that BERT and XLM-R use, so the encoder uses
// Bias here and the erf GELU kernel of activation.cuh; BiasGeluTanh exists for models that use the
// tanh form (and so that the GPU tests can check which form cuBLASLt computes).
// Algorithms come from cuBLASLt's heuristic once per (shape, types, alignments, epilogue) and are
// cached; every device gets one handle, and every stream that runs products its own 32 MiB
// workspace (two streams must not share one: matmul.cu).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "../matmul.h"

namespace xlir {
namespace cuda {

enum class DType { F32, BF16 };
enum class Epilogue { None, Bias, BiasGeluTanh };

// C[b] = alpha * op(A[b]) * op(B[b]) + beta * C[b] (+ bias[N] per row), for b < g.batch.
// A and B have type ab, C has type c; with an epilogue, c must be F32, bias is fp32 [N] and batch 1.
// Pointers are device pointers; the call is asynchronous on `stream`.
void gemm(const Gemm& g, const void* A, const void* B, void* C, DType ab, DType c, cudaStream_t stream,
          Epilogue ep = Epilogue::None, const float* bias = nullptr);

// fp32 convenience used by the other kernels' host code (InfoNCE, search).
inline void gemm_f32(const Gemm& g, const float* A, const float* B, float* C, cudaStream_t stream) {
  gemm(g, A, B, C, DType::F32, DType::F32, stream);
}

// Y[M, N] = X[M, K] W[N, K]^T + bias (bias may be null; beta 1 accumulates into Y): a linear layer
// with the weights stored as torch stores them.
void linear(const void* X, const void* W, const float* bias, void* Y, int64_t M, int64_t N, int64_t K, float beta,
            DType ab, DType y, cudaStream_t stream);

// Frees the cuBLASLt workspace of `stream` (on every device); call it before destroying a stream
// that ran products. Waits for the device.
void matmul_forget_stream(cudaStream_t stream);

// Frees the handles, workspaces and cached algorithms of every device (tests; process exit).
void matmul_release();

}  // namespace cuda
}  // namespace xlir
