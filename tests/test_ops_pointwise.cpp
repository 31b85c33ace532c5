// Row and pointwise ops: norms, modulation, activations, RoPE, embeddings and fixed tables,
// token statistics, L2 normalisation, cosine similarity, softmax cross-entropy, and the encoders' forward-only ops. Each: forward against its formula,
// backward by the gradient checker in double, shapes with B != T != D and no powers of two.

#include <cmath>
#include <numbers>

#include "irepa/check/gradient_check.hpp"
#include "irepa/io/safetensors.hpp"
#include "irepa/ops/activation.hpp"
#include "irepa/ops/embedding.hpp"
#include "irepa/ops/modulate.hpp"
#include "irepa/ops/norm.hpp"
#include "irepa/ops/resize.hpp"
#include "irepa/ops/reduce.hpp"
#include "irepa/ops/rope.hpp"
#include "irepa/ops/tensor_ops.hpp"
#include "test_support.hpp"

using namespace irepa;
using check::input;
using check::param;

TEST_CASE("layer norm without affine", "[ops][norm]") {
  CpuContext ctx(2);
  auto x = test::randn<double>({3, 5, 7}, 2.0);
  Tensor<double> y(x.shape()), rstd(Shape{15}), dx(x.shape());
  ops::layer_norm_forward<double>(ctx, x, 1e-6, y.view(), rstd.view());
  for (int r = 0; r < 15; ++r) {
    double m = 0, v = 0;
    for (int i = 0; i < 7; ++i) m += y[r * 7 + i];
    for (int i = 0; i < 7; ++i) v += y[r * 7 + i] * y[r * 7 + i];
    CHECK(std::abs(m / 7) < 1e-12);
    CHECK(std::abs(v / 7 - 1) < 1e-5);  // eps 1e-6 shrinks the variance slightly
  }
  auto r = check::gradient_check(
      [&] {
        Tensor<double> out(x.shape()), rs(Shape{15});
        ops::layer_norm_forward<double>(ctx, x, 1e-6, out.view(), rs.view());
        return out;
      },
      [&](const std::vector<Tensor<double>>& g) {
        ops::layer_norm_forward<double>(ctx, x, 1e-6, y.view(), rstd.view());
        ops::layer_norm_backward<double>(ctx, y, rstd, g[0], dx.view());
      },
      {input("x", x.view(), dx.view())});
  REQUIRE_GRADCHECK(r);
}

TEST_CASE("RMS norm with weight", "[ops][norm]") {
  CpuContext ctx(2);
  auto x = test::randn<double>({5, 3, 9});
  auto w = test::randn<double>({9});
  Tensor<double> y(x.shape()), rr(Shape{15}), dx(x.shape()), dw(w.shape());
  ops::rms_norm_forward<double>(ctx, x, w, 1e-6, y.view(), rr.view());
  double ss = 0;
  for (int i = 0; i < 9; ++i) ss += x[9 * 5 + i] * x[9 * 5 + i];
  CHECK(std::abs(y[9 * 5 + 2] - w[2] * x[9 * 5 + 2] / std::sqrt(ss / 9 + 1e-6)) < 1e-12);
  auto r = check::gradient_check(
      [&] {
        Tensor<double> out(x.shape()), rs(Shape{15});
        ops::rms_norm_forward<double>(ctx, x, w, 1e-6, out.view(), rs.view());
        return out;
      },
      [&](const std::vector<Tensor<double>>& g) {
        ops::rms_norm_forward<double>(ctx, x, w, 1e-6, y.view(), rr.view());
        ops::rms_norm_backward<double>(ctx, x, w, rr, g[0], dx.view(), dw.view());
      },
      {input("x", x.view(), dx.view()), param("weight", w.view(), dw.view())});
  REQUIRE_GRADCHECK(r);
}

