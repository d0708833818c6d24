// Shared helpers of the CPU engine: errors, the counter-based RNG behind dropout, grow-only buffers.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace xlir {

// Every failure the user can cause becomes an Error with a message naming what was wrong;
// the addon turns it into a JavaScript exception.
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

#define XLIR_CHECK(cond, msg)                 \
  do {                                        \
    if (!(cond)) {                            \
      std::ostringstream xlir_os_;            \
      xlir_os_ << msg;                        \
      throw ::xlir::Error(xlir_os_.str());    \
    }                                         \
  } while (0)

// Counter-based randomness: a value is a pure function of (key, index), so a dropout mask never
// has to be stored and a forward can be recomputed exactly (gradient caching, activation recompute).
inline uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}
inline uint64_t hash_key(uint64_t a, uint64_t b) { return mix64(a ^ mix64(b)); }
// Uniform in [0, 1) with 24 bits, enough for a keep/drop decision.
inline float uniform01(uint64_t key, uint64_t index) {
  return float(mix64(key ^ (index * 0xD6E8FEB86659FD93ULL)) >> 40) * (1.0f / 16777216.0f);
}

// Dropout of the rows of an [N, C] tensor as dropout_rows (activation.h) applies it: element (r, c)
// kept when uniform01(hash_key(site, row_keys[r]), c) >= p, then scaled by 1 / (1 - p); p = 0 is no
// dropout. The device back ends take it where a kernel fuses the dropout (row_keys then lives in
// the device's memory).
struct RowDropout {
  float p = 0.f;
  uint64_t site = 0;
  const uint64_t* row_keys = nullptr;  // a key per row, needed when p > 0
};

// A buffer that only grows: planned once per batch shape, so a steady-state step allocates nothing.
template <typename T>
struct Buffer {
  std::vector<T> v;
  T* ensure(size_t n) {
    if (v.size() < n) v.resize(n);
    return v.data();
  }
  T* data() { return v.data(); }
};

inline std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); i++) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

}  // namespace xlir
