// Core: bf16 conversion (bit-exact), shapes and tensors, contexts, the parameter arena and the concepts.

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include "irepa/core/arena.hpp"
#include "irepa/core/concepts.hpp"
#include "irepa/core/context.hpp"
#include "irepa/core/dtype.hpp"
#include "irepa/core/tensor.hpp"
#include "test_support.hpp"

using namespace irepa;

namespace {
std::uint16_t bits(bf16 v) { return Eigen::numext::bit_cast<std::uint16_t>(v); }
bf16 from_bits(std::uint16_t b) { return Eigen::numext::bit_cast<bf16>(b); }

/// Independent oracle: the nearest bf16 to f, ties to even, by exact arithmetic in double.
std::uint16_t rne_oracle(float f) {
  const auto u = std::bit_cast<std::uint32_t>(f);
  if (std::isnan(f)) return 0;  // handled separately
  const std::uint16_t lo = static_cast<std::uint16_t>(u >> 16);  // truncation toward zero
  if ((u & 0xFFFFu) == 0) return lo;
  const std::uint16_t hi = static_cast<std::uint16_t>(lo + 1);   // next magnitude up (may be inf)
  const double x = std::abs(static_cast<double>(f));
  const double a = std::abs(static_cast<double>(std::bit_cast<float>(static_cast<std::uint32_t>(lo) << 16)));
  // The upper candidate's magnitude: for lo = max finite it is 2^128 (rounds to inf).
  const std::uint32_t hi_u = static_cast<std::uint32_t>(hi) << 16;
  const double b = ((hi & 0x7F80u) == 0x7F80u) ? std::ldexp(1.0, 128) : std::abs(static_cast<double>(std::bit_cast<float>(hi_u)));
  if (x - a < b - x) return lo;
  if (x - a > b - x) return hi;
  return (lo & 1u) ? hi : lo;
}
}  // namespace

TEST_CASE("bf16 rounds to nearest even, bit-exact on edge cases", "[core][bf16]") {
  CHECK(bits(bf16(1.0f)) == 0x3F80);
  CHECK(bits(bf16(-2.0f)) == 0xC000);
  CHECK(bits(bf16(0.0f)) == 0x0000);
  CHECK(bits(bf16(-0.0f)) == 0x8000);
  // Exactly half-way: ties go to the even mantissa.
  CHECK(bits(bf16(std::bit_cast<float>(0x3F808000u))) == 0x3F80);  // lsb 0 stays
  CHECK(bits(bf16(std::bit_cast<float>(0x3F818000u))) == 0x3F82);  // lsb 1 rounds up
  // Just above / below half-way.
  CHECK(bits(bf16(std::bit_cast<float>(0x3F808001u))) == 0x3F81);
  CHECK(bits(bf16(std::bit_cast<float>(0x3F807FFFu))) == 0x3F80);
  // Carry into the exponent.
  CHECK(bits(bf16(std::bit_cast<float>(0x3FFFC000u))) == 0x4000);
  // Largest finite float rounds to infinity; infinities stay.
  CHECK(bits(bf16(std::numeric_limits<float>::max())) == 0x7F80);
  CHECK(bits(bf16(std::numeric_limits<float>::infinity())) == 0x7F80);
  CHECK(bits(bf16(-std::numeric_limits<float>::infinity())) == 0xFF80);
  // Subnormals round like any other value.
  CHECK(bits(bf16(std::bit_cast<float>(0x00010000u))) == 0x0001);
  CHECK(bits(bf16(std::bit_cast<float>(0x00018000u))) == 0x0002);
  // NaN stays NaN (quiet), even when truncation would give infinity.
  const bf16 n = bf16(std::bit_cast<float>(0x7F800001u));
  CHECK((bits(n) & 0x7F80) == 0x7F80);
  CHECK((bits(n) & 0x007F) != 0);
  CHECK(std::isnan(static_cast<float>(n)));
  // bf16 -> float is exact.
  for (std::uint32_t b = 0; b < 0x10000u; b += 7) {
    const bf16 v = from_bits(static_cast<std::uint16_t>(b));
    if (std::isnan(static_cast<float>(v))) continue;
    CHECK(std::bit_cast<std::uint32_t>(static_cast<float>(v)) == b << 16);
  }
}