TEST_CASE("adaLN modulate", "[ops][modulate]") {
  CpuContext ctx(2);
  auto x = test::randn<double>({3, 5, 7});
  auto shift = test::randn<double>({3, 7});
  auto scale = test::randn<double>({3, 7});
  Tensor<double> y(x.shape()), dx(x.shape()), dsh(shift.shape()), dsc(scale.shape());
  ops::modulate_forward<double>(ctx, x, shift, scale, y.view());
  // To rounding: with FMA (-march=native) the compiler may fuse either side's multiply-add.
  CHECK(y(2, 4, 6) == Approx(x(2, 4, 6) * (1 + scale(2, 6)) + shift(2, 6)).epsilon(1e-14));
  auto r = check::gradient_check(
      [&] {
        Tensor<double> out(x.shape());
        ops::modulate_forward<double>(ctx, x, shift, scale, out.view());
        return out;
      },
      [&](const std::vector<Tensor<double>>& g) {
        ops::modulate_backward<double>(ctx, x, scale, g[0], dx.view(), dsh.view(), dsc.view());
      },
      {input("x", x.view(), dx.view()), input("shift", shift.view(), dsh.view()), input("scale", scale.view(), dsc.view())});
  REQUIRE_GRADCHECK(r);
  REQUIRE_IREPA_ERROR(ops::modulate_forward<double>(ctx, x, test::randn<double>({5, 7}), scale, y.view()), "modulate_forward",
                      "shift", "[5, 7]", "[3, 7]");
}

TEST_CASE("GELU (tanh), SiLU, SwiGLU", "[ops][activation]") {
  CpuContext ctx(2);
  auto x = test::randn<double>({3, 5, 14}, 2.0);
  Tensor<double> dx(x.shape());
  SECTION("gelu tanh") {
    Tensor<double> y(x.shape());
    ops::gelu_tanh_forward<double>(ctx, x, y.view());
    const double v = x[11];
    CHECK(std::abs(y[11] - 0.5 * v * (1 + std::tanh(std::sqrt(2 / std::numbers::pi) * (v + 0.044715 * v * v * v)))) < 1e-14);
    auto r = check::gradient_check(
        [&] {
          Tensor<double> out(x.shape());
          ops::gelu_tanh_forward<double>(ctx, x, out.view());
          return out;
        },
        [&](const std::vector<Tensor<double>>& g) { ops::gelu_tanh_backward<double>(ctx, x, g[0], dx.view()); },
        {input("x", x.view(), dx.view())});
    REQUIRE_GRADCHECK(r);
  }
  SECTION("silu") {
    Tensor<double> y(x.shape());
    ops::silu_forward<double>(ctx, x, y.view());
    CHECK(std::abs(y[7] - x[7] / (1 + std::exp(-x[7]))) < 1e-14);
    auto r = check::gradient_check(
        [&] {
          Tensor<double> out(x.shape());
          ops::silu_forward<double>(ctx, x, out.view());
          return out;
        },
        [&](const std::vector<Tensor<double>>& g) { ops::silu_backward<double>(ctx, x, g[0], dx.view()); },
        {input("x", x.view(), dx.view())});
    REQUIRE_GRADCHECK(r);
  }
  SECTION("swiglu") {
    Tensor<double> y(Shape{3, 5, 7});
    ops::swiglu_forward<double>(ctx, x, y.view());
    CHECK(std::abs(y(1, 2, 3) - x(1, 2, 3) / (1 + std::exp(-x(1, 2, 3))) * x(1, 2, 10)) < 1e-14);
    auto r = check::gradient_check(
        [&] {
          Tensor<double> out(Shape{3, 5, 7});
          ops::swiglu_forward<double>(ctx, x, out.view());
          return out;
        },
        [&](const std::vector<Tensor<double>>& g) { ops::swiglu_backward<double>(ctx, x, g[0], dx.view()); },
        {input("x", x.view(), dx.view())});
    REQUIRE_GRADCHECK(r);
  }
}

