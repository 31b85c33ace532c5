// Philox 4x32-10: published known-answer vectors, distributions, counter semantics.

#include <cmath>
#include <numbers>

#include "irepa/core/rng.hpp"
#include "test_support.hpp"

using namespace irepa;

TEST_CASE("Philox4x32-10 matches the Random123 known-answer vectors", "[rng]") {
  // Random123's kat_vectors: counter, key -> output.
  CHECK(philox4x32_10({0, 0, 0, 0}, {0, 0}) == PhiloxCounter{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8});
  CHECK(philox4x32_10({0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff}) ==
        PhiloxCounter{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd});
  CHECK(philox4x32_10({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0}) ==
        PhiloxCounter{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1});
}

TEST_CASE("uniform draws: range, moments, and the same numbers for the same (seed, stream, position)", "[rng]") {
  const std::uint64_t seed = test::rng().seed() ^ 0x5eed;
  Philox a(seed, 3), b(seed, 3), other_stream(seed, 4);
  Tensor<float> x(Shape{200001}), y(Shape{200001}), z(Shape{200001});
  a.uniform(x.view());
  b.uniform(y.view());
  other_stream.uniform(z.view());
  double mean = 0, var = 0;
  bool same = true, differs = false;
  for (std::int64_t i = 0; i < x.numel(); ++i) {
    REQUIRE(x[i] >= 0.0f);
    REQUIRE(x[i] < 1.0f);
    mean += x[i];
    same = same && x[i] == y[i];
    differs = differs || x[i] != z[i];
  }
  mean /= static_cast<double>(x.numel());
  for (std::int64_t i = 0; i < x.numel(); ++i) var += (x[i] - mean) * (x[i] - mean);
  var /= static_cast<double>(x.numel());
  CHECK(same);
  CHECK(differs);
  CHECK(std::abs(mean - 0.5) < 0.005);
  CHECK(std::abs(var - 1.0 / 12) < 0.002);
  // 200001 floats use ceil(200001 / 4) blocks.
  CHECK(a.position() == 50001);

  // Element i depends only on (seed, stream, i): a second draw continues where the first stopped.
  Philox c(seed, 3);
  Tensor<float> first(Shape{10}), rest(Shape{200001 - 12});
  c.uniform(first.view());  // 10 numbers -> 3 blocks (12 numbers)
  c.uniform(rest.view());
  for (std::int64_t i = 0; i < rest.numel(); ++i) REQUIRE(rest[i] == x[i + 12]);
  CHECK(philox_element<float, 0>(a.key(), 3, 777) == x[777]);
}

TEST_CASE("normal draws: moments in float and double, save and restore position", "[rng]") {
  Philox g(test::rng().seed(), 1);
  Tensor<double> d(Shape{100000});
  const auto pos = g.position();
  g.normal(d.view(), 2.0, 3.0);
  double m = 0, v = 0, k4 = 0;
  for (std::int64_t i = 0; i < d.numel(); ++i) m += d[i];
  m /= static_cast<double>(d.numel());
  for (std::int64_t i = 0; i < d.numel(); ++i) {
    v += (d[i] - m) * (d[i] - m);
    k4 += std::pow((d[i] - m) / 3.0, 4);
  }
  v /= static_cast<double>(d.numel());
  k4 /= static_cast<double>(d.numel());
  CHECK(std::abs(m - 2.0) < 0.05);
  CHECK(std::abs(v - 9.0) < 0.2);
  CHECK(std::abs(k4 - 3.0) < 0.15);  // Gaussian kurtosis

  Tensor<double> again(Shape{100000});
  g.set_position(pos);
  g.normal(again.view(), 2.0, 3.0);
  for (std::int64_t i = 0; i < d.numel(); ++i) REQUIRE(again[i] == d[i]);

  Tensor<float> f(Shape{100000});
  g.normal(f.view());
  double mf = 0, vf = 0;
  for (std::int64_t i = 0; i < f.numel(); ++i) mf += f[i];
  mf /= static_cast<double>(f.numel());
  for (std::int64_t i = 0; i < f.numel(); ++i) vf += (f[i] - mf) * (f[i] - mf);
  vf /= static_cast<double>(f.numel());
  CHECK(std::abs(mf) < 0.02);
  CHECK(std::abs(vf - 1.0) < 0.03);
  for (std::int64_t i = 0; i < f.numel(); ++i) REQUIRE(std::isfinite(f[i]));
}

TEST_CASE("randint covers the half-open range lo..hi-1 uniformly", "[rng]") {
  Philox g(test::rng().seed(), 2);
  Tensor<std::int64_t> r(Shape{70000});
  g.randint(r.view(), -3, 4);
  std::array<int, 7> counts{};
  for (std::int64_t i = 0; i < r.numel(); ++i) {
    REQUIRE(r[i] >= -3);
    REQUIRE(r[i] < 4);
    counts[static_cast<std::size_t>(r[i] + 3)]++;
  }
  for (int c : counts) CHECK(std::abs(c - 10000) < 500);
  REQUIRE_IREPA_ERROR(g.randint(r.view(), 5, 5), "randint", "[5, 5)");
}

TEST_CASE("the deterministic log and sincos behind the normals are accurate", "[rng]") {
  // Against the C library over the ranges Box-Muller uses: u1 in (0, 1], u2 in [0, 1).
  double worst_logf = 0, worst_logd = 0, worst_sf = 0, worst_sd = 0;
  Philox g(test::rng().seed(), 11);
  Tensor<double> u(Shape{200000});
  g.uniform(u.view());
  for (std::int64_t i = 0; i < u.numel(); ++i) {
    const double ud = 1.0 - u[i];                                        // (0, 1]
    const float uf = 1.0f - static_cast<float>(std::ldexp(std::floor(std::ldexp(u[i], 24)), -24));
    worst_logd = std::max(worst_logd, std::abs(detail::det::log(ud) - std::log(ud)) / std::max(1e-300, std::abs(std::log(ud))));
    if (uf < 1.0f)
      worst_logf = std::max(worst_logf, std::abs(static_cast<double>(detail::det::log(uf)) - std::log(static_cast<double>(uf))) /
                                            std::abs(std::log(static_cast<double>(uf))));
    double s, c;
    detail::det::sincos_2pi(u[i], s, c);
    const double th = 2 * std::numbers::pi * u[i];
    worst_sd = std::max({worst_sd, std::abs(s - std::sin(th)), std::abs(c - std::cos(th))});
    float sf, cf;
    const float uff = static_cast<float>(std::ldexp(std::floor(std::ldexp(u[i], 24)), -24));
    detail::det::sincos_2pi(uff, sf, cf);
    const double thf = 2 * std::numbers::pi * static_cast<double>(uff);
    worst_sf = std::max({worst_sf, std::abs(sf - std::sin(thf)), std::abs(cf - std::cos(thf))});
  }
  // Edge values: the smallest u1 (largest radius) and exact quadrant boundaries.
  CHECK(std::abs(detail::det::log(0x1p-24f) - std::log(0x1p-24)) < 1e-5);
  CHECK(detail::det::log(1.0) == 0.0);
  float s0, c0;
  detail::det::sincos_2pi(0.25f, s0, c0);
  CHECK(std::abs(s0 - 1.0f) < 1e-7f);
  CHECK(std::abs(c0) < 1e-7f);
  INFO("log rel error float " << worst_logf << " double " << worst_logd << "; sincos abs error float " << worst_sf << " double "
                              << worst_sd);
  CHECK(worst_logf < 5e-7);
  CHECK(worst_logd < 1e-15);
  CHECK(worst_sf < 5e-7);
  CHECK(worst_sd < 1e-15);
}
