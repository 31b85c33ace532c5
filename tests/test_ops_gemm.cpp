// The CPU GEMM behind linear, conv and attention: our packed float kernel (sgemm.hpp) against a
// float64 product, on shapes that leave partial tiles on every side, all four transpose cases,
// assign and accumulate; and its determinism promise (same bits for any thread count).

#include <cmath>
#include <cstring>

#include "irepa/ops/cpu/gemm.hpp"
#include "test_support.hpp"

using namespace irepa;
using ops::cpu::Trans;

namespace {

struct Case {
  std::int64_t M, N, K;
  bool ta, tb, accumulate;
};

/// op(a) op(b) (+ c0) in float64, and the error bound of a float sum of K products:
/// |c - ref| <= K eps sum_k |a_ik b_kj| (+ |c0|).
void reference(const Case& c, const Tensor<float>& a, const Tensor<float>& b, const Tensor<float>& c0,
               std::vector<double>& ref, std::vector<double>& bound) {
  ref.assign(static_cast<std::size_t>(c.M * c.N), 0.0);
  bound.assign(ref.size(), 0.0);
  for (std::int64_t i = 0; i < c.M; ++i)
    for (std::int64_t j = 0; j < c.N; ++j) {
      double s = c.accumulate ? c0[i * c.N + j] : 0.0, m = c.accumulate ? std::abs(c0[i * c.N + j]) : 0.0;
      for (std::int64_t k = 0; k < c.K; ++k) {
        const double av = c.ta ? a[k * c.M + i] : a[i * c.K + k];
        const double bv = c.tb ? b[j * c.K + k] : b[k * c.N + j];
        s += av * bv;
        m += std::abs(av * bv);
      }
      ref[static_cast<std::size_t>(i * c.N + j)] = s;
      bound[static_cast<std::size_t>(i * c.N + j)] = static_cast<double>(c.K + 1) * 6e-8 * m;
    }
}

Tensor<float> run(const CpuContext& ctx, const Case& c, const Tensor<float>& a, const Tensor<float>& b, const Tensor<float>& c0) {
  Tensor<float> out = c0.clone();
  const auto am = ops::cpu::as_matrix(static_cast<const float*>(a.data()), c.ta ? c.K : c.M, c.ta ? c.M : c.K);
  const auto bm = ops::cpu::as_matrix(static_cast<const float*>(b.data()), c.tb ? c.N : c.K, c.tb ? c.K : c.N);
  ops::cpu::gemm<float>(ctx, am, c.ta ? Trans::T : Trans::N, bm, c.tb ? Trans::T : Trans::N,
                        ops::cpu::as_matrix<float>(out.data(), c.M, c.N), c.accumulate);
  return out;
}

}  // namespace

TEST_CASE("float GEMM: every transpose case, partial tiles, assign and accumulate, against float64", "[ops][gemm]") {
  CpuContext ctx(2);
  // M and N around the tile sizes (12 x 32 with AVX-512, 6 x 16 with AVX2) and the small-M path
  // (<= 8 rows), K around the 384-deep blocks; none a power of two.
  const std::int64_t Ms[] = {1, 3, 8, 9, 13, 37, 197};
  const std::int64_t Ns[] = {1, 17, 33, 70, 531};
  const std::int64_t Ks[] = {1, 5, 383, 385, 901};
  int cases = 0;
  for (std::int64_t M : Ms)
    for (std::int64_t N : Ns)
      for (std::int64_t K : Ks) {
        const int variant = cases++;
        const Case c{M, N, K, (variant & 1) != 0, (variant & 2) != 0, (variant & 4) != 0};
        if (M * N * K > 4'000'000) continue;  // keeps the float64 reference quick
        INFO("M " << M << " N " << N << " K " << K << " ta " << c.ta << " tb " << c.tb << " acc " << c.accumulate);
        const auto a = test::randn<float>({c.ta ? K : M, c.ta ? M : K});
        const auto b = test::randn<float>({c.tb ? N : K, c.tb ? K : N});
        const auto c0 = test::randn<float>({M, N});
        std::vector<double> ref, bound;
        reference(c, a, b, c0, ref, bound);
        const Tensor<float> out = run(ctx, c, a, b, c0);
        std::int64_t bad = 0;
        for (std::int64_t i = 0; i < M * N; ++i)
          if (!(std::abs(out[i] - ref[static_cast<std::size_t>(i)]) <= bound[static_cast<std::size_t>(i)] + 1e-30)) ++bad;
        REQUIRE(bad == 0);
      }
  CHECK(cases == 7 * 5 * 5);
}