TEST_CASE("RoPE, interleaved and half-split", "[ops][rope]") {
  CpuContext ctx(2);
  const auto mode = GENERATE(ops::RopeMode::Interleaved, ops::RopeMode::HalfSplit);
  auto x = test::randn<double>({3, 7, 5, 6});  // [B, T, H, hd]
  auto angles = test::randn<double>({7, 3}, 3.0);
  Tensor<double> c(angles.shape()), s(angles.shape()), y(x.shape()), dx(x.shape());
  for (int i = 0; i < 21; ++i) {
    c[i] = std::cos(angles[i]);
    s[i] = std::sin(angles[i]);
  }
  ops::rope_forward<double>(ctx, x, c, s, mode, y.view());
  // Token 4, head 1, pair 2 rotated by its angle.
  const int ia = mode == ops::RopeMode::Interleaved ? 4 : 2, ib = mode == ops::RopeMode::Interleaved ? 5 : 5;
  const double a = x(1, 4, 1, ia), b = x(1, 4, 1, ib), th = angles(4, 2);
  CHECK(std::abs(y(1, 4, 1, ia) - (a * std::cos(th) - b * std::sin(th))) < 1e-14);
  CHECK(std::abs(y(1, 4, 1, ib) - (b * std::cos(th) + a * std::sin(th))) < 1e-14);
  auto r = check::gradient_check(
      [&] {
        Tensor<double> out(x.shape());
        ops::rope_forward<double>(ctx, x, c, s, mode, out.view());
        return out;
      },
      [&](const std::vector<Tensor<double>>& g) { ops::rope_backward<double>(ctx, c, s, mode, g[0], dx.view()); },
      {input("x", x.view(), dx.view())});
  REQUIRE_GRADCHECK(r);
}

TEST_CASE("axial 2-D RoPE table (JiT layout)", "[ops][rope]") {
  auto [c, s] = ops::rope_table_axial_2d<double>(3, 5, 16, 10000.0, 2);  // 2 prefix tokens, hd 16
  CHECK(c.shape() == Shape{17, 8});
  for (int p = 0; p < 8; ++p) {
    CHECK(c(1, p) == 1.0);
    CHECK(s(1, p) == 0.0);
  }
  // Token (row 2, col 3) = index 2 + 2*5 + 3; dim = 8, pairs 0..3 turn with the row, 4..7 with the column.
  const int t = 2 + 13;
  CHECK(std::abs(s(t, 1) - std::sin(2 * std::pow(10000.0, -2.0 / 8))) < 1e-15);
  CHECK(std::abs(s(t, 5) - std::sin(3 * std::pow(10000.0, -2.0 / 8))) < 1e-15);
  CHECK(std::abs(c(t, 4) - std::cos(3.0)) < 1e-15);
}

TEST_CASE("embedding lookup accumulates repeated rows", "[ops][embedding]") {
  CpuContext ctx(2);
  auto table = test::randn<double>({11, 6});
  Tensor<std::int64_t> idx(Shape{5});
  const std::int64_t ids[5] = {3, 10, 3, 0, 7};
  for (int i = 0; i < 5; ++i) idx[i] = ids[i];
  Tensor<double> out(Shape{5, 6}), dtable(table.shape());
  ops::embedding_forward<double>(ctx, table, idx, out.view());
  CHECK(out(1, 4) == table(10, 4));
  auto r = check::gradient_check(
      [&] {
        Tensor<double> o(Shape{5, 6});
        ops::embedding_forward<double>(ctx, table, idx, o.view());
        return o;
      },
      [&](const std::vector<Tensor<double>>& g) { ops::embedding_backward<double>(ctx, idx, g[0], dtable.view()); },
      {param("embedding_table.weight", table.view(), dtable.view())});
  REQUIRE_GRADCHECK(r);
  idx[2] = 11;
  REQUIRE_IREPA_ERROR(ops::embedding_forward<double>(ctx, table, idx, out.view()), "index 11", "11 rows");
}

