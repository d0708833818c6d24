// Kernel microbenchmark of the CUDA back end (native/cuda/) at the shapes of an XLM-R base dual
// encoder training step. A benchmark that prints a table, not a test: correctness is
// native/tests/cuda_tests.cu's job; this program only times the kernels.
//
//   build/xlir_cuda_bench [--reps N] [--warmup N] [--only SUBSTRING] [--search-queries N]
//                         [--search-corpus N] [--search-k K] [--search-reps N] [--no-search]
//
// Shapes: hidden 768, 12 heads, ffn 3072, vocab 250002; one packed batch of 128 queries of 8-32
// tokens + 128 passages of 64-256 tokens (lengths drawn from a fixed seed; T tokens in all, printed).
// Timing: cudaEvents around each repetition on one stream, after warm-up; the table gives the
// median (and min) over the repetitions. Inputs are filled on the device with a counter-based hash,
// so the large buffers cost no host time.
// Each row reports the work (bytes a kernel must move at least, or its FLOPs), the achieved rate,
// and the percentage of the device limit it is held against:
//  - memory-bound ops: peak DRAM bandwidth = memory clock * bus width * 2 (DDR), from the device's
//    attributes;
//  - bf16 products: the dense bf16 tensor-core peak, fp32 products (CUBLAS_COMPUTE_32F, no TF32)
//    and the attention kernels (fp32 on CUDA cores, attention.cuh) the fp32 non-tensor peak, the
//    tensor-core attention kernels (attention_tc.cuh) the bf16 dense peak, all
//    from a table of data-sheet figures keyed by the device name (kPeaks); a device not in the
//    table gets n/a.
// Without a usable device it prints "SKIP: no CUDA device (<reason>)" and exits 0. A row whose
// kernel throws prints the error, the other rows go on, and the program exits 1.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "cuda/activation.cuh"
#include "cuda/adamw.cuh"
#include "cuda/attention.cuh"
#include "cuda/attention_tc.cuh"
#include "cuda/common.cuh"
#include "cuda/device.cuh"
#include "cuda/infonce.cuh"
#include "cuda/layernorm.cuh"
#include "cuda/matmul.cuh"
#include "cuda/search.cuh"
#include "matmul.h"

using namespace xlir;

// ---------------------------------------------------------------------------------------------
// Device limits

// Data-sheet peaks (dense, no sparsity), TFLOP/s. fp32 is the CUDA-core rate, not TF32: the fp32
// products run with CUBLAS_COMPUTE_32F. Matching is by substrings of cudaGetDeviceProperties' name;
// the NVL variants are left out on purpose (other clocks and power limits: n/a rather than a wrong
// figure).
struct Peak {
  const char* label;
  const char* must_contain[2];
  const char* must_not_contain;
  double bf16_tflops, fp32_tflops;
};
static const Peak kPeaks[] = {
    {"H100 SXM (data sheet)", {"H100", "HBM3"}, "NVL", 989.4, 66.9},
    {"H100 SXM (data sheet)", {"H100", "SXM"}, "NVL", 989.4, 66.9},
    {"H100 PCIe (data sheet)", {"H100", "PCIe"}, "NVL", 756.5, 51.2},
    {"H200 (data sheet, as H100 SXM)", {"H200", ""}, "NVL", 989.4, 66.9},
    {"A100 (data sheet)", {"A100", ""}, nullptr, 312.0, 19.5},
};

struct Limits {
  std::string name;
  const Peak* peak = nullptr;  // null: device not in kPeaks
  double dram_bytes_per_s = 0; // 0: attribute unavailable
  int mem_clock_khz = 0, bus_bits = 0;
};

static Limits device_limits(int dev) {
  Limits l;
  cudaDeviceProp prop;
  XLIR_CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
  l.name = prop.name;
  // cudaDeviceProp lost memoryClockRate in CUDA 13; the attribute remains.
  if (cudaDeviceGetAttribute(&l.mem_clock_khz, cudaDevAttrMemoryClockRate, dev) != cudaSuccess) l.mem_clock_khz = 0;
  if (cudaDeviceGetAttribute(&l.bus_bits, cudaDevAttrGlobalMemoryBusWidth, dev) != cudaSuccess) l.bus_bits = 0;
  cudaGetLastError();
  l.dram_bytes_per_s = double(l.mem_clock_khz) * 1e3 * (double(l.bus_bits) / 8) * 2;
  for (const Peak& p : kPeaks) {
    bool ok = true;
    for (const char* s : p.must_contain) ok = ok && (!*s || l.name.find(s) != std::string::npos);
    if (p.must_not_contain && l.name.find(p.must_not_contain) != std::string::npos) ok = false;
    if (ok) {
      l.peak = &p;
      break;
    }
  }
  return l;
}

// ---------------------------------------------------------------------------------------------
// Options, rows, timing

struct Options {
  int reps = 20, warmup = 3;
  std::string only;
  int64_t search_queries = 10000, search_corpus = 1000000, search_k = 100;
  int search_reps = 3;
  bool search = true;
};

enum class Limit { Dram, Bf16, Fp32 };

struct Row {
  std::string op, shape;
  double median_ms = 0, min_ms = 0;
  double work = 0;  // bytes (Dram) or FLOPs
  Limit limit = Limit::Dram;
  std::string error;
};

static Options g_opt;
static Limits g_lim;
static cudaStream_t g_stream = nullptr;
static std::vector<Row> g_rows;
static int g_errors = 0;

