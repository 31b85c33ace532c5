// What the default job scores samples with: the Frechet distance, the small classifier, and the
// loss-curve plots.

#include <optional>
#include <tuple>

#include <Eigen/Eigenvalues>

#include <irepa/check/gradient_check.hpp>
#include <irepa/io/plot.hpp>
#include <irepa/io/png.hpp>
#include <irepa/metrics/classifier.hpp>
#include <irepa/metrics/frechet.hpp>
#include <irepa/ops/reduce.hpp>

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
  // Singular covariances (fewer samples than dimensions) on either side, or both: S = Y^T Y for
  // k random rows Y (rank k), where eig(S Q) = eig(Y Q Y^T), a k x k positive definite matrix,
  // gives the trace term without any rank decision. Every route: low_rank_limit 0 takes a
  // Cholesky factor of a positive definite side (or, both singular, the first's eigenvectors);
  // 2 takes the pivoted factor of a side of rank <= 2 and else the former; d takes the pivoted
  // factor of any singular side. A Cholesky factor against a singular side leaves the square
  // roots of its zero eigenvalues' rounding in the sum (~1e-8); a pivoted factor does not.
  struct LowRank {
    metrics::Gaussian g;
    Eigen::MatrixXd y;  // [k, d]
  };
  const auto low_rank = [](std::int64_t k) {
    const auto t = test::randn<double>(Shape{k, d});
    const Eigen::MatrixXd y = Eigen::Map<const Eigen::Matrix<double, -1, -1, Eigen::RowMajor>>(t.data(), k, d);
    return LowRank{{random_vec(d), y.transpose() * y}, y};
  };
  const LowRank r5 = low_rank(5), r3 = low_rank(3), r2 = low_rank(2);
  const auto exact_trace = [](const LowRank& p, const Eigen::MatrixXd& q) {
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> small(p.y * q * p.y.transpose(), Eigen::EigenvaluesOnly);
    return small.eigenvalues().cwiseSqrt().sum();
  };
  const metrics::Gaussian* spd = &f;
  const std::tuple<const metrics::Gaussian*, const metrics::Gaussian*, double> cases[] = {
      {&r3.g, spd, exact_trace(r3, f.cov)},       {spd, &r3.g, exact_trace(r3, f.cov)},
      {&r2.g, spd, exact_trace(r2, f.cov)},       {&r5.g, spd, exact_trace(r5, f.cov)},
      {spd, &r5.g, exact_trace(r5, f.cov)},       {&r3.g, &r2.g, exact_trace(r2, r3.g.cov)},
      {&r2.g, &r3.g, exact_trace(r2, r3.g.cov)},  {&r5.g, &r3.g, exact_trace(r3, r5.g.cov)},
      {&r3.g, &r5.g, exact_trace(r3, r5.g.cov)}};
  for (const auto& [p, q, tr] : cases) {
    const double want_pq = (p->mean - q->mean).squaredNorm() + p->cov.trace() + q->cov.trace() - 2 * tr;
    CHECK(want_pq > 0.1);
    CHECK(metrics::frechet_distance(*p, *q) == Approx(want_pq).epsilon(1e-7));
    for (const Eigen::Index limit : {Eigen::Index{0}, Eigen::Index{2}, Eigen::Index{d}}) {
      INFO("rank limit " << limit << ", ranks " << p->cov.fullPivLu().rank() << " and " << q->cov.fullPivLu().rank());
      CHECK(metrics::detail::trace_sqrt_product(p->cov, q->cov, limit) == Approx(tr).epsilon(1e-7));
    }
    CHECK(metrics::detail::trace_sqrt_product(p->cov, q->cov, d) == Approx(tr).epsilon(1e-11));
  }
  CHECK(metrics::frechet_distance(r3.g, r3.g) == Approx(0.0).margin(1e-9));
  // The pivoted factor of a rank-k covariance has k columns and gives the covariance back; a
  // limit below the rank is refused, and a zero covariance has an empty factor.
  for (const auto* lr : {&r5, &r3, &r2}) {
    const auto u = metrics::detail::pivoted_cholesky(lr->g.cov, d);
    REQUIRE(u);
    CHECK(u->cols() == lr->y.rows());
    CHECK((*u * u->transpose() - lr->g.cov).norm() < 1e-12 * lr->g.cov.norm());
    CHECK_FALSE(metrics::detail::pivoted_cholesky(lr->g.cov, u->cols() - 1));
  }
  CHECK_FALSE(metrics::detail::pivoted_cholesky(f.cov, d - 1));
  CHECK(metrics::detail::pivoted_cholesky(Eigen::MatrixXd::Zero(d, d), 0)->cols() == 0);
  CHECK(metrics::detail::trace_sqrt_product(Eigen::MatrixXd::Zero(d, d), f.cov) == 0.0);
  // A covariance that is rounding noise (constant features): indefinite, with a diagonal spread
  // over many scales. Pivoting on its tiny diagonal would blow the off-diagonal noise up by
  // orders of magnitude; the factor is refused, and the trace term stays at the noise's scale, as on the
  // Cholesky route.
  Eigen::MatrixXd noise(d, d);
  {
    const auto t = test::randn<double>(Shape{d, d});
    const Eigen::Map<const Eigen::MatrixXd> m(t.data(), d, d);
    noise = 1e-16 * (m + m.transpose());
    for (Eigen::Index i = 0; i < d; ++i) noise(i, i) = std::pow(10.0, -16.0 - 2.0 * static_cast<double>(i));
  }
  CHECK_FALSE(metrics::detail::low_rank_factor(noise, d));
  const double noise_bound = static_cast<double>(d) * std::sqrt(noise.norm() * f.cov.norm());
  for (const Eigen::Index limit : {Eigen::Index{0}, Eigen::Index{d}}) {
    INFO("rank limit " << limit);
    CHECK(metrics::detail::trace_sqrt_product(noise, f.cov, limit) <= noise_bound);
    CHECK(metrics::detail::trace_sqrt_product(f.cov, noise, limit) <= noise_bound);
  }
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
  metrics::Gaussian nan_cov = r3.g;
  nan_cov.cov(1, 2) = NAN;
  REQUIRE_IREPA_ERROR(metrics::frechet_distance(nan_cov, f), "holds NaN or Inf");
}

