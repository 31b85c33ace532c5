// Spatial metrics: golden parity with the reference, analytic values on hand-built feature
// maps, and a literal T x T implementation of the definitions on random features and masks.

#include <cmath>

#include "irepa/io/safetensors.hpp"
#include "irepa/metrics/spatial.hpp"
#include "test_support.hpp"

using namespace irepa;
using metrics::GridDistances;
using metrics::SpatialMetricOptions;

namespace {

const SpatialMetricOptions kDefaults{};

/// The definitions, literally: every pair visited, masks built per image (slow, for tests).
struct Brute {
  double lds, cds, srss, rmsc;
};
Brute brute_force(const double* x, std::int64_t H, std::int64_t W, std::int64_t D, const std::uint8_t* mask,
                  const SpatialMetricOptions& o) {
  const std::int64_t T = H * W;
  std::vector<double> u(static_cast<std::size_t>(T * D)), u12(u.size());
  for (std::int64_t t = 0; t < T; ++t) {
    double n = 0;
    for (std::int64_t d = 0; d < D; ++d) n += x[t * D + d] * x[t * D + d];
    n = std::sqrt(n);
    for (std::int64_t d = 0; d < D; ++d) {
      u[static_cast<std::size_t>(t * D + d)] = x[t * D + d] / std::max(n, o.norm_eps);
      u12[static_cast<std::size_t>(t * D + d)] = x[t * D + d] / std::max(n, o.srss_norm_eps);
    }
  }
  auto cosv = [&](const std::vector<double>& v, std::int64_t i, std::int64_t j) {
    double s = 0;
    for (std::int64_t d = 0; d < D; ++d) s += v[static_cast<std::size_t>(i * D + d)] * v[static_cast<std::size_t>(j * D + d)];
    return s;
  };
  auto dist = [&](std::int64_t i, std::int64_t j) { return std::abs(i / W - j / W) + std::abs(i % W - j % W); };
  double loc = 0, far = 0;
  std::int64_t nloc = 0, nfar = 0;
  std::vector<double> sum_d(static_cast<std::size_t>(o.cds_dmax + 1), 0.0);
  std::vector<std::int64_t> cnt_d(sum_d.size(), 0);
  for (std::int64_t i = 0; i < T; ++i)
    for (std::int64_t j = 0; j < T; ++j) {
      const auto d = dist(i, j);
      const double c = cosv(u, i, j);
      if (d == 1) loc += c, ++nloc;
      if (d >= o.lds_far && d > 0) far += c, ++nfar;
      if (d >= 1 && d <= o.cds_dmax) sum_d[static_cast<std::size_t>(d)] += c, ++cnt_d[static_cast<std::size_t>(d)];
    }
  Brute r{};
  r.lds = loc / static_cast<double>(nloc) - far / static_cast<double>(std::max<std::int64_t>(nfar, 1));
  double mx = 0, my = 0, k = 0;
  for (int d = 1; d <= o.cds_dmax; ++d)
    if (cnt_d[static_cast<std::size_t>(d)]) mx += d, my += sum_d[static_cast<std::size_t>(d)] / static_cast<double>(cnt_d[static_cast<std::size_t>(d)]), ++k;
  mx /= k;
  my /= k;
  double sxy = 0, sxx = 0;
  for (int d = 1; d <= o.cds_dmax; ++d)
    if (cnt_d[static_cast<std::size_t>(d)]) {
      const double y = sum_d[static_cast<std::size_t>(d)] / static_cast<double>(cnt_d[static_cast<std::size_t>(d)]);
      sxy += (d - mx) * (y - my);
      sxx += (d - mx) * (d - mx);
    }
  r.cds = -sxy / sxx;
  double ms = 0;
  for (std::int64_t d = 0; d < D; ++d) {
    double m = 0;
    for (std::int64_t t = 0; t < T; ++t) m += u[static_cast<std::size_t>(t * D + d)];
    m /= static_cast<double>(T);
    for (std::int64_t t = 0; t < T; ++t) ms += (u[static_cast<std::size_t>(t * D + d)] - m) * (u[static_cast<std::size_t>(t * D + d)] - m);
  }
  r.rmsc = std::sqrt(ms / static_cast<double>(T));
  r.srss = std::nan("");
  if (!mask) return r;
  std::int64_t nfg = 0;
  for (std::int64_t t = 0; t < T; ++t) nfg += mask[t] != 0;
  if (nfg < 2 || T - nfg < 1) return r;
  double acc = 0;
  std::int64_t valid = 0;
  for (std::int64_t i = 0; i < T; ++i) {
    if (!mask[i]) continue;
    double ps = 0, ns = 0;
    std::int64_t pc = 0, nc = 0;
    for (std::int64_t j = 0; j < T; ++j) {
      const auto d = dist(i, j);
      if (mask[j] && d >= o.srss_near_min && d <= o.srss_near_max) ps += cosv(u12, i, j), ++pc;
      if (!mask[j] && d >= o.srss_far) ns += cosv(u12, i, j), ++nc;
    }
    if (pc && nc) acc += ps / static_cast<double>(pc) - ns / static_cast<double>(nc), ++valid;
  }
  if (valid) r.srss = acc / static_cast<double>(valid);
  return r;
}

bool same(double a, double b, double tol) { return (std::isnan(a) && std::isnan(b)) || std::abs(a - b) <= tol; }

}  // namespace