TEST_CASE("float GEMM: the same bits with 1, 2 and 3 threads, and inside a parallel loop (sgemm_serial)", "[ops][gemm]") {
  const Case c{203, 611, 777, false, true, true};
  const auto a = test::randn<float>({c.M, c.K});
  const auto b = test::randn<float>({c.N, c.K});
  const auto c0 = test::randn<float>({c.M, c.N});
  CpuContext one(1), two(2), three(3);
  const Tensor<float> r1 = run(one, c, a, b, c0), r2 = run(two, c, a, b, c0), r3 = run(three, c, a, b, c0);
  const auto bytes = sizeof(float) * static_cast<std::size_t>(c.M * c.N);
  if constexpr (!ops::cpu::kSgemmAvailable) {
    // Builds without AVX2/FMA use Eigen, whose threads may split K: close, not the same bits.
    CHECK(test::rel_error(r1, r2) < 1e-5);
    CHECK(test::rel_error(r1, r3) < 1e-5);
  } else {
    CHECK(std::memcmp(r1.data(), r2.data(), bytes) == 0);
    CHECK(std::memcmp(r1.data(), r3.data(), bytes) == 0);
    Tensor<float> serial = c0.clone();
    ops::cpu::sgemm_serial(c.M, c.N, c.K, {a.data(), c.K, false}, {b.data(), c.K, true}, serial.data(), c.N, true);
    CHECK(std::memcmp(r1.data(), serial.data(), bytes) == 0);
  }
}

TEST_CASE("float GEMM: a C with a row stride wider than N is written only in its N columns", "[ops][gemm]") {
  if constexpr (ops::cpu::kSgemmAvailable) {
    CpuContext ctx(2);
    const std::int64_t M = 29, N = 45, K = 50, ldc = 61;
    const auto a = test::randn<float>({M, K});
    const auto b = test::randn<float>({K, N});
    Tensor<float> c = test::randn<float>({M, ldc});
    const Tensor<float> before = c.clone();
    ops::cpu::sgemm(ctx, M, N, K, {a.data(), K, false}, {b.data(), N, false}, c.data(), ldc, false);
    for (std::int64_t i = 0; i < M; ++i) {
      for (std::int64_t j = N; j < ldc; ++j) REQUIRE(c[i * ldc + j] == before[i * ldc + j]);
      for (std::int64_t j = 0; j < N; ++j) {
        double t = 0;
        for (std::int64_t k = 0; k < K; ++k) t += static_cast<double>(a[i * K + k]) * b[k * N + j];
        REQUIRE(std::abs(c[i * ldc + j] - t) < 1e-4);
      }
    }
    // K = 0: assigning gives zeros, accumulating leaves C alone.
    Tensor<float> z = test::randn<float>({M, N});
    const Tensor<float> z0 = z.clone();
    ops::cpu::sgemm(ctx, M, N, 0, {a.data(), K, false}, {b.data(), N, false}, z.data(), N, true);
    CHECK(std::memcmp(z.data(), z0.data(), sizeof(float) * static_cast<std::size_t>(M * N)) == 0);
    ops::cpu::sgemm(ctx, M, N, 0, {a.data(), K, false}, {b.data(), N, false}, z.data(), N, false);
    for (std::int64_t i = 0; i < M * N; ++i) REQUIRE(z[i] == 0.0f);
  } else {
    SUCCEED("this build multiplies floats with Eigen (no AVX2/FMA); the other cases cover it");
  }
}