static bool selected(const std::string& op) { return g_opt.only.empty() || op.find(g_opt.only) != std::string::npos; }

// Median and min of `reps` event-timed runs of f after `warmup` untimed ones.
static void time_reps(int warmup, int reps, const std::function<void()>& f, double& median_ms, double& min_ms) {
  for (int i = 0; i < warmup; i++) f();
  XLIR_CUDA_CHECK(cudaStreamSynchronize(g_stream));
  cudaEvent_t a, b;
  XLIR_CUDA_CHECK(cudaEventCreate(&a));
  XLIR_CUDA_CHECK(cudaEventCreate(&b));
  std::vector<float> ms(size_t(std::max(reps, 1)));
  for (float& m : ms) {
    XLIR_CUDA_CHECK(cudaEventRecord(a, g_stream));
    f();
    XLIR_CUDA_CHECK(cudaEventRecord(b, g_stream));
    XLIR_CUDA_CHECK(cudaEventSynchronize(b));
    XLIR_CUDA_CHECK(cudaEventElapsedTime(&m, a, b));
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(ms.begin(), ms.end());
  const size_t n = ms.size();
  median_ms = n % 2 ? ms[n / 2] : 0.5 * (double(ms[n / 2 - 1]) + ms[n / 2]);
  min_ms = ms[0];
}

// Times one row; an exception becomes an error row (and the exit status), the next row goes on.
static void bench(const std::string& op, const std::string& shape, Limit limit, double work,
                  const std::function<void()>& f, int warmup = -1, int reps = -1) {
  if (!selected(op)) return;
  Row r;
  r.op = op, r.shape = shape, r.limit = limit, r.work = work;
  try {
    time_reps(warmup < 0 ? g_opt.warmup : warmup, reps < 0 ? g_opt.reps : reps, f, r.median_ms, r.min_ms);
  } catch (const std::exception& e) {
    r.error = e.what();
    g_errors++;
    cudaGetLastError();
  }
  std::fprintf(stderr, "# %s %s: %s\n", op.c_str(), shape.c_str(),
               r.error.empty() ? (std::to_string(r.median_ms) + " ms").c_str() : r.error.c_str());
  g_rows.push_back(r);
}

// Runs one section; an exception outside bench() (allocation, setup) is an error row naming it.
static void section(const char* name, const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    Row r;
    r.op = name, r.shape = "(setup)", r.error = e.what();
    g_rows.push_back(r);
    g_errors++;
    cudaGetLastError();
    std::fprintf(stderr, "# %s setup failed: %s\n", name, e.what());
  }
}

// ---------------------------------------------------------------------------------------------
// Device buffers filled on the device

constexpr int kFillThreads = 256;

__global__ void __launch_bounds__(kFillThreads)
    fill_uniform_kernel(float* x, int64_t n, uint64_t key, float lo, float hi) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    x[i] = lo + (hi - lo) * cuda::d_uniform01(key, uint64_t(i));
}
__global__ void __launch_bounds__(kFillThreads)
    fill_uniform_bf16_kernel(__nv_bfloat16* x, int64_t n, uint64_t key, float lo, float hi) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    x[i] = __float2bfloat16_rn(lo + (hi - lo) * cuda::d_uniform01(key, uint64_t(i)));
}
__global__ void __launch_bounds__(kFillThreads)
    fill_ids_kernel(int32_t* x, int64_t n, uint64_t key, int32_t lo, int32_t hi) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    x[i] = lo + min(int32_t(cuda::d_uniform01(key, uint64_t(i)) * float(hi - lo)), hi - lo - 1);
}

static int fill_grid(int64_t n) {
  return int(std::min<int64_t>(std::max<int64_t>((n + kFillThreads - 1) / kFillThreads, 1), 4096));
}

template <typename T>
struct Buf {
  T* p = nullptr;
  size_t n = 0;
  explicit Buf(size_t n_) : n(n_) {
    const size_t bytes = std::max<size_t>(n, 1) * sizeof(T);
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) {
      cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      XLIR_CHECK(false, "cudaMalloc of " << bytes / double(1 << 20) << " MiB failed (" << cudaGetErrorString(e)
                                         << "); " << free_b / double(1 << 20) << " MiB free of "
                                         << total_b / double(1 << 20));
    }
    XLIR_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, g_stream));
  }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  ~Buf() { cudaFree(p); }
  void put(const std::vector<T>& v) {
    XLIR_CHECK(v.size() == n, "Buf::put: size " << v.size() << " != " << n);
    XLIR_CUDA_CHECK(cudaMemcpyAsync(p, v.data(), n * sizeof(T), cudaMemcpyHostToDevice, g_stream));
    XLIR_CUDA_CHECK(cudaStreamSynchronize(g_stream));
  }
};

static uint64_t g_fill_key = 1;
static void fill(Buf<float>& b, float lo = -1.f, float hi = 1.f) {
  fill_uniform_kernel<<<fill_grid(int64_t(b.n)), kFillThreads, 0, g_stream>>>(b.p, int64_t(b.n), mix64(g_fill_key++),
                                                                              lo, hi);
  XLIR_CUDA_LAUNCH_CHECK();
}
static void fill(Buf<__nv_bfloat16>& b, float lo = -1.f, float hi = 1.f) {
  fill_uniform_bf16_kernel<<<fill_grid(int64_t(b.n)), kFillThreads, 0, g_stream>>>(b.p, int64_t(b.n), mix64(g_fill_key++),
                                                                                   lo, hi);
  XLIR_CUDA_LAUNCH_CHECK();
}
static void fill_ids(Buf<int32_t>& b, int32_t lo, int32_t hi) {
  fill_ids_kernel<<<fill_grid(int64_t(b.n)), kFillThreads, 0, g_stream>>>(b.p, int64_t(b.n), mix64(g_fill_key++),
                                                                          lo, hi);
  XLIR_CUDA_LAUNCH_CHECK();
}

