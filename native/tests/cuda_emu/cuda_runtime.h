// CUDA emulation on the CPU (native/tests/cuda_emu/README.md): the subset of the CUDA runtime and
// device language that native/cuda/*.cu and native/tests/cuda_tests.cu use, so that the kernels'
// source runs, unchanged but for the launch syntax (launch.py rewrites `k<<<g, b, s, st>>>(args)`
// into `emu_launch(k, "k", g, b, s, st, args)`), as plain C++ against the CPU reference.
//
// Execution model (emu.cc): a kernel launch runs synchronously. Blocks are spread over a few worker
// OS threads; inside a block every CUDA thread is a fiber (its own stack, switched in user space)
// and all fibers of a block run on one worker, one at a time, each until it reaches a barrier
// (__syncthreads, __syncwarp, a shuffle or a ballot) or returns. Hence:
//  - static `__shared__` arrays are `static thread_local`: one copy per worker thread, and so one
//    per block (a worker runs one block at a time), filled with 0xff bytes at each block's start; `extern __shared__` (dynamic shared memory)
//    is rewritten by launch.py into a pointer to the block's arena, sized by the launch;
//  - threadIdx / blockIdx / blockDim / gridDim are read from the running fiber and block;
//  - a shuffle writes the lane's value into the warp's exchange slots, waits for the warp and
//    reads the source lane's slot (two sets of slots, used alternately: see Block::xchg).
// Deliberate strictness, to find bugs a GPU would show only sometimes: cudaMalloc memory and the
// dynamic shared memory of every block start filled with 0xff bytes (NaN as floats, -1 as ints);
// a kernel argument that is a non-null pointer outside every cudaMalloc allocation is an error;
// launches with too many threads, a grid beyond the limits or more dynamic shared memory than the
// kernel was allowed (48 KiB unless cudaFuncSetAttribute raised it) fail as on the device; a
// barrier that can never complete (a deadlock) aborts with the kernel's name.
// What it cannot show: timing, races unless built with ThreadSanitizer (fibers switch only at
// barriers, so a missing __syncthreads between a write and another thread's read is often
// invisible otherwise), the GPU's memory model, real WMMA fragment layouts (mma.h), cuBLASLt's
// algorithms (cublasLt.h).
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

#include "library_types.h"

#ifndef XLIR_CUDA_EMU
#define XLIR_CUDA_EMU 1
#endif
// Fibers switch with a few instructions of assembly on x86-64 (emu.cc), with ucontext elsewhere or
// when XLIR_CUDA_EMU_UCONTEXT is defined (to test that path).
#if defined(__x86_64__) && !defined(XLIR_CUDA_EMU_UCONTEXT)
#define XLIR_EMU_FAST_SWITCH 1
#else
#define XLIR_EMU_FAST_SWITCH 0
#endif
// XLIR_CUDA_EMU_TSAN (cmake -DXLIR_CUDA_EMU_TSAN=ON): the kernels are compiled with ThreadSanitizer
// and every CUDA thread is a TSan fiber; __syncthreads and __syncwarp are its only synchronisation
// (emu.cc: shuffles and the waits in WMMA calls order no memory), so any two accesses of a block's
// threads to one address, one a write, with no barrier between them are reported as a data race,
// whatever order the fibers ran in.
#ifndef XLIR_CUDA_EMU_TSAN
#define XLIR_CUDA_EMU_TSAN 0
#endif
#if XLIR_CUDA_EMU_TSAN
#include <sanitizer/tsan_interface.h>
#define EMU_TSAN_ACQUIRE(p) __tsan_acquire(const_cast<void*>(static_cast<const volatile void*>(p)))
#define EMU_TSAN_RELEASE(p) __tsan_release(const_cast<void*>(static_cast<const volatile void*>(p)))
#define EMU_NO_TSAN __attribute__((no_sanitize_thread))
#else
#define EMU_NO_TSAN
#define EMU_TSAN_ACQUIRE(p) ((void)0)
#define EMU_TSAN_RELEASE(p) ((void)0)
#endif

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __shared__ static thread_local
#define __constant__
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)

#define CUDART_VERSION 13000

struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
  constexpr dim3(uint3 u) : x(u.x), y(u.y), z(u.z) {}
};

// ---- errors -------------------------------------------------------------------------------------
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInsufficientDriver = 35,
  cudaErrorInvalidDevice = 101,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorLaunchFailure = 719,
  cudaErrorIllegalAddress = 700,
  cudaErrorLaunchOutOfResources = 701,
};
typedef cudaError_t cudaError;
const char* cudaGetErrorName(cudaError_t e);
const char* cudaGetErrorString(cudaError_t e);
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();