TEST_CASE("2-D sin-cos position table matches the reference's pos_embed buffer", "[ops][embedding][golden]") {
  auto t = ops::sincos_2d_table<double>(3, 5, 12);
  // Token (row 1, col 4): first half encodes the column, second the row; w_k = 10000^(-k/3).
  CHECK(std::abs(t(9, 1) - std::sin(4 * std::pow(10000.0, -1.0 / 3))) < 1e-15);
  CHECK(std::abs(t(9, 3 + 2) - std::cos(4 * std::pow(10000.0, -2.0 / 3))) < 1e-15);
  CHECK(std::abs(t(9, 6 + 0) - std::sin(1.0)) < 1e-15);
  CHECK(std::abs(t(9, 9 + 1) - std::cos(std::pow(10000.0, -1.0 / 3))) < 1e-15);
  REQUIRE_IREPA_ERROR(ops::sincos_2d_table<double>(2, 2, 10), "multiple of 4");
  if (!test::have_golden()) return;
  for (const char* f : {"sit_irepa_conv3_zscore", "sit_two_encoders_cosine_path"}) {
    io::SafeTensorsFile g((test::golden_dir() / (std::string(f) + ".safetensors")).string());
    auto ref = g.load<double>("params/pos_embed");  // [1, T, D]
    const auto T = ref.size(1), D = ref.size(2);
    const auto grid = static_cast<std::int64_t>(std::lround(std::sqrt(static_cast<double>(T))));
    auto ours = ops::sincos_2d_table<double>(grid, grid, D);
    INFO(f);
    CHECK(test::rel_error(ours, ref) < 1e-15);
  }
}

TEST_CASE("timestep features and their derivative in t", "[ops][embedding]") {
  CpuContext ctx(2);
  const std::int64_t dim = GENERATE(256, 33);
  auto t = test::rand_uniform<double>({5}, 0.0, 1.0);
  Tensor<double> out(Shape{5, dim}), dt(t.shape());
  ops::timestep_features_forward<double>(ctx, t, dim, out.view());
  const auto half = dim / 2;
  const double f3 = std::exp(-std::log(10000.0) * 3 / static_cast<double>(half));
  CHECK(std::abs(out(2, 3) - std::cos(t[2] * f3)) < 1e-15);
  CHECK(std::abs(out(2, half + 3) - std::sin(t[2] * f3)) < 1e-15);
  if (dim % 2) CHECK(out(4, dim - 1) == 0.0);
  auto r = check::gradient_check(
      [&] {
        Tensor<double> o(Shape{5, dim});
        ops::timestep_features_forward<double>(ctx, t, dim, o.view());
        return o;
      },
      [&](const std::vector<Tensor<double>>& g) { ops::timestep_features_backward<double>(ctx, t, g[0], dt.view()); },
      {input("t", t.view(), dt.view())});
  REQUIRE_GRADCHECK(r);
}

TEST_CASE("token mean and unbiased std", "[ops][reduce]") {
  CpuContext ctx(2);
  auto x = test::randn<double>({3, 7, 5});
  Tensor<double> m(Shape{3, 5}), s(Shape{3, 5}), dx(x.shape());
  ops::token_mean_std_forward<double>(ctx, x, m.view(), s.view());
  double mu = 0, var = 0;
  for (int t = 0; t < 7; ++t) mu += x(1, t, 2);
  mu /= 7;
  for (int t = 0; t < 7; ++t) var += (x(1, t, 2) - mu) * (x(1, t, 2) - mu);
  CHECK(std::abs(m(1, 2) - mu) < 1e-14);
  CHECK(std::abs(s(1, 2) - std::sqrt(var / 6)) < 1e-14);
  auto r = check::gradient_check(
      [&] {
        std::vector<Tensor<double>> o;
        o.emplace_back(Shape{3, 5});
        o.emplace_back(Shape{3, 5});
        ops::token_mean_std_forward<double>(ctx, x, o[0].view(), o[1].view());
        return o;
      },
      [&](const std::vector<Tensor<double>>& g) {
        ops::token_mean_std_forward<double>(ctx, x, m.view(), s.view());
        ops::token_mean_std_backward<double>(ctx, x, m, s, g[0], g[1], dx.view());
      },
      {input("x", x.view(), dx.view())});
  REQUIRE_GRADCHECK(r);
  REQUIRE_IREPA_ERROR(ops::token_mean_std_forward<double>(ctx, test::randn<double>({3, 1, 5}), m.view(), s.view()), "T >= 2");
}

