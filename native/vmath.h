// Vectorisable exp and erf for the element-wise passes (GELU, softmax). glibc's expf/erff are scalar
// calls that the compiler cannot vectorise, and in a bf16 training step they were the largest cost
// outside the matrix products (erff alone ~5% of the step). These are branch-free polynomial forms
// over plain float arithmetic, so `#pragma omp simd` loops become AVX-512 code (with GCC only
// under -fno-trapping-math, which CMakeLists.txt sets: otherwise the clamps and floorf keep every
// loop that calls them scalar).
// Accuracy (checked against double-precision std::exp / std::erf over [-20, 20] in op_tests.cc):
//  - exp_approx: Cephes' expf polynomial (degree 6 on [-ln2/2, ln2/2]) with the exponent built in the
//    float's bits: relative error < 2e-7 (about 2 ulp) for x in [-87, 88]; underflows to 0 below.
//  - erf_approx: Abramowitz & Stegun 7.1.26 (1.5e-7 in exact arithmetic); evaluated in fp32 the
//    absolute error is < 6e-7 (measured 4.6e-7, where 1 - poly * exp(-x^2) cancels, |x| ~ 0.5-1).
//    GELU's output then differs from the erf form by < 1e-6 * max(1, |x|) (measured 2.1e-7), far
//    inside the parity tests against transformers (hidden states within 1e-5).
#pragma once
#include <cstdint>
#include <cstring>

namespace xlir {

#pragma omp declare simd
inline float exp_approx(float x) {
  x = x < -87.33654f ? -87.33654f : (x > 88.72283f ? 88.72283f : x);
  const float n = __builtin_floorf(x * 1.44269504088896341f + 0.5f);
  // x - n ln2 in two parts (Cody-Waite) so the reduction is exact to float precision.
  const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.f;
  const int32_t bits = (int32_t(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

#pragma omp declare simd
inline float erf_approx(float x) {
  const float a = x < 0.f ? -x : x;
  const float t = 1.f / (1.f + 0.3275911f * a);
  const float poly = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
  const float y = 1.f - poly * exp_approx(-a * a);
  return x < 0.f ? -y : y;
}

}  // namespace xlir
