// JiT's online evaluation (metrics/online_fid.hpp): numpy's legacy permutation, the sums that
// let processes add their share (moments and per-split Inception Score sums) against the direct
// formulas, the engine's labels and uint8 rounding, and the evaluator end to end: one process,
// two processes (threads adding their sums), and the direct computation over every image agree.

#include <barrier>
#include <cmath>
#include <mutex>
#include <thread>

#include "irepa/metrics/online_fid.hpp"
#include "test_support.hpp"

using namespace irepa;

namespace {

/// torch-fidelity's isc_features_to_metric, written out: rows shuffled, split, softmax, KL.
metrics::SplitScore direct_inception_score(const Tensor<float>& logits, std::int64_t splits) {
  const std::int64_t N = logits.size(0), K = logits.size(1);
  const std::vector<std::int64_t> perm = metrics::numpy_permutation(N, 2020);
  metrics::SplitScore r;
  for (std::int64_t s = 0; s < splits; ++s) {
    const std::int64_t a = s * N / splits, b = (s + 1) * N / splits;
    std::vector<std::vector<double>> p;
    std::vector<double> q(static_cast<std::size_t>(K), 0.0);
    for (std::int64_t pos = a; pos < b; ++pos) {
      const float* row = logits.data() + perm[static_cast<std::size_t>(pos)] * K;
      double mx = -INFINITY, z = 0;
      for (std::int64_t c = 0; c < K; ++c) mx = std::max(mx, static_cast<double>(row[c]));
      for (std::int64_t c = 0; c < K; ++c) z += std::exp(row[c] - mx);
      std::vector<double> pr(static_cast<std::size_t>(K));
      for (std::int64_t c = 0; c < K; ++c) pr[static_cast<std::size_t>(c)] = std::exp(row[c] - mx) / z;
      for (std::int64_t c = 0; c < K; ++c) q[static_cast<std::size_t>(c)] += pr[static_cast<std::size_t>(c)] / static_cast<double>(b - a);
      p.push_back(std::move(pr));
    }
    double kl = 0;
    for (const auto& pr : p)
      for (std::int64_t c = 0; c < K; ++c) {
        const double v = pr[static_cast<std::size_t>(c)];
        kl += v * (std::log(v) - std::log(q[static_cast<std::size_t>(c)]));
      }
    r.splits.push_back(std::exp(kl / static_cast<double>(b - a)));
  }
  for (double v : r.splits) r.mean += v / static_cast<double>(splits);
  for (double v : r.splits) r.std += (v - r.mean) * (v - r.mean) / static_cast<double>(splits);
  r.std = std::sqrt(r.std);
  return r;
}

/// Two threads standing in for two processes: sum_over_ranks adds both vectors.
class TwoRanks {
 public:
  void sum(std::vector<double>& v) {
    {
      std::lock_guard<std::mutex> l(m_);
      if (total_.empty()) total_.assign(v.size(), 0.0);
      REQUIRE(total_.size() == v.size());
      for (std::size_t i = 0; i < v.size(); ++i) total_[i] += v[i];
    }
    sync_.arrive_and_wait();
    v = total_;
    sync_.arrive_and_wait();
  }

 private:
  std::mutex m_;
  std::vector<double> total_;
  std::barrier<> sync_{2};
};

}  // namespace

TEST_CASE("numpy_permutation is numpy's RandomState(seed).permutation(n)", "[adm][online]") {
  // Printed by /usr/bin/python3 (numpy 1.24): scripts/numpy_permutation_fixture.py.
  const std::vector<std::int64_t> p20 = metrics::numpy_permutation(20, 2020);
  CHECK(p20 == std::vector<std::int64_t>{6, 9, 12, 4, 5, 14, 1, 2, 15, 10, 19, 18, 7, 16, 13, 11, 17, 3, 8, 0});
  const std::vector<std::int64_t> p50k = metrics::numpy_permutation(50000, 2020);
  CHECK(std::vector<std::int64_t>(p50k.begin(), p50k.begin() + 8) ==
        std::vector<std::int64_t>{24397, 39273, 6546, 13504, 49765, 31361, 27741, 47758});
  CHECK(std::vector<std::int64_t>(p50k.end() - 8, p50k.end()) ==
        std::vector<std::int64_t>{20039, 32387, 1661, 18523, 44739, 47734, 40259, 41824});
  const std::vector<std::int64_t> p1k = metrics::numpy_permutation(1000, 7);
  CHECK(std::vector<std::int64_t>(p1k.begin(), p1k.begin() + 8) == std::vector<std::int64_t>{778, 334, 271, 802, 216, 408, 812, 94});
  std::vector<std::int64_t> sorted = p50k;
  std::sort(sorted.begin(), sorted.end());
  for (std::int64_t i = 0; i < 50000; ++i) REQUIRE(sorted[static_cast<std::size_t>(i)] == i);
}