TEST_CASE("MlpClassifier learns separable classes and its hidden features are usable", "[metrics][classifier]") {
  // 4 classes: Gaussian blobs around random centres in 12 dimensions.
  CpuContext ctx(2);
  const std::int64_t N = 800, D = 12, K = 4;
  const auto centres = test::randn<float>(Shape{K, D}, 3.0f);
  auto x = test::randn<float>(Shape{N, D});
  Tensor<std::int64_t> y(Shape{N});
  test::rng().randint(y.view(), 0, K);
  for (std::int64_t i = 0; i < N; ++i)
    for (std::int64_t d = 0; d < D; ++d) x[i * D + d] += centres[y[i] * D + d];
  metrics::MlpClassifier<> clf(D, K, {.hidden = 32, .epochs = 20, .batch_size = 64, .seed = test::rng().seed()});
  // The library's layers in one arena, with their names.
  REQUIRE(clf.params().size() == 4);
  CHECK(clf.params().entry("fc1.weight").shape == Shape{32, D});
  CHECK(clf.params().entry("fc2.bias").shape == Shape{K});
  const double before = clf.accuracy(ctx, x, y);
  const auto losses = clf.fit(ctx, x, y);
  REQUIRE(losses.size() == 20);
  CHECK(losses.back() < 0.5 * losses.front());
  INFO("accuracy before " << before << ", after " << clf.accuracy(ctx, x, y));
  CHECK(clf.accuracy(ctx, x, y) > 0.95);
  const Tensor<float> h = clf.hidden(ctx, x);
  CHECK(h.shape() == Shape{N, 32});
  // The hidden features are the first layer's ReLU output; the batches cover every row.
  for (std::int64_t i : {std::int64_t{0}, std::int64_t{63}, std::int64_t{64}, N - 1}) {
    const auto w = clf.params().value("fc1.weight");
    const auto b = clf.params().value("fc1.bias");
    for (std::int64_t j : {std::int64_t{0}, std::int64_t{17}}) {
      double a = b.data()[j];
      for (std::int64_t d = 0; d < D; ++d) a += static_cast<double>(w.data()[j * D + d]) * x[i * D + d];
      CHECK(h[i * 32 + j] == Approx(std::max(a, 0.0)).margin(1e-5));
    }
  }
  REQUIRE_IREPA_ERROR(clf.hidden(ctx, test::randn<float>(Shape{3, 5})), "expected [N, 12]", "[3, 5]");
  Tensor<std::int64_t> bad(Shape{N});
  bad.fill(K);
  REQUIRE_IREPA_ERROR(clf.fit(ctx, x, bad), "label 4 of sample 0 is not in 0..3");
  REQUIRE_IREPA_ERROR(clf.fit(ctx, x, Tensor<std::int64_t>(Shape{N - 1})), "labels [799] for features [800, 12]");
}