// ---------------------------------------------------------------------------------------------
// Shapes

const int64_t kHidden = 768, kHeads = 12, kFfn = 3072, kVocab = 250002, kMaxPos = 514, kLayers = 12;
const int64_t kPairs = 128;

// The packed batch: 128 queries then 128 passages (the order the end-to-end benchmark packs them).
struct Packed {
  std::vector<int32_t> lengths, offsets;
  int64_t T = 0, max_len = 0;
  double sum_len_sq = 0;
};
static Packed packed_batch() {
  Packed b;
  std::mt19937 rng(20240607);
  std::uniform_int_distribution<int> q(8, 32), p(64, 256);
  for (int64_t i = 0; i < kPairs; i++) b.lengths.push_back(q(rng));
  for (int64_t i = 0; i < kPairs; i++) b.lengths.push_back(p(rng));
  b.offsets.push_back(0);
  for (int32_t L : b.lengths) {
    b.offsets.push_back(b.offsets.back() + L);
    b.max_len = std::max<int64_t>(b.max_len, L);
    b.sum_len_sq += double(L) * L;
  }
  b.T = b.offsets.back();
  return b;
}

static std::string fmt_shape(const char* f, ...) __attribute__((format(printf, 1, 2)));
static std::string fmt_shape(const char* f, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, f);
  std::vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  return buf;
}

// ---------------------------------------------------------------------------------------------
// Sections

static void bench_attention(const Packed& pb) {
  const int64_t T = pb.T, H = kHidden, nh = kHeads, B = int64_t(pb.lengths.size());
  Buf<float> qkv(size_t(T * 3 * H)), ctx(size_t(T * H)), lse(size_t(T * nh)), dctx(size_t(T * H)),
      dqkv(size_t(T * 3 * H)), scratch(size_t(cuda::attention_backward_scratch_floats(T, nh)));
  Buf<__nv_bfloat16> ctx16(size_t(T * H));
  Buf<int32_t> offsets(pb.offsets.size());
  offsets.put(pb.offsets);
  std::vector<uint64_t> keys;
  for (int64_t s = 0; s < B; s++) keys.push_back(mix64(uint64_t(1000 + s)));
  Buf<uint64_t> seq_keys(keys.size());
  seq_keys.put(keys);
  fill(qkv), fill(dctx);
  const float p = 0.1f;  // training: attention dropout 0.1
  // FLOPs as FlashAttention counts them: forward Q K^T and P V, 2 * 2 * L^2 * d per head, so
  // 4 * H * sum(L^2); backward 2.5x forward (dV, dP, dQ, dK and one recompute of Q K^T). The kernels
  // here recompute Q K^T in both backward kernels, so they do more arithmetic than this count.
  const double fwd = 4.0 * H * pb.sum_len_sq, bwd = 2.5 * fwd;
  const std::string shape = fmt_shape("T=%ld (256 seqs, max %ld), H=%ld, %ld heads, p=0.1", long(T), long(pb.max_len),
                                      long(H), long(nh));
  bench("attention forward", shape, Limit::Fp32, fwd, [&] {
    cuda::attention_forward(ctx.p, ctx16.p, lse.p, qkv.p, offsets.p, B, pb.max_len, T, H, nh, nullptr, p, 7, seq_keys.p,
                            g_stream);
  });
  // The backward reads the forward's ctx and lse: run the forward once so they hold real values.
  cuda::attention_forward(ctx.p, ctx16.p, lse.p, qkv.p, offsets.p, B, pb.max_len, T, H, nh, nullptr, p, 7, seq_keys.p,
                          g_stream);
  bench("attention backward", shape, Limit::Fp32, bwd, [&] {
    cuda::attention_backward(dqkv.p, dctx.p, ctx.p, lse.p, qkv.p, offsets.p, B, pb.max_len, T, H, nh, nullptr, p, 7,
                             seq_keys.p, scratch.p, g_stream);
  });
  // The tensor-core kernels (attention_tc.cuh: bf16 operands, fp32 accumulation) on the same batch,
  // held against the bf16 dense peak and counted the same way (their backward also recomputes Q K^T
  // in both the dk/dv and the dq kernel).
  if (!cuda::attention_tc_supported(H / nh)) {
    std::fprintf(stderr, "# attention (tensor cores): not supported on this device, rows skipped\n");
    return;
  }
  Buf<float> scratch_tc(size_t(cuda::attention_backward_tc_scratch_floats(T, B, H, nh))), dbias(size_t(3 * H));
  Buf<__nv_bfloat16> dqkv16(size_t(T * 3 * H));
  const size_t first_tc = g_rows.size();
  bench("attention forward (tensor cores)", shape, Limit::Bf16, fwd, [&] {
    cuda::attention_forward_tc(ctx.p, ctx16.p, lse.p, qkv.p, offsets.p, B, pb.max_len, T, H, nh, nullptr, p, 7,
                               seq_keys.p, g_stream);
  });
  cuda::attention_forward_tc(ctx.p, ctx16.p, lse.p, qkv.p, offsets.p, B, pb.max_len, T, H, nh, nullptr, p, 7, seq_keys.p,
                             g_stream);
  bench("attention backward (tensor cores)", shape, Limit::Bf16, bwd, [&] {
    cuda::attention_backward_tc(dqkv.p, dctx.p, ctx.p, lse.p, qkv.p, offsets.p, B, pb.max_len, T, H, nh, nullptr, p, 7,
                                seq_keys.p, scratch_tc.p, g_stream);
  });
  // The bf16 training step's call, as it was and as it is: fp32 dctx, ctx and dqkv (with its bf16
  // copy) then a bias_backward pass over dqkv; now dctx and ctx in bf16 only, no fp32 dqkv, and the
  // QKV bias gradient's sums from the kernels.
  Buf<float> scratch_bias(size_t(cuda::bias_backward_scratch_floats(T, 3 * H)));
  bench("attention backward (tensor cores) -> fp32 + bf16 dqkv, bias_backward", shape, Limit::Bf16, bwd, [&] {
    cuda::TcBackwardIo io;
    io.dqkv16 = dqkv16.p;
    cuda::attention_backward_tc(dqkv.p, dctx.p, ctx.p, lse.p, qkv.p, offsets.p, B, pb.max_len, T, H, nh, nullptr, p, 7,
                                seq_keys.p, scratch_tc.p, g_stream, io);
    cuda::bias_backward(dbias.p, dqkv.p, T, 3 * H, scratch_bias.p, g_stream);
  });
  Buf<__nv_bfloat16> dctx16(size_t(T * H));
  cuda::to_bf16(dctx16.p, dctx.p, T * H, g_stream);
  bench("attention backward (tensor cores) bf16 dctx, ctx -> bf16 dqkv + bias sums", shape, Limit::Bf16, bwd, [&] {
    cuda::TcBackwardIo io;
    io.dctx16 = dctx16.p, io.ctx16 = ctx16.p, io.dqkv16 = dqkv16.p, io.dbias = dbias.p;
    cuda::attention_backward_tc(nullptr, nullptr, nullptr, lse.p, qkv.p, offsets.p, B, pb.max_len, T, H, nh, nullptr, p,
                                7, seq_keys.p, scratch_tc.p, g_stream, io);
  });
  // Speed-up over the fp32 rows above, by name (rows left out by --only are skipped).
  auto find = [&](const char* op, size_t from, size_t to) -> const Row* {
    for (size_t i = from; i < to; i++)
      if (g_rows[i].op == op && g_rows[i].error.empty()) return &g_rows[i];
    return nullptr;
  };
  for (const char* dir : {"forward", "backward"}) {
    const Row* a = find((std::string("attention ") + dir).c_str(), 0, first_tc);
    const Row* b = find((std::string("attention ") + dir + " (tensor cores)").c_str(), first_tc, g_rows.size());
    if (a && b && b->median_ms > 0)
      std::printf("attention %s: tensor cores %.3f ms vs fp32 %.3f ms (median), %.1fx\n", dir, b->median_ms,
                  a->median_ms, a->median_ms / b->median_ms);
  }
}