TEST_CASE("bf16 conversion matches an exact oracle over a sweep of all float bit patterns", "[core][bf16]") {
  std::uint64_t mismatches = 0, checked = 0;
  const std::uint32_t start = static_cast<std::uint32_t>(test::rng().seed() % 509);
  for (std::uint64_t u = start; u <= 0xFFFFFFFFull; u += 509) {
    const float f = std::bit_cast<float>(static_cast<std::uint32_t>(u));
    if (std::isnan(f)) continue;
    ++checked;
    if (bits(bf16(f)) != rne_oracle(f)) ++mismatches;
  }
  INFO("checked " << checked);
  CHECK(checked > 8000000);
  CHECK(mismatches == 0);
}

TEST_CASE("Shape and TensorView: strides, views, errors", "[core][tensor]") {
  Tensor<double> t = test::randn<double>({3, 4, 5});
  CHECK(t.numel() == 60);
  CHECK(t.view().stride(0) == 20);
  CHECK(t.view().is_contiguous());
  CHECK(&t(1, 2, 3) == t.data() + 1 * 20 + 2 * 5 + 3);

  auto s = t.view().slice(1, 1, 2);  // [3, 2, 5]
  CHECK(s.shape() == Shape{3, 2, 5});
  CHECK(!s.is_contiguous());
  CHECK(s(2, 1, 4) == t(2, 2, 4));
  auto tr = t.view().transpose(0, 2);  // [5, 4, 3]
  CHECK(tr(4, 3, 2) == t(2, 3, 4));
  auto sel = t.view().select(1, 3);  // [3, 5]
  CHECK(sel(2, 1) == t(2, 3, 1));

  Tensor<double> c = Tensor<double>::copy_of(s);
  CHECK(c.view().is_contiguous());
  for (int a = 0; a < 3; ++a)
    for (int b = 0; b < 2; ++b)
      for (int k = 0; k < 5; ++k) CHECK(c(a, b, k) == t(a, b + 1, k));

  auto m = t.view().reshape({12, 5});
  CHECK(m.eigen<2>()(7, 3) == t(1, 3, 3));
  CHECK(t.matrix().dimension(0) == 12);

  REQUIRE_IREPA_ERROR(t.view().reshape({7, 9}), "reshape", "[3, 4, 5]", "[7, 9]");
  REQUIRE_IREPA_ERROR(s.reshape({30}), "not contiguous");
  REQUIRE_IREPA_ERROR(t.view().slice(1, 3, 2), "slice", "[3, 4, 5]");
  REQUIRE_IREPA_ERROR(t.view().eigen<2>(), "rank 3");
  REQUIRE_IREPA_ERROR(check_shape("my_op", "weight", Shape{2, 3}, Shape{3, 2}), "my_op", "weight", "[2, 3]", "[3, 2]");
  REQUIRE_IREPA_ERROR(Shape({1, -2}), "negative");
  REQUIRE_IREPA_ERROR((Tensor<float, Cuda>(Shape{4})), "without CUDA");
}

TEST_CASE("Tensor holds float, double, bf16 and converts views to const", "[core][tensor]") {
  Tensor<bf16> b(Shape{2, 3}, bf16(1.5f));
  CHECK(static_cast<float>(b(1, 2)) == 1.5f);
  Tensor<float> f(Shape{4}, 2.0f);
  ConstView<float> cv = f.view();
  CHECK(cv[3] == 2.0f);
  Tensor<float> g = f.clone();
  g[0] = 5;
  CHECK(f[0] == 2.0f);
  CHECK(dtype_of<bf16> == DType::BF16);
  CHECK(dtype_name(dtype_of<double>) == "F64");
}

