#pragma once
// JiT's online evaluation (the reference's engine_jit.py evaluate, scored as torch-fidelity scores
// the folder it writes), as an Evaluator for the trainer (train/evaluation.hpp):
//  - num_images class-balanced samples: image i has class i / (num_images / classes); rank r's
//    k-th batch holds images [(k W + r) B, +B) (B: the per-process batch, W: the processes);
//  - uint8 as the engine converts them: round(clip((x + 1) / 2 * 255, 0, 255)), half to even;
//  - FID of pool_3 against stored mu / sigma (a fid_stats .npz), through the symmetric square
//    root (it agrees with scipy's sqrtm to ~1e-11 relative, metrics/adm_evaluator.hpp);
//  - Inception Score as torch-fidelity's isc: logits without bias, rows shuffled by numpy's
//    RandomState(2020).permutation(N), 10 splits at floor(i N / 10), exp(mean KL(p || mean p))
//    per split; the mean (and numpy's population std) over splits. torch-fidelity reads the
//    engine's zero-padded PNG names in sorted order, so row i is image i.
// Each rank keeps sums only: pool_3's sum and sum of outer products (shifted by the reference
// mean, which keeps the covariance's cancellation small), and per split the probability sums and
// sum p log p. A job of W processes adds these instead of gathering 50k rows of features.
// Sample noise: batch seeds from (seed, step, first image), so a batch is the same whatever
// happened before it.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <Eigen/Dense>

#include "irepa/core/error.hpp"
#include "irepa/core/rng.hpp"
#include "irepa/core/tensor.hpp"
#include "irepa/io/npz.hpp"
#include "irepa/metrics/adm_evaluator.hpp"
#include "irepa/models/inception_v3.hpp"
#include "irepa/train/evaluation.hpp"

namespace irepa::metrics {

/// numpy.random.RandomState(seed).permutation(n): MT19937 seeded as init_genrand (std::mt19937
/// is that generator), shuffled from the end with draws in [0, i] by masked rejection (numpy's
/// legacy random_interval).
inline std::vector<std::int64_t> numpy_permutation(std::int64_t n, std::uint32_t seed) {
  IREPA_CHECK(n >= 0, "numpy_permutation: n is {}", n);
  std::vector<std::int64_t> p(static_cast<std::size_t>(n));
  std::iota(p.begin(), p.end(), std::int64_t{0});
  std::mt19937 g(seed);
  for (std::int64_t i = n - 1; i >= 1; --i) {
    const auto max = static_cast<std::uint64_t>(i);
    std::uint64_t mask = max;
    for (int s = 1; s < 64; s *= 2) mask |= mask >> s;
    std::uint64_t v = 0;
    do {
      v = max <= 0xffffffffULL ? (std::uint64_t{g()} & mask) : (((std::uint64_t{g()} << 32) | g()) & mask);
    } while (v > max);
    std::swap(p[static_cast<std::size_t>(i)], p[static_cast<std::size_t>(v)]);
  }
  return p;
}

/// Mean and covariance (N - 1) of feature rows added in any order, split over any number of
/// processes: sums of (x - shift) and of their outer products, in double.
class FeatureMoments {
 public:
  explicit FeatureMoments(Eigen::VectorXd shift) : shift_(std::move(shift)), sum_(Eigen::VectorXd::Zero(shift_.size())),
                                                   outer_(Eigen::MatrixXd::Zero(shift_.size(), shift_.size())) {}
  std::int64_t dim() const { return shift_.size(); }
  double count() const { return count_; }

  /// rows [n, D]; NaN / Inf are an Error.
  template <class T>
  void add(ConstView<T> rows) {
    detail::check_features<T>("FeatureMoments", rows, 1);
    IREPA_CHECK(rows.size(1) == dim(), "FeatureMoments: rows of {} features, expected {}", rows.size(1), dim());
    Eigen::MatrixXd X(rows.size(0), dim());
    for (std::int64_t i = 0; i < rows.size(0); ++i)
      for (std::int64_t d = 0; d < dim(); ++d) X(i, d) = static_cast<double>(rows.data()[i * dim() + d]) - shift_(d);
    sum_ += X.colwise().sum().transpose();
    outer_.noalias() += X.transpose() * X;
    count_ += static_cast<double>(rows.size(0));
  }

