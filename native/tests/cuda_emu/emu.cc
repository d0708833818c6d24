// CUDA emulation on the CPU: the runtime calls and the launch machinery declared in cuda_runtime.h
// (which explains the execution model). One fake device: sm_90, 132 SMs, 80 GiB, 227 KiB of opt-in
// shared memory per block, named so that nobody mistakes a run for a GPU run.
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#if XLIR_CUDA_EMU_TSAN
#include <omp.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdarg>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cuda_runtime.h"
#include "mma.h"

#if !XLIR_EMU_FAST_SWITCH
#include <ucontext.h>
#endif

namespace {

const size_t kTotalMem = size_t(80) << 30;
const int kOptinSmem = 227 * 1024, kDefaultSmem = 48 * 1024;
const char* kDeviceName = "EMULATED CUDA device (CPU emulation, native/tests/cuda_emu; not a GPU)";

thread_local cudaError_t t_last_error = cudaSuccess;  // per host thread, as CUDA's
thread_local int t_device = 0;
std::atomic<int> g_fail_count{0};
std::atomic<int> g_exec_error{0};  // an error inside a kernel: reported by the next synchronising call
std::mutex g_print_mutex;

std::mutex g_mem_mutex;
std::map<uintptr_t, size_t> g_allocs;  // base -> bytes
size_t g_allocated = 0;

std::mutex g_attr_mutex;
std::map<const void*, int> g_max_smem;

cudaError_t take_exec_error() {
  const int e = g_exec_error.exchange(0);
  return cudaError_t(e);
}

bool in_device_range(const void* p, size_t bytes) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  std::lock_guard<std::mutex> lock(g_mem_mutex);
  auto it = g_allocs.upper_bound(a);
  if (it == g_allocs.begin()) return false;
  --it;
  return a >= it->first && a + bytes <= it->first + it->second;
}

}  // namespace

// ---- errors -------------------------------------------------------------------------------------
const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInsufficientDriver: return "cudaErrorInsufficientDriver";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorLaunchOutOfResources: return "cudaErrorLaunchOutOfResources";
  }
  return "cudaErrorUnknown";
}
const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument (emulated)";
    case cudaErrorMemoryAllocation: return "out of memory (emulated)";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument (emulated)";
    case cudaErrorLaunchFailure: return "unspecified launch failure (emulated: see the EMULATOR ERROR line above)";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered (emulated: see the EMULATOR ERROR line)";
    default: return "emulated CUDA error";
  }
}
cudaError_t cudaGetLastError() {
  cudaError_t e = t_last_error;
  t_last_error = cudaSuccess;
  if (e == cudaSuccess) e = take_exec_error();
  return e;
}
cudaError_t cudaPeekAtLastError() { return t_last_error; }

namespace emu {
void fail(const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  g_fail_count++;
  std::lock_guard<std::mutex> lock(g_print_mutex);
  std::printf("# EMULATOR ERROR: %s\n", buf);
  std::fflush(stdout);
}
void record_launch_error(cudaError_t e) {
  if (t_last_error == cudaSuccess) t_last_error = e;
}
bool is_device_pointer(const void* p) { return in_device_range(p, 0); }
}  // namespace emu

int emu_fail_count() { return g_fail_count.load(); }

// Under ThreadSanitizer every report it prints (a data race between two CUDA threads, or between a
// thread and the host) ends with this call, which the runtime declares weak so that a program can
// take it over: each report counts as an emulator error, so the test programs' final check fails.
// Called inside the runtime's reporting, so it only counts and writes with the raw system call.
static std::atomic<int> g_race_reports{0};
#if XLIR_CUDA_EMU_TSAN
extern "C" void __sanitizer_report_error_summary(const char* summary) {
  g_race_reports++;
  g_fail_count++;
  const char prefix[] = "# EMULATOR ERROR: ";
  syscall(SYS_write, 2, prefix, sizeof prefix - 1);
  syscall(SYS_write, 2, summary, std::strlen(summary));
  syscall(SYS_write, 2, "\n", 1);
}
// A report fails the test through its own count (above), so the process's exit status is left to
// the test program: the race probe provokes one on purpose.
extern "C" const char* __tsan_default_options() { return "exitcode=0 suppress_equal_addresses=0"; }
// libgomp's threads synchronise through futexes that ThreadSanitizer does not see, so the CPU
// reference code and the cuBLASLt mock, both OpenMP loops, would look racy: one thread under it.
static const bool g_tsan_one_omp_thread = (omp_set_num_threads(1), true);
#endif
int emu_race_reports() { return XLIR_CUDA_EMU_TSAN ? g_race_reports.load() : -1; }