TEST_CASE("MlpClassifier: backward passes the gradient checker in double and one fit step is the library AdamW on it", "[metrics][classifier]") {
  CpuContext ctx(2);
  const std::int64_t B = 9, D = 7, K = 3;
  const metrics::MlpClassifierOptions o{.hidden = 5, .epochs = 1, .batch_size = B, .learning_rate = 1e-2, .weight_decay = 0.1,
                                        .seed = test::rng().seed()};
  metrics::MlpClassifier<double> clf(D, K, o);
  auto x = test::randn<double>(Shape{B, D});
  auto& arena = clf.params();
  std::vector<check::GradTarget> targets;
  for (const auto& e : arena.entries()) targets.push_back(check::param(e.name, arena.value(e.name), arena.grad(e.name)));
  std::optional<metrics::MlpClassifier<double>::Cache> cache;
  auto r = check::gradient_check(
      [&] {
        cache = clf.forward(ctx, x.cview());
        return Tensor<double>::copy_of(cache->logits());
      },
      [&](const std::vector<Tensor<double>>& g) { clf.backward(ctx, *cache, g[0].cview()); }, targets);
  REQUIRE_GRADCHECK(r);

  // fit with one batch of everything = the mean cross-entropy's gradient and one library AdamW
  // step, weights decayed and biases not (the batch's row order changes sums only in rounding).
  Tensor<float> xf(x.shape());
  for (std::int64_t i = 0; i < x.numel(); ++i) xf[i] = static_cast<float>(x[i]);
  Tensor<double> xd(x.shape());  // the features as fit sees them (through float)
  for (std::int64_t i = 0; i < x.numel(); ++i) xd[i] = xf[i];
  Tensor<std::int64_t> y(Shape{B});
  test::rng().randint(y.view(), 0, K);
  metrics::MlpClassifier<double> fitted(D, K, o), by_hand(D, K, o);
  const auto losses = fitted.fit(ctx, xf, y);
  const auto c = by_hand.forward(ctx, xd.cview());
  Tensor<double> loss(Shape{B}), dz(Shape{B, K});
  ops::softmax_cross_entropy<double>(ctx, c.logits(), y.cview(), loss.view(), dz.view(), 1.0 / B);
  double mean = 0;
  for (std::int64_t b = 0; b < B; ++b) mean += loss[b] / B;
  CHECK(losses.at(0) == Approx(mean).epsilon(1e-12));
  by_hand.backward(ctx, c, dz.cview());
  AdamW<double> opt(by_hand.params(), {.lr = o.learning_rate, .weight_decay = o.weight_decay, .decay = decay_weights_only});
  opt.step(ctx, by_hand.params(), o.learning_rate);
  const auto a = fitted.params().values(), h = by_hand.params().values();
  const metrics::MlpClassifier<double> untouched(D, K, o);
  double moved = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i) {
    CHECK(std::abs(a.data()[i] - h.data()[i]) < 1e-12);
    moved = std::max(moved, std::abs(a.data()[i] - untouched.params().values().data()[i]));
  }
  CHECK(moved > 1e-3);  // the step did something (AdamW's first step moves each value by about lr)
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