TEST_CASE("spatial metrics match the reference's golden values", "[metrics][golden]") {
  if (!test::have_golden()) return;
  io::SafeTensorsFile f((test::golden_dir() / "spatial_metrics_16x16.safetensors").string());
  auto feats = f.load<float>("inputs/features");     // [4, 256, 32]
  auto masks = f.load<std::uint8_t>("inputs/masks");  // [4, 256]
  CpuContext ctx(2);
  GridDistances grid(16, 16, metrics::required_radius(kDefaults));
  auto r = metrics::spatial_metrics<float>(ctx, feats, grid, masks);
  for (const char* name : {"lds", "cds", "srss", "rmsc"}) {
    const auto& ours = std::string(name) == "lds" ? r.lds : std::string(name) == "cds" ? r.cds : std::string(name) == "srss" ? r.srss : r.rmsc;
    auto ref = f.load<double>(std::string("outputs/") + name);
    auto ref_mean = f.load<double>(std::string("outputs/") + name + "_mean");
    INFO(name);
    Tensor<double> o(Shape{4});
    for (int i = 0; i < 4; ++i) o[i] = ours[static_cast<std::size_t>(i)];
    CHECK(test::rel_error(o, ref) <= 1e-5);
    CHECK(std::abs(metrics::SpatialMetricsResult::mean(ours) - ref_mean[0]) <= 1e-5 * std::abs(ref_mean[0]));
  }
}

TEST_CASE("constant features: no spatial structure at all", "[metrics]") {
  CpuContext ctx(2);
  const std::int64_t H = 7, W = 9, D = 5;
  auto v = test::randn<double>({D});
  Tensor<double> x(Shape{2, H * W, D});
  for (std::int64_t i = 0; i < x.numel(); ++i) x[i] = v[i % D] * (1 + (i / D) % 3);  // same direction, varying norm
  Tensor<std::uint8_t> m(Shape{2, H * W}, 0);
  for (std::int64_t t = 0; t < 30; ++t) m(0, t) = m(1, t + 20) = 1;
  auto r = metrics::spatial_metrics<double>(ctx, x, GridDistances(H, W, 8), m);
  for (int b = 0; b < 2; ++b) {
    CHECK(std::abs(r.lds[static_cast<std::size_t>(b)]) < 1e-12);
    CHECK(std::abs(r.cds[static_cast<std::size_t>(b)]) < 1e-12);
    CHECK(std::abs(r.srss[static_cast<std::size_t>(b)]) < 1e-12);
    CHECK(r.rmsc[static_cast<std::size_t>(b)] < 1e-7);  // sqrt of a rounding-level mean square
  }
}

