#include "embedding.h"

#include <omp.h>

#include <algorithm>

#include "common.h"

namespace xlir {

void embedding_forward(float* x, const int32_t* ids, const int32_t* pos_ids, const int32_t* type_ids,
                       const float* word, const float* pos, const float* type, int64_t T, int64_t C) {
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < T; t++) {
    const float* w = word + int64_t(ids[t]) * C;
    const float* p = pos + int64_t(pos_ids[t]) * C;
    const float* ty = type + int64_t(type_ids[t]) * C;
    float* xt = x + t * C;
    for (int64_t c = 0; c < C; c++) xt[c] = w[c] + p[c] + ty[c];
  }
}

void embedding_backward(float* dword, float* dpos, float* dtype, const float* dx, const int32_t* ids,
                        const int32_t* pos_ids, const int32_t* type_ids, int64_t T, int64_t C) {
  // Tokens share rows (repeated ids, the same position), so threads split the feature columns
  // instead of the tokens: every thread owns its columns of every row, no atomics needed.
#pragma omp parallel
  {
    int nt = omp_get_num_threads(), tid = omp_get_thread_num();
    int64_t c0 = C * tid / nt, c1 = C * (tid + 1) / nt;
    for (int64_t t = 0; t < T; t++) {
      const float* g = dx + t * C;
      if (dword) {
        float* r = dword + int64_t(ids[t]) * C;
        for (int64_t c = c0; c < c1; c++) r[c] += g[c];
      }
      if (dpos) {
        float* r = dpos + int64_t(pos_ids[t]) * C;
        for (int64_t c = c0; c < c1; c++) r[c] += g[c];
      }
      if (dtype) {
        float* r = dtype + int64_t(type_ids[t]) * C;
        for (int64_t c = c0; c < c1; c++) r[c] += g[c];
      }
    }
  }
}

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

}  // namespace xlir
