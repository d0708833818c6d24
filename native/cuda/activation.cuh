// Element-wise ops on the GPU, forward beside backward, as the CPU activation.h: bias + GELU (erf
// form, as BERT and XLM-R use; cuBLASLt's GELU epilogue is the tanh form, see matmul.cuh), the bias
// gradient, tanh (BERT pooler), dropout and fp32 -> bf16 conversion.
// Design: GELU's input (x + bias) is saved by the forward and the derivative recomputed from it;
// bias gradients are deterministic column sums (64-row chunks, then a fixed-order double sum of the
// chunks) accumulated with +=; activation gradients are written with =. Dropout draws its mask from
// the same counter-based hash as the CPU (common.h) with the same (site, row key, column) inputs,
// so a GPU mask equals the CPU mask bit for bit and nothing is stored.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace xlir {
namespace cuda {

// pre = x + bias (bias may be null; pre may alias x, or be null when bias is null), y = gelu(pre),
// y16 = bf16(y). Shapes [N, C], bias [C]. y or y16 may be null (not both): a bf16 product that only
// reads the bf16 copy need not have the fp32 one written ([tokens, 3072] floats per layer).
void bias_gelu_forward(float* pre, float* y, __nv_bfloat16* y16, const float* x, const float* bias, int64_t N, int64_t C,
                       cudaStream_t stream);
// dx = dy * gelu'(pre) (dx may alias dy), dx16 = bf16(dx); dbias += column sums of dx when dbias is
// not null. dx or dx16 may be null (not both): bf16 mode needs only the copy (and the sums). One
// pass: a thread per column of a 64-row chunk writes dx and dx16 and keeps the chunk's column sum
// (the order bias_backward sums in, so the same bits).
void bias_gelu_backward(float* dx, __nv_bfloat16* dx16, float* dbias, const float* dy, const float* pre, int64_t N,
                        int64_t C, float* scratch, cudaStream_t stream);

// Scratch (floats) of bias_backward and bias_gelu_backward for N rows of C.
int64_t bias_backward_scratch_floats(int64_t N, int64_t C);
// dbias[C] += column sums of dy[N, C].
void bias_backward(float* dbias, const float* dy, int64_t N, int64_t C, float* scratch, cudaStream_t stream);
// dbias[C] += sum over k of partial[k][C], each column in k order in double: the last step of the
// column sums above, for kernels that leave their own partial sums (attention_tc.cuh's bias
// gradient).
void column_reduce(float* dbias, const float* partial, int64_t parts, int64_t C, cudaStream_t stream);

void tanh_forward(float* y, const float* x, int64_t n, cudaStream_t stream);
// dx = dy * (1 - y^2) (dx may alias dy).
void tanh_backward(float* dx, const float* dy, const float* y, int64_t n, cudaStream_t stream);

// y[N, C] = x * keep / (1 - p), row r keyed by row_keys[r] (device array), as the CPU dropout_rows.
// In place allowed; p == 0 copies. The backward is the same call on the gradient.
void dropout_rows(float* y, const float* x, int64_t N, int64_t C, float p, uint64_t site, const uint64_t* row_keys,
                  cudaStream_t stream);

// dst[i] = bf16(src[i]), round to nearest even (as the CPU's f32_to_bf16).
void to_bf16(__nv_bfloat16* dst, const float* src, int64_t n, cudaStream_t stream);

}  // namespace cuda
}  // namespace xlir