static void bench_layernorm(const Packed& pb) {
  const int64_t T = pb.T, C = kHidden;
  const double TC = double(T) * C;
  const size_t nT = static_cast<size_t>(T), nC = static_cast<size_t>(C), nTC = nT * nC;
  Buf<float> a(nTC), b(nTC), x(nTC), y(nTC), mean(nT), rstd(nT), w(nC), beta(nC), dy(nTC), dx(nTC), dw(nC), db(nC),
      scratch(size_t(cuda::layernorm_backward_scratch_floats(T, C)));
  Buf<__nv_bfloat16> y16(nTC), dxd16(nTC);
  Buf<float> dbias(nC), dxd(nTC);
  Buf<uint64_t> keys(nT);
  std::vector<uint64_t> kh(nT);
  for (size_t t = 0; t < nT; t++) kh[t] = 0x9E3779B97F4A7C15ULL * (t + 1);
  keys.put(kh);
  const RowDropout drop{0.1f, 3, keys.p};  // the model's hidden dropout, fused as the model runs it
  fill(a), fill(b), fill(w, 0.5f, 1.5f), fill(beta), fill(dy);
  const std::string shape = fmt_shape("[%ld, %ld]", long(T), long(C));
  // Bytes: read a, b; write x, y (fp32) and y16 (bf16). Per-row and per-column vectors are noise.
  bench("residual+LayerNorm forward", shape, Limit::Dram, TC * (4 + 4 + 4 + 4 + 2), [&] {
    cuda::residual_layernorm_forward(x.p, y.p, y16.p, mean.p, rstd.p, a.p, b.p, w.p, beta.p, T, C, 1e-5f, g_stream);
  });
  // The same with the branch's dropout fused in, as the encoder layer runs it: the same bytes.
  bench("dropout+residual+LayerNorm forward", shape + ", p 0.1", Limit::Dram, TC * (4 + 4 + 4 + 4 + 2), [&] {
    cuda::residual_layernorm_forward(x.p, y.p, y16.p, mean.p, rstd.p, a.p, b.p, w.p, beta.p, T, C, 1e-5f, g_stream,
                                     drop);
  });
  // Bytes: read dy, x; write dx (accumulate = false); dw, db partial sums are [T/64, C], summed in
  // the same pass for C <= 1024.
  bench("LayerNorm backward", shape, Limit::Dram, TC * (4 + 4 + 4), [&] {
    cuda::layernorm_backward(dx.p, dw.p, db.p, dy.p, x.p, w.p, mean.p, rstd.p, T, C, false, scratch.p, g_stream);
  });
  // As the encoder's bf16 backward runs it: also the branch's gradient after dropout as bf16 (the
  // products' operand) and its column sums (the branch's bias gradient): read dy, x; write dx, dxd16.
  bench("LayerNorm backward + dropped branch (bf16 copy, bias sums)", shape + ", p 0.1", Limit::Dram,
        TC * (4 + 4 + 4 + 2), [&] {
          cuda::layernorm_backward(dx.p, dw.p, db.p, dy.p, x.p, w.p, mean.p, rstd.p, T, C, false, scratch.p, g_stream,
                                   cuda::BranchGrad{nullptr, dxd16.p, dbias.p, drop});
        });
  // The same two without the fused column sums (the row kernel, then passes over dy and x for dw, db
  // and over the fp32 branch gradient for its bias), which rows wider than 1024 use: the GPU decides
  // whether holding a row in registers (fewer warps per SM) pays for the bytes it saves.
  cuda::layernorm_backward_set_max_fused(0);
  bench("LayerNorm backward, column sums unfused", shape, Limit::Dram, TC * (4 + 4 + 4 + 4 + 4), [&] {
    cuda::layernorm_backward(dx.p, dw.p, db.p, dy.p, x.p, w.p, mean.p, rstd.p, T, C, false, scratch.p, g_stream);
  });
  bench("LayerNorm backward + dropped branch, column sums unfused", shape + ", p 0.1", Limit::Dram,
        TC * (4 + 4 + 4 + 4 + 2 + 4 + 4 + 4), [&] {
          cuda::layernorm_backward(dx.p, dw.p, db.p, dy.p, x.p, w.p, mean.p, rstd.p, T, C, false, scratch.p, g_stream,
                                   cuda::BranchGrad{dxd.p, dxd16.p, dbias.p, drop});
        });
  cuda::layernorm_backward_set_max_fused(1024);

  Buf<float> word(size_t(kVocab * C)), pos(size_t(kMaxPos * C)), type(nC);
  Buf<int32_t> ids(nT), pos_ids(nT), type_ids(nT);
  fill(word, -0.05f, 0.05f), fill(pos, -0.05f, 0.05f), fill(type, -0.05f, 0.05f);
  fill_ids(ids, 3, int32_t(kVocab));
  // RoBERTa positions: pad id + 1 + index within the sequence.
  std::vector<int32_t> ph(nT);
  for (size_t s = 0; s + 1 < pb.offsets.size(); s++)
    for (int32_t t = pb.offsets[s]; t < pb.offsets[s + 1]; t++) ph[size_t(t)] = 2 + (t - pb.offsets[s]);
  pos_ids.put(ph);
  // Bytes: the ids (3 x 4 per token), the word and position rows gathered per token (the type row
  // is one row, cached), then x, y and y16 written.
  bench("embedding+LayerNorm forward", shape + fmt_shape(", vocab %ld", long(kVocab)), Limit::Dram,
        double(T) * 12 + TC * (4 + 4 + 4 + 4 + 2), [&] {
          cuda::embedding_layernorm_forward(x.p, y.p, y16.p, mean.p, rstd.p, ids.p, pos_ids.p, type_ids.p, word.p, pos.p,
                                            type.p, kVocab, kMaxPos, 1, w.p, beta.p, T, C, 1e-5f, g_stream, drop);
        });
}

