#include "search.h"

#include <omp.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include <algorithm>
#include <cmath>
#include <memory>
#include <utility>
#include <vector>

#include "common.h"
#include "matmul.h"

namespace xlir {

void check_search_shape(int64_t nq, int64_t nc, int64_t d, int64_t k, const char* what) {
  XLIR_CHECK(d >= 1, what << ": dim must be >= 1, got " << d);
  XLIR_CHECK(nq >= 0 && nc >= 0, what << ": negative sizes (" << nq << " queries, " << nc << " corpus rows)");
  XLIR_CHECK(nc <= int64_t(INT32_MAX), what << ": the corpus has " << nc << " rows; ids are int32, at most 2^31 - 1");
  XLIR_CHECK(k >= 1, what << ": k must be >= 1, got " << k);
  XLIR_CHECK(k <= nc, what << ": k = " << k << " exceeds the corpus size (" << nc
                           << " rows); ask for at most the corpus size");
}

void check_finite(const float* x, int64_t n, int64_t d, const char* what) {
  const int64_t total = n * d;
  int64_t first = total;
#pragma omp parallel for reduction(min : first) schedule(static) if (total > (1 << 18))
  for (int64_t i0 = 0; i0 < total; i0 += 4096) {
    const int64_t i1 = std::min(total, i0 + 4096);
    for (int64_t i = i0; i < i1; i++)
      if (!std::isfinite(x[i])) {
        first = std::min(first, i);
        break;
      }
  }
  XLIR_CHECK(first == total, what << " holds a non-finite value (" << x[first] << ") at row " << first / d
                                  << ", column " << first % d);
}

namespace {

// Large outputs are usually fresh allocations (a new Float32Array per call): their pages are
// faulted in by the first write, 4 KiB at a time, and in a virtual machine a fault costs ~10 us,
// which for a 13k x 13k score matrix (676 MB) is more than the matrix product. Transparent huge
// pages are commonly in "madvise" mode: ask for them on the 2 MiB-aligned interior of the range.
// A hint only: contents and ownership are unchanged, and nothing happens where THP is off.
void advise_huge_pages(void* p, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const uintptr_t huge = uintptr_t(2) << 20;
  const uintptr_t a = (uintptr_t(p) + huge - 1) & ~(huge - 1), b = (uintptr_t(p) + bytes) & ~(huge - 1);
  if (b > a) madvise(reinterpret_cast<void*>(a), b - a, MADV_HUGEPAGE);
#else
  (void)p, (void)bytes;
#endif
}

// One query's running top k: a binary heap whose root is the worst kept entry. "Worse" is the
// result order reversed: lower score, or the same score and a higher corpus index.
struct Entry {
  float s;
  int32_t id;
};
inline bool worse(const Entry& a, const Entry& b) { return a.s < b.s || (a.s == b.s && a.id > b.id); }

inline void sift_down(Entry* h, int64_t n, int64_t i) {
  const Entry x = h[i];
  for (;;) {
    int64_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && worse(h[c + 1], h[c])) c++;
    if (!worse(h[c], x)) break;
    h[i] = h[c];
    i = c;
  }
  h[i] = x;
}

inline void sift_up(Entry* h, int64_t i) {
  const Entry x = h[i];
  while (i > 0) {
    const int64_t p = (i - 1) / 2;
    if (!worse(x, h[p])) break;
    h[i] = h[p];
    i = p;
  }
  h[i] = x;
}

// Offers scores s[0, n) of corpus rows base, base + 1, ... to the heap h holding `size` of k entries.
// Rows arrive in increasing index order, so once the heap is full a candidate tying the root's
// score has a higher index than every kept row and loses: only a strictly higher score enters.
inline void offer(Entry* h, int64_t& size, int64_t k, const float* s, int64_t n, int64_t base) {
  int64_t j = 0;
  for (; j < n && size < k; j++) {
    h[size] = Entry{s[j], int32_t(base + j)};
    sift_up(h, size++);
  }
  float floor = h[0].s;
  for (; j < n; j++) {
    if (s[j] <= floor) continue;
    h[0] = Entry{s[j], int32_t(base + j)};
    sift_down(h, k, 0);
    floor = h[0].s;
  }
}

inline bool before(const Entry& a, const Entry& b) { return a.s > b.s || (a.s == b.s && a.id < b.id); }

}  // namespace

