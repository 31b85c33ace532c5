// Linear and convolutions: forward against direct loops, backward by the gradient checker
// (double, shapes with B != T != D, none a power of two).

#include "irepa/check/gradient_check.hpp"
#include "irepa/ops/conv.hpp"
#include "irepa/ops/linear.hpp"
#include "test_support.hpp"

using namespace irepa;
using check::input;
using check::param;

TEST_CASE("linear: forward matches loops, gradients check", "[ops][linear]") {
  CpuContext ctx(2);
  auto x = test::randn<double>({3, 5, 7});
  auto w = test::randn<double>({6, 7});
  auto b = test::randn<double>({6});
  Tensor<double> y(Shape{3, 5, 6});
  ops::linear_forward<double>(ctx, x, w, b, y.view());
  double err = 0;
  for (int n = 0; n < 15; ++n)
    for (int o = 0; o < 6; ++o) {
      double s = b[o];
      for (int i = 0; i < 7; ++i) s += x[n * 7 + i] * w(o, i);
      err = std::max(err, std::abs(s - y[n * 6 + o]));
    }
  CHECK(err < 1e-12);

  Tensor<double> dx(x.shape()), dw(w.shape()), db(b.shape());
  auto r = check::gradient_check(
      [&] {
        Tensor<double> out(Shape{3, 5, 6});
        ops::linear_forward<double>(ctx, x, w, b, out.view());
        return out;
      },
      [&](const std::vector<Tensor<double>>& g) { ops::linear_backward<double>(ctx, x, w, g[0], dx.view(), dw.view(), db.view()); },
      {input("x", x.view(), dx.view()), param("weight", w.view(), dw.view()), param("bias", b.view(), db.view())});
  REQUIRE_GRADCHECK(r);

  SECTION("without bias") {
    Tensor<double> dw2(w.shape());
    auto r2 = check::gradient_check(
        [&] {
          Tensor<double> out(Shape{3, 5, 6});
          ops::linear_forward<double>(ctx, x, w, {}, out.view());
          return out;
        },
        [&](const std::vector<Tensor<double>>& g) { ops::linear_backward<double>(ctx, x, w, g[0], dx.view(), dw2.view(), {}); },
        {input("x", x.view(), dx.view()), param("weight", w.view(), dw2.view())});
    REQUIRE_GRADCHECK(r2);
  }
  SECTION("shape errors name the op and both shapes") {
    Tensor<double> bad(Shape{3, 5, 5});
    REQUIRE_IREPA_ERROR(ops::linear_forward<double>(ctx, x, w, b, bad.view()), "linear_forward", "[3, 5, 5]", "[3, 5, 6]");
    auto w2 = test::randn<double>({6, 8});
    REQUIRE_IREPA_ERROR(ops::linear_forward<double>(ctx, x, w2, b, y.view()), "linear_forward", "[3, 5, 7]", "[6, 8]");
  }
}

TEST_CASE("linear in float agrees with double", "[ops][linear]") {
  CpuContext ctx(2);
  auto x = test::randn<double>({9, 33});
  auto w = test::randn<double>({17, 33});
  auto b = test::randn<double>({17});
  Tensor<double> y(Shape{9, 17});
  ops::linear_forward<double>(ctx, x, w, b, y.view());
  Tensor<float> xf(x.shape()), wf(w.shape()), bf(b.shape()), yf(y.shape());
  for (std::int64_t i = 0; i < x.numel(); ++i) xf[i] = static_cast<float>(x[i]);
  for (std::int64_t i = 0; i < w.numel(); ++i) wf[i] = static_cast<float>(w[i]);
  for (std::int64_t i = 0; i < b.numel(); ++i) bf[i] = static_cast<float>(b[i]);
  ops::linear_forward<float>(ctx, xf, wf, bf, yf.view());
  CHECK(test::rel_error(yf, y) < 1e-5);
}