static void bench_gelu(const Packed& pb) {
  const int64_t T = pb.T, C = kFfn;
  const double TC = double(T) * C;
  const size_t nC = static_cast<size_t>(C), nTC = static_cast<size_t>(T) * nC;
  Buf<float> x(nTC), y(nTC), bias(nC), dy(nTC), dbias(nC),
      scratch(size_t(cuda::bias_backward_scratch_floats(T, C)));
  Buf<__nv_bfloat16> y16(nTC);
  fill(x), fill(bias), fill(dy);
  const std::string shape = fmt_shape("[%ld, %ld]", long(T), long(C));
  // In place, as after a bias-free product: read x, write pre (= x), y and y16.
  bench("bias+GELU forward", shape, Limit::Dram, TC * (4 + 4 + 4 + 2), [&] {
    cuda::bias_gelu_forward(x.p, y.p, y16.p, x.p, bias.p, T, C, g_stream);
  });
  // bf16 mode, as the encoder runs it after the product that added the bias: read pre, write y16.
  bench("GELU forward (bf16 copy only)", shape, Limit::Dram, TC * (4 + 2), [&] {
    cuda::bias_gelu_forward(nullptr, nullptr, y16.p, x.p, nullptr, T, C, g_stream);
  });
  // In place on dy: read dy and pre, write dx (the bias column sums are [T/64, C]).
  bench("bias+GELU backward", shape, Limit::Dram, TC * (4 + 4 + 4), [&] {
    cuda::bias_gelu_backward(dy.p, nullptr, dbias.p, dy.p, x.p, T, C, scratch.p, g_stream);
  });
  // bf16 mode: also the bf16 copy of dx (the next products' operand): read dy, pre; write dx, dx16.
  bench("bias+GELU backward (bf16 copy)", shape, Limit::Dram, TC * (4 + 4 + 4 + 2), [&] {
    cuda::bias_gelu_backward(dy.p, y16.p, dbias.p, dy.p, x.p, T, C, scratch.p, g_stream);
  });
}

