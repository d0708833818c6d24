// Embedding gather: x[t] = word[ids[t]] + pos[pos_ids[t]] + type[type_ids[t]], and its scatter-add
// backward. The LayerNorm and dropout that follow are the layernorm/activation ops.
// Gradients accumulate with +=; a null gradient pointer skips that table (frozen).
#pragma once
#include <cstdint>

namespace xlir {

void embedding_forward(float* x, const int32_t* ids, const int32_t* pos_ids, const int32_t* type_ids,
                       const float* word, const float* pos, const float* type, int64_t T, int64_t C);
void embedding_backward(float* dword, float* dpos, float* dtype, const float* dx, const int32_t* ids,
                        const int32_t* pos_ids, const int32_t* type_ids, int64_t T, int64_t C);

}  // namespace xlir