namespace {
/// Direct same-padded convolution on channels-last maps.
Tensor<double> conv_reference(const Tensor<double>& x, const Tensor<double>& w, const Tensor<double>& b) {
  const auto B = x.size(0), H = x.size(1), W = x.size(2), Ci = x.size(3), Co = w.size(0), k = w.size(2), p = k / 2;
  Tensor<double> y(Shape{B, H, W, Co});
  for (std::int64_t n = 0; n < B; ++n)
    for (std::int64_t h = 0; h < H; ++h)
      for (std::int64_t q = 0; q < W; ++q)
        for (std::int64_t o = 0; o < Co; ++o) {
          double s = b.numel() ? b[o] : 0.0;
          for (std::int64_t c = 0; c < Ci; ++c)
            for (std::int64_t i = 0; i < k; ++i)
              for (std::int64_t j = 0; j < k; ++j) {
                const auto hh = h + i - p, ww = q + j - p;
                if (hh >= 0 && hh < H && ww >= 0 && ww < W) s += x(n, hh, ww, c) * w(o, c, i, j);
              }
          y(n, h, q, o) = s;
        }
  return y;
}
}  // namespace

TEST_CASE("conv2d same (3x3, 5x5, 1x1): forward matches loops, gradients check", "[ops][conv]") {
  CpuContext ctx(2);
  const int k = GENERATE(1, 3, 5);
  INFO("kernel " << k);
  auto x = test::randn<double>({3, 5, 6, 7});  // [B, H, W, Cin], H != W
  auto w = test::randn<double>({11, 7, k, k});
  auto b = test::randn<double>({11});
  Tensor<double> y(Shape{3, 5, 6, 11});
  ops::conv2d_same_forward<double>(ctx, x, w, b, y.view());
  CHECK(test::rel_error(y, conv_reference(x, w, b)) < 1e-13);

  Tensor<double> dx(x.shape()), dw(w.shape()), db(b.shape());
  auto r = check::gradient_check(
      [&] {
        Tensor<double> out(Shape{3, 5, 6, 11});
        ops::conv2d_same_forward<double>(ctx, x, w, b, out.view());
        return out;
      },
      [&](const std::vector<Tensor<double>>& g) {
        ops::conv2d_same_backward<double>(ctx, x, w, g[0], dx.view(), dw.view(), db.view());
      },
      {input("x", x.view(), dx.view()), param("weight", w.view(), dw.view()), param("bias", b.view(), db.view())});
  REQUIRE_GRADCHECK(r);
  REQUIRE_IREPA_ERROR(ops::conv2d_same_forward<double>(ctx, x, test::randn<double>({11, 7, 2, 2}), b, y.view()), "odd k");
}

TEST_CASE("patchify: forward matches loops, gradients check", "[ops][conv]") {
  CpuContext ctx(2);
  const int p = GENERATE(2, 3);
  INFO("patch " << p);
  const std::int64_t B = 3, C = 3, H = 3 * p, W = 5 * p, D = 7;
  auto x = test::randn<double>({B, C, H, W});
  auto w = test::randn<double>({D, C, p, p});
  auto b = test::randn<double>({D});
  Tensor<double> y(Shape{B, 15, D});
  ops::patchify_forward<double>(ctx, x, w, b, y.view());
  double err = 0;
  for (std::int64_t n = 0; n < B; ++n)
    for (std::int64_t t = 0; t < 15; ++t)
      for (std::int64_t d = 0; d < D; ++d) {
        const auto gh = t / 5, gw = t % 5;
        double s = b[d];
        for (std::int64_t c = 0; c < C; ++c)
          for (std::int64_t i = 0; i < p; ++i)
            for (std::int64_t j = 0; j < p; ++j) s += x(n, c, gh * p + i, gw * p + j) * w(d, c, i, j);
        err = std::max(err, std::abs(s - y(n, t, d)));
      }
  CHECK(err < 1e-12);

  Tensor<double> dx(x.shape()), dw(w.shape()), db(b.shape());
  auto r = check::gradient_check(
      [&] {
        Tensor<double> out(Shape{B, 15, D});
        ops::patchify_forward<double>(ctx, x, w, b, out.view());
        return out;
      },
      [&](const std::vector<Tensor<double>>& g) { ops::patchify_backward<double>(ctx, x, w, g[0], dx.view(), dw.view(), db.view()); },
      {input("x", x.view(), dx.view()), param("weight", w.view(), dw.view()), param("bias", b.view(), db.view())});
  REQUIRE_GRADCHECK(r);
  auto odd = test::randn<double>({B, C, H + 1, W});
  REQUIRE_IREPA_ERROR(ops::patchify_forward<double>(ctx, odd, w, b, y.view()), "patchify_forward", "multiples of");
}