static void bench_infonce() {
  struct Case { int64_t nq, np; };
  const int64_t D = kHidden;
  for (const Case& c : {Case{128, 128}, Case{128, 256}, Case{128, 1024}, Case{1024, 1024}, Case{4096, 4096}}) {
    Buf<float> q(size_t(c.nq * D)), p(size_t(c.np * D)), dq(size_t(c.nq * D)), dp(size_t(c.np * D)), loss(1),
        scratch(size_t(cuda::infonce_scratch_floats(c.nq, c.np)));
    fill(q, -0.05f, 0.05f), fill(p, -0.05f, 0.05f);
    // Three fp32 products of nq x np x D (scores, dq, dp); the softmax passes are O(nq np).
    bench("InfoNCE forward+backward", fmt_shape("%ld x %ld, D=%ld", long(c.nq), long(c.np), long(D)), Limit::Fp32,
          6.0 * c.nq * c.np * D, [&] {
            cuda::infonce_forward_backward(loss.p, dq.p, dp.p, q.p, p.p, c.nq, c.np, D, 20.f, false, scratch.p, g_stream);
          });
  }
}

// Tensor sizes of the XLM-R base encoder without a pooler (mean pooling), in the order of the flat
// parameter buffer: 277,453,056 parameters (the published 278M counts the pooler's 590,592 too).
static std::vector<int64_t> xlmr_base_tensors() {
  const int64_t H = kHidden, F = kFfn;
  std::vector<int64_t> t = {kVocab * H, kMaxPos * H, H, H, H};
  for (int64_t l = 0; l < kLayers; l++)
    for (int64_t n : {H * H, H, H * H, H, H * H, H, H * H, H, H, H, F * H, F, H * F, H, H, H}) t.push_back(n);
  return t;
}

static void bench_optimizer() {
  const std::vector<int64_t> sizes = xlmr_base_tensors();
  std::vector<int64_t> begins;
  int64_t n = 0;
  for (int64_t s : sizes) begins.push_back(n), n += s;
  const size_t nn = static_cast<size_t>(n);  // (a named size: Buf<float> m(size_t(n)) would declare a function)
  Buf<float> p(nn), g(nn), m(nn), v(nn), norm(1), clip(1);
  Buf<__nv_bfloat16> p16(nn);
  Buf<double> scratch(size_t(cuda::global_norm_scratch_doubles(int64_t(sizes.size()))));
  fill(p, -0.05f, 0.05f), fill(g, -1e-3f, 1e-3f), fill(v, 0.f, 1e-6f);
  const std::string shape = fmt_shape("%.2fM params, %zu tensors", n / 1e6, sizes.size());
  // Bytes: read g once per range.
  bench("global norm (+ clip coefficient)", shape, Limit::Dram, 4.0 * n, [&] {
    cuda::global_norm(norm.p, clip.p, g.p, begins.data(), sizes.data(), int64_t(sizes.size()), 1.f, scratch.p, g_stream);
  });
  // One launch over the flat buffer. Bytes: read p, g, m, v; write p, m, v and the bf16 copy p16.
  int64_t t = 1;
  bench("AdamW update (fp32 master + bf16 copy)", shape, Limit::Dram, 30.0 * n, [&] {
    cuda::adamw_update(p.p, p16.p, g.p, m.p, v.p, n, 2e-5f, 0.9f, 0.999f, 1e-8f, 0.01f, clip.p, t++, g_stream);
  });
  // The word-embedding table alone (250,002 x 768 = 192M parameters, 69% of the model): the exact
  // dense update against the row-sparse one over the rows a batch touches. 6,382 rows is what
  // bench/embedding_update.ts measured for 128 queries + 128 passages with Zipf-distributed ids.
  const int64_t table = kVocab * kHidden, touched = 6382;
  std::vector<int32_t> rows_h(static_cast<size_t>(touched));
  for (int64_t r = 0; r < touched; r++) rows_h[size_t(r)] = int32_t((r * 39119) % kVocab);  // distinct, spread out
  Buf<int32_t> rows(rows_h.size());
  XLIR_CUDA_CHECK(cudaMemcpy(rows.p, rows_h.data(), rows_h.size() * 4, cudaMemcpyHostToDevice));
  const std::string tshape = fmt_shape("%lld x %lld table", (long long)kVocab, (long long)kHidden);
  bench("embedding AdamW, dense (exact)", tshape, Limit::Dram, 30.0 * table, [&] {
    cuda::adamw_update(p.p, p16.p, g.p, m.p, v.p, table, 2e-5f, 0.9f, 0.999f, 1e-8f, 0.01f, clip.p, t++, g_stream);
  });
  bench("embedding AdamW, row-sparse (6,382 rows)", tshape, Limit::Dram, 30.0 * touched * kHidden, [&] {
    cuda::adamw_update_rows(p.p, p16.p, g.p, m.p, v.p, rows.p, touched, kHidden, 2e-5f, 0.9f, 0.999f, 1e-8f, 0.01f,
                            clip.p, t++, g_stream);
  });
}

