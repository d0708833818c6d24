// Element-wise ops: bias add and its gradient, GELU (erf form, as BERT uses), tanh, dropout.
// Dropout masks are a pure function of (site key, token key, feature): nothing is stored, and a
// replayed forward (gradient caching) or a sub-batch of a batch draws exactly the same mask.
#pragma once
#include <cstdint>

namespace xlir {

// y[N, C] += bias[C] per row.
void bias_add(float* y, const float* bias, int64_t N, int64_t C);
// dbias[C] += column sums of dy[N, C].
void bias_backward(float* dbias, const float* dy, int64_t N, int64_t C);

void gelu_forward(float* y, const float* x, int64_t n);
// Fused epilogues of the linear layers: one pass over the product instead of two or three, the
// same operations in the same order as the separate ops (so equal bit for bit; op_tests checks).
// h[N, C] += bias; y = gelu(h) (y may be h itself when h is not needed afterwards).
void bias_gelu_forward(float* h, const float* bias, float* y, int64_t N, int64_t C);
// The same with y written in bf16 (h keeps fp32: backward needs it).
void bias_gelu_forward_bf16(float* h, const float* bias, uint16_t* y, int64_t N, int64_t C);
// y = bf16(gelu(x)) in one pass: in the bf16 path the GELU output is only a product operand, so
// its fp32 form is never written (equal bit for bit to gelu_forward followed by to_bf16).
void gelu_forward_bf16(uint16_t* y, const float* x, int64_t n);
// dx = dy * gelu'(x) (written with =; dx may alias dy).
void gelu_backward(float* dx, const float* dy, const float* x, int64_t n);
// The same through libm in double: the reference the vectorised versions are checked against.
void gelu_forward_reference(float* y, const float* x, int64_t n);
void gelu_backward_reference(float* dx, const float* dy, const float* x, int64_t n);

void tanh_forward(float* y, const float* x, int64_t n);
// dx = dy * (1 - y^2) given the output y (dx may alias dy).
void tanh_backward(float* dx, const float* dy, const float* y, int64_t n);

// Keep test for element `feature` of a row; row_key already mixes the site key with the row's key.
inline bool dropout_keep(uint64_t row_key, uint64_t feature, float p);
// y[N, C] = x * keep / (1 - p) where row r has key row_keys[r]. In place allowed. p == 0: copy.
void dropout_rows(float* y, const float* x, int64_t N, int64_t C, float p, uint64_t site, const uint64_t* row_keys);
// y = dropout_rows(y + bias) + res: a linear layer's bias, its output dropout and the residual
// connection in one pass (bias_add, dropout_rows, then the sum, in that order).
void bias_dropout_residual(float* y, const float* bias, const float* res, int64_t N, int64_t C, float p, uint64_t site,
                           const uint64_t* row_keys);

}  // namespace xlir

#include "common.h"
namespace xlir {
inline bool dropout_keep(uint64_t row_key, uint64_t feature, float p) { return uniform01(row_key, feature) >= p; }
}  // namespace xlir
