// Philox 4x32-10: published known-answer vectors, distributions, counter semantics.

#include <cmath>

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

TEST_CASE("randint covers [lo, hi) uniformly", "[rng]") {
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