static void bench_gemm(const Packed& pb) {
  const int64_t T = pb.T, H = kHidden, F = kFfn;
  struct Lin { const char* name; int64_t out, in; };
  const Lin lins[] = {{"qkv", 3 * H, H}, {"attn out", H, H}, {"ffn in", F, H}, {"ffn out", H, F}};
  // Largest operands: X [T, F], W [F, H] and Y [T, F]; one set of buffers serves every shape.
  const size_t big = size_t(T * F), wbig = size_t(3 * H * F);
  Buf<float> X(big), W(wbig), Y(big), bias(static_cast<size_t>(F));
  Buf<__nv_bfloat16> X16(big), W16(wbig);
  fill(X), fill(W, -0.05f, 0.05f), fill(X16), fill(W16, -0.05f, 0.05f), fill(bias);
  for (int prec = 0; prec < 2; prec++) {
    const bool b16 = prec == 0;
    const cuda::DType ab = b16 ? cuda::DType::BF16 : cuda::DType::F32;
    const void* x = b16 ? static_cast<const void*>(X16.p) : X.p;
    const void* w = b16 ? static_cast<const void*>(W16.p) : W.p;
    const Limit lim = b16 ? Limit::Bf16 : Limit::Fp32;
    const char* tag = b16 ? "bf16 gemm" : "fp32 gemm";
    for (const Lin& l : lins) {
      const double flops = 2.0 * T * l.out * l.in;
      // Forward: Y[T, out] = X[T, in] W[out, in]^T + bias (the bias epilogue, fp32 output).
      bench(std::string(tag) + " fwd " + l.name, fmt_shape("%ld x %ld x %ld (+bias)", long(T), long(l.out), long(l.in)), lim,
            flops, [&] { cuda::linear(x, w, bias.p, Y.p, T, l.out, l.in, 0.f, ab, cuda::DType::F32, g_stream); });
      // Data gradient: dX[T, in] = dY[T, out] W[out, in].
      Gemm dx;
      dx.M = T, dx.N = l.in, dx.K = l.out, dx.lda = l.out, dx.ldb = l.in, dx.ldc = l.in;
      bench(std::string(tag) + " dX " + l.name, fmt_shape("%ld x %ld x %ld", long(T), long(l.in), long(l.out)), lim, flops,
            [&] { cuda::gemm(dx, x, w, Y.p, ab, cuda::DType::F32, g_stream); });
      // Weight gradient, accumulated: dW[out, in] += dY[T, out]^T X[T, in].
      Gemm dw;
      dw.transA = true, dw.M = l.out, dw.N = l.in, dw.K = T, dw.lda = l.out, dw.ldb = l.in, dw.ldc = l.in, dw.beta = 1.f;
      bench(std::string(tag) + " dW " + l.name, fmt_shape("%ld x %ld x %ld (+=)", long(l.out), long(l.in), long(T)), lim,
            flops, [&] { cuda::gemm(dw, x, w, Y.p, ab, cuda::DType::F32, g_stream); });
    }
  }
}

static void bench_search() {
  int64_t nq = g_opt.search_queries, nc = g_opt.search_corpus;
  const int64_t d = kHidden, k = g_opt.search_k;
  const size_t scratch_bytes = cuda::search_scratch_bytes(nq, k);
  const auto need = [&](int64_t c) { return double(nq + c) * d * 4 + double(nq) * k * 8 + double(scratch_bytes); };
  size_t free_b = 0, total_b = 0;
  XLIR_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  // Leave a quarter of the free memory (cuBLASLt workspace, fragmentation); halve the corpus until it fits.
  while (nc > 4096 && need(nc) > 0.75 * double(free_b)) nc /= 2;
  if (nc != g_opt.search_corpus)
    std::fprintf(stderr, "# search: corpus reduced from %ld to %ld rows to fit %.1f GiB free\n", long(g_opt.search_corpus),
                 long(nc), free_b / double(1 << 30));
  Buf<float> Q(size_t(nq * d)), Cp(size_t(nc * d)), S(size_t(nq * k));
  Buf<int32_t> I(size_t(nq * k));
  Buf<unsigned char> scratch(scratch_bytes);
  fill(Q), fill(Cp);
  // FLOPs of the fp32 score products; the selection and the finiteness check add memory traffic.
  bench("exact top-k search (fp32 scores)", fmt_shape("%ld queries x %ld corpus x %ld, k=%ld", long(nq), long(nc), long(d),
                                                       long(k)),
        Limit::Fp32, 2.0 * nq * nc * d,
        [&] { cuda::search_topk(Q.p, nq, Cp.p, nc, d, k, S.p, I.p, scratch.p, scratch_bytes, g_stream); }, 1,
        g_opt.search_reps);
}

// ---------------------------------------------------------------------------------------------
// Output

static void print_table() {
  std::printf("| op | shape | median ms | min ms | work | achieved | limit | %% of limit |\n");
  std::printf("|---|---|---:|---:|---:|---:|---|---:|\n");
  for (const Row& r : g_rows) {
    if (!r.error.empty()) {
      std::printf("| %s | %s | ERROR | | | | | %s |\n", r.op.c_str(), r.shape.c_str(), r.error.c_str());
      continue;
    }
    const double s = r.median_ms / 1e3;
    char work[64], rate[64], limit[96], pct[32];
    double lim = 0;
    if (r.limit == Limit::Dram) {
      std::snprintf(work, sizeof work, "%.1f MB", r.work / 1e6);
      std::snprintf(rate, sizeof rate, "%.0f GB/s", r.work / s / 1e9);
      lim = g_lim.dram_bytes_per_s;
      if (lim > 0)
        std::snprintf(limit, sizeof limit, "DRAM %.0f GB/s", lim / 1e9);
      else
        std::snprintf(limit, sizeof limit, "DRAM n/a");
    } else {
      std::snprintf(work, sizeof work, "%.2f GFLOP", r.work / 1e9);
      std::snprintf(rate, sizeof rate, "%.1f TFLOP/s", r.work / s / 1e12);
      const bool b16 = r.limit == Limit::Bf16;
      lim = g_lim.peak ? (b16 ? g_lim.peak->bf16_tflops : g_lim.peak->fp32_tflops) * 1e12 : 0;
      if (lim > 0)
        std::snprintf(limit, sizeof limit, "%s %.1f TFLOP/s", b16 ? "bf16 dense" : "fp32", lim / 1e12);
      else
        std::snprintf(limit, sizeof limit, "%s n/a", b16 ? "bf16 dense" : "fp32");
    }
    if (lim > 0)
      std::snprintf(pct, sizeof pct, "%.1f%%", 100.0 * r.work / s / lim);
    else
      std::snprintf(pct, sizeof pct, "n/a");
    std::printf("| %s | %s | %.4f | %.4f | %s | %s | %s | %s |\n", r.op.c_str(), r.shape.c_str(), r.median_ms, r.min_ms,
                work, rate, limit, pct);
  }
}

