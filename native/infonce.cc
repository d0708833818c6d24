#include "infonce.h"

#include <cmath>
#include <vector>

#include "common.h"
#include "matmul.h"

namespace xlir {

namespace {
// Cross-entropy of one row of logits (given by stride) against label; adds d/dlogits * w into g.
double row_ce(const float* s, int64_t n, int64_t stride, int64_t label, float* g, int64_t gstride, double w) {
  float mx = s[0];
  for (int64_t j = 1; j < n; j++) mx = std::fmax(mx, s[j * stride]);
  double sum = 0;
  for (int64_t j = 0; j < n; j++) sum += std::exp(double(s[j * stride]) - mx);
  const double lse = mx + std::log(sum);
  for (int64_t j = 0; j < n; j++) {
    double pj = std::exp(double(s[j * stride]) - lse);
    g[j * gstride] += float(w * (pj - (j == label ? 1.0 : 0.0)));
  }
  return lse - s[label * stride];
}
}  // namespace

float infonce_forward_backward(float* dq, float* dp, const float* q, const float* p, int64_t nq, int64_t np,
                               int64_t D, float scale, bool symmetric) {
  XLIR_CHECK(nq >= 1 && np >= nq, "infonce: need at least one query and at least as many passages as queries (got "
                                      << nq << " queries, " << np << " passages)");
  std::vector<float> S(size_t(nq * np)), G(size_t(nq * np), 0.f);
  Gemm g;  // S = scale * q p^T
  g.transB = true;
  g.M = nq, g.N = np, g.K = D, g.lda = D, g.ldb = D, g.ldc = np, g.alpha = scale;
  gemm(g, q, p, S.data());
  const double wq = symmetric ? 0.5 / double(nq) : 1.0 / double(nq);
  double loss = 0;
  for (int64_t i = 0; i < nq; i++) loss += wq * row_ce(&S[i * np], np, 1, i, &G[i * np], 1, wq);
  if (symmetric)  // column j < nq: passage j against all queries
    for (int64_t j = 0; j < nq; j++) loss += wq * row_ce(&S[j], nq, np, j, &G[j], np, wq);
  // dS = scale * G; dq = dS p, dp = dS^T q.
  Gemm a;
  a.M = nq, a.N = D, a.K = np, a.lda = np, a.ldb = D, a.ldc = D, a.alpha = scale;
  gemm(a, G.data(), p, dq);
  Gemm b;
  b.transA = true;
  b.M = np, b.N = D, b.K = nq, b.lda = np, b.ldb = D, b.ldc = D, b.alpha = scale;
  gemm(b, G.data(), q, dp);
  return float(loss);
}

}  // namespace xlir