TEST_CASE("FeatureMoments: rows added in any order, in two parts that are summed, give np.mean / np.cov", "[adm][online]") {
  const std::int64_t N = 37, D = 6;
  Tensor<float> f(Shape{N, D});
  test::rng().normal(f.view(), 0.5f, 2.0f);
  const metrics::Gaussian want = metrics::feature_statistics<float>(f.cview());
  Eigen::VectorXd shift = Eigen::VectorXd::Zero(D);
  for (std::int64_t d = 0; d < D; ++d) shift(d) = static_cast<double>(f[d]) + 0.25;  // as the reference mean would be
  metrics::FeatureMoments a(shift), b(shift);
  a.add<float>(f.cview().slice(0, 20, 17));
  b.add<float>(f.cview().slice(0, 0, 11));
  a.add<float>(f.cview().slice(0, 11, 9));
  std::vector<double> sa, sb;
  a.append_to(sa), b.append_to(sb);
  for (std::size_t i = 0; i < sa.size(); ++i) sa[i] += sb[i];
  metrics::FeatureMoments sum(shift);
  std::size_t pos = 0;
  sum.read_from(sa, pos);
  CHECK(pos == sa.size());
  CHECK(sum.count() == N);
  const metrics::Gaussian got = sum.gaussian();
  CHECK((got.mean - want.mean).norm() <= 1e-12 * want.mean.norm());
  CHECK((got.cov - want.cov).norm() <= 1e-12 * want.cov.norm());
  Tensor<float> bad = Tensor<float>::copy_of(f.cview().slice(0, 0, 2));
  bad[3] = NAN;
  REQUIRE_IREPA_ERROR(a.add<float>(bad.cview()), "FeatureMoments", "row 0 is nan");
  REQUIRE_IREPA_ERROR(metrics::FeatureMoments(shift).gaussian(), "at least 2");
}

TEST_CASE("SplitInceptionScore: per-split sums added by index give torch-fidelity's shuffled Inception Score", "[adm][online]") {
  const std::int64_t N = 53, K = 9;
  for (std::int64_t splits : {1, 3, 10}) {
    Tensor<float> logits(Shape{N, K});
    test::rng().normal(logits.view(), 0.0f, 3.0f);
    const metrics::SplitScore want = direct_inception_score(logits, splits);
    metrics::SplitInceptionScore even(N, K, splits), odd(N, K, splits);
    for (std::int64_t i = N - 1; i >= 0; --i) (i % 2 ? odd : even).add(i, logits.data() + i * K);
    std::vector<double> se, so;
    even.append_to(se), odd.append_to(so);
    for (std::size_t i = 0; i < se.size(); ++i) se[i] += so[i];
    metrics::SplitInceptionScore all(N, K, splits);
    std::size_t pos = 0;
    all.read_from(se, pos);
    const metrics::SplitScore got = all.result();
    INFO("splits " << splits);
    REQUIRE(got.splits.size() == want.splits.size());
    for (std::size_t s = 0; s < got.splits.size(); ++s) CHECK(std::abs(got.splits[s] - want.splits[s]) <= 1e-12 * want.splits[s]);
    CHECK(std::abs(got.mean - want.mean) <= 1e-12 * want.mean);
    CHECK(std::abs(got.std - want.std) <= 1e-10 * std::max(want.std, 1e-3));
    CHECK(got.mean > 1.0);
  }
  // Unshuffled, one split: the ADM evaluator's score over one chunk of all rows.
  Tensor<float> logits(Shape{N, K});
  test::rng().normal(logits.view(), 0.0f, 2.0f);
  metrics::SplitInceptionScore plain(N, K, 1, /*shuffle=*/false);
  for (std::int64_t i = 0; i < N; ++i) plain.add(i, logits.data() + i * K);
  CHECK(std::abs(plain.result().mean - metrics::inception_score<float>(logits.cview(), N).score) <= 1e-12 * plain.result().mean);
  REQUIRE_IREPA_ERROR(metrics::SplitInceptionScore(5, K, 10), "one row per split");
  metrics::SplitInceptionScore missing(N, K, 10);
  missing.add(0, logits.data());
  REQUIRE_IREPA_ERROR(missing.result(), "has no rows");
  REQUIRE_IREPA_ERROR(missing.add(N, logits.data()), "row 53 of 53");
}

