#pragma once
// Frechet distance between two Gaussians fitted to feature sets (the FID formula, in any feature
// space): ||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2), computed in double from the
// eigenvalues of a symmetric matrix similar to S1 S2 (no non-symmetric matrix square root).

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <utility>

#include <Eigen/Dense>

#include "irepa/core/error.hpp"
#include "irepa/core/tensor.hpp"

namespace irepa::metrics {

struct Gaussian {
  Eigen::VectorXd mean;  // [D]
  Eigen::MatrixXd cov;   // [D, D], unbiased (N - 1)
};

/// features [N, D] (N >= 2) -> mean and covariance.
template <class T>
Gaussian fit_gaussian(ConstView<T> features) {
  IREPA_CHECK(features.rank() == 2 && features.size(0) >= 2 && features.is_contiguous(),
              "fit_gaussian: features have shape {}, expected contiguous [N >= 2, D]", features.shape().str());
  const auto N = features.size(0), D = features.size(1);
  Eigen::MatrixXd X(N, D);
  for (std::int64_t i = 0; i < N; ++i)
    for (std::int64_t d = 0; d < D; ++d) X(i, d) = static_cast<double>(features.data()[i * D + d]);
  Gaussian g;
  g.mean = X.colwise().mean().transpose();
  X.rowwise() -= g.mean.transpose();
  g.cov = (X.transpose() * X) / static_cast<double>(N - 1);
  return g;
}

namespace detail {
/// sum sqrt(eig(U^T S U)), negative eigenvalues (rounding) clamped to 0. u: [D, r].
inline double sqrt_eigenvalue_sum(const Eigen::MatrixXd& u, const Eigen::MatrixXd& s) {
  const Eigen::MatrixXd w = u.transpose() * (s * u);  // [r, r]
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(0.5 * (w + w.transpose()), Eigen::EigenvaluesOnly);
  IREPA_CHECK(es.info() == Eigen::Success, "frechet_distance: the eigendecomposition did not converge");
  return es.eigenvalues().cwiseMax(0.0).cwiseSqrt().sum();
}

/// S = F F^T for a symmetric positive semi-definite S [D, D]: Cholesky with diagonal pivoting,
/// stopped once every remaining pivot is <= D eps max(diag S) (LAPACK dpstrf's default), so F is
/// [D, r] with r the numerical rank; its rows stay in S's order. nullopt when r would exceed
/// max_rank. Left-looking: step k costs one [D, k] matrix-vector product, O(D r^2) in all.
inline std::optional<Eigen::MatrixXd> pivoted_cholesky(const Eigen::MatrixXd& s, Eigen::Index max_rank) {
  const Eigen::Index d = s.rows();
  max_rank = std::clamp<Eigen::Index>(max_rank, 0, d);
  Eigen::VectorXd left = s.diagonal();  // the diagonal of the part not yet factored
  const double tol = static_cast<double>(d) * std::numeric_limits<double>::epsilon() * std::max(left.maxCoeff(), 0.0);
  Eigen::MatrixXd f(d, std::min<Eigen::Index>(std::max<Eigen::Index>(max_rank, 1), 32));
  Eigen::Index r = 0;
  for (;; ++r) {
    Eigen::Index p = 0;
    const double pivot = left.maxCoeff(&p);
    if (!(pivot > tol)) break;
    if (r == max_rank) return std::nullopt;
    if (r == f.cols()) f.conservativeResize(d, std::min(2 * r, max_rank));
    Eigen::VectorXd col = s.col(p);
    if (r > 0) col.noalias() -= f.leftCols(r) * f.row(p).head(r).transpose();
    col /= std::sqrt(pivot);
    f.col(r) = col;
    left -= col.cwiseAbs2();
    left(p) = 0.0;  // chosen rows are done (their later entries are rounding)
  }
  f.conservativeResize(d, r);
  return f;
}

/// Below this rank a covariance (of at most this many samples plus one) is factored by pivoting:
/// the trace term then costs an r x r eigenproblem instead of a D x D one.
inline Eigen::Index default_low_rank_limit(Eigen::Index d) { return std::max<Eigen::Index>(32, d / 16); }

/// A pivoted factor of rank <= max_rank that gives S back to 1e-9 relative (Frobenius). A
/// covariance that is rounding noise (features constant up to their last bits) is indefinite, and
/// pivoting on its tiny diagonal inflates the off-diagonal noise: such a factor is refused.
inline std::optional<Eigen::MatrixXd> low_rank_factor(const Eigen::MatrixXd& s, Eigen::Index max_rank) {
  auto f = pivoted_cholesky(s, max_rank);
  if (f && f->cols() > 0 && !((s - *f * f->transpose()).norm() <= 1e-9 * s.norm())) return std::nullopt;
  return f;
}

/// tr (S1^1/2 S2 S1^1/2)^1/2 = sum sqrt(eig(S1 S2)), taken from U^T S2 U for any factor
/// S1 = U U^T, and eig(S1 S2) = eig(S2 S1), so either may be factored. The cheapest wins:
///  - one of rank <= low_rank_limit (a small evaluation's samples): its pivoted factor, an r x r
///    eigenproblem instead of a D x D one (an attempt on a full-rank matrix stops at the limit);
///    pivots at rounding level end it, so directions without variance contribute nothing;
///  - else one that is positive definite (statistics of N > D samples): its Cholesky factor;
///  - else S1's eigenvectors scaled by the square roots of its positive eigenvalues (the others,
///    rounding around 0, are clamped to 0 and contribute nothing).
inline double trace_sqrt_product(const Eigen::MatrixXd& s1, const Eigen::MatrixXd& s2, Eigen::Index low_rank_limit = -1) {
  const Eigen::MatrixXd a = 0.5 * (s1 + s1.transpose()), b = 0.5 * (s2 + s2.transpose());
  if (low_rank_limit < 0) low_rank_limit = default_low_rank_limit(a.rows());
  const auto low_a = low_rank_factor(a, low_rank_limit);
  if (low_a && low_a->cols() == 0) return 0.0;
  const auto low_b = low_rank_factor(b, low_a ? low_a->cols() - 1 : low_rank_limit);
  if (low_b) return low_b->cols() == 0 ? 0.0 : sqrt_eigenvalue_sum(*low_b, a);
  if (low_a) return sqrt_eigenvalue_sum(*low_a, b);
  for (const auto& [f, other] : {std::pair{&a, &b}, std::pair{&b, &a}}) {
    Eigen::LLT<Eigen::MatrixXd> llt(*f);  // on a rank-deficient matrix this stops early
    if (llt.info() == Eigen::Success) return sqrt_eigenvalue_sum(llt.matrixL(), *other);
  }
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(a);
  IREPA_CHECK(es.info() == Eigen::Success, "frechet_distance: the eigendecomposition of a {}x{} matrix did not converge", a.rows(), a.cols());
  const Eigen::VectorXd& l = es.eigenvalues();  // ascending
  Eigen::Index first = 0;
  while (first < l.size() && !(l(first) > 0.0)) ++first;
  const Eigen::Index r = l.size() - first;
  if (r == 0) return 0.0;
  return sqrt_eigenvalue_sum(es.eigenvectors().rightCols(r) * l.tail(r).cwiseSqrt().asDiagonal(), b);
}
}  // namespace detail

inline double frechet_distance(const Gaussian& a, const Gaussian& b) {
  IREPA_CHECK(a.mean.size() == b.mean.size() && a.cov.rows() == a.mean.size() && b.cov.rows() == b.mean.size(),
              "frechet_distance: Gaussians of dimension {} and {}", a.mean.size(), b.mean.size());
  IREPA_CHECK(a.mean.allFinite() && a.cov.allFinite() && b.mean.allFinite() && b.cov.allFinite(),
              "frechet_distance: a mean or covariance holds NaN or Inf (so do the features)");
  const double cross = detail::trace_sqrt_product(a.cov, b.cov);
  const double fd = (a.mean - b.mean).squaredNorm() + a.cov.trace() + b.cov.trace() - 2.0 * cross;
  IREPA_CHECK(std::isfinite(fd), "frechet_distance: {} (the statistics overflow a double)", fd);
  return std::max(fd, 0.0);
}

template <class T>
double frechet_distance(ConstView<T> a, ConstView<T> b) {
  return frechet_distance(fit_gaussian(a), fit_gaussian(b));
}

}  // namespace irepa::metrics