// ---- devices ------------------------------------------------------------------------------------
struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  size_t sharedMemPerBlock;
  size_t sharedMemPerBlockOptin;
  int major, minor;
  int multiProcessorCount;
  int maxThreadsPerBlock;
  int warpSize;
  int maxGridSize[3];
  int maxThreadsDim[3];
  int clockRate;
  int memoryClockRate;
  int memoryBusWidth;
  int l2CacheSize;
};
enum cudaDeviceAttr {
  cudaDevAttrMaxThreadsPerBlock = 1,
  cudaDevAttrMaxSharedMemoryPerBlock = 8,
  cudaDevAttrMultiProcessorCount = 16,
  cudaDevAttrComputeCapabilityMajor = 75,
  cudaDevAttrComputeCapabilityMinor = 76,
  cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
};
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };

cudaError_t cudaRuntimeGetVersion(int* v);
cudaError_t cudaDriverGetVersion(int* v);
cudaError_t cudaGetDeviceCount(int* n);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int device);
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int device);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaDeviceReset();
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes);

// ---- memory -------------------------------------------------------------------------------------
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4
};
cudaError_t cudaMalloc(void** p, size_t bytes);
template <typename T>
cudaError_t cudaMalloc(T** p, size_t bytes) {
  return cudaMalloc(reinterpret_cast<void**>(p), bytes);
}
cudaError_t cudaFree(void* p);
cudaError_t cudaMallocHost(void** p, size_t bytes);
cudaError_t cudaFreeHost(void* p);

// ---- streams and events: work runs synchronously at the call, so these only check arguments ---
struct CUstream_st;
typedef CUstream_st* cudaStream_t;
struct CUevent_st;
typedef CUevent_st* cudaEvent_t;
const unsigned cudaStreamDefault = 0, cudaStreamNonBlocking = 1;
cudaError_t cudaStreamCreate(cudaStream_t* s);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaEventCreate(cudaEvent_t* e);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = nullptr);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b);
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags = 0);

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s = nullptr);
cudaError_t cudaMemset(void* p, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t s = nullptr);
cudaError_t cudaMemset2DAsync(void* p, size_t pitch, int value, size_t width, size_t height, cudaStream_t s = nullptr);