TEST_CASE("balanced_labels and rounded_uint8_images: the JiT engine's labels and its rounded uint8", "[adm][online]") {
  const Tensor<std::int64_t> y = metrics::balanced_labels(3, 9, 20, 4);  // 5 images per class
  for (std::int64_t k = 0; k < 9; ++k) CHECK(y[k] == (3 + k) / 5);
  REQUIRE_IREPA_ERROR(metrics::balanced_labels(0, 4, 10, 4), "must divide");
  REQUIRE_IREPA_ERROR(metrics::balanced_labels(9, 4, 12, 4), "[9, 13) of 12");

  // x = 0 -> 127.5 -> 128 (round half to even; truncation, the LDM conversion, gives 127).
  Tensor<double> x(Shape{1, 3, 1, 6});
  const double v[6] = {0.0, -1.0, 1.0, -7.0, 9.0, -0.5};
  for (std::int64_t c = 0; c < 3; ++c)
    for (std::int64_t i = 0; i < 6; ++i) x[c * 6 + i] = v[i];
  const Tensor<float> u = metrics::rounded_uint8_images(x);
  REQUIRE(u.shape() == Shape({1, 1, 6, 3}));
  const float want[6] = {128, 0, 255, 0, 255, 64};  // -0.5 -> 63.75 -> 64
  for (std::int64_t i = 0; i < 6; ++i)
    for (std::int64_t c = 0; c < 3; ++c) CHECK(u[i * 3 + c] == want[i]);
  // One channel is repeated; random values match the formula in float.
  Tensor<double> g = test::randn(Shape{2, 1, 3, 4}, 0.7);
  const Tensor<float> ug = metrics::rounded_uint8_images(g);
  for (std::int64_t b = 0; b < 2; ++b)
    for (std::int64_t i = 0; i < 12; ++i) {
      const float f = std::clamp((static_cast<float>(g[b * 12 + i]) + 1.0f) / 2.0f * 255.0f, 0.0f, 255.0f);
      for (std::int64_t c = 0; c < 3; ++c) CHECK(std::abs(ug[(b * 12 + i) * 3 + c] - f) <= 0.5f);
    }
  g[5] = NAN;
  REQUIRE_IREPA_ERROR(metrics::rounded_uint8_images(g), "sample 0 holds NaN");
  REQUIRE_IREPA_ERROR(metrics::rounded_uint8_images(Tensor<double>(Shape{1, 2, 2, 2})), "expected [n, 1 or 3, H, W]");
}