static bool parse_int(const char* s, int64_t lo, int64_t& out) {
  char* end = nullptr;
  const long long v = std::strtoll(s, &end, 10);
  if (!end || *end || v < lo) return false;
  out = v;
  return true;
}

static int usage(const char* why) {
  std::fprintf(stderr,
               "xlir_cuda_bench: %s\nusage: xlir_cuda_bench [--reps N] [--warmup N] [--only SUBSTRING] "
               "[--search-queries N] [--search-corpus N] [--search-k K] [--search-reps N] [--no-search]\n",
               why);
  return 2;
}

int main(int argc, char** argv) {
  for (int i = 1; i < argc; i++) {
    const std::string a = argv[i];
    int64_t v = 0;
    auto value = [&](int64_t lo) {
      if (i + 1 >= argc || !parse_int(argv[i + 1], lo, v)) return false;
      i++;
      return true;
    };
    if (a == "--no-search") g_opt.search = false;
    else if (a == "--only" && i + 1 < argc) g_opt.only = argv[++i];
    else if (a == "--reps" && value(1)) g_opt.reps = int(v);
    else if (a == "--warmup" && value(0)) g_opt.warmup = int(v);
    else if (a == "--search-queries" && value(1)) g_opt.search_queries = v;
    else if (a == "--search-corpus" && value(1)) g_opt.search_corpus = v;
    else if (a == "--search-k" && value(1)) g_opt.search_k = v;
    else if (a == "--search-reps" && value(1)) g_opt.search_reps = int(v);
    else return usage(("bad or incomplete argument '" + a + "'").c_str());
  }

  const cuda::Status& st = cuda::status();
  if (st.devices == 0) {
    std::printf("SKIP: no CUDA device (%s)\n", st.reason.c_str());
    return 0;
  }
  try {
    cuda::use_device(0);
    XLIR_CUDA_CHECK(cudaStreamCreate(&g_stream));
    g_lim = device_limits(0);
  } catch (const std::exception& e) {
    std::printf("ERROR: device setup failed: %s\n", e.what());
    return 1;
  }
  const Packed pb = packed_batch();
  std::printf("# xlir CUDA kernel benchmark\n");
  std::printf("device: %s; CUDA runtime %d, driver %d\n", cuda::describe().c_str(), st.runtime_version, st.driver_version);
  if (g_lim.dram_bytes_per_s > 0)
    std::printf("DRAM limit: %.0f GB/s (memory clock %d MHz x %d-bit bus x 2, device attributes)\n",
                g_lim.dram_bytes_per_s / 1e9, g_lim.mem_clock_khz / 1000, g_lim.bus_bits);
  else
    std::printf("DRAM limit: n/a (memory clock or bus width attribute unavailable)\n");
  if (g_lim.peak)
    std::printf("compute limits: %s: bf16 dense %.1f TFLOP/s, fp32 (CUDA cores) %.1f TFLOP/s\n", g_lim.peak->label,
                g_lim.peak->bf16_tflops, g_lim.peak->fp32_tflops);
  else
    std::printf("compute limits: n/a ('%s' is not in the table of data-sheet peaks)\n", g_lim.name.c_str());
  std::printf("batch: %ld pairs packed as 256 sequences (queries 8-32, passages 64-256 tokens, fixed seed): T = %ld tokens, "
              "longest %ld, sum of squared lengths %.0f\n",
              long(kPairs), long(pb.T), long(pb.max_len), pb.sum_len_sq);
  std::printf("timing: median (and min) of %d repetitions after %d warm-up (search: %d after 1), cudaEvents, one stream\n\n",
              g_opt.reps, g_opt.warmup, g_opt.search_reps);
  std::fflush(stdout);

  section("attention", [&] { bench_attention(pb); });
  section("LayerNorm", [&] { bench_layernorm(pb); });
  section("GELU", [&] { bench_gelu(pb); });
  section("InfoNCE", bench_infonce);
  section("optimizer", bench_optimizer);
  section("gemm", [&] { bench_gemm(pb); });
  if (g_opt.search && selected("exact top-k search")) section("search", bench_search);

  print_table();
  std::printf("\nwork: bytes each kernel must read and write at least (memory-bound rows) or FLOPs (products;\n"
              "attention counted as FlashAttention does: forward 4*H*sum(L^2), backward 2.5x forward).\n");
  if (g_errors) std::printf("\n%d row(s) failed: see ERROR above\n", g_errors);
  cudaStreamDestroy(g_stream);
  cuda::matmul_release();
  return g_errors ? 1 : 0;
}
