#pragma once
// Frechet distance between two Gaussians fitted to feature sets (the FID formula, in any feature
// space): ||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2), computed in double from the
// eigenvalues of a symmetric matrix similar to S1 S2 (no non-symmetric matrix square root).

#include <cmath>
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

/// tr (S1^1/2 S2 S1^1/2)^1/2 = sum sqrt(eig(S1 S2)), taken from U^T S2 U for any factor
/// S1 = U U^T, and eig(S1 S2) = eig(S2 S1), so either may be factored:
///  - one that is positive definite (statistics of N > D samples): its Cholesky factor, a
///    fraction of an eigendecomposition's cost (an attempt on a rank-deficient one stops early);
///  - else S1's eigenvectors scaled by the square roots of its positive eigenvalues (the others,
///    rounding around 0, are clamped to 0 and contribute nothing): r = rank S1.
inline double trace_sqrt_product(const Eigen::MatrixXd& s1, const Eigen::MatrixXd& s2) {
  const Eigen::MatrixXd a = 0.5 * (s1 + s1.transpose()), b = 0.5 * (s2 + s2.transpose());
  for (const auto& [f, other] : {std::pair{&a, &b}, std::pair{&b, &a}}) {
    Eigen::LLT<Eigen::MatrixXd> llt(*f);
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
  const double cross = detail::trace_sqrt_product(a.cov, b.cov);
  const double fd = (a.mean - b.mean).squaredNorm() + a.cov.trace() + b.cov.trace() - 2.0 * cross;
  IREPA_CHECK(std::isfinite(fd), "frechet_distance: not finite (features contain NaN or Inf)");
  return std::max(fd, 0.0);
}

template <class T>
double frechet_distance(ConstView<T> a, ConstView<T> b) {
  return frechet_distance(fit_gaussian(a), fit_gaussian(b));
}

}  // namespace irepa::metrics
