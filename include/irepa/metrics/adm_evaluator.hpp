#pragma once
// The ADM evaluator's statistics (guided-diffusion evaluations/evaluator.py), computed as it
// computes them, from Inception features:
//  - FID / sFID: mu = mean, sigma = np.cov (N - 1) of pool_3 (or the 2023-d spatial features);
//    |mu_s - mu_r|^2 + tr S_s + tr S_r - 2 tr Re sqrtm(S_s S_r). Two ways to the trace term:
//    SqrtMethod::Symmetric (frechet.hpp: a factor of one covariance and the symmetric form, fast) and
//    SqrtMethod::Sqrtm (the matrix square root of the product through a complex Schur form, as
//    scipy's sqrtm, with the evaluator's retry on (S_s + eps I)(S_r + eps I) when the root is
//    not finite, and its refusal of a large imaginary diagonal).
//  - Inception Score: softmax of pool_3 @ W (no bias), rows cut into consecutive chunks of
//    split_size (the last may be shorter), exp(mean_i KL(p_i || mean p)) per chunk, plain mean.
//  - Precision / recall (ManifoldEstimator, k = 3): squared distances max(|u|^2 - 2 u.v + |v|^2, 0)
//    in blocks of rows; a point's radius is the k-th smallest distance of its row in its own set
//    (itself included, at 0); x lies in a set's manifold when d(x, y) <= radius(y) for some y.
//    Precision: samples inside the reference manifold; recall: references inside the samples'.

#include <algorithm>
#include <cmath>
#include <complex>
#include <cstdint>
#include <vector>

#include <Eigen/Dense>
#include <unsupported/Eigen/MatrixFunctions>

#include "irepa/core/context.hpp"
#include "irepa/core/error.hpp"
#include "irepa/core/tensor.hpp"
#include "irepa/metrics/frechet.hpp"

