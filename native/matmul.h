// Matrix products: the one place where the engine's FLOPs go.
// Design: every product in the engine is a call of gemm() (row-major, leading dimensions, optional
// transposes, optional batch over strided matrices). The fast path is oneDNN (fp32, or bf16 inputs
// with fp32 accumulation and fp32 output); the reference path is a plain triple loop accumulating
// in double, which the tests compare the fast path against. Which path runs is a process-wide switch.
#pragma once
#include <cstdint>

namespace xlir {

enum class Precision { FP32, BF16 };
enum class GemmPath { Reference, OneDNN };

void set_gemm_path(GemmPath p);
GemmPath gemm_path();

// C[b] = alpha * op(A[b]) * op(B[b]) + beta * C[b], for b < batch, beta in {0, 1}.
// op(A) is [M, K]: A is stored [M, K] (lda >= K) or, if transA, [K, M] (lda >= M).
// op(B) is [K, N]: B is stored [K, N] (ldb >= N) or, if transB, [N, K] (ldb >= K).
// C is [M, N] with ldc >= N. Strides are in elements between consecutive batch matrices.
struct Gemm {
  bool transA = false, transB = false;
  int64_t M = 0, N = 0, K = 0;
  int64_t lda = 0, ldb = 0, ldc = 0;
  float alpha = 1.f, beta = 0.f;
  int64_t batch = 1, strideA = 0, strideB = 0, strideC = 0;
};

void gemm(const Gemm& g, const float* A, const float* B, float* C, Precision p = Precision::FP32);

// A bf16 product over operands that are already bf16 (same layout and strides as the fp32 ones
// would have). gemm() in bf16 converts both operands on every call; a caller that uses the same
// operand in several products (a weight in forward and backward, dY in dX and dW, q/k/v in the
// attention products) converts it once with to_bf16() and passes it here. The result is exactly
// what gemm(..., Precision::BF16) gives on the fp32 originals.
void gemm_bf16(const Gemm& g, const uint16_t* A, const uint16_t* B, float* C);
// Mixed: A converted on the call, B already bf16 (or the reverse).
void gemm_bf16(const Gemm& g, const float* A, const uint16_t* B, float* C);
void gemm_bf16(const Gemm& g, const uint16_t* A, const float* B, float* C);

// dst[i] = bf16(src[i]) for i < n, round to nearest even (vectorised, parallel for large n).
void to_bf16(const float* src, uint16_t* dst, int64_t n);
// The same on the calling thread only: for rows converted inside an OpenMP loop.
void to_bf16_serial(const float* src, uint16_t* dst, int64_t n);

// Convenience for the linear layers: Y[M,N] (+)= X[M,K] * W[N,K]^T (weights stored as torch does).
void linear_gemm(const float* X, const float* W, float* Y, int64_t M, int64_t N, int64_t K, float beta,
                 Precision p);

void gemm_reference(const Gemm& g, const float* A, const float* B, float* C);

// The instruction set the engine was compiled for (reported by info()).
const char* build_isa();

// Round-to-nearest-even fp32 -> bf16 and back (what the hardware conversion instructions do).
uint16_t f32_to_bf16(float x);
float bf16_to_f32(uint16_t h);

}  // namespace xlir