  /// The state as numbers to add across processes: count, sum [D], outer [D, D].
  void append_to(std::vector<double>& v) const {
    v.push_back(count_);
    v.insert(v.end(), sum_.data(), sum_.data() + sum_.size());
    v.insert(v.end(), outer_.data(), outer_.data() + outer_.size());
  }
  /// Reads the state back from v at pos (advanced past it).
  void read_from(const std::vector<double>& v, std::size_t& pos) {
    const std::size_t D = static_cast<std::size_t>(dim());
    IREPA_CHECK(v.size() >= pos + 1 + D + D * D, "FeatureMoments: a state of {} numbers from {}, expected {}", v.size(), pos, 1 + D + D * D);
    count_ = v[pos++];
    std::copy_n(v.begin() + static_cast<std::ptrdiff_t>(pos), D, sum_.data()), pos += D;
    std::copy_n(v.begin() + static_cast<std::ptrdiff_t>(pos), D * D, outer_.data()), pos += D * D;
  }

  Gaussian gaussian() const {
    IREPA_CHECK(count_ >= 2, "FeatureMoments: {} rows; a covariance needs at least 2", count_);
    const Eigen::VectorXd d = sum_ / count_;
    Gaussian g;
    g.mean = shift_ + d;
    g.cov = (outer_ - count_ * d * d.transpose()) / (count_ - 1);
    return g;
  }

 private:
  Eigen::VectorXd shift_, sum_;
  Eigen::MatrixXd outer_;
  double count_ = 0;
};

struct SplitScore {
  double mean = 0, std = 0;     // over splits; std with numpy's default ddof 0
  std::vector<double> splits;  // exp(mean KL) of each split
};

/// torch-fidelity's Inception Score of N rows added by index in any order and over any number of
/// processes: row i goes to the split of its place in the shuffled order.
class SplitInceptionScore {
 public:
  SplitInceptionScore(std::int64_t n, std::int64_t classes, std::int64_t splits = 10, bool shuffle = true, std::uint32_t seed = 2020)
      : n_(n), classes_(classes), splits_(splits), split_of_(static_cast<std::size_t>(n)) {
    IREPA_CHECK(splits >= 1 && n >= splits && classes >= 2, "SplitInceptionScore: {} rows of {} classes in {} splits; expected at least one row per split",
                n, classes, splits);
    const std::vector<std::int64_t> perm = shuffle ? numpy_permutation(n, seed) : std::vector<std::int64_t>{};
    for (std::int64_t s = 0; s < splits; ++s)
      for (std::int64_t pos = s * n / splits; pos < (s + 1) * n / splits; ++pos)
        split_of_[static_cast<std::size_t>(shuffle ? perm[static_cast<std::size_t>(pos)] : pos)] = s;
    state_.assign(static_cast<std::size_t>(splits * (classes + 2)), 0.0);
  }

  /// Row `index` (0 <= index < n) of logits [classes]: softmax in double.
  template <class T>
  void add(std::int64_t index, const T* logits) {
    IREPA_CHECK(index >= 0 && index < n_, "SplitInceptionScore: row {} of {}", index, n_);
    double mx = -INFINITY;
    for (std::int64_t c = 0; c < classes_; ++c) {
      IREPA_CHECK(std::isfinite(static_cast<double>(logits[c])), "SplitInceptionScore: logit {} of row {} is {}", c, index,
                  static_cast<double>(logits[c]));
      mx = std::max(mx, static_cast<double>(logits[c]));
    }
    double z = 0;
    for (std::int64_t c = 0; c < classes_; ++c) z += std::exp(static_cast<double>(logits[c]) - mx);
    const double lz = std::log(z);
    double* st = state_.data() + split_of_[static_cast<std::size_t>(index)] * (classes_ + 2);
    for (std::int64_t c = 0; c < classes_; ++c) {
      const double lp = static_cast<double>(logits[c]) - mx - lz, p = std::exp(lp);
      st[c] += p;
      st[classes_] += p * lp;
    }
    st[classes_ + 1] += 1;
  }

  void append_to(std::vector<double>& v) const { v.insert(v.end(), state_.begin(), state_.end()); }
  void read_from(const std::vector<double>& v, std::size_t& pos) {
    IREPA_CHECK(v.size() >= pos + state_.size(), "SplitInceptionScore: a state of {} numbers from {}, expected {}", v.size(), pos,
                state_.size());
    std::copy_n(v.begin() + static_cast<std::ptrdiff_t>(pos), state_.size(), state_.begin());
    pos += state_.size();
  }

