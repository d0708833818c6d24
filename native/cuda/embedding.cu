// Embedding gradient scatter (embedding.cuh). Shapes: dx [T, C], table [rows, C], row-major.
// Grid: one block row per segment (distinct table row), 256 columns per block: loads of a token's
// gradient are coalesced across the columns; the segment's tokens are visited in order.
#include "common.cuh"
#include "embedding.cuh"

namespace xlir {
namespace cuda {

namespace {

const int kColumns = 256;  // columns (threads) per block

__global__ void __launch_bounds__(kColumns)
    embedding_backward_kernel(float* __restrict__ dtable, const float* __restrict__ dx,
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
  embedding_backward_kernel<<<dim3(unsigned(num_segments), ceil_div(C, kColumns)), kColumns, 0, stream>>>(
      dtable, dx, order, seg_start, seg_row, int(C));
  XLIR_CUDA_LAUNCH_CHECK();
}

}  // namespace cuda
}  // namespace xlir