TEST_CASE("L2 normalise", "[ops][reduce]") {
  CpuContext ctx(2);
  auto x = test::randn<double>({5, 3, 10});
  Tensor<double> y(x.shape()), n(Shape{15}), dx(x.shape());
  ops::l2_normalize_forward<double>(ctx, x, 1e-12, y.view(), n.view());
  double ss = 0;
  for (int i = 0; i < 10; ++i) ss += y[30 + i] * y[30 + i];
  CHECK(std::abs(ss - 1) < 1e-14);
  auto r = check::gradient_check(
      [&] {
        Tensor<double> o(x.shape()), nn(Shape{15});
        ops::l2_normalize_forward<double>(ctx, x, 1e-12, o.view(), nn.view());
        return o;
      },
      [&](const std::vector<Tensor<double>>& g) {
        ops::l2_normalize_forward<double>(ctx, x, 1e-12, y.view(), n.view());
        ops::l2_normalize_backward<double>(ctx, y, n, g[0], 1e-12, dx.view());
      },
      {input("x", x.view(), dx.view())});
  REQUIRE_GRADCHECK(r);
}

TEST_CASE("cosine similarity of rows", "[ops][reduce]") {
  CpuContext ctx(2);
  auto a = test::randn<double>({3, 5, 9});
  auto b = test::randn<double>({3, 5, 9});
  Tensor<double> s(Shape{15}), da(a.shape()), db(b.shape());
  ops::cosine_similarity_forward<double>(ctx, a, b, 1e-12, s.view());
  double dot = 0, na = 0, nb = 0;
  for (int i = 0; i < 9; ++i) {
    dot += a[18 + i] * b[18 + i];
    na += a[18 + i] * a[18 + i];
    nb += b[18 + i] * b[18 + i];
  }
  CHECK(std::abs(s[2] - dot / std::sqrt(na * nb)) < 1e-14);
  auto r = check::gradient_check(
      [&] {
        Tensor<double> o(Shape{15});
        ops::cosine_similarity_forward<double>(ctx, a, b, 1e-12, o.view());
        return o;
      },
      [&](const std::vector<Tensor<double>>& g) {
        auto cache = ops::cosine_similarity_forward<double>(ctx, a, b, 1e-12, s.view());
        ops::cosine_similarity_backward<double>(ctx, cache, g[0], 1e-12, da.view(), db.view());
      },
      {input("a", a.view(), da.view()), input("b", b.view(), db.view())});
  REQUIRE_GRADCHECK(r);
}

TEST_CASE("ReLU", "[ops][activation]") {
  CpuContext ctx(2);
  auto x = test::randn<double>({3, 5, 14}, 2.0);
  Tensor<double> y(x.shape()), dx(x.shape());
  ops::relu_forward<double>(ctx, x, y.view());
  std::int64_t positive = 0;
  for (std::int64_t i = 0; i < x.numel(); ++i) {
    CHECK(y[i] == (x[i] > 0 ? x[i] : 0.0));
    positive += x[i] > 0;
  }
  CHECK(positive > 0);
  CHECK(positive < x.numel());
  auto r = check::gradient_check(
      [&] {
        Tensor<double> out(x.shape());
        ops::relu_forward<double>(ctx, x, out.view());
        return out;
      },
      [&](const std::vector<Tensor<double>>& g) { ops::relu_backward<double>(ctx, x, g[0], dx.view()); },
      {input("x", x.view(), dx.view())});
  REQUIRE_GRADCHECK(r);
  // From the output (its input's sign), in place.
  Tensor<double> g = test::randn<double>(x.shape());
  Tensor<double> from_y = Tensor<double>::copy_of(g.cview());
  ops::relu_backward<double>(ctx, x, g, dx.view());
  ops::relu_backward<double>(ctx, y, from_y, from_y.view());
  for (std::int64_t i = 0; i < x.numel(); ++i) CHECK(from_y[i] == dx[i]);
  REQUIRE_IREPA_ERROR(ops::relu_forward<double>(ctx, x, Tensor<double>(Shape{3, 5}).view()), "relu_forward");
}