  /// Per split: mean_i sum_c p_ic (log p_ic - log q_c), q = the split's mean p; as sums,
  /// (sum p log p - sum_c P_c log(P_c / m)) / m with P_c = sum_i p_ic over the split's m rows.
  SplitScore result() const {
    SplitScore r;
    for (std::int64_t s = 0; s < splits_; ++s) {
      const double* st = state_.data() + s * (classes_ + 2);
      const double m = st[classes_ + 1];
      IREPA_CHECK(m > 0, "SplitInceptionScore: split {} has no rows (were all {} rows added?)", s, n_);
      double kl = st[classes_];
      for (std::int64_t c = 0; c < classes_; ++c)
        if (st[c] > 0) kl -= st[c] * std::log(st[c] / m);
      r.splits.push_back(std::exp(kl / m));
    }
    r.mean = std::accumulate(r.splits.begin(), r.splits.end(), 0.0) / static_cast<double>(splits_);
    double var = 0;
    for (double v : r.splits) var += (v - r.mean) * (v - r.mean);
    r.std = std::sqrt(var / static_cast<double>(splits_));
    return r;
  }

 private:
  std::int64_t n_, classes_, splits_;
  std::vector<std::int64_t> split_of_;
  std::vector<double> state_;  // per split: P [classes], sum p log p, rows
};

/// mu [D] and sigma [D, D] stored in an .npz under mu_key / sigma_key (the ADM suite's reference
/// batches, JiT's fid_stats files), checked to be finite and of dimension D.
inline Gaussian stored_gaussian(const io::NpzFile& f, const std::string& mu_key, const std::string& sigma_key, std::int64_t D) {
  IREPA_CHECK(f.contains(mu_key) && f.contains(sigma_key), "'{}' has no {} / {}: not a statistics file", f.path(), mu_key, sigma_key);
  const auto mu = f.array(mu_key).load<double>(), sigma = f.array(sigma_key).load<double>();
  IREPA_CHECK(mu.shape() == Shape{D} && sigma.shape() == Shape({D, D}),
              "'{}' stores {} {} and {} {}, but the features have dimension {} (expected [{}] and [{}, {}])", f.path(), mu_key,
              mu.shape().str(), sigma_key, sigma.shape().str(), D, D, D, D);
  Gaussian g;
  g.mean = Eigen::Map<const Eigen::VectorXd>(mu.data(), D);
  g.cov = Eigen::Map<const Eigen::Matrix<double, -1, -1, Eigen::RowMajor>>(sigma.data(), D, D);
  IREPA_CHECK(g.mean.allFinite() && g.cov.allFinite(), "'{}' {} / {} hold NaN or Inf", f.path(), mu_key, sigma_key);
  return g;
}

/// Labels of images [first, first + n) of num_images class-balanced ones: image i has class
/// i / (num_images / classes) (the engine's np.arange(classes).repeat(num_images / classes)).
inline Tensor<std::int64_t> balanced_labels(std::int64_t first, std::int64_t n, std::int64_t num_images, std::int64_t classes) {
  IREPA_CHECK(classes >= 1 && num_images % classes == 0 && first >= 0 && n >= 0 && first + n <= num_images,
              "balanced_labels: images [{}, {}) of {} in {} classes; the classes must divide the images", first, first + n, num_images, classes);
  Tensor<std::int64_t> y(Shape{n});
  for (std::int64_t k = 0; k < n; ++k) y[k] = (first + k) / (num_images / classes);
  return y;
}

/// Samples x [n, C, H, W] in [-1, 1] -> the JiT engine's uint8 values (as float, what Inception
/// takes) [n, H, W, 3]: round(clip((x + 1) / 2 * 255, 0, 255)) in float, half to even; one
/// channel is repeated to three.
inline Tensor<float> rounded_uint8_images(const Tensor<double>& x) {
  IREPA_CHECK(x.rank() == 4 && (x.size(1) == 1 || x.size(1) == 3), "rounded_uint8_images: samples of shape {}, expected [n, 1 or 3, H, W]",
              x.shape().str());
  const std::int64_t n = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  Tensor<float> out(Shape{n, H, W, 3});
  for (std::int64_t b = 0; b < n; ++b)
    for (std::int64_t c = 0; c < 3; ++c)
      for (std::int64_t i = 0; i < H * W; ++i) {
        const double s = x[(b * C + (C == 1 ? 0 : c)) * H * W + i];
        IREPA_CHECK(!std::isnan(s), "rounded_uint8_images: sample {} holds NaN (the model diverged?)", b);
        const float v = (static_cast<float>(s) + 1.0f) / 2.0f * 255.0f;
        out[(b * H * W + i) * 3 + c] = std::nearbyint(std::clamp(v, 0.0f, 255.0f));
      }
  return out;
}

struct OnlineFidOptions {
  std::int64_t num_images = 50000, batch = 256, num_classes = 1000;  // batch: images per process per round (the engine's gen_bsz)
  std::uint64_t seed = 0;
  std::string suffix;  // after the logged names fid / is: the engine's "_cfg{cfg}_res{size}"
  std::int64_t is_splits = 10;
  bool quiet = false;  // no progress lines
};

/// The evaluator: Inception (net, on ctx's device) over the samples the trainer hands it, FID
/// against `reference` and the Inception Score, logged as fid<suffix> and is<suffix>.
template <class Ctx>
Evaluator online_fid_evaluator(const Ctx& ctx, std::shared_ptr<const InceptionV3<float, typename Ctx::device_type>> net, Gaussian reference,
                               OnlineFidOptions o) {
  using Net = InceptionV3<float, typename Ctx::device_type>;
  IREPA_CHECK(net, "online_fid_evaluator: no network");
  IREPA_CHECK(o.num_images >= 2 && o.num_images >= o.is_splits && o.batch > 0 && o.num_classes >= 1 && o.num_images % o.num_classes == 0,
              "online evaluation: {} images in batches of {} over {} classes; expected at least 2 images (and one per IS split), "
              "a positive batch, and the same number of images in every class (the reference's assertion)",
              o.num_images, o.batch, o.num_classes);
  IREPA_CHECK(reference.mean.size() == Net::kPool3 && reference.cov.rows() == Net::kPool3 && reference.cov.cols() == Net::kPool3,
              "online evaluation: the reference statistics have dimension {}, expected pool_3's {}", reference.mean.size(), Net::kPool3);
  auto ref = std::make_shared<const Gaussian>(std::move(reference));
  return [&ctx, net, ref, o](const EvalRequest& req) {
    const std::int64_t N = o.num_images, B = o.batch, W = req.world;
    FeatureMoments moments(ref->mean);
    SplitInceptionScore isc(N, Net::kClasses, o.is_splits);
    const auto t0 = std::chrono::steady_clock::now();
    std::int64_t mine = 0;
    for (std::int64_t k = 0; k * B * W < N; ++k) {
      const std::int64_t first = (k * W + req.rank) * B;
      if (first >= N) break;
      const std::int64_t n = std::min(B, N - first);
      const Tensor<double> x = req.sample(balanced_labels(first, n, N, o.num_classes),
                                          mix64(o.seed ^ mix64(static_cast<std::uint64_t>(req.step) << 32 ^ static_cast<std::uint64_t>(first))));
      const Tensor<float> images = rounded_uint8_images(x);
      const auto f = net->forward(ctx, to_device(ctx, images.cview()).cview());
      const Tensor<float> pool3 = to_host(ctx, f.pool3.cview()), logits = to_host(ctx, f.logits.cview());
      moments.add<float>(pool3.cview());
      for (std::int64_t i = 0; i < n; ++i) isc.add(first + i, logits.data() + i * Net::kClasses);
      mine += n;
      if (!o.quiet && req.rank == 0) {
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::printf("online evaluation at step %lld: %lld/%lld images on this process, %.2f img/s\n", static_cast<long long>(req.step),
                    static_cast<long long>(mine), static_cast<long long>((N + W - 1) / W), s > 0 ? static_cast<double>(mine) / s : 0.0);
        std::fflush(stdout);
      }
    }
    std::vector<double> state;
    moments.append_to(state);
    isc.append_to(state);
    req.sum_over_ranks(state);
    std::size_t pos = 0;
    moments.read_from(state, pos);
    isc.read_from(state, pos);
    IREPA_CHECK(moments.count() == static_cast<double>(N), "online evaluation: {} images were scored, expected {}", moments.count(), N);
    const double fid = frechet_distance(moments.gaussian(), *ref, SqrtMethod::Symmetric);
    const SplitScore is = isc.result();
    if (req.rank == 0 && !o.quiet) {
      std::printf("FID: %.4f, Inception Score: %.4f (std %.4f over %lld splits), %lld images\n", fid, is.mean, is.std,
                  static_cast<long long>(o.is_splits), static_cast<long long>(N));
      std::fflush(stdout);
    }
    std::map<std::string, double> out;
    out["fid" + o.suffix] = fid;
    out["is" + o.suffix] = is.mean;
    return out;
  };
}

/// The FID Inception-v3 from a safetensors file (torch-fidelity's names under prefix), or random
/// weights from "random:SEED" (tests: the numbers are then a consistency check, not FID / IS).
inline InceptionV3<float> load_fid_inception(const std::string& weights, std::string_view prefix = {}) {
  InceptionV3<float> net;
  if (weights.starts_with("random:")) {
    const std::string digits = weights.substr(7);
    IREPA_CHECK(!digits.empty() && digits.size() <= 19 && std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }),
                "Inception weights '{}': expected random:SEED with a decimal seed", weights);
    net.init_random(std::stoull(digits));
  } else {
    net.load(io::SafeTensorsFile(weights), prefix);
  }
  return net;
}

}  // namespace irepa::metrics