// ---- devices ------------------------------------------------------------------------------------
cudaError_t cudaRuntimeGetVersion(int* v) {
  *v = CUDART_VERSION;
  return cudaSuccess;
}
cudaError_t cudaDriverGetVersion(int* v) {
  *v = CUDART_VERSION;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceCount(int* n) {
  *n = 1;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int device) {
  if (device != 0) return cudaErrorInvalidDevice;
  std::memset(p, 0, sizeof *p);
  std::snprintf(p->name, sizeof p->name, "%s", kDeviceName);
  p->totalGlobalMem = kTotalMem;
  p->sharedMemPerBlock = size_t(kDefaultSmem);
  p->sharedMemPerBlockOptin = size_t(kOptinSmem);
  p->major = 9, p->minor = 0;
  p->multiProcessorCount = 132;
  p->maxThreadsPerBlock = 1024;
  p->warpSize = 32;
  p->maxGridSize[0] = 2147483647, p->maxGridSize[1] = 65535, p->maxGridSize[2] = 65535;
  p->maxThreadsDim[0] = 1024, p->maxThreadsDim[1] = 1024, p->maxThreadsDim[2] = 64;
  p->clockRate = 1980000, p->memoryClockRate = 2619000, p->memoryBusWidth = 5120, p->l2CacheSize = 50 << 20;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int device) {
  if (device != 0) return cudaErrorInvalidDevice;
  switch (a) {
    case cudaDevAttrMaxThreadsPerBlock: *v = 1024; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *v = kDefaultSmem; break;
    case cudaDevAttrMultiProcessorCount: *v = 132; break;
    case cudaDevAttrComputeCapabilityMajor: *v = 9; break;
    case cudaDevAttrComputeCapabilityMinor: *v = 0; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *v = kOptinSmem; break;
    default: return cudaErrorInvalidValue;
  }
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
  if (device != 0) return t_last_error = cudaErrorInvalidDevice;
  t_device = device;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* device) {
  *device = t_device;
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize() { return take_exec_error(); }
cudaError_t cudaDeviceReset() { return cudaSuccess; }
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  std::lock_guard<std::mutex> lock(g_mem_mutex);
  *total_bytes = kTotalMem;
  *free_bytes = kTotalMem - g_allocated;
  return cudaSuccess;
}

// ---- memory -------------------------------------------------------------------------------------
cudaError_t cudaMalloc(void** p, size_t bytes) {
  *p = nullptr;
  const size_t rounded = (std::max<size_t>(bytes, 1) + 255) / 256 * 256;
  {
    std::lock_guard<std::mutex> lock(g_mem_mutex);
    if (g_allocated + rounded > kTotalMem) return t_last_error = cudaErrorMemoryAllocation;
  }
#if defined(__SANITIZE_ADDRESS__)
  // Exactly `bytes`, so that AddressSanitizer reports any access past the end.
  void* q = nullptr;
  if (posix_memalign(&q, 256, std::max<size_t>(bytes, 1)) != 0) q = nullptr;
  if (!q) return t_last_error = cudaErrorMemoryAllocation;
  std::memset(q, 0xff, std::max<size_t>(bytes, 1));
#else
  void* q = std::aligned_alloc(256, rounded);
  if (!q) return t_last_error = cudaErrorMemoryAllocation;
  std::memset(q, 0xff, rounded);  // cudaMalloc does not clear: 0xff bytes are NaN floats, -1 ints
#endif
  std::lock_guard<std::mutex> lock(g_mem_mutex);
  g_allocs[reinterpret_cast<uintptr_t>(q)] = bytes;
  g_allocated += rounded;
  *p = q;
  return cudaSuccess;
}
// cuBLASLt workspaces and the stream each one serves (emu::use_workspace); an entry ends when its
// allocation is freed or its stream destroyed.
static std::mutex g_ws_mutex;
static std::map<uintptr_t, cudaStream_t> g_workspace_stream;

cudaError_t cudaFree(void* p) {
  if (!p) return cudaSuccess;
  size_t bytes = 0;
  {
    std::lock_guard<std::mutex> lock(g_mem_mutex);
    auto it = g_allocs.find(reinterpret_cast<uintptr_t>(p));
    if (it == g_allocs.end()) {
      emu::fail("cudaFree(%p): not a pointer returned by cudaMalloc", p);
      return t_last_error = cudaErrorInvalidValue;
    }
    bytes = it->second;
    g_allocated -= (std::max<size_t>(it->second, 1) + 255) / 256 * 256;
    g_allocs.erase(it);
  }
  {
    std::lock_guard<std::mutex> lock(g_ws_mutex);
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    const uintptr_t end = a + std::max<size_t>(bytes, 1);
    g_workspace_stream.erase(g_workspace_stream.lower_bound(a), g_workspace_stream.lower_bound(end));
  }
  std::free(p);
  return cudaSuccess;
}

namespace emu {
bool use_workspace(void* workspace, size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return true;
  if (!workspace || !in_device_range(workspace, bytes)) {
    fail("cublasLtMatmul: workspace %p of %zu bytes is not inside one cudaMalloc allocation", workspace, bytes);
    return false;
  }
  std::lock_guard<std::mutex> lock(g_ws_mutex);
  auto [it, added] = g_workspace_stream.emplace(reinterpret_cast<uintptr_t>(workspace), stream);
  if (!added && it->second != stream) {
    fail("cublasLtMatmul: workspace %p used on stream %p but it serves stream %p: products on two streams can run at "
         "the same time and must not share a workspace",
         workspace, static_cast<void*>(stream), static_cast<void*>(it->second));
    return false;
  }
  return true;
}
}  // namespace emu
cudaError_t cudaMallocHost(void** p, size_t bytes) {
  *p = std::malloc(std::max<size_t>(bytes, 1));
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaFreeHost(void* p) {
  std::free(p);
  return cudaSuccess;
}

static cudaError_t check_copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, const char* what) {
  if (bytes == 0) return cudaSuccess;
  const bool dd = in_device_range(dst, bytes), sd = in_device_range(src, bytes);
  bool ok = true;
  switch (kind) {
    case cudaMemcpyHostToDevice: ok = dd && !sd; break;
    case cudaMemcpyDeviceToHost: ok = sd && !dd; break;
    case cudaMemcpyDeviceToDevice: ok = dd && sd; break;
    case cudaMemcpyHostToHost: ok = !dd && !sd; break;
    default: break;
  }
  if (!ok) {
    emu::fail("%s(%p <- %p, %zu bytes, kind %d): a pointer is not where the kind says (device: dst %d, src %d), or the "
              "range runs past its allocation",
              what, dst, src, bytes, int(kind), int(dd), int(sd));
    return t_last_error = cudaErrorInvalidValue;
  }
  return cudaSuccess;
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  const cudaError_t pending = take_exec_error();
  if (pending != cudaSuccess) return pending;
  const cudaError_t e = check_copy(dst, src, bytes, kind, "cudaMemcpy");
  if (e != cudaSuccess) return e;
  if (bytes) std::memmove(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t) {
  const cudaError_t e = check_copy(dst, src, bytes, kind, "cudaMemcpyAsync");
  if (e != cudaSuccess) return e;
  if (bytes) std::memmove(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemset(void* p, int value, size_t bytes) { return cudaMemsetAsync(p, value, bytes, nullptr); }
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t) {
  if (bytes && !in_device_range(p, bytes)) {
    emu::fail("cudaMemset(%p, %zu bytes): not inside one cudaMalloc allocation", p, bytes);
    return t_last_error = cudaErrorInvalidValue;
  }
  if (bytes) std::memset(p, value, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemset2DAsync(void* p, size_t pitch, int value, size_t width, size_t height, cudaStream_t) {
  if (width > pitch) return t_last_error = cudaErrorInvalidValue;
  for (size_t r = 0; r < height; r++) {
    char* row = static_cast<char*>(p) + r * pitch;
    if (width && !in_device_range(row, width)) {
      emu::fail("cudaMemset2DAsync(%p, pitch %zu): row %zu is not inside one cudaMalloc allocation", p, pitch, r);
      return t_last_error = cudaErrorInvalidValue;
    }
    std::memset(row, value, width);
  }
  return cudaSuccess;
}

// ---- streams and events -------------------------------------------------------------------------
struct CUstream_st {
  int magic = 0x57;
};
struct CUevent_st {
  std::chrono::steady_clock::time_point t;
};
cudaError_t cudaStreamCreate(cudaStream_t* s) { return cudaStreamCreateWithFlags(s, 0); }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) {
  *s = new CUstream_st;
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  if (s && s->magic != 0x57) return cudaErrorInvalidValue;
  {
    std::lock_guard<std::mutex> lock(g_ws_mutex);
    for (auto it = g_workspace_stream.begin(); it != g_workspace_stream.end();)
      it = it->second == s ? g_workspace_stream.erase(it) : std::next(it);
  }
  delete s;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) { return take_exec_error(); }
cudaError_t cudaEventCreate(cudaEvent_t* e) {
  *e = new CUevent_st;
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) {
  e->t = std::chrono::steady_clock::now();
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t) { return take_exec_error(); }
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) {
  *ms = std::chrono::duration<float, std::milli>(b->t - a->t).count();
  return cudaSuccess;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned) { return cudaSuccess; }

cudaError_t emu_set_max_dynamic_smem(const void* key, int value) {
  if (value < 0 || value > kOptinSmem) return t_last_error = cudaErrorInvalidValue;
  std::lock_guard<std::mutex> lock(g_attr_mutex);
  g_max_smem[key] = value;
  return cudaSuccess;
}

// ---- fibers -------------------------------------------------------------------------------------
#if XLIR_EMU_FAST_SWITCH
// emu_switch(save, to): saves the callee-saved registers on the current stack, stores the stack
// pointer in *save, and resumes the context whose stack pointer is `to`. A new fiber's stack is laid
// out so that the resume "returns" into emu_fiber_start. MXCSR and the x87 control word are not
// switched: no kernel changes them.
extern "C" void emu_switch(void** save, void* to);
extern "C" void emu_fiber_start();
asm(R"(
.text
.globl emu_switch
.type emu_switch,@function
emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
.size emu_switch,.-emu_switch
.globl emu_fiber_start
.type emu_fiber_start,@function
emu_fiber_start:
  andq $-16, %rsp
  callq *%r12
  ud2
.size emu_fiber_start,.-emu_fiber_start
.section .note.GNU-stack,"",@progbits
.text
)");
#endif

namespace emu {

thread_local Fiber* cur = nullptr;
thread_local Block* blk = nullptr;
thread_local uint64_t block_epoch = 0;

namespace {

const size_t kStackBytes = 256 * 1024;

// XLIR_CUDA_EMU_ORDER: forward (default: thread 0 first), reverse, random (per block, seeded by
// XLIR_CUDA_EMU_SEED), warps or warps-reverse. In the first three every thread runs to its next
// barrier before any thread passes one, so warps move in step from barrier to barrier, and a
// missing __syncthreads between warp A's write and warp B's read stays hidden whenever both sit
// between the same pair of warp-level barriers (a WMMA store, a shuffle). In the warp modes a warp
// runs on through its warp-level barriers until it waits at a __syncthreads (or returns) before
// the next warp runs: warp 0 first (warps), or the last warp first with lanes in reverse order
// (warps-reverse), so one warp reads what the others have not written yet.
int order_mode() {
  const char* e = std::getenv("XLIR_CUDA_EMU_ORDER");
  if (!e || !std::strcmp(e, "forward")) return 0;
  if (!std::strcmp(e, "reverse")) return 1;
  if (!std::strcmp(e, "random")) return 2;
#if XLIR_EMU_FAST_SWITCH  // the warp modes hand over in emu_switch's direct path (arrive)
  if (!std::strcmp(e, "warps")) return 3;
  if (!std::strcmp(e, "warps-reverse")) return 4;
#endif
  std::fprintf(stderr, "cuda emulation: XLIR_CUDA_EMU_ORDER must be forward, reverse, random, warps or "
                       "warps-reverse (the warp orders only where fibers switch directly: x86-64)\n");
  std::exit(2);
}
const int g_order = order_mode();
const bool g_warp_ahead = g_order >= 3;
const uint32_t g_seed = std::getenv("XLIR_CUDA_EMU_SEED") ? uint32_t(std::atoi(std::getenv("XLIR_CUDA_EMU_SEED"))) : 1u;
const int kMaxThreads = 1024;

// Per worker thread: stacks, fibers and the block being run.
struct Worker {
  char* stacks = nullptr;  // kMaxThreads stacks, each with a guard page at its low end
  std::vector<char*> free_stacks;
  std::vector<Fiber> fibers;
  std::vector<Barrier> warp_bars;
  std::vector<uint64_t> xchg;
  std::vector<float> tiles;
  unsigned char* smem = nullptr;
  size_t smem_cap = 0;
  void* sched_sp = nullptr;
  std::vector<unsigned> order, position;
  std::vector<Fiber*> finished;  // threads that returned since the scheduler last looked
  std::vector<char*> used_stacks;  // XLIR_CUDA_EMU_TSAN: stacks of returned threads, reused from the next block
  void* tsan_sched = nullptr;      // the worker's own ThreadSanitizer context (the scheduler runs in it)
  // ThreadSanitizer synchronisation objects: the scheduler releases into block_start after it has
  // prepared a block (shared memory filled), every thread acquires from it when it starts and
  // releases into block_end when it returns, and the scheduler acquires from block_end when the
  // block is done. So a block's threads see what the launching host thread wrote, and a block
  // that runs after another on this worker (reusing its shared memory, stacks and fibers) is
  // ordered after it. Blocks on other workers are not: races between blocks are reported when
  // the two blocks ran on different workers.
  char block_start = 0, block_end = 0;
#if !XLIR_EMU_FAST_SWITCH
  ucontext_t sched_ctx;
#endif
  Worker() {
    stacks = static_cast<char*>(mmap(nullptr, kStackBytes * kMaxThreads, PROT_READ | PROT_WRITE,
                                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
    if (stacks == MAP_FAILED) {
      std::fprintf(stderr, "cuda emulation: cannot map fiber stacks\n");
      std::abort();
    }
    for (int i = kMaxThreads - 1; i >= 0; i--) {
      char* s = stacks + size_t(i) * kStackBytes;
      mprotect(s, 4096, PROT_NONE);
      free_stacks.push_back(s);
    }
  }
  ~Worker() {
    munmap(stacks, kStackBytes * kMaxThreads);
    std::free(smem);
  }
};
thread_local Worker* t_worker = nullptr;
Worker& worker() {
  if (!t_worker) t_worker = new Worker;  // lives as long as its thread (workers are never joined)
  return *t_worker;
}

// ThreadSanitizer is told of every switch just before it happens, without any synchronisation of
// its own (a switch is not a barrier on the GPU): happens-before comes only from the barriers.
inline void tsan_switch(void* to) {
#if XLIR_CUDA_EMU_TSAN
  __tsan_switch_to_fiber(to, __tsan_switch_to_fiber_no_sync);
#else
  (void)to;
#endif
}

void to_scheduler() {
  Worker& w = worker();
  tsan_switch(w.tsan_sched);
#if XLIR_EMU_FAST_SWITCH
  emu_switch(&cur->sp, w.sched_sp);
#else
  swapcontext(static_cast<ucontext_t*>(cur->uctx), &w.sched_ctx);
#endif
}

void release_if_complete(Barrier& b) {
  if (b.arrived > 0 && b.arrived >= b.expected) {
    b.arrived = 0;
    b.gen++;
  }
}

void thread_exit() {
  Fiber* f = cur;
  f->state = 3;
  worker().finished.push_back(f);
  Block& b = *blk;
  Barrier& wb = b.warp_bar[f->linear >> 5];
  // A returned thread counts as arrived at the barriers the others wait at, so what it did is
  // released to them; and to the scheduler at the block's end.
  EMU_TSAN_RELEASE(&b.block_bar.sync[b.block_bar.gen & 1]);
  EMU_TSAN_RELEASE(&wb.sync[wb.gen & 1]);
  EMU_TSAN_RELEASE(&worker().block_end);
  b.block_bar.expected--;
  wb.expected--;
  if ((b.block_bar.arrived > 0 && b.block_bar.arrived >= b.block_bar.expected) ||
      (wb.arrived > 0 && wb.arrived >= wb.expected)) {
    // CUDA leaves this undefined (a barrier in code not reached by every thread); hardware
    // counts exited threads as arrived, and so do we, but say so.
    static std::mutex m;
    static std::set<std::string> said;
    std::lock_guard<std::mutex> lock(m);
    if (said.insert(b.kernel).second) {
      std::lock_guard<std::mutex> plock(g_print_mutex);
      std::printf("# EMULATOR NOTE: kernel %s: threads returned while others waited at a barrier (undefined in CUDA)\n",
                  b.kernel);
    }
  }
  release_if_complete(b.block_bar);
  release_if_complete(wb);
  to_scheduler();
  std::abort();  // never resumed
}

void fiber_main() {
  EMU_TSAN_ACQUIRE(&worker().block_start);
  blk->entry(blk->args);
  thread_exit();
}

#if !XLIR_EMU_FAST_SWITCH
void fiber_main_uctx() { fiber_main(); }
#endif

// orders_memory: __syncthreads and __syncwarp order the memory accesses of the threads they wait
// for (what a thread did before is visible to the others after), and ThreadSanitizer is told so.
// The waits inside shuffles, ballots and WMMA calls only wait: CUDA promises no memory ordering
// for those, so a kernel that relies on one to publish shared memory is reported.
void arrive(Barrier& b, bool orders_memory) {
  char* sync = orders_memory ? &b.sync[b.gen & 1] : nullptr;
  if (sync) EMU_TSAN_RELEASE(sync);
  if (++b.arrived >= b.expected) {
    b.arrived = 0;
    b.gen++;
    if (sync) EMU_TSAN_ACQUIRE(sync);
    return;
  }
  Fiber* me = cur;
  me->state = 2;
  me->wait_gen = &b.gen;
  me->wait_val = b.gen;
#if XLIR_EMU_FAST_SWITCH
  // Hand over directly to the next thread that can run (one switch instead of two through the
  // scheduler); threads not started yet are left to the scheduler.
  Fiber* fibers = blk->fibers;
  const unsigned n = blk->nthreads;
  const unsigned* order = blk->order;
  const unsigned at = blk->position[me->linear];
  auto released = [](const Fiber& f) { return f.state == 2 && *f.wait_gen != f.wait_val; };
  Fiber* next = nullptr;
  if (g_warp_ahead) {  // the rest of this warp first, if a barrier has released any of it
    const unsigned w0 = me->linear & ~31u, lanes = std::min(32u, n - w0), lane = me->linear - w0;
    for (unsigned s = 1; s < lanes && !next; s++) {
      Fiber& f = fibers[w0 + (g_order == 4 ? lane + lanes - s : lane + s) % lanes];
      if (released(f)) next = &f;
    }
  }
  for (unsigned s = 1; s < n && !next; s++) {
    unsigned p = at + s;
    if (p >= n) p -= n;
    Fiber& f = fibers[order[p]];
    if (f.state == 0) break;
    if (released(f)) next = &f;
  }
  if (next) {
    cur = next;
    next->state = 1;
    tsan_switch(next->tsan);
    emu_switch(&me->sp, next->sp);
  } else {
    to_scheduler();
  }
#else
  to_scheduler();
#endif
  if (sync) EMU_TSAN_ACQUIRE(sync);
}

void start_fiber(Worker& w, Fiber& f) {
  f.stack = w.free_stacks.back();
  w.free_stacks.pop_back();
#if XLIR_CUDA_EMU_TSAN
  if (!f.tsan) {  // the same fiber serves thread f.linear of every block this worker runs
    f.tsan = __tsan_create_fiber(0);
    char name[64];
    std::snprintf(name, sizeof name, "CUDA thread %u of the block (linear threadIdx)", f.linear);
    __tsan_set_fiber_name(f.tsan, name);
  }
#endif
#if XLIR_EMU_FAST_SWITCH
  // Initial frame, read by emu_switch's epilogue: r15 r14 r13 r12 rbx rbp, return address.
  uint64_t* top = reinterpret_cast<uint64_t*>(f.stack + kStackBytes);
  uint64_t* sp = top - 10;
  sp[0] = 0, sp[1] = 0, sp[2] = 0;                        // r15 r14 r13
  sp[3] = reinterpret_cast<uint64_t>(&fiber_main);       // r12: emu_fiber_start calls it
  sp[4] = 0, sp[5] = 0;                                   // rbx rbp
  sp[6] = reinterpret_cast<uint64_t>(&emu_fiber_start);  // return address
  sp[7] = 0, sp[8] = 0, sp[9] = 0;
  f.sp = sp;
#else
  ucontext_t* u = static_cast<ucontext_t*>(f.uctx);
  if (!u) f.uctx = u = new ucontext_t;
  getcontext(u);
  u->uc_stack.ss_sp = f.stack + 4096;
  u->uc_stack.ss_size = kStackBytes - 4096;
  u->uc_link = nullptr;
  makecontext(u, fiber_main_uctx, 0);
#endif
}

void resume(Worker& w, Fiber& f) {
  cur = &f;
  f.state = 1;
  tsan_switch(f.tsan);
#if XLIR_EMU_FAST_SWITCH
  emu_switch(&w.sched_sp, f.sp);
#else
  swapcontext(&w.sched_ctx, static_cast<ucontext_t*>(f.uctx));
#endif
}

// Runs one block to completion on this worker. Returns false on a deadlock or a trap.
bool run_block(Block& b) {
  Worker& w = worker();
  const unsigned n = b.nthreads, nw = (n + 31) / 32;
  if (w.fibers.size() < n) w.fibers.resize(n);
  w.warp_bars.assign(nw, Barrier{});
  w.xchg.assign(size_t(2 * nw) * 32, 0);
  w.tiles.assign(size_t(2 * nw) * 256, 0.f);
  b.nwarps = nw;
  for (unsigned i = 0; i < nw; i++) w.warp_bars[i].expected = int(std::min(32u, n - 32 * i));
  b.block_bar = Barrier{};
  b.block_bar.expected = int(n);
  b.warp_bar = w.warp_bars.data();
  b.xchg = w.xchg.data();
  b.tiles = w.tiles.data();
  b.fibers = w.fibers.data();
  if (b.smem_bytes) {
#if defined(__SANITIZE_ADDRESS__)
    if (w.smem_cap != b.smem_bytes) {  // exactly the launch's size: AddressSanitizer sees overruns
      std::free(w.smem);
      w.smem_cap = b.smem_bytes;
      w.smem = static_cast<unsigned char*>(std::malloc(w.smem_cap));
    }
#else
    if (w.smem_cap < b.smem_bytes) {
      std::free(w.smem);
      w.smem_cap = (b.smem_bytes + 255) / 256 * 256;
      w.smem = static_cast<unsigned char*>(std::aligned_alloc(256, w.smem_cap));
    }
#endif
    std::memset(w.smem, 0xff, b.smem_bytes);  // shared memory starts as garbage: NaN floats
    b.smem = w.smem;
  }
#if XLIR_CUDA_EMU_TSAN
  if (!w.tsan_sched) w.tsan_sched = __tsan_get_current_fiber();
#endif
  EMU_TSAN_RELEASE(&w.block_start);
  for (unsigned i = 0; i < n; i++) {
    Fiber& f = w.fibers[i];
    f.state = 0;
    f.linear = i;
    f.tid = {i % b.dim.x, (i / b.dim.x) % b.dim.y, i / (b.dim.x * b.dim.y)};
    f.wait_gen = nullptr;
    f.parity = 0;
  }
  // The order in which threads run between barriers (XLIR_CUDA_EMU_ORDER): a kernel whose result
  // changes with it has a race between two barriers.
  w.order.resize(n), w.position.resize(n);
  for (unsigned i = 0; i < n; i++) w.order[i] = g_order == 1 || g_order == 4 ? n - 1 - i : i;
  if (g_order == 2) {
    std::mt19937 rng(uint32_t(b.idx.x * 7919u + b.idx.y * 104729u + b.idx.z * 1299709u + g_seed));
    std::shuffle(w.order.begin(), w.order.end(), rng);
  }
  for (unsigned i = 0; i < n; i++) w.position[w.order[i]] = i;
  b.order = w.order.data(), b.position = w.position.data();
  block_epoch++;
  blk = &b;
  w.finished.clear();
  unsigned done = 0;
  bool ok = true;
  while (done < n) {
    bool progress = false;
    for (unsigned p = 0; p < n; p++) {
      Fiber& f = w.fibers[w.order[p]];
      if (f.state == 3 || (f.state == 2 && *f.wait_gen == f.wait_val)) continue;
      if (f.state == 0) start_fiber(w, f);
      resume(w, f);  // f, and the threads it hands over to, run until one comes back here
      progress = true;
      // A returned thread's stack serves a thread that has not started yet, except under
      // ThreadSanitizer, where the two threads' frames would look like racing accesses.
      std::vector<char*>& stacks = XLIR_CUDA_EMU_TSAN ? w.used_stacks : w.free_stacks;
      for (Fiber* d : w.finished) stacks.push_back(d->stack), d->stack = nullptr;
      done += unsigned(w.finished.size());
      w.finished.clear();
      if (b.trapped) break;
    }
    if (b.trapped) {
      ok = false;
      break;
    }
    if (!progress) {
      int waiting_block = 0;
      for (unsigned i = 0; i < n; i++) waiting_block += w.fibers[i].state == 2 && w.fibers[i].wait_gen == &b.block_bar.gen;
      fail("kernel %s, block (%u,%u,%u): deadlock: %u of %u threads wait at barriers that cannot complete (%d at "
           "__syncthreads, the rest at warp-level barriers)",
           b.kernel, b.idx.x, b.idx.y, b.idx.z, n - done, n, waiting_block);
      ok = false;
      break;
    }
  }
  if (!ok)  // abandoned fibers: their stacks go back unused (kernel frames hold nothing to destroy)
    for (unsigned i = 0; i < n; i++)
      if (w.fibers[i].stack) w.free_stacks.push_back(w.fibers[i].stack), w.fibers[i].stack = nullptr;
  w.free_stacks.insert(w.free_stacks.end(), w.used_stacks.begin(), w.used_stacks.end());
  w.used_stacks.clear();
  EMU_TSAN_ACQUIRE(&w.block_end);
  blk = nullptr;
  cur = nullptr;
  return ok;
}

// ---- the block pool ---------------------------------------------------------------------------
struct Job {
  const char* name;
  dim3 grid, block;
  size_t smem;
  void (*entry)(const void*);
  const void* args;
  uint64_t total;
  std::atomic<uint64_t> next{0};
  std::atomic<bool> failed{false};
};

void run_job(Job& j) {
  for (;;) {
    const uint64_t i = j.next.fetch_add(1);
    if (i >= j.total || j.failed.load()) return;
    Block b;
    b.idx = {unsigned(i % j.grid.x), unsigned((i / j.grid.x) % j.grid.y), unsigned(i / (uint64_t(j.grid.x) * j.grid.y))};
    b.dim = j.block, b.grid = j.grid;
    b.kernel = j.name;
    b.smem_bytes = j.smem;
    b.nthreads = j.block.x * j.block.y * j.block.z;
    b.entry = j.entry, b.args = j.args;
    if (!run_block(b)) j.failed = true;
  }
}

struct Pool {
  std::mutex m;
  std::condition_variable cv, done_cv;
  Job* job = nullptr;
  uint64_t gen = 0;
  int busy = 0;
  int helpers = 0;
  Pool() {
    int n = int(std::thread::hardware_concurrency());
    if (const char* e = std::getenv("XLIR_CUDA_EMU_THREADS")) n = std::atoi(e);
    n = std::max(1, std::min(n, 16));
    helpers = n - 1;
    for (int i = 0; i < helpers; i++) std::thread([this] { loop(); }).detach();
  }
  void loop() {
    uint64_t seen = 0;
    for (;;) {
      Job* j;
      {
        std::unique_lock<std::mutex> lock(m);
        cv.wait(lock, [&] { return gen != seen; });
        seen = gen;
        j = job;
      }
      run_job(*j);
      std::lock_guard<std::mutex> lock(m);
      if (--busy == 0) done_cv.notify_all();
    }
  }
  void run(Job& j) {
    if (helpers == 0 || j.total < 2) {
      run_job(j);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(m);
      job = &j;
      busy = helpers;
      gen++;
    }
    cv.notify_all();
    run_job(j);
    std::unique_lock<std::mutex> lock(m);
    done_cv.wait(lock, [&] { return busy == 0; });
  }
};
std::mutex g_launch_mutex;  // one kernel at a time (the pool's workers are shared)

// XLIR_CUDA_EMU_PROFILE=1: wall time, launches and threads per kernel, printed to stderr at exit.
struct Profile {
  struct Row {
    double seconds = 0;
    uint64_t launches = 0, threads = 0;
  };
  std::map<std::string, Row> rows;
  ~Profile() {
    std::vector<std::pair<std::string, Row>> v(rows.begin(), rows.end());
    std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.second.seconds > b.second.seconds; });
    std::fprintf(stderr, "cuda emulation profile: seconds, launches, threads, kernel\n");
    for (auto& [name, r] : v)
      std::fprintf(stderr, "%9.3f %8llu %12llu %s\n", r.seconds, (unsigned long long)r.launches,
                   (unsigned long long)r.threads, name.c_str());
  }
};
Profile* profile() {
  static Profile* p = std::getenv("XLIR_CUDA_EMU_PROFILE") ? new Profile : nullptr;
  return p;
}
void print_profile() { delete profile(); }

}  // namespace

void sync_block() { arrive(blk->block_bar, true); }
void warp_barrier(unsigned mask, bool orders_memory) {
  const unsigned w = cur->linear >> 5;
  const unsigned lanes = std::min(32u, blk->nthreads - 32 * w);
  const unsigned all = lanes == 32 ? 0xffffffffu : ((1u << lanes) - 1u);
  if ((mask & all) != all) fail("kernel %s: __syncwarp or a shuffle with a partial mask 0x%x is not emulated", blk->kernel, mask);
  arrive(blk->warp_bar[w], orders_memory);
}
void sync_warp(unsigned mask) { warp_barrier(mask, true); }
void warp_wait() { warp_barrier(0xffffffffu, false); }

// Two sets of 32 slots per warp, used alternately (Block::xchg).
uint64_t* exchange_slots() {
  Fiber* f = cur;
  f->parity ^= 1u;
  return blk->xchg + (size_t(f->parity) * blk->nwarps + (f->linear >> 5)) * 32;
}

// The exchange behind every shuffle: each lane writes its value into its warp's slots, waits for
// the warp, and reads the source lane's slot. Two sets of slots used alternately make one wait per
// exchange enough (Block::xchg). Here, not in the header, so that ThreadSanitizer does not see the
// slots: a shuffle passes values between lanes, not memory.
uint64_t shfl_bits(uint64_t bits, int src, int width, int mode) {
  const unsigned l = lane(), base = l & ~unsigned(width - 1);
  uint64_t* slots = exchange_slots();
  slots[l] = bits;
  warp_wait();
  unsigned s;
  switch (mode) {
    case 0: s = base + (unsigned(src) & unsigned(width - 1)); break;
    case 1: s = base + ((l - base) ^ unsigned(src)); if (s >= base + unsigned(width)) s = l; break;
    case 2: s = l + unsigned(src); if (s >= base + unsigned(width)) s = l; break;
    default: s = l >= base + unsigned(src) ? l - unsigned(src) : l; break;
  }
  return slots[s & 31u];
}
void trap() {
  fail("kernel %s, block (%u,%u,%u), thread %u: __trap()", blk->kernel, blk->idx.x, blk->idx.y, blk->idx.z, cur->linear);
  blk->trapped = true;
  cur->state = 3;
  to_scheduler();
  std::abort();
}

namespace {
std::mutex g_bound_mutex;
std::map<std::string, long long>& bounds() {  // kernel name -> __launch_bounds__ (its first value)
  static auto* m = new std::map<std::string, long long>;
  return *m;
}
// "ns::kernel<D>" -> "kernel": launch.py passes the launch expression; templates share one bound.
std::string base_name(const char* name) {
  std::string s(name);
  const size_t lt = s.find('<');
  if (lt != std::string::npos) s.resize(lt);
  const size_t colon = s.rfind("::");
  return colon == std::string::npos ? s : s.substr(colon + 2);
}
}  // namespace

bool register_bound(const char* kernel, long long max_threads) {
  std::lock_guard<std::mutex> lock(g_bound_mutex);
  auto [it, added] = bounds().emplace(kernel, max_threads);
  if (!added && it->second != max_threads)
    fail("two kernels named %s with different __launch_bounds__ (%lld, %lld): the emulator keys bounds by name", kernel,
         it->second, max_threads);
  return true;
}

int max_dynamic_smem(const void* key) {
  std::lock_guard<std::mutex> lock(g_attr_mutex);
  auto it = g_max_smem.find(key);
  return it == g_max_smem.end() ? kDefaultSmem : it->second;
}

cudaError_t launch(const char* name, const void* key, dim3 grid, dim3 block, size_t smem, void (*entry)(const void*),
                   const void* args) {
  const uint64_t threads = uint64_t(block.x) * block.y * block.z;
  if (threads == 0 || threads > 1024 || block.x > 1024 || block.y > 1024 || block.z > 64 || grid.x == 0 || grid.y == 0 ||
      grid.z == 0 || grid.y > 65535 || grid.z > 65535 || grid.x > 2147483647u) {
    fail("kernel %s: invalid launch configuration grid (%u,%u,%u) block (%u,%u,%u)", name, grid.x, grid.y, grid.z, block.x,
         block.y, block.z);
    return cudaErrorInvalidConfiguration;
  }
  {
    std::lock_guard<std::mutex> lock(g_bound_mutex);
    auto it = bounds().find(base_name(name));
    if (it == bounds().end()) {
      fail("kernel %s: no __launch_bounds__ recorded (launch.py registers every kernel it rewrites)", name);
      return cudaErrorInvalidConfiguration;
    }
    if (threads > uint64_t(it->second)) {
      fail("kernel %s: %llu threads per block, above its __launch_bounds__(%lld): ptxas sized its registers for at most "
           "that many and the GPU refuses the launch (too many resources requested for launch)",
           name, (unsigned long long)threads, it->second);
      return cudaErrorLaunchOutOfResources;
    }
  }
  if (smem > size_t(max_dynamic_smem(key))) {
    fail("kernel %s: %zu bytes of dynamic shared memory but the kernel allows %d (cudaFuncSetAttribute)", name, smem,
         max_dynamic_smem(key));
    return cudaErrorInvalidValue;
  }
  static Pool* pool = new Pool;
  std::lock_guard<std::mutex> lock(g_launch_mutex);
  Job j;
  j.name = name, j.grid = grid, j.block = block, j.smem = smem, j.entry = entry, j.args = args;
  j.total = uint64_t(grid.x) * grid.y * grid.z;
  const auto t0 = std::chrono::steady_clock::now();
  pool->run(j);
  if (Profile* p = profile()) {
    static bool registered = (std::atexit(print_profile), true);
    (void)registered;
    Profile::Row& r = p->rows[name];
    r.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    r.launches++;
    r.threads += j.total * threads;
  }
  if (j.failed) {
    g_exec_error = int(cudaErrorLaunchFailure);
    return cudaErrorLaunchFailure;
  }
  return cudaSuccess;
}

}  // namespace emu

namespace nvcuda {
namespace wmma {
namespace detail {
namespace {
float* next_tile() {  // one of the warp's two tiles, alternately: a lane returns to one only after
  emu::Fiber* f = emu::cur;  // the whole warp has passed the wait of the call that used the other
  f->tile_parity ^= 1u;
  return emu::blk->tiles + (size_t(f->tile_parity) * emu::blk->nwarps + (f->linear >> 5)) * 256;
}
}  // namespace
void share_tile(float* x) {
  if (emu::blk->nthreads - (emu::cur->linear & ~31u) < 32)
    emu::fail("kernel %s: a WMMA call in a partial warp", emu::blk->kernel);
  float* tile = next_tile();
  for (unsigned i = emu::lane(); i < 256; i += 32) tile[i] = x[i];
  emu::warp_wait();
  for (int i = 0; i < 256; i++) x[i] = tile[i];
}
// mma_sync: lane 0 computes the product into one of its warp's two tiles (used alternately, so no
// wait is needed on entry), the warp waits, and every lane copies it. Here rather than in mma.h so
// that ThreadSanitizer does not see the tiles, which stand for the tensor cores' registers.
void mma_tile(const float* a, const float* b, const float* c, float* d) {
  float* tile = next_tile();
  if (emu::lane() == 0)
    for (int m = 0; m < 16; m++)
      for (int n = 0; n < 16; n++) {
        float s = c[m * 16 + n];
        for (int k = 0; k < 16; k++) s += a[m * 16 + k] * b[k * 16 + n];
        tile[m * 16 + n] = s;
      }
  emu::warp_wait();
  for (int i = 0; i < 256; i++) d[i] = tile[i];
}
}  // namespace detail
}  // namespace wmma
}  // namespace nvcuda

unsigned __ballot_sync(unsigned mask, int predicate) {
  using namespace emu;
  const unsigned l = lane(), w = warp();
  uint64_t* slots = exchange_slots();
  slots[l] = predicate ? 1 : 0;
  warp_barrier(mask, false);
  unsigned r = 0;
  const unsigned lanes = std::min(32u, blk->nthreads - 32 * w);
  for (unsigned i = 0; i < lanes; i++) r |= unsigned(slots[i] != 0) << i;
  return r & mask;
}
