// What the default job scores samples with: the Frechet distance, the small classifier, and the
// loss-curve plots.

#include <Eigen/Eigenvalues>

#include <irepa/io/plot.hpp>
#include <irepa/io/png.hpp>
#include <irepa/metrics/classifier.hpp>
#include <irepa/metrics/frechet.hpp>

#include "test_support.hpp"

using namespace irepa;

namespace {
Eigen::MatrixXd random_spd(std::int64_t d) {
  const auto a = test::randn<double>(Shape{d, d});
  Eigen::MatrixXd m = Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(a.data(), d, d);
  return m * m.transpose() / static_cast<double>(d) + 0.1 * Eigen::MatrixXd::Identity(d, d);
}
Eigen::VectorXd random_vec(std::int64_t d) {
  const auto a = test::randn<double>(Shape{d});
  return Eigen::Map<const Eigen::VectorXd>(a.data(), d);
}
}  // namespace

TEST_CASE("Frechet distance: closed forms and an independent computation", "[metrics][frechet]") {
  const std::int64_t d = 7;
  // Same covariance: only the means count.
  metrics::Gaussian a{random_vec(d), random_spd(d)}, b{random_vec(d), a.cov};
  CHECK(metrics::frechet_distance(a, b) == Approx((a.mean - b.mean).squaredNorm()).epsilon(1e-9));
  // Commuting covariances (shared eigenvectors): sum of (sqrt(l1) - sqrt(l2))^2.
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(random_spd(d));
  const Eigen::MatrixXd Q = es.eigenvectors();
  const Eigen::VectorXd l1 = random_vec(d).cwiseAbs().array() + 0.1, l2 = random_vec(d).cwiseAbs().array() + 0.1;
  metrics::Gaussian c{random_vec(d), Q * l1.asDiagonal() * Q.transpose()}, e{random_vec(d), Q * l2.asDiagonal() * Q.transpose()};
  const double want = (c.mean - e.mean).squaredNorm() + (l1.cwiseSqrt() - l2.cwiseSqrt()).squaredNorm();
  CHECK(metrics::frechet_distance(c, e) == Approx(want).epsilon(1e-9));
  // General case against tr sqrt(S1 S2) from the (real, positive) eigenvalues of S1 S2.
  metrics::Gaussian f{random_vec(d), random_spd(d)}, g{random_vec(d), random_spd(d)};
  Eigen::EigenSolver<Eigen::MatrixXd> ge(f.cov * g.cov);
  double cross = 0;
  for (Eigen::Index i = 0; i < d; ++i) cross += std::sqrt(ge.eigenvalues()[i].real());
  const double general = (f.mean - g.mean).squaredNorm() + f.cov.trace() + g.cov.trace() - 2 * cross;
  CHECK(metrics::frechet_distance(f, g) == Approx(general).epsilon(1e-9));
  CHECK(metrics::frechet_distance(f, f) == Approx(0.0).margin(1e-9));
  // From samples: the fitted mean and covariance are the textbook ones.
  const auto x = test::randn<float>(Shape{50, 3});
  const auto fit = metrics::fit_gaussian<float>(x);
  double m0 = 0, c01 = 0;
  for (int i = 0; i < 50; ++i) m0 += x[i * 3] / 50.0;
  double m1 = 0;
  for (int i = 0; i < 50; ++i) m1 += x[i * 3 + 1] / 50.0;
  for (int i = 0; i < 50; ++i) c01 += (x[i * 3] - m0) * (x[i * 3 + 1] - m1) / 49.0;
  CHECK(fit.mean[0] == Approx(m0).epsilon(1e-6));
  CHECK(fit.cov(0, 1) == Approx(c01).epsilon(1e-6));
  REQUIRE_IREPA_ERROR(metrics::fit_gaussian<float>(test::randn<float>(Shape{1, 3})), "expected contiguous [N >= 2, D]");
  REQUIRE_IREPA_ERROR(metrics::frechet_distance(a, metrics::Gaussian{random_vec(3), random_spd(3)}), "dimension 7 and 3");
}

TEST_CASE("MlpClassifier learns separable classes and its hidden features are usable", "[metrics][classifier]") {
  // 4 classes: Gaussian blobs around random centres in 12 dimensions.
  const std::int64_t N = 800, D = 12, K = 4;
  const auto centres = test::randn<float>(Shape{K, D}, 3.0f);
  auto x = test::randn<float>(Shape{N, D});
  Tensor<std::int64_t> y(Shape{N});
  test::rng().randint(y.view(), 0, K);
  for (std::int64_t i = 0; i < N; ++i)
    for (std::int64_t d = 0; d < D; ++d) x[i * D + d] += centres[y[i] * D + d];
  metrics::MlpClassifier clf(D, K, {.hidden = 32, .epochs = 20, .batch_size = 64, .seed = test::rng().seed()});
  const double before = clf.accuracy(x, y);
  const auto losses = clf.fit(x, y);
  REQUIRE(losses.size() == 20);
  CHECK(losses.back() < 0.5 * losses.front());
  INFO("accuracy before " << before << ", after " << clf.accuracy(x, y));
  CHECK(clf.accuracy(x, y) > 0.95);
  CHECK(clf.hidden(x).shape() == Shape{N, 32});
  REQUIRE_IREPA_ERROR(clf.hidden(test::randn<float>(Shape{3, 5})), "expected [N, 12]", "[3, 5]");
  Tensor<std::int64_t> bad(Shape{N});
  bad.fill(K);
  REQUIRE_IREPA_ERROR(clf.fit(x, bad), "label 4 of sample 0 is not in 0..3");
}

TEST_CASE("Loss-curve plots: a PNG of the asked size, written atomically, and the moving average", "[io][plot]") {
  const auto path = std::filesystem::temp_directory_path() / ("irepa_plot_" + std::to_string(test::rng().seed()) + ".png");
  io::PlotPanel p{"loss", "step", "value", {}};
  const auto v = test::randn<double>(Shape{200});
  for (int k = 0; k < 2; ++k) {
    io::PlotSeries s{k ? "b" : "a", {}, {}};
    for (int i = 0; i < 200; ++i) s.x.push_back(i), s.y.push_back(v[i] + k);
    s.y[50] = NAN;  // a gap, not a failure
    p.series.push_back(s);
  }
  io::write_line_plot(path.string(), {p, p}, 640, 240);
  const auto img = io::read_png(path.string()).pixels;  // [H, W, 3]
  CHECK(img.size(0) == 240);
  CHECK(img.size(1) == 640);
  CHECK_FALSE(std::filesystem::exists(path.string() + ".tmp"));
  // Not a blank picture: some pixels are dark (axes, text, lines).
  std::int64_t dark = 0;
  for (std::int64_t i = 0; i < img.numel(); ++i) dark += img[i] < 128;
  CHECK(dark > 500);
  std::filesystem::remove(path);
  io::PlotPanel bad{"bad", "x", "y", {{"s", {1, 2, 3}, {1, 2}}}};
  REQUIRE_IREPA_ERROR(io::write_line_plot(path.string(), {bad}), "series 's'", "3 x values and 2 y values");
  const auto m = io::moving_average({1, 2, 3, NAN, 5}, 3);
  CHECK(m[0] == Approx(1.5));
  CHECK(m[1] == Approx(2.0));
  CHECK(m[2] == Approx(2.5));
  CHECK(m[3] == Approx(4.0));
}
