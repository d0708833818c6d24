// Embedding gather: x[t] = word[ids[t]] + pos[pos_ids[t]] + type[type_ids[t]], and its scatter-add
// backward. The LayerNorm and dropout that follow are the layernorm/activation ops.
// Gradients accumulate with +=; a null gradient pointer skips that table (frozen).
#pragma once
#include <cstdint>
#include <vector>

namespace xlir {

void embedding_forward(float* x, const int32_t* ids, const int32_t* pos_ids, const int32_t* type_ids,
                       const float* word, const float* pos, const float* type, int64_t T, int64_t C);
void embedding_backward(float* dword, float* dpos, float* dtype, const float* dx, const int32_t* ids,
                        const int32_t* pos_ids, const int32_t* type_ids, int64_t T, int64_t C);

// The tokens of a batch grouped by table row, for a scatter without atomics (the device back ends'
// embedding gradient: native/cuda/embedding.cuh): segment s covers tokens
// order[seg_start[s] .. seg_start[s + 1]) (in increasing token order), all with row seg_row[s];
// seg_start has num_segments() + 1 entries. Adding each segment's tokens in order gives the same
// additions in the same order as embedding_backward.
struct EmbeddingGradPlan {
  std::vector<int32_t> order, seg_start, seg_row;
  int64_t num_segments() const { return int64_t(seg_row.size()); }
};

// Builds the plan from ids [T]; throws naming the first id outside [0, rows) (`what` names the table).
void embedding_grad_plan(EmbeddingGradPlan& plan, const int32_t* ids, int64_t T, int64_t rows, const char* what);

}  // namespace xlir
