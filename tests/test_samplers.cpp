// Samplers: parity with the reference's Euler, Heun and Euler-Maruyama runs (given its SDE
// draws), the distribution they produce for Gaussian data under the exact velocity field, and
// classifier-free guidance with its interval.

#include <cmath>

#include "golden/samplers.hpp"
#include "irepa/diffusion/samplers.hpp"
#include "test_support.hpp"

using namespace irepa;

TEST_CASE("samplers match the reference's runs (Euler, Heun + CFG interval, Euler-Maruyama + CFG)", "[samplers][golden]") {
  if (!test::have_golden()) return;
  io::SafeTensorsFile f((test::golden_dir() / "samplers_sit.safetensors").string());
  const auto d = golden::check_sit_sampler<double>(f, 1e-9);
  const auto s = golden::check_sit_sampler<float>(f, 1e-4);
  REQUIRE(d.size() == 3);
  REQUIRE(s.size() == 3);
  for (const auto* rows : {&d, &s})
    for (const auto& r : *rows) {
      INFO(r.name << " rel " << r.rel << " tol " << r.tol);
      CHECK(r.ok());
    }
}

namespace {
/// Data x0 ~ N(mu, Sigma) in 2-D; the exact velocity E[d_alpha x0 + d_sigma n | x_t] of the path.
struct Gaussian2 {
  double mu[2] = {1.5, -0.7};
  double S[2][2] = {{0.8, 0.3}, {0.3, 0.5}};
  PathType path = PathType::Linear;
  Tensor<double> velocity(ConstView<double> x, double t) const {
    // x_t = a x0 + s n ~ N(a mu, V), V = a^2 S + s^2 I
    const PathCoefficients k = interpolant(path, t);
    const double a = k.alpha, sg = k.sigma;
    const double V00 = a * a * S[0][0] + sg * sg, V01 = a * a * S[0][1], V11 = a * a * S[1][1] + sg * sg;
    const double det = V00 * V11 - V01 * V01;
    const double I00 = V11 / det, I01 = -V01 / det, I11 = V00 / det;
    Tensor<double> v(x.shape());
    for (std::int64_t b = 0; b < x.size(0); ++b) {
      const double r0 = x(b, 0) - a * mu[0], r1 = x(b, 1) - a * mu[1];
      const double w0 = I00 * r0 + I01 * r1, w1 = I01 * r0 + I11 * r1;  // V^-1 (x - a mu)
      // E[x0 | x_t] = mu + a S w;  E[n | x_t] = s w
      const double e0 = mu[0] + a * (S[0][0] * w0 + S[0][1] * w1), e1 = mu[1] + a * (S[0][1] * w0 + S[1][1] * w1);
      v(b, 0) = k.d_alpha * e0 + k.d_sigma * sg * w0;
      v(b, 1) = k.d_alpha * e1 + k.d_sigma * sg * w1;
    }
    return v;
  }
};
}  // namespace

TEST_CASE("with the exact velocity of Gaussian data, the samplers reproduce its mean and covariance", "[samplers]") {
  Gaussian2 g;
  const PathType path = GENERATE(PathType::Linear, PathType::Cosine);
  g.path = path;
  const std::int64_t N = 20000;
  const auto z = test::randn<double>({N, 2});
  Tensor<std::int64_t> y(Shape{N});
  y.fill(0);
  const VelocityFn<double> f = [&](ConstView<double> x, double t, ConstView<std::int64_t>) { return g.velocity(x, t); };
  const CpuContext ctx(2);
  Philox noise_rng(test::rng().seed() + 17);
  for (auto [kind, steps] : {std::pair{SamplerKind::Euler, 200}, std::pair{SamplerKind::Heun, 40},
                             std::pair{SamplerKind::EulerMaruyama, 250}}) {
    SamplerOptions o;
    o.kind = kind;
    o.num_steps = steps;
    o.path = path;
    const auto x = sample<double>(ctx, f, z, y, o, philox_noise<double>(ctx, noise_rng));
    double m[2] = {0, 0}, c[2][2] = {{0, 0}, {0, 0}};
    for (std::int64_t b = 0; b < N; ++b)
      for (int i = 0; i < 2; ++i) m[i] += x(b, i) / static_cast<double>(N);
    for (std::int64_t b = 0; b < N; ++b)
      for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j) c[i][j] += (x(b, i) - m[i]) * (x(b, j) - m[j]) / static_cast<double>(N - 1);
    INFO("path " << name_of(path) << " sampler " << static_cast<int>(kind) << " mean " << m[0] << ", " << m[1] << " cov " << c[0][0] << " " << c[0][1]
                    << " " << c[1][1]);
    // Standard errors at N = 20000: ~0.006 for the means, ~1% for the covariances.
    for (int i = 0; i < 2; ++i) CHECK(std::abs(m[i] - g.mu[i]) < 0.04);
    CHECK(std::abs(c[0][0] - g.S[0][0]) < 0.05 * g.S[0][0]);
    CHECK(std::abs(c[1][1] - g.S[1][1]) < 0.05 * g.S[1][1]);
    CHECK(std::abs(c[0][1] - g.S[0][1]) < 0.04);
  }
}

TEST_CASE("classifier-free guidance doubles the batch and applies only inside its interval", "[samplers]") {
  // v = 1 for class 3, v = -2 for the null class (7), everywhere: each guided Euler step moves
  // x by dt (v_null + s (v_cond - v_null)), each unguided one by dt v_cond.
  const VelocityFn<double> f = [](ConstView<double> x, double, ConstView<std::int64_t> labels) {
    Tensor<double> v(x.shape());
    const std::int64_t per = x.numel() / x.size(0);
    for (std::int64_t b = 0; b < x.size(0); ++b)
      for (std::int64_t k = 0; k < per; ++k) v[b * per + k] = labels[b] == 7 ? -2.0 : 1.0;
    return v;
  };
  auto x0 = test::randn<double>({3, 5});
  Tensor<std::int64_t> y(Shape{3});
  y.fill(3);
  SamplerOptions o;
  o.kind = SamplerKind::Euler;
  o.num_steps = 4;  // t = 1, 0.75, 0.5, 0.25 -> guided at 0.5 and 0.25 only
  o.cfg_scale = 2.5;
  o.guidance_high = 0.6;
  o.null_class = 7;
  const CpuContext ctx(1);
  const auto x = sample<double>(ctx, f, x0, y, o);
  const double guided = -2.0 + 2.5 * (1.0 - -2.0);
  const double expect_shift = -0.25 * (1.0 + 1.0 + guided + guided);
  for (std::int64_t i = 0; i < x.numel(); ++i) CHECK(x[i] == Approx(x0[i] + expect_shift).epsilon(1e-12));

  REQUIRE_IREPA_ERROR(sample<double>(ctx, f, x0, y, SamplerOptions{.kind = SamplerKind::EulerMaruyama, .num_steps = 3}), "noise source");
  y[1] = 8;  // neither a class below the null one nor the null class
  REQUIRE_IREPA_ERROR(sample<double>(ctx, f, x0, y, o), "label 8 at position 1", "0..7");
  REQUIRE_IREPA_ERROR(parse_sampler("ddim"), "'ddim'", "euler, heun or euler_maruyama");
}
