// Comparisons shared by the search checks of op_tests.cc (CPU) and cuda_tests.cu (GPU), so that
// both hold the fast paths to the same rule against search_topk_reference.
#pragma once
#include <cstdint>
#include <random>
#include <vector>

namespace xlir_tests {

// Gaussian data: fp32 summation order moves scores by far less than 1e-4 (40-term dot products),
// so an id is compared only at a rank whose reference score is more than 1e-4 from its neighbours'.
// ref_scores / ref_ids: the reference's top k + 1 per query (the extra one bounds the last rank);
// ids: the top k under test. want receives the reference's top-k scores, to compare with the
// scores under test.
struct RankCheck {
  int64_t checked = 0, wrong = 0;
};
inline RankCheck unambiguous_ranks(const std::vector<float>& ref_scores, const std::vector<int32_t>& ref_ids, int64_t nq,
                                   int64_t k, const std::vector<int32_t>& ids, std::vector<float>& want) {
  RankCheck r;
  want.assign(size_t(nq * k), 0.f);
  for (int64_t q = 0; q < nq; q++)
    for (int64_t i = 0; i < k; i++) {
      const float* row = &ref_scores[size_t(q * (k + 1))];
      want[size_t(q * k + i)] = row[i];
      const bool clear = (i == 0 || row[i - 1] - row[i] > 1e-4f) && row[i] - row[i + 1] > 1e-4f;
      if (!clear) continue;
      r.checked++;
      if (ids[size_t(q * k + i)] != ref_ids[size_t(q * (k + 1) + i)]) r.wrong++;
    }
  return r;
}

// Tie data: entries in {-1, 0, 1}, so every score is exact whatever the summation order, and many
// are equal; every 7th corpus row is copied into the next, so whole rows tie too. Ids (ties go to
// the lower corpus index) and scores must then equal the reference exactly.
inline std::vector<float> tie_values(std::mt19937& rng, size_t n) {
  std::uniform_int_distribution<int> u(-1, 1);
  std::vector<float> v(n);
  for (auto& x : v) x = float(u(rng));
  return v;
}
inline void duplicate_rows(std::vector<float>& corpus, int64_t nc, int64_t d) {
  for (int64_t j = 0; j + 1 < nc; j += 7)
    for (int64_t c = 0; c < d; c++) corpus[size_t((j + 1) * d + c)] = corpus[size_t(j * d + c)];
}

}  // namespace xlir_tests