TEST_CASE("checkerboard of two orthogonal directions", "[metrics]") {
  // cos = 1 at even distance, 0 at odd: CDS fits y = [0, 1, 0, 1, ...] over d = 1..8, slope 2/42.
  CpuContext ctx(2);
  const std::int64_t H = 10, W = 12, D = 6;
  Tensor<double> x = Tensor<double>::zeros({1, H * W, D});
  for (std::int64_t t = 0; t < H * W; ++t) x(0, t, ((t / W + t % W) % 2) ? 4 : 1) = 2.5;
  auto r = metrics::spatial_metrics<double>(ctx, x, GridDistances(H, W, 8), {});
  std::int64_t far = 0, far_even = 0;
  for (std::int64_t i = 0; i < H * W; ++i)
    for (std::int64_t j = 0; j < H * W; ++j) {
      const auto d = std::abs(i / W - j / W) + std::abs(i % W - j % W);
      if (d >= 6) ++far, far_even += d % 2 == 0;
    }
  CHECK(std::abs(r.lds[0] - (0.0 - static_cast<double>(far_even) / static_cast<double>(far))) < 1e-12);
  CHECK(std::abs(r.cds[0] - (-2.0 / 42.0)) < 1e-12);
  CHECK(std::abs(r.rmsc[0] - std::sqrt(0.5)) < 1e-12);  // equal counts of each colour
  CHECK(std::isnan(r.srss[0]));                          // no masks given
}

TEST_CASE("random features and masks agree with a literal implementation", "[metrics]") {
  CpuContext ctx(2);
  const std::int64_t H = GENERATE(5, 11), W = 13, D = 7, B = 6;
  INFO("grid " << H << "x" << W);
  auto x = test::randn<double>({B, H * W, D});
  for (std::int64_t t = 0; t < H * W; ++t)  // add a smooth component so the metrics are not ~0
    for (std::int64_t d = 0; d < D; ++d) x(1, t, d) += 2 * std::sin(0.4 * static_cast<double>(t / W) + d);
  Tensor<std::uint8_t> m(Shape{B, H * W});
  auto u = test::rand_uniform<double>({B, H * W}, 0, 1);
  for (std::int64_t i = 0; i < m.numel(); ++i) m[i] = u[i] < 0.4;
  for (std::int64_t t = 0; t < H * W; ++t) m(4, t) = 1;   // no background: NaN
  for (std::int64_t t = 0; t < H * W; ++t) m(5, t) = t == 7;  // one foreground token: NaN
  SpatialMetricOptions o;
  o.srss_near_max = 2;  // a non-default window too
  auto r = metrics::spatial_metrics<double>(ctx, x, GridDistances(H, W, metrics::required_radius(o)), m, o);
  for (std::int64_t b = 0; b < B; ++b) {
    const auto e = brute_force(x.data() + b * H * W * D, H, W, D, m.data() + b * H * W, o);
    const auto i = static_cast<std::size_t>(b);
    INFO("image " << b);
    CHECK(same(r.lds[i], e.lds, 1e-12));
    CHECK(same(r.cds[i], e.cds, 1e-12));
    CHECK(same(r.srss[i], e.srss, 1e-12));
    CHECK(same(r.rmsc[i], e.rmsc, 1e-12));
  }
  CHECK(std::isnan(r.srss[4]));
  CHECK(std::isnan(r.srss[5]));
  CHECK(!std::isnan(r.srss[0]));
  // The mean skips NaN images.
  CHECK(std::abs(metrics::SpatialMetricsResult::mean(r.srss) - (r.srss[0] + r.srss[1] + r.srss[2] + r.srss[3]) / 4) < 1e-15);
}

TEST_CASE("spatial metrics reject mismatched inputs", "[metrics]") {
  CpuContext ctx(1);
  auto x = test::randn<double>({2, 20, 3});
  REQUIRE_IREPA_ERROR(metrics::spatial_metrics<double>(ctx, x, GridDistances(4, 4, 8), {}), "[2, 20, 3]", "4x4");
  Tensor<std::uint8_t> m(Shape{2, 19}, 1);
  REQUIRE_IREPA_ERROR(metrics::spatial_metrics<double>(ctx, x, GridDistances(4, 5, 8), m), "masks", "[2, 19]", "[2, 20]");
  REQUIRE_IREPA_ERROR(metrics::spatial_metrics<double>(ctx, x, GridDistances(4, 5, 3), {}), "radius 3");
}
