// Multi-head attention: forward against a direct implementation, backward by the gradient
// checker, with and without q/k RMSNorm and RoPE (both pairings).

#include <cmath>

#include "irepa/check/gradient_check.hpp"
#include "irepa/ops/attention.hpp"
#include "test_support.hpp"

using namespace irepa;
using check::input;
using check::param;

namespace {
/// Direct attention: per image, head, query token.
Tensor<double> attention_reference(const Tensor<double>& qkv, const ops::AttentionSpec<double>& s) {
  const auto B = qkv.size(0), N = qkv.size(1), D = qkv.size(2) / 3, H = s.heads, hd = D / H;
  Tensor<double> out(Shape{B, N, D});
  std::vector<double> q(static_cast<std::size_t>(N * hd)), k(q.size());
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t h = 0; h < H; ++h) {
      for (std::int64_t t = 0; t < N; ++t) {
        for (int which = 0; which < 2; ++which) {
          double* dst = (which == 0 ? q.data() : k.data()) + t * hd;
          for (std::int64_t j = 0; j < hd; ++j) dst[j] = qkv(b, t, which * D + h * hd + j);
          if (s.qk_norm()) {
            double ss = 0;
            for (std::int64_t j = 0; j < hd; ++j) ss += dst[j] * dst[j];
            const double r = 1 / std::sqrt(ss / static_cast<double>(hd) + s.norm_eps);
            const auto& w = which == 0 ? s.q_norm_weight : s.k_norm_weight;
            for (std::int64_t j = 0; j < hd; ++j) dst[j] *= r * w[j];
          }
          if (s.rope()) {
            for (std::int64_t p = 0; p < hd / 2; ++p) {
              const bool il = s.rope_mode == ops::RopeMode::Interleaved;
              const auto ia = il ? 2 * p : p, ib = il ? 2 * p + 1 : p + hd / 2;
              const double c = s.rope_cos(t, p), sn = s.rope_sin(t, p), a = dst[ia], bb = dst[ib];
              dst[ia] = a * c - bb * sn;
              dst[ib] = bb * c + a * sn;
            }
          }
        }
      }
      for (std::int64_t i = 0; i < N; ++i) {
        std::vector<double> l(static_cast<std::size_t>(N));
        double mx = -1e300, z = 0;
        for (std::int64_t j = 0; j < N; ++j) {
          double d = 0;
          for (std::int64_t e = 0; e < hd; ++e) d += q[static_cast<std::size_t>(i * hd + e)] * k[static_cast<std::size_t>(j * hd + e)];
          l[static_cast<std::size_t>(j)] = d / std::sqrt(static_cast<double>(hd));
          mx = std::max(mx, l[static_cast<std::size_t>(j)]);
        }
        for (auto& v : l) z += (v = std::exp(v - mx));
        for (std::int64_t e = 0; e < hd; ++e) {
          double o = 0;
          for (std::int64_t j = 0; j < N; ++j) o += l[static_cast<std::size_t>(j)] / z * qkv(b, j, 2 * D + h * hd + e);
          out(b, i, h * hd + e) = o;
        }
      }
    }
  return out;
}
}  // namespace

TEST_CASE("attention: forward matches a direct implementation, gradients check", "[ops][attention]") {
  CpuContext ctx(2);
  const std::int64_t B = 3, N = 7, H = 3, hd = 10, D = H * hd;  // B == H is fine: they never share an index
  const int variant = GENERATE(0, 1, 2, 3);  // plain; q/k norm; RoPE interleaved; q/k norm + RoPE half-split
  INFO("variant " << variant);
  auto qkv = test::randn<double>({B, N, 3 * D});
  auto qw = test::randn<double>({hd});
  auto kw = test::randn<double>({hd});
  auto angles = test::randn<double>({N, hd / 2}, 2.0);
  Tensor<double> c(angles.shape()), s(angles.shape());
  for (std::int64_t i = 0; i < angles.numel(); ++i) {
    c[i] = std::cos(angles[i]);
    s[i] = std::sin(angles[i]);
  }
  ops::AttentionSpec<double> spec;
  spec.heads = H;
  if (variant == 1 || variant == 3) {
    spec.q_norm_weight = qw.view();
    spec.k_norm_weight = kw.view();
  }
  if (variant >= 2) {
    spec.rope_cos = c.view();
    spec.rope_sin = s.view();
    spec.rope_mode = variant == 2 ? ops::RopeMode::Interleaved : ops::RopeMode::HalfSplit;
  }
  Tensor<double> out(Shape{B, N, D});
  ops::attention_forward<double>(ctx, qkv, spec, out.view());
  CHECK(test::rel_error(out, attention_reference(qkv, spec)) < 1e-13);

  Tensor<double> dqkv(qkv.shape()), dqw(qw.shape()), dkw(kw.shape());
  std::vector<check::GradTarget> targets{input("qkv", qkv.view(), dqkv.view())};
  if (spec.qk_norm()) {
    targets.push_back(param("q_norm.weight", qw.view(), dqw.view()));
    targets.push_back(param("k_norm.weight", kw.view(), dkw.view()));
  }
  auto r = check::gradient_check(
      [&] {
        Tensor<double> o(Shape{B, N, D});
        ops::attention_forward<double>(ctx, qkv, spec, o.view());
        return o;
      },
      [&](const std::vector<Tensor<double>>& g) {
        Tensor<double> o(Shape{B, N, D});
        auto cache = ops::attention_forward<double>(ctx, qkv, spec, o.view());
        ops::attention_backward<double>(ctx, spec, cache, g[0], dqkv.view(), dqw.view(), dkw.view());
      },
      targets);
  INFO(r.report());
  REQUIRE(r.ok());
}

TEST_CASE("attention in float agrees with double at a SiT-like shape", "[ops][attention]") {
  CpuContext ctx(2);
  const std::int64_t B = 3, N = 37, H = 5, D = 5 * 18;
  auto qkv = test::randn<double>({B, N, 3 * D});
  Tensor<float> qf(qkv.shape());
  for (std::int64_t i = 0; i < qkv.numel(); ++i) qf[i] = static_cast<float>(qkv[i]);
  ops::AttentionSpec<double> sd;
  sd.heads = H;
  ops::AttentionSpec<float> sf;
  sf.heads = H;
  Tensor<double> od(Shape{B, N, D});
  Tensor<float> of(Shape{B, N, D});
  ops::attention_forward<double>(ctx, qkv, sd, od.view());
  ops::attention_forward<float>(ctx, qf, sf, of.view());
  CHECK(test::rel_error(of, od) < 1e-5);
  REQUIRE_IREPA_ERROR(([&] {
                        ops::AttentionSpec<double> bad;
                        bad.heads = 7;
                        ops::attention_forward<double>(ctx, qkv, bad, od.view());
                      }()),
                      "not divisible by 7 heads");
}