TEST_CASE("CpuContext: thread count settable, parallel_for covers the range once", "[core][context]") {
  CpuContext ctx(3);
  CHECK(ctx.threads() == 3);
  CHECK(ctx.device().numThreads() == 3);
  ctx.set_threads(1);
  CHECK(ctx.threads() == 1);
  ctx.set_threads(2);
  std::vector<int> hits(100000, 0);
  ctx.parallel_for(100000, 100.0, [&](std::int64_t b, std::int64_t e) {
    for (auto i = b; i < e; ++i) hits[static_cast<std::size_t>(i)] += 1;
  });
  CHECK(std::all_of(hits.begin(), hits.end(), [](int h) { return h == 1; }));
  REQUIRE_IREPA_ERROR(CudaContext(0), "without CUDA");
}

namespace {
// A two-level toy model with PyTorch-style names.
struct ToyLinear {
  using scalar_type = double;
  using device_type = Cpu;
  Param<double> weight{Shape{3, 2}}, bias{Shape{3}};
  template <class V>
  void visit_params(V&& v, std::string_view prefix) {
    v(join_name(prefix, "weight"), weight);
    v(join_name(prefix, "bias"), bias);
  }
};
struct ToyModel {
  using scalar_type = double;
  using device_type = Cpu;
  std::array<ToyLinear, 2> blocks;
  Param<double> pos_scale{Shape{5}};
  template <class V>
  void visit_params(V&& v, std::string_view prefix) {
    for (std::size_t i = 0; i < blocks.size(); ++i)
      blocks[i].visit_params(v, join_name(join_name(prefix, "blocks"), std::to_string(i)));
    v(join_name(prefix, "pos_scale"), pos_scale);
  }
};
}  // namespace

TEST_CASE("ParamArena: one flat buffer, reference names, bound views", "[core][arena]") {
  ToyModel m;
  ParamArena<double> arena(m);
  CHECK(arena.numel() == 2 * (6 + 3) + 5);
  std::vector<std::string> names;
  arena.for_each([&](std::string_view n, TensorView<double> v, TensorView<double> g) {
    names.emplace_back(n);
    CHECK(v.shape() == g.shape());
  });
  CHECK(names == std::vector<std::string>{"blocks.0.weight", "blocks.0.bias", "blocks.1.weight", "blocks.1.bias", "pos_scale"});
  // Layer views alias the arena.
  m.blocks[1].weight.value(2, 1) = 7.0;
  CHECK(arena.value("blocks.1.weight")(2, 1) == 7.0);
  CHECK(arena.values()[arena.entry("blocks.1.weight").offset + 5] == 7.0);
  m.blocks[0].bias.grad[1] = 3.0;
  CHECK(arena.grads()[6 + 1] == 3.0);
  arena.zero_grad();
  CHECK(m.blocks[0].bias.grad[1] == 0.0);
  REQUIRE_IREPA_ERROR(arena.value("blocks.2.weight"), "blocks.2.weight");
  static_assert(Layer<ToyModel>);
}

namespace {
struct GoodNorm {
  template <class T>
  void apply(CpuContext&, ConstView<T> z, TensorView<T> out) const {
    out.copy_from(z);
  }
};
struct NotANorm {
  int alpha = 0;
};
struct GoodLoss {
  template <class T>
  struct cache {
    T value;
  };
  template <class T>
  cache<T> forward(CpuContext&, ConstView<T>, ConstView<T>) const {
    return {T(0)};
  }
  template <class T>
  void backward(CpuContext&, const cache<T>&, T, TensorView<T>) const {}
};
}  // namespace

TEST_CASE("concepts accept conforming policies and reject others", "[core][concepts]") {
  STATIC_REQUIRE(Normalizer<GoodNorm>);
  STATIC_REQUIRE(!Normalizer<NotANorm>);
  STATIC_REQUIRE(AlignmentLoss<GoodLoss>);
  STATIC_REQUIRE(!AlignmentLoss<GoodNorm>);
  STATIC_REQUIRE(!Projector<GoodNorm>);
  STATIC_REQUIRE(Device<Cpu>);
  STATIC_REQUIRE(Backend<CpuContext>);
  STATIC_REQUIRE(!Backend<Cpu>);
}
