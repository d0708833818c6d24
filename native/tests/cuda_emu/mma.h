// CUDA emulation: nvcuda::wmma for 16x16x16 bf16 tiles with fp32 accumulators, the shapes that
// native/cuda/attention_tc.cu uses. The real fragment layout (which lane holds which elements) is
// unspecified by CUDA, so here every lane holds the whole tile (num_elements = 256, x[r * 16 + c]
// is row r, column c of the logical matrix); code that only applies the same operation to every
// element, as CUDA allows, behaves the same. Loads, stores and mma_sync are warp-collective, as
// their _sync names say. Memory is read and written as on the GPU, each lane its own share of the
// tile (here elements i with i % 32 == lane, the same share for loads and stores); a load then
// hands the shares to every lane and mma_sync is computed once per warp (lane 0, in float, k in
// increasing order) and copied to every lane, which is exact as long as every lane passes the
// same fragments, which a correct kernel does. Waits: loads and stores wait for the warp on entry
// (so that, in the emulator's order, other lanes' writes have happened), stores on exit too. None
// of these waits orders memory (emu::warp_wait): CUDA promises that the warp meets there, not that
// one lane's writes are visible to another, so under ThreadSanitizer a kernel must __syncwarp (or
// __syncthreads) between lanes' own writes and a load, or between a store and lanes' own reads.
// A store after a load of the same tile needs nothing: each lane writes what it read.
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
// emu.cc: d = a b + c for one 16x16x16 tile, computed by lane 0, copied to every lane.
void mma_tile(const float* a, const float* b, const float* c, float* d);
// emu.cc: each lane has read its share of x (elements lane, lane + 32, ...); afterwards every lane
// holds all 256 (the exchange stands for the tensor cores' operand paths, not memory).
void share_tile(float* x);
}  // namespace detail

template <typename Use, typename Layout>
void load_matrix_sync(fragment<Use, 16, 16, 16, __nv_bfloat16, Layout>& f, const __nv_bfloat16* p, unsigned ldm) {
  static_assert(!std::is_same<Use, accumulator>::value, "bf16 accumulator");
  emu::warp_wait();
  detail::check(p, ldm, 8, "load_matrix_sync");
  constexpr bool colmaj = std::is_same<Layout, col_major>::value;
  for (unsigned i = emu::lane(); i < 256; i += 32) {
    const unsigned r = i / 16, c = i % 16;
    f.x[i] = __bfloat162float(colmaj ? p[c * ldm + r] : p[r * ldm + c]);
  }
  detail::share_tile(f.x);
}
inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float>& f, const float* p, unsigned ldm, layout_t l) {
  emu::warp_wait();
  detail::check(p, ldm, 4, "load_matrix_sync");
  for (unsigned i = emu::lane(); i < 256; i += 32) {
    const unsigned r = i / 16, c = i % 16;
    f.x[i] = l == mem_row_major ? p[r * ldm + c] : p[c * ldm + r];
  }
  detail::share_tile(f.x);
}
inline void store_matrix_sync(float* p, const fragment<accumulator, 16, 16, 16, float>& f, unsigned ldm, layout_t l) {
  emu::warp_wait();
  detail::check(p, ldm, 4, "store_matrix_sync");
  for (unsigned i = emu::lane(); i < 256; i += 32) {
    const unsigned r = i / 16, c = i % 16;
    (l == mem_row_major ? p[r * ldm + c] : p[c * ldm + r]) = f.x[i];
  }
  emu::warp_wait();
}
template <typename F>
void fill_fragment(F& f, float v) {
  for (auto& e : f.x) e = v;
}
template <typename A, typename B>
void mma_sync(fragment<accumulator, 16, 16, 16, float>& d, const A& a, const B& b,
              const fragment<accumulator, 16, 16, 16, float>& c) {
  detail::mma_tile(a.x, b.x, c.x, d.x);
}

}  // namespace wmma
}  // namespace nvcuda
