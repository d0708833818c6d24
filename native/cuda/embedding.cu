// Embedding gradient scatter (embedding.cuh). Shapes: dx [T, C], table [rows, C], row-major.
// Grid: one block row per segment (distinct table row), 256 columns per block: loads of a token's
// gradient are coalesced across the columns; the segment's tokens are visited in order.
#include <algorithm>

#include "common.cuh"
#include "embedding.cuh"

namespace xlir {
namespace cuda {

void embedding_grad_plan(EmbeddingGradPlan& plan, const int32_t* ids, int64_t T, int64_t rows, const char* what) {
  XLIR_CHECK(T >= 0 && T < (int64_t(1) << 31) && rows >= 1, "embedding_grad_plan: bad sizes T=" << T << " rows=" << rows);
  for (int64_t t = 0; t < T; t++)
    XLIR_CHECK(ids[t] >= 0 && ids[t] < rows,
               what << " id " << ids[t] << " at token " << t << " is outside the table's " << rows << " rows");
  // Stable grouping by row over the rows that occur (the vocabulary may be 250k: segments are the
  // distinct ids, found by sorting, rather than a histogram over the whole table).
  std::vector<int32_t> sorted(ids, ids + T);
  std::sort(sorted.begin(), sorted.end());
  sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
  const size_t S = sorted.size();
  plan.seg_row.assign(sorted.begin(), sorted.end());
  plan.seg_start.assign(S + 1, 0);
  auto seg_of = [&](int32_t id) { return size_t(std::lower_bound(sorted.begin(), sorted.end(), id) - sorted.begin()); };
  std::vector<int32_t> seg(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; t++) plan.seg_start[(seg[size_t(t)] = int32_t(seg_of(ids[t]))) + 1]++;
  for (size_t s = 0; s < S; s++) plan.seg_start[s + 1] += plan.seg_start[s];
  plan.order.assign(size_t(T), 0);
  std::vector<int32_t> fill(plan.seg_start.begin(), plan.seg_start.end() - 1);
  for (int64_t t = 0; t < T; t++) plan.order[size_t(fill[size_t(seg[size_t(t)])]++)] = int32_t(t);
}

namespace {
__global__ void embedding_backward_kernel(float* __restrict__ dtable, const float* __restrict__ dx,
                                          const int32_t* __restrict__ order, const int32_t* __restrict__ seg_start,
                                          const int32_t* __restrict__ seg_row, int C) {
  const int c = blockIdx.y * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const int s = blockIdx.x;
  float* dst = dtable + int64_t(seg_row[s]) * C + c;
  float acc = *dst;  // += token by token, as the CPU does, so the rounding is the same
  for (int i = seg_start[s]; i < seg_start[s + 1]; i++) acc += dx[int64_t(order[i]) * C + c];
  *dst = acc;
}
}  // namespace

void embedding_backward(float* dtable, const float* dx, const int32_t* order, const int32_t* seg_start,
                        const int32_t* seg_row, int64_t num_segments, int64_t C, cudaStream_t stream) {
  XLIR_CHECK(num_segments >= 0 && num_segments < (int64_t(1) << 31) && C >= 1 && C < (1 << 30),
             "cuda embedding_backward: bad sizes (" << num_segments << " segments, C=" << C << ")");
  if (num_segments == 0 || !dtable) return;  // a null table gradient: frozen table
  XLIR_CHECK(dx && order && seg_start && seg_row, "cuda embedding_backward: null pointer");
  embedding_backward_kernel<<<dim3(unsigned(num_segments), ceil_div(C, 256)), 256, 0, stream>>>(dtable, dx, order, seg_start,
                                                                                                 seg_row, int(C));
  XLIR_CUDA_LAUNCH_CHECK();
}

}  // namespace cuda
}  // namespace xlir
