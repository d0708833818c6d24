// Multi-head self-attention over packed sequences (no padding: sequence s owns tokens
// [offsets[s], offsets[s] + lengths[s]) of the [T, 3H] q|k|v matrix), forward beside backward.
// Because sequences are packed, every key of a sequence is a real token: the key padding mask is
// implicit and padding costs nothing. Probabilities are not kept between forward and backward:
// backward recomputes them from q and k (one extra L x L product per head), so activation memory
// stays O(T * H) whatever the sequence length. Dropout on the probabilities is keyed by the
// sequence key, head and (query, key) position, so a replay draws the same mask.
#pragma once
#include <cstdint>

#include "matmul.h"

namespace xlir {

struct AttentionShape {
  int64_t num_seqs;
  const int32_t* lengths;
  const int64_t* offsets;
  const uint64_t* seq_keys;  // per-sequence dropout key
  int64_t hidden, heads;
};

// Scratch needed by attention_forward/backward, in floats, for the longest sequence L: 3 * heads * L * L.
int64_t attention_scratch_floats(int64_t heads, int64_t max_len);

// ctx[T, H] = softmax(q k^T / sqrt(d)) v per head and sequence (with dropout p on the probabilities).
void attention_forward(float* ctx, const float* qkv, const AttentionShape& s, float p, uint64_t site,
                       float* scratch, Precision prec);
// dqkv[T, 3H] (written with =) from dctx[T, H].
void attention_backward(float* dqkv, const float* dctx, const float* qkv, const AttentionShape& s, float p,
                        uint64_t site, float* scratch, Precision prec);

}  // namespace xlir