namespace irepa::metrics {

enum class SqrtMethod { Symmetric, Sqrtm };

namespace detail {
template <class T>
void check_features(std::string_view what, ConstView<T> f, std::int64_t min_rows) {
  IREPA_CHECK(f.rank() == 2 && f.size(0) >= min_rows && f.size(1) > 0 && f.is_contiguous(),
              "{}: features have shape {}, expected contiguous [N >= {}, D]", what, f.shape().str(), min_rows);
  for (std::int64_t i = 0; i < f.numel(); ++i)
    IREPA_CHECK(std::isfinite(static_cast<double>(f.data()[i])), "{}: feature {} of row {} is {} (expected finite values)", what,
                i % f.size(1), i / f.size(1), static_cast<double>(f.data()[i]));
}
}  // namespace detail

/// mu and sigma of features [N >= 2, D], as compute_statistics (NaN / Inf are an Error).
template <class T>
Gaussian feature_statistics(ConstView<T> features) {
  detail::check_features<T>("feature_statistics", features, 2);
  return fit_gaussian<T>(features);
}

/// tr Re sqrtm(a b) through a complex Schur form (scipy.linalg.sqrtm's route); NaN when the
/// root is not finite.
inline double trace_sqrtm_product(const Eigen::MatrixXd& a, const Eigen::MatrixXd& b) {
  const Eigen::MatrixXcd prod = (a * b).cast<std::complex<double>>();
  const Eigen::MatrixXcd root = prod.sqrt();
  if (!root.allFinite()) return NAN;
  const Eigen::VectorXcd d = root.diagonal();
  const double imag = d.imag().cwiseAbs().maxCoeff();
  IREPA_CHECK(imag <= 1e-3, "frechet_distance: the matrix square root has an imaginary diagonal component of {} (the evaluator refuses > 1e-3)",
              imag);
  return d.real().sum();
}

/// The evaluator's FIDStatistics.frechet_distance(sample, ref), with either method for the trace
/// of the square root. eps: the evaluator's retry offset when sqrtm's root is not finite.
inline double frechet_distance(const Gaussian& sample, const Gaussian& ref, SqrtMethod method, double eps = 1e-6) {
  IREPA_CHECK(sample.mean.size() == ref.mean.size() && sample.cov.rows() == sample.mean.size() && ref.cov.rows() == ref.mean.size() &&
                  sample.cov.cols() == sample.cov.rows() && ref.cov.cols() == ref.cov.rows(),
              "frechet_distance: statistics of dimension {} (sigma {}x{}) against {} (sigma {}x{})", sample.mean.size(), sample.cov.rows(),
              sample.cov.cols(), ref.mean.size(), ref.cov.rows(), ref.cov.cols());
  IREPA_CHECK(sample.mean.allFinite() && sample.cov.allFinite() && ref.mean.allFinite() && ref.cov.allFinite(),
              "frechet_distance: mu or sigma holds NaN or Inf");
  if (method == SqrtMethod::Symmetric) return metrics::frechet_distance(sample, ref);
  double tr = trace_sqrtm_product(sample.cov, ref.cov);
  if (!std::isfinite(tr)) {
    const Eigen::MatrixXd off = Eigen::MatrixXd::Identity(sample.cov.rows(), sample.cov.cols()) * eps;
    tr = trace_sqrtm_product(sample.cov + off, ref.cov + off);
    IREPA_CHECK(std::isfinite(tr), "frechet_distance: sqrtm is not finite even with {} added to the diagonals", eps);
  }
  return (sample.mean - ref.mean).squaredNorm() + sample.cov.trace() + ref.cov.trace() - 2.0 * tr;
}

struct InceptionScore {
  double score = 0;            // the mean over chunks
  std::vector<double> splits;  // one per chunk
};

/// Inception Score of logits [N, K] (pool_3 @ W, no bias): softmax in double, chunks of
/// split_size rows (the evaluator's default 5000: 10 chunks for 50k samples).
template <class T>
InceptionScore inception_score(ConstView<T> logits, std::int64_t split_size = 5000) {
  detail::check_features<T>("inception_score", logits, 1);
  IREPA_CHECK(split_size > 0, "inception_score: split size {} (rows per chunk) must be positive", split_size);
  const std::int64_t N = logits.size(0), K = logits.size(1);
  Eigen::MatrixXd p(N, K);
  for (std::int64_t i = 0; i < N; ++i) {
    double m = -INFINITY;
    for (std::int64_t k = 0; k < K; ++k) m = std::max(m, static_cast<double>(logits.data()[i * K + k]));
    double s = 0;
    for (std::int64_t k = 0; k < K; ++k) s += (p(i, k) = std::exp(static_cast<double>(logits.data()[i * K + k]) - m));
    p.row(i) /= s;
  }
  InceptionScore r;
  for (std::int64_t i0 = 0; i0 < N; i0 += split_size) {
    const std::int64_t n = std::min(split_size, N - i0);
    const auto part = p.middleRows(i0, n);
    const Eigen::RowVectorXd logmean = part.colwise().mean().array().log();
    double kl = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      double row = 0;
      for (std::int64_t k = 0; k < K; ++k) row += part(i, k) * (std::log(part(i, k)) - logmean(k));
      kl += row;
    }
    r.splits.push_back(std::exp(kl / static_cast<double>(n)));
  }
  for (double s : r.splits) r.score += s;
  r.score /= static_cast<double>(r.splits.size());
  return r;
}

namespace detail {
/// Squared distances of rows [r0, r0 + n) of a (norms na) to every row of b (norms nb), in T
/// through one product: out [n, Nb].
template <class T>
void squared_distances(const Eigen::Matrix<T, -1, -1, Eigen::RowMajor>& a, const Eigen::Matrix<T, -1, 1>& na, std::int64_t r0,
                       std::int64_t n, const Eigen::Matrix<T, -1, -1, Eigen::RowMajor>& b, const Eigen::Matrix<T, -1, 1>& nb,
                       Eigen::Matrix<T, -1, -1, Eigen::RowMajor>& out) {
  out.noalias() = T(-2) * a.middleRows(r0, n) * b.transpose();
  out.colwise() += na.segment(r0, n);
  out.rowwise() += nb.transpose();
  out = out.cwiseMax(T(0));
}
template <class T>
Eigen::Matrix<T, -1, -1, Eigen::RowMajor> to_matrix(ConstView<T> f) {
  return Eigen::Map<const Eigen::Matrix<T, -1, -1, Eigen::RowMajor>>(f.data(), f.size(0), f.size(1));
}
}  // namespace detail