void search_topk(const float* queries, int64_t nq, const float* corpus, int64_t nc, int64_t d, int64_t k,
                 float* scores, int32_t* ids, const SearchBlocks& blocks) {
  check_search_shape(nq, nc, d, k, "searchTopK");
  XLIR_CHECK(blocks.queries >= 1 && blocks.corpus >= 1, "searchTopK: block sizes must be >= 1");
  check_finite(queries, nq, d, "searchTopK: queries");
  check_finite(corpus, nc, d, "searchTopK: corpus");
  if (nq == 0) return;
  const int64_t qb = std::min(blocks.queries, nq), cb = std::min(blocks.corpus, nc);
  std::unique_ptr<float[]> S(new float[size_t(qb * cb)]);
  advise_huge_pages(S.get(), size_t(qb * cb) * sizeof(float));
  std::vector<Entry> heaps(size_t(qb * k));
  std::vector<int64_t> sizes(static_cast<size_t>(qb));
  for (int64_t q0 = 0; q0 < nq; q0 += qb) {
    const int64_t qn = std::min(qb, nq - q0);
    std::fill(sizes.begin(), sizes.end(), 0);
    for (int64_t c0 = 0; c0 < nc; c0 += cb) {
      const int64_t cn = std::min(cb, nc - c0);
      Gemm g;  // S[qn, cn] = Q[q0 : q0 + qn] C[c0 : c0 + cn]^T
      g.transB = true;
      g.M = qn, g.N = cn, g.K = d, g.lda = d, g.ldb = d, g.ldc = cn;
      gemm(g, queries + q0 * d, corpus + c0 * d, S.get());
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < qn; i++) offer(&heaps[size_t(i * k)], sizes[size_t(i)], k, S.get() + i * cn, cn, c0);
    }
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < qn; i++) {
      Entry* h = &heaps[size_t(i * k)];
      std::sort(h, h + k, before);
      for (int64_t r = 0; r < k; r++) {
        scores[(q0 + i) * k + r] = h[r].s;
        ids[(q0 + i) * k + r] = h[r].id;
      }
    }
  }
}

void search_topk_reference(const float* queries, int64_t nq, const float* corpus, int64_t nc, int64_t d, int64_t k,
                           float* scores, int32_t* ids) {
  check_search_shape(nq, nc, d, k, "searchTopK");
  check_finite(queries, nq, d, "searchTopK: queries");
  check_finite(corpus, nc, d, "searchTopK: corpus");
  std::vector<std::pair<double, int32_t>> all(static_cast<size_t>(nc));
  for (int64_t q = 0; q < nq; q++) {
    for (int64_t c = 0; c < nc; c++) {
      double s = 0;
      for (int64_t j = 0; j < d; j++) s += double(queries[q * d + j]) * double(corpus[c * d + j]);
      all[size_t(c)] = {s, int32_t(c)};
    }
    std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) {
      return a.first > b.first || (a.first == b.first && a.second < b.second);
    });
    for (int64_t r = 0; r < k; r++) {
      scores[q * k + r] = float(all[size_t(r)].first);
      ids[q * k + r] = all[size_t(r)].second;
    }
  }
}

void score_matrix(const float* queries, int64_t nq, const float* corpus, int64_t nc, int64_t d, float* out,
                  const SearchBlocks& blocks) {
  XLIR_CHECK(d >= 1, "scoreMatrix: dim must be >= 1, got " << d);
  XLIR_CHECK(nq >= 0 && nc >= 0, "scoreMatrix: negative sizes");
  XLIR_CHECK(blocks.queries >= 1, "scoreMatrix: block sizes must be >= 1");
  check_finite(queries, nq, d, "scoreMatrix: queries");
  check_finite(corpus, nc, d, "scoreMatrix: corpus");
  if (nq == 0 || nc == 0) return;
  // Blocks of query rows, each one gemm against the whole corpus straight into its output rows:
  // no scratch memory, and one oneDNN primitive (plus one for the last, shorter block).
  const int64_t qb = std::min(blocks.queries, nq);
  advise_huge_pages(out, size_t(nq * nc) * sizeof(float));
  for (int64_t q0 = 0; q0 < nq; q0 += qb) {
    Gemm g;
    g.transB = true;
    g.M = std::min(qb, nq - q0), g.N = nc, g.K = d, g.lda = d, g.ldb = d, g.ldc = nc;
    gemm(g, queries + q0 * d, corpus, out + q0 * nc);
  }
}

void score_matrix_reference(const float* queries, int64_t nq, const float* corpus, int64_t nc, int64_t d, float* out) {
  for (int64_t q = 0; q < nq; q++)
    for (int64_t c = 0; c < nc; c++) {
      double s = 0;
      for (int64_t j = 0; j < d; j++) s += double(queries[q * d + j]) * double(corpus[c * d + j]);
      out[q * nc + c] = float(s);
    }
}

}  // namespace xlir