// ---- the emulator proper (emu.cc) ---------------------------------------------------------------
namespace emu {

struct Block;
struct Fiber {
  void* sp = nullptr;       // saved stack pointer while switched out
  char* stack = nullptr;    // from the worker's pool; null until started
  uint3 tid{0, 0, 0};
  unsigned linear = 0;      // threadIdx as one number; lane = linear % 32
  int state = 0;            // 0 not started, 1 runnable, 2 waiting, 3 done
  const uint32_t* wait_gen = nullptr;
  uint32_t wait_val = 0;
  unsigned parity = 0, tile_parity = 0;  // which half of the warp's exchange slots / WMMA tiles is next
  void* tsan = nullptr;     // its ThreadSanitizer fiber (XLIR_CUDA_EMU_TSAN), made once, reused by later blocks
#if !XLIR_EMU_FAST_SWITCH
  void* uctx = nullptr;
#endif
};

struct Barrier {
  uint32_t gen = 0;
  int arrived = 0, expected = 0;
  // ThreadSanitizer's synchronisation objects (only their addresses matter): arrivals at
  // generation g release into sync[g % 2] and leave it acquiring from there. Two, because the last
  // thread to arrive runs on and may arrive at generation g + 1 before the waiters of g acquire;
  // g + 2 cannot begin before they have.
  char sync[2] = {0, 0};
};

struct Block {
  uint3 idx{0, 0, 0};
  dim3 dim, grid;
  const char* kernel = "";
  unsigned char* smem = nullptr;  // dynamic shared memory
  size_t smem_bytes = 0;
  Fiber* fibers = nullptr;
  unsigned nthreads = 0;
  const unsigned* order = nullptr;     // threads in the order they run between barriers
  const unsigned* position = nullptr;  // inverse of order
  Barrier block_bar;
  Barrier* warp_bar = nullptr;
  unsigned nwarps = 0;
  // Shuffle and ballot exchange: two sets of 32 slots per warp, used alternately, so one barrier
  // per exchange suffices (a lane can only come back to a set after every lane of its warp has
  // passed the next exchange's barrier, and so has read this one).
  uint64_t* xchg = nullptr;
  float* tiles = nullptr;  // WMMA: two 16x16 tiles per warp, used alternately (mma.h)
  void (*entry)(const void*) = nullptr;
  const void* args = nullptr;
  bool trapped = false;
};

extern thread_local Fiber* cur;
extern thread_local Block* blk;
extern thread_local uint64_t block_epoch;  // counts the blocks this worker has run

// Static shared memory starts as garbage on the device: launch.py follows each `__shared__`
// declaration with EMU_POISON_SHARED, which fills the variable with 0xff bytes (NaN floats, -1
// ints; bools true) when the first thread of a block gets there (before any thread of the block
// can have written it: writes come after the declaration).
template <typename T>
void poison(T& x) {
  using E = std::remove_all_extents_t<T>;
  std::memset(static_cast<void*>(&x), std::is_same<E, bool>::value ? 1 : 0xff, sizeof(T));
}

void sync_block();          // __syncthreads
void sync_warp(unsigned mask);  // __syncwarp
void warp_wait();           // the warp waits for all its lanes, with no memory ordering (WMMA calls)
[[noreturn]] void trap();
void fail(const char* fmt, ...);  // an emulator-detected error: printed, counted, returned as a launch error
bool is_device_pointer(const void* p);

// Runs grid x block threads of entry(args); returns the launch error, if any.
cudaError_t launch(const char* name, const void* key, dim3 grid, dim3 block, size_t smem, void (*entry)(const void*),
                   const void* args);
int max_dynamic_smem(const void* key);
// launch.py puts `static const bool ... = ::emu::register_bound("kernel", bound);` before every
// kernel, with its __launch_bounds__ value: ptxas fits the kernel's registers to at most that many
// threads per block and the GPU refuses a bigger block, so launch() does too.
bool register_bound(const char* kernel, long long max_threads);
// cuBLASLt (cublasLt.h): a workspace serves the first stream that uses it until it is freed or that
// stream destroyed; a product on another stream meanwhile is reported (they may run concurrently on
// the GPU, and sharing a workspace between concurrent products corrupts results).
bool use_workspace(void* workspace, size_t bytes, cudaStream_t stream);

inline unsigned lane() { return cur->linear & 31u; }
inline void* dynamic_smem() { return blk->smem; }
inline unsigned warp() { return cur->linear >> 5; }

uint64_t shfl_bits(uint64_t bits, int src, int width, int mode);  // emu.cc; mode: 0 idx, 1 xor, 2 down, 3 up
template <typename T>
T shfl_exchange(T v, int src, int width, int mode) {
  static_assert(sizeof(T) <= 8, "shuffle of a type wider than 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  bits = shfl_bits(bits, src, width, mode);
  T r;
  std::memcpy(&r, &bits, sizeof(T));
  return r;
}

template <typename T>
bool pointer_ok(const T&) {
  return true;
}
template <typename T>
bool pointer_ok(T* p) {
  return p == nullptr || is_device_pointer(p);
}

}  // namespace emu

// Under ThreadSanitizer the first thread's fill is released to the threads that pass after it (all
// of them before their first access: the declaration comes first), so that the fill itself is not
// reported as racing with their writes.
#define EMU_POISON_SHARED(x)                              \
  do {                                                    \
    static thread_local uint64_t emu_epoch_ = 0;          \
    EMU_TSAN_ACQUIRE(&emu_epoch_);                        \
    if (emu_epoch_ != ::emu::block_epoch) {               \
      emu_epoch_ = ::emu::block_epoch;                    \
      ::emu::poison(x);                                   \
      EMU_TSAN_RELEASE(&emu_epoch_);                      \
    }                                                     \
  } while (0)

#define threadIdx (::emu::cur->tid)
#define blockIdx (::emu::blk->idx)
#define blockDim (::emu::blk->dim)
#define gridDim (::emu::blk->grid)
constexpr int warpSize = 32;

inline void __syncthreads() { emu::sync_block(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { emu::sync_warp(mask); }
[[noreturn]] inline void __trap() { emu::trap(); }
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() {}

template <typename T>
T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
  (void)mask;
  return emu::shfl_exchange(v, src, width, 0);
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T v, int m, int width = 32) {
  (void)mask;
  return emu::shfl_exchange(v, m, width, 1);
}
template <typename T>
T __shfl_down_sync(unsigned mask, T v, unsigned d, int width = 32) {
  (void)mask;
  return emu::shfl_exchange(v, int(d), width, 2);
}
template <typename T>
T __shfl_up_sync(unsigned mask, T v, unsigned d, int width = 32) {
  (void)mask;
  return emu::shfl_exchange(v, int(d), width, 3);
}
unsigned __ballot_sync(unsigned mask, int predicate);
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(unsigned(x)); }

// Atomics: blocks run on several worker threads, so global-memory atomics must be real ones.
template <typename T>
T atomicAdd(T* p, T v) {
  if constexpr (std::is_floating_point<T>::value) {
    T old;
    __atomic_load(p, &old, __ATOMIC_RELAXED);
    for (;;) {
      T want = old + v;
      if (__atomic_compare_exchange(p, &old, &want, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) return old;
    }
  } else {
    return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
  }
}
template <typename T>
T atomicMin(T* p, T v) {
  T old = __atomic_load_n(p, __ATOMIC_RELAXED);
  while (v < old && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {
  }
  return old;
}
template <typename T>
T atomicMax(T* p, T v) {
  T old = __atomic_load_n(p, __ATOMIC_RELAXED);
  while (v > old && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {
  }
  return old;
}
template <typename T>
T atomicExch(T* p, T v) {
  return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST);
}
template <typename T>
T atomicCAS(T* p, T expected, T desired) {
  __atomic_compare_exchange_n(p, &expected, desired, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  return expected;
}

// Bit casts and device math that host libm lacks.
inline unsigned __float_as_uint(float x) {
  unsigned u;
  std::memcpy(&u, &x, 4);
  return u;
}
inline int __float_as_int(float x) {
  int u;
  std::memcpy(&u, &x, 4);
  return u;
}
inline float __uint_as_float(unsigned u) {
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}
inline float __int_as_float(int u) {
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}
inline float rsqrtf(float x) { return 1.f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
using std::isfinite;
using std::isinf;
using std::isnan;

// CUDA's integer and float min / max overloads.
#define XLIR_EMU_MINMAX(T)                 \
  inline T min(T a, T b) { return b < a ? b : a; } \
  inline T max(T a, T b) { return a < b ? b : a; }
XLIR_EMU_MINMAX(int)
XLIR_EMU_MINMAX(unsigned)
XLIR_EMU_MINMAX(long)
XLIR_EMU_MINMAX(unsigned long)
XLIR_EMU_MINMAX(long long)
XLIR_EMU_MINMAX(unsigned long long)
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }
#undef XLIR_EMU_MINMAX

// Errors the emulator found (misuse of CUDA: bad launches, host pointers, deadlocks, traps, WMMA
// alignment): a test program can report it as a check of its own.
int emu_fail_count();
// Reports ThreadSanitizer printed so far (each also counted by emu_fail_count), or -1 when the
// emulation is not built with it (XLIR_CUDA_EMU_TSAN).
int emu_race_reports();

// ---- launches -----------------------------------------------------------------------------------
cudaError_t emu_set_max_dynamic_smem(const void* key, int value);
template <typename K>
cudaError_t cudaFuncSetAttribute(K* kernel, cudaFuncAttribute attr, int value) {
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) return cudaErrorInvalidValue;
  return emu_set_max_dynamic_smem(reinterpret_cast<const void*>(kernel), value);
}

namespace emu {
inline dim3 to_dim3(dim3 d) { return d; }
template <typename I, typename = std::enable_if_t<std::is_integral<I>::value>>
dim3 to_dim3(I n) {
  return dim3(unsigned(n));
}
template <typename T>
T* to_stream(T* s) {
  return s;
}
inline cudaStream_t to_stream(std::nullptr_t) { return nullptr; }
inline cudaStream_t to_stream(int) { return nullptr; }
void record_launch_error(cudaError_t e);
}  // namespace emu

// What `kernel<<<grid, block, smem, stream>>>(args...)` becomes (launch.py). The arguments are
// converted to the kernel's parameter types once, as the runtime copies them into the launch's
// parameter buffer; every thread gets its own copy.
template <typename... P, typename G, typename B, typename... A>
void emu_launch(void (*kernel)(P...), const char* name, G grid, B block, size_t smem, cudaStream_t stream,
                A&&... args) {
  static_assert(sizeof...(P) == sizeof...(A), "kernel launched with the wrong number of arguments");
  (void)stream;
  using Tuple = std::tuple<std::decay_t<P>...>;
  Tuple params(static_cast<std::decay_t<P>>(std::forward<A>(args))...);
  bool ok = true;
  int i = 0;
  std::apply([&](const auto&... p) { ((ok = emu::pointer_ok(p) ? ok : (emu::fail("kernel %s: argument %d is a non-null "
                                                                                  "pointer outside every cudaMalloc "
                                                                                  "allocation", name, i), false), i++), ...); },
             params);
  if (!ok) {
    emu::record_launch_error(cudaErrorIllegalAddress);
    return;
  }
  struct Call {
    void (*k)(P...);
    const Tuple* params;
  } call{kernel, &params};
  auto entry = [](const void* c) {
    const Call* cl = static_cast<const Call*>(c);
    Tuple copy(*cl->params);
    std::apply(cl->k, copy);
  };
  const cudaError_t e = emu::launch(name, reinterpret_cast<const void*>(kernel), emu::to_dim3(grid), emu::to_dim3(block),
                                    smem, +entry, &call);
  if (e != cudaSuccess) emu::record_launch_error(e);
}