TEST_CASE("softmax cross-entropy: the loss per row and the gradient of its scaled sum (labels checked)", "[ops][reduce]") {
  CpuContext ctx(2);
  const std::int64_t B = 7, K = 5;
  auto z = test::randn<double>({B, K}, 3.0);
  Tensor<std::int64_t> y(Shape{B});
  test::rng().randint(y.view(), 0, K);
  Tensor<double> loss(Shape{B}), dz(z.shape());
  ops::softmax_cross_entropy<double>(ctx, z, y, loss.view(), TensorView<double>{}, 1.0);
  for (std::int64_t b = 0; b < B; ++b) {
    double sum = 0;
    for (std::int64_t k = 0; k < K; ++k) sum += std::exp(z(b, k));
    CHECK(std::abs(loss[b] - (std::log(sum) - z(b, y[b]))) < 1e-13);
  }
  // d/dz of sum_b g0 loss_b is the op's dz with scale g0.
  auto r = check::gradient_check(
      [&] {
        Tensor<double> l(Shape{B});
        ops::softmax_cross_entropy<double>(ctx, z, y, l.view(), TensorView<double>{}, 1.0);
        return l;
      },
      [&](const std::vector<Tensor<double>>& g) {
        // Per-row weights g[b]: scale 1 gives (softmax - onehot), weighted row by row here.
        ops::softmax_cross_entropy<double>(ctx, z, y, loss.view(), dz.view(), 1.0);
        for (std::int64_t b = 0; b < B; ++b)
          for (std::int64_t k = 0; k < K; ++k) dz(b, k) *= g[0][b];
      },
      {input("z", z.view(), dz.view())});
  REQUIRE_GRADCHECK(r);
  Tensor<double> scaled(z.shape());
  ops::softmax_cross_entropy<double>(ctx, z, y, loss.view(), dz.view(), 1.0);
  ops::softmax_cross_entropy<double>(ctx, z, y, loss.view(), scaled.view(), 0.25);
  for (std::int64_t i = 0; i < z.numel(); ++i) CHECK(std::abs(scaled[i] - 0.25 * dz[i]) < 1e-15);
  Tensor<std::int64_t> bad = Tensor<std::int64_t>::copy_of(y.cview());
  bad[3] = K;
  REQUIRE_IREPA_ERROR(ops::softmax_cross_entropy<double>(ctx, z, bad, loss.view(), dz.view(), 1.0), "label 5 of row 3 is not in 0..4");
  REQUIRE_IREPA_ERROR(ops::softmax_cross_entropy<double>(ctx, z, y, Tensor<double>(Shape{B + 1}).view(), dz.view(), 1.0), "loss");
  REQUIRE_IREPA_ERROR(ops::softmax_cross_entropy<double>(ctx, test::randn<double>({B}), y, loss.view(), dz.view(), 1.0),
                      "expected [B, K]");
}

