#pragma once
// Frechet distance between two Gaussians fitted to feature sets (the FID formula, in any feature
// space): ||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2), computed in double through
// symmetric eigendecompositions (no non-symmetric matrix square root is needed).

#include <cmath>

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

/// Symmetric PSD square root (negative eigenvalues from rounding are clamped to 0).
inline Eigen::MatrixXd psd_sqrt(const Eigen::MatrixXd& a) {
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(0.5 * (a + a.transpose()));
  IREPA_CHECK(es.info() == Eigen::Success, "psd_sqrt: the eigendecomposition of a {}x{} matrix did not converge", a.rows(), a.cols());
  return es.eigenvectors() * es.eigenvalues().cwiseMax(0.0).cwiseSqrt().asDiagonal() * es.eigenvectors().transpose();
}

inline double frechet_distance(const Gaussian& a, const Gaussian& b) {
  IREPA_CHECK(a.mean.size() == b.mean.size() && a.cov.rows() == a.mean.size() && b.cov.rows() == b.mean.size(),
              "frechet_distance: Gaussians of dimension {} and {}", a.mean.size(), b.mean.size());
  const Eigen::MatrixXd s = psd_sqrt(a.cov);
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(s * b.cov * s, Eigen::EigenvaluesOnly);
  IREPA_CHECK(es.info() == Eigen::Success, "frechet_distance: the eigendecomposition did not converge");
  const double cross = es.eigenvalues().cwiseMax(0.0).cwiseSqrt().sum();
  const double fd = (a.mean - b.mean).squaredNorm() + a.cov.trace() + b.cov.trace() - 2.0 * cross;
  IREPA_CHECK(std::isfinite(fd), "frechet_distance: not finite (features contain NaN or Inf)");
  return std::max(fd, 0.0);
}

template <class T>
double frechet_distance(ConstView<T> a, ConstView<T> b) {
  return frechet_distance(fit_gaussian(a), fit_gaussian(b));
}

}  // namespace irepa::metrics