TEST_CASE("online_fid_evaluator: one process, two processes and the direct computation over all images agree", "[adm][online]") {
  const CpuContext ctx(2);
  InceptionV3<float> host;
  host.init_random(test::rng().seed() & 0xffff);
  auto net = std::make_shared<const InceptionV3<float>>(InceptionV3<float>::from_host(host));
  const std::int64_t N = 12, classes = 3, size = 24;
  metrics::Gaussian ref;
  ref.mean = Eigen::VectorXd::Constant(InceptionV3<float>::kPool3, 0.1);
  ref.cov = Eigen::MatrixXd::Identity(InceptionV3<float>::kPool3, InceptionV3<float>::kPool3) * 0.01;
  const metrics::OnlineFidOptions opt{.num_images = N, .batch = 5, .num_classes = classes, .seed = 11, .suffix = "_cfg1.0_res24",
                                      .is_splits = 4, .quiet = true};
  // A stand-in sampler: the image is a function of (label, seed) alone, so the rounds of any
  // number of processes draw the same images.
  std::mutex calls_m;
  std::vector<std::pair<std::int64_t, std::uint64_t>> calls;
  auto sample = [&](const Tensor<std::int64_t>& y, std::uint64_t seed) {
    {
      std::lock_guard<std::mutex> l(calls_m);
      calls.emplace_back(y.numel(), seed);
    }
    Tensor<double> x(Shape{y.numel(), 3, size, size});
    Philox r(seed, 3);
    r.uniform(x.view(), -1.1, 1.1);
    for (std::int64_t b = 0; b < y.numel(); ++b)
      for (std::int64_t i = 0; i < 3 * size * size / 4; ++i) x[b * 3 * size * size + i] = -1.0 + 0.5 * static_cast<double>(y[b]);
    return x;
  };
  const Evaluator eval = metrics::online_fid_evaluator(ctx, net, ref, opt);
  EvalRequest one;
  one.step = 40, one.sample = sample, one.sum_over_ranks = [](std::vector<double>&) {};
  const auto single = eval(one);
  REQUIRE(single.size() == 2);
  const double fid = single.at("fid_cfg1.0_res24"), is = single.at("is_cfg1.0_res24");
  CHECK(std::isfinite(fid));
  CHECK(fid > 0);
  CHECK(is >= 1.0);
  REQUIRE(calls.size() == 3);  // rounds of 5, 5, 2 images
  CHECK(calls[2].first == 2);

  // The same evaluation again: the same bits. Each round has its own seed.
  CHECK(eval(one).at("fid_cfg1.0_res24") == fid);
  REQUIRE(calls.size() == 6);
  CHECK(calls[0].second != calls[1].second);
  CHECK(calls[3].second == calls[0].second);

  // Two processes: rank r takes rounds r, r + 2, ...; the sums are added.
  calls.clear();
  TwoRanks two;
  std::map<std::string, double> by_rank[2];
  std::vector<std::thread> ranks;
  for (int r = 0; r < 2; ++r)
    ranks.emplace_back([&, r] {
      const CpuContext own(1);  // a process's own context
      const Evaluator ev = metrics::online_fid_evaluator(own, net, ref, opt);
      EvalRequest q;
      q.step = 40, q.rank = r, q.world = 2, q.sample = sample;
      q.sum_over_ranks = [&](std::vector<double>& v) { two.sum(v); };
      by_rank[r] = ev(q);
    });
  for (auto& t : ranks) t.join();
  CHECK(calls.size() == 3);
  for (int r = 0; r < 2; ++r) {
    CHECK(std::abs(by_rank[r].at("fid_cfg1.0_res24") - fid) <= 1e-9 * fid);
    CHECK(std::abs(by_rank[r].at("is_cfg1.0_res24") - is) <= 1e-12 * is);
  }

  // Directly: every image in index order through the network, np.cov, the Frechet distance and
  // torch-fidelity's score.
  Tensor<float> pool3(Shape{N, InceptionV3<float>::kPool3}), logits(Shape{N, InceptionV3<float>::kClasses});
  for (std::int64_t first = 0; first < N; first += 5) {
    const std::int64_t n = std::min<std::int64_t>(5, N - first);
    const std::uint64_t seed = mix64(opt.seed ^ mix64(std::uint64_t{40} << 32 ^ static_cast<std::uint64_t>(first)));
    const Tensor<float> images = metrics::rounded_uint8_images(sample(metrics::balanced_labels(first, n, N, classes), seed));
    const auto f = net->forward(ctx, images.cview());
    std::copy_n(f.pool3.data(), f.pool3.numel(), pool3.data() + first * pool3.size(1));
    std::copy_n(f.logits.data(), f.logits.numel(), logits.data() + first * logits.size(1));
  }
  const double want_fid = metrics::frechet_distance(metrics::feature_statistics<float>(pool3.cview()), ref, metrics::SqrtMethod::Symmetric);
  CHECK(std::abs(fid - want_fid) <= 1e-8 * want_fid);
  CHECK(std::abs(is - direct_inception_score(logits, 4).mean) <= 1e-12 * is);

  // Refused settings.
  auto with = [&](auto change) {
    metrics::OnlineFidOptions o = opt;
    change(o);
    return o;
  };
  REQUIRE_IREPA_ERROR(metrics::online_fid_evaluator(ctx, net, ref, with([](auto& o) { o.num_images = 13; })), "13 images",
                      "same number of images in every class");
  metrics::Gaussian small;
  small.mean = Eigen::VectorXd::Zero(64), small.cov = Eigen::MatrixXd::Identity(64, 64);
  REQUIRE_IREPA_ERROR(metrics::online_fid_evaluator(ctx, net, small, opt), "dimension 64", "2048");
}