TEST_CASE("encoder ops: exact and quick GELU, affine rows, LayerScale residual, class-token blend, channel norm", "[ops][encoder]") {
  CpuContext ctx(2);
  const std::int64_t B = 3, T = 7, D = 11;
  const auto x = test::randn<double>({B, T, D}, 2.0), acc = test::randn<double>({B, T, D}), w = test::randn<double>({D}),
             b = test::randn<double>({D});
  const std::int64_t i = 5 * D + 4;  // an element of the first image, token 5, column 4
  SECTION("exact GELU and QuickGELU, also in place") {
    Tensor<double> y(x.shape());
    ops::gelu_forward<double>(ctx, x, y.view());
    CHECK(std::abs(y[i] - 0.5 * x[i] * (1 + std::erf(x[i] / std::sqrt(2.0)))) < 1e-15);
    ops::quick_gelu_forward<double>(ctx, x, y.view());
    CHECK(std::abs(y[i] - x[i] / (1 + std::exp(-1.702 * x[i]))) < 1e-15);
    Tensor<double> z = Tensor<double>::copy_of(x.cview());
    ops::quick_gelu_forward<double>(ctx, z, z.view());
    CHECK(test::rel_error(z, y) == 0.0);
    Tensor<double> wrong(Shape{B, T, D + 1});
    REQUIRE_IREPA_ERROR(ops::gelu_forward<double>(ctx, x, wrong.view()), "gelu_forward");
  }
  SECTION("scale_shift_rows and add_scaled_rows") {
    Tensor<double> y = Tensor<double>::copy_of(x.cview());
    ops::scale_shift_rows<double>(ctx, y.view(), w, b);
    CHECK(std::abs(y[i] - (x[i] * w[4] + b[4])) < 1e-15);
    Tensor<double> h = Tensor<double>::copy_of(acc.cview());
    ops::add_scaled_rows<double>(ctx, h.view(), w, x);
    CHECK(std::abs(h[i] - (acc[i] + w[4] * x[i])) < 1e-15);
    Tensor<double> plain = Tensor<double>::copy_of(acc.cview());
    ops::add_scaled_rows<double>(ctx, plain.view(), ConstView<double>{}, x);
    CHECK(plain[i] == acc[i] + x[i]);
    const auto short_w = test::randn<double>({D - 1});
    REQUIRE_IREPA_ERROR(ops::scale_shift_rows<double>(ctx, y.view(), short_w, b), "weight has 10 values");
    REQUIRE_IREPA_ERROR(ops::add_scaled_rows<double>(ctx, h.view(), short_w, x), "gamma has 10 values");
  }
  SECTION("blend_first_token") {
    Tensor<double> out(Shape{B, T - 2, D});
    ops::blend_first_token<double>(ctx, x, 2, 0.1, 0.9, out.view());
    CHECK(std::abs(out(2, 3, 4) - (0.1 * x(2, 0, 4) + 0.9 * x(2, 5, 4))) < 1e-15);
    Tensor<double> too_long(Shape{B, T, D});
    REQUIRE_IREPA_ERROR(ops::blend_first_token<double>(ctx, x, 2, 0.1, 0.9, too_long.view()), "do not fit");
    REQUIRE_IREPA_ERROR(ops::blend_first_token<double>(ctx, x, 0, 0.1, 0.9, too_long.view()), "after the first");
  }
  SECTION("normalize_channels") {
    Tensor<double> img(Shape{2, 3, 5, 6});
    test::rng().uniform(img.view(), 0.0, 255.0);
    const ops::ChannelNorm n{.divisor = 255.0, .mean = {0.485, 0.456, 0.406, 0}, .std = {0.229, 0.224, 0.225, 1}};
    Tensor<double> y(img.shape());
    ops::normalize_channels<double>(ctx, img, n, y.view());
    CHECK(std::abs(y(1, 2, 3, 4) - (img(1, 2, 3, 4) / 255.0 - 0.406) / 0.225) < 1e-15);
    CHECK(std::abs(y(0, 0, 0, 1) - (img(0, 0, 0, 1) / 255.0 - 0.485) / 0.229) < 1e-15);
    Tensor<double> five(Shape{1, 5, 2, 2});
    REQUIRE_IREPA_ERROR(ops::normalize_channels<double>(ctx, five, n, five.view()), "C <= 4");
  }
}
