// CUDA emulation: nvcuda::wmma for 16x16x16 bf16 tiles with fp32 accumulators, the shapes that
// native/cuda/attention_tc.cu uses. The real fragment layout (which lane holds which elements) is
// unspecified by CUDA, so here every lane holds the whole tile (num_elements = 256, x[r * 16 + c]
// is row r, column c of the logical matrix); code that only applies the same operation to every
// element, as CUDA allows, behaves the same. Loads, stores and mma_sync are warp-collective, as
// their _sync names say. mma_sync is computed once
// per warp (lane 0, in float, k in increasing order) and copied to every lane, which is exact as
// long as every lane passes the same fragments, which a correct kernel does. Barriers: loads wait
// for the warp on entry (other lanes' shared-memory writes must have happened), stores on entry
// and exit (lane 0 writes the tile that the others may read next), mma_sync once, between lane 0's
// product and the copies.
// Checked as the CUDA Programming Guide requires: pointers 256-bit (32-byte) aligned; ldm a
// multiple of 8 elements for bf16 and of 4 for float.
#pragma once
#include <cstdint>
#include <type_traits>

#include "cuda_bf16.h"
#include "cuda_runtime.h"

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
  static_assert(M == 16 && N == 16 && K == 16, "emulated WMMA supports 16x16x16 only");
  static constexpr int num_elements = 256;
  float x[256];
};

namespace detail {
inline void check(const void* p, unsigned ldm, unsigned multiple, const char* what) {
  if (reinterpret_cast<uintptr_t>(p) % 32 != 0)
    emu::fail("wmma::%s: pointer %p is not 256-bit aligned", what, p);
  if (ldm % multiple != 0) emu::fail("wmma::%s: ldm %u is not a multiple of %u", what, ldm, multiple);
}
float* warp_tile();  // emu.cc: 256 floats per warp of the running block
}  // namespace detail

template <typename Use, typename Layout>
void load_matrix_sync(fragment<Use, 16, 16, 16, __nv_bfloat16, Layout>& f, const __nv_bfloat16* p, unsigned ldm) {
  static_assert(!std::is_same<Use, accumulator>::value, "bf16 accumulator");
  __syncwarp();
  detail::check(p, ldm, 8, "load_matrix_sync");
  constexpr bool colmaj = std::is_same<Layout, col_major>::value;
  for (int r = 0; r < 16; r++)
    for (int c = 0; c < 16; c++) f.x[r * 16 + c] = __bfloat162float(colmaj ? p[c * ldm + r] : p[r * ldm + c]);
}
inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float>& f, const float* p, unsigned ldm, layout_t l) {
  __syncwarp();
  detail::check(p, ldm, 4, "load_matrix_sync");
  for (int r = 0; r < 16; r++)
    for (int c = 0; c < 16; c++) f.x[r * 16 + c] = l == mem_row_major ? p[r * ldm + c] : p[c * ldm + r];
}
inline void store_matrix_sync(float* p, const fragment<accumulator, 16, 16, 16, float>& f, unsigned ldm, layout_t l) {
  __syncwarp();
  detail::check(p, ldm, 4, "store_matrix_sync");
  if (emu::lane() == 0)
    for (int r = 0; r < 16; r++)
      for (int c = 0; c < 16; c++) (l == mem_row_major ? p[r * ldm + c] : p[c * ldm + r]) = f.x[r * 16 + c];
  __syncwarp();
}
template <typename F>
void fill_fragment(F& f, float v) {
  for (auto& e : f.x) e = v;
}
template <typename A, typename B>
void mma_sync(fragment<accumulator, 16, 16, 16, float>& d, const A& a, const B& b,
              const fragment<accumulator, 16, 16, 16, float>& c) {
  float* tile = detail::warp_tile();  // one of two per warp, alternately: no barrier needed on entry
  if (emu::lane() == 0)
    for (int m = 0; m < 16; m++)
      for (int n = 0; n < 16; n++) {
        float s = c.x[m * 16 + n];
        for (int k = 0; k < 16; k++) s += a.x[m * 16 + k] * b.x[k * 16 + n];
        tile[m * 16 + n] = s;
      }
  __syncwarp();
  for (int i = 0; i < 256; i++) d.x[i] = tile[i];
}

}  // namespace wmma
}  // namespace nvcuda