/// Per row of features [N, D]: the squared distance to its k-th nearest neighbour in the set (the
/// row itself counting as the 0-th), computed in blocks of row_batch rows. Needs N > k.
template <class T>
std::vector<T> manifold_radii(ConstView<T> features, int k = 3, std::int64_t row_batch = 2048) {
  detail::check_features<T>("manifold_radii", features, k + 1);
  IREPA_CHECK(k >= 1 && row_batch > 0, "manifold_radii: k {} and row batch {} must be positive", k, row_batch);
  const auto x = detail::to_matrix<T>(features);
  const Eigen::Matrix<T, -1, 1> nx = x.rowwise().squaredNorm();
  const std::int64_t N = x.rows();
  std::vector<T> radii(static_cast<std::size_t>(N));
  Eigen::Matrix<T, -1, -1, Eigen::RowMajor> d;
  std::vector<T> row(static_cast<std::size_t>(N));
  for (std::int64_t r0 = 0; r0 < N; r0 += row_batch) {
    const std::int64_t n = std::min(row_batch, N - r0);
    detail::squared_distances<T>(x, nx, r0, n, x, nx, d);
    for (std::int64_t i = 0; i < n; ++i) {
      std::copy_n(d.row(i).data(), N, row.begin());
      std::nth_element(row.begin(), row.begin() + k, row.end());
      radii[static_cast<std::size_t>(r0 + i)] = row[static_cast<std::size_t>(k)];
    }
  }
  return radii;
}

struct PrecisionRecall {
  double precision = 0, recall = 0;
  std::vector<std::uint8_t> sample_in_ref, ref_in_sample;  // memberships, 0 / 1
  std::vector<double> radii_ref, radii_sample;              // squared k-th neighbour distances
};

/// The evaluator's compute_prec_recall(ref, sample) with k-th neighbour radii.
template <class T>
PrecisionRecall precision_recall(ConstView<T> ref, ConstView<T> sample, int k = 3, std::int64_t row_batch = 2048) {
  IREPA_CHECK(ref.rank() == 2 && sample.rank() == 2 && ref.size(1) == sample.size(1),
              "precision_recall: reference features {} and sample features {} differ in dimension", ref.shape().str(), sample.shape().str());
  const std::vector<T> rr = manifold_radii<T>(ref, k, row_batch), rs = manifold_radii<T>(sample, k, row_batch);
  const auto a = detail::to_matrix<T>(ref), b = detail::to_matrix<T>(sample);
  const Eigen::Matrix<T, -1, 1> na = a.rowwise().squaredNorm(), nb = b.rowwise().squaredNorm();
  PrecisionRecall pr;
  pr.radii_ref.assign(rr.begin(), rr.end()), pr.radii_sample.assign(rs.begin(), rs.end());
  pr.ref_in_sample.assign(static_cast<std::size_t>(a.rows()), 0);
  pr.sample_in_ref.assign(static_cast<std::size_t>(b.rows()), 0);
  Eigen::Matrix<T, -1, -1, Eigen::RowMajor> d;
  for (std::int64_t r0 = 0; r0 < a.rows(); r0 += row_batch) {
    const std::int64_t n = std::min<std::int64_t>(row_batch, a.rows() - r0);
    detail::squared_distances<T>(a, na, r0, n, b, nb, d);  // [n refs, samples]
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = 0; j < b.rows(); ++j) {
        const T dij = d(i, j);
        if (dij <= rs[static_cast<std::size_t>(j)]) pr.ref_in_sample[static_cast<std::size_t>(r0 + i)] = 1;
        if (dij <= rr[static_cast<std::size_t>(r0 + i)]) pr.sample_in_ref[static_cast<std::size_t>(j)] = 1;
      }
  }
  const auto mean = [](const std::vector<std::uint8_t>& v) {
    double s = 0;
    for (auto x : v) s += x;
    return s / static_cast<double>(v.size());
  };
  pr.precision = mean(pr.sample_in_ref), pr.recall = mean(pr.ref_in_sample);
  return pr;
}

}  // namespace irepa::metrics
