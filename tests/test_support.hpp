#pragma once
// Helpers shared by the tests: fresh random tensors, golden-file location, error matching.

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>

#include <catch2/catch.hpp>

#include "irepa/core/rng.hpp"
#include "irepa/core/tensor.hpp"

namespace irepa::test {

/// A generator with a fresh seed per test run (printed on failure through Catch's INFO).
inline Philox& rng() {
  static Philox g([] {
    std::random_device rd;
    return (static_cast<std::uint64_t>(rd()) << 32) | rd();
  }());
  return g;
}

template <class T = double>
Tensor<T> randn(const Shape& s, T scale = T(1)) {
  Tensor<T> t(s);
  rng().normal(t.view(), T(0), scale);
  return t;
}

template <class T = double>
Tensor<T> rand_uniform(const Shape& s, T lo, T hi) {
  Tensor<T> t(s);
  rng().uniform(t.view(), lo, hi);
  return t;
}

/// ||a - b|| / ||b||.
template <class A, class B>
double rel_error(const A& a, const B& b) {
  double d = 0, n = 0;
  for (std::int64_t i = 0; i < b.numel(); ++i) {
    const double x = static_cast<double>(a[i]), y = static_cast<double>(b[i]);
    d += (x - y) * (x - y);
    n += y * y;
  }
  return n == 0 ? std::sqrt(d) : std::sqrt(d / n);
}

/// The same floats, bit for bit (resume and reproducibility checks).
inline bool same_bits(ConstView<float> a, ConstView<float> b) {
  return a.numel() == b.numel() && std::memcmp(a.data(), b.data(), static_cast<std::size_t>(a.numel()) * sizeof(float)) == 0;
}

inline std::filesystem::path golden_dir() {
  if (const char* e = std::getenv("IREPA_GOLDEN_DIR")) return e;
  return IREPA_GOLDEN_DIR;
}

/// True when the golden folder exists; otherwise warns loudly (the test then checks nothing else).
inline bool have_golden() {
  if (std::filesystem::exists(golden_dir() / "README.md")) return true;
  WARN("golden files not found at " << golden_dir() << " (set IREPA_GOLDEN_DIR); SKIPPING golden checks");
  return false;
}

}  // namespace irepa::test

/// REQUIRE that expr throws irepa::Error whose message contains every given substring.
#define REQUIRE_IREPA_ERROR(expr, ...)                                         \
  do {                                                                         \
    bool thrown_ = false;                                                      \
    try {                                                                      \
      expr;                                                                    \
    } catch (const irepa::Error& e_) {                                         \
      thrown_ = true;                                                          \
      const std::string msg_ = e_.what();                                      \
      INFO("message: " << msg_);                                               \
      for (const char* s_ : {__VA_ARGS__}) CHECK(msg_.find(s_) != std::string::npos); \
    }                                                                          \
    REQUIRE(thrown_);                                                          \
  } while (0)

/// REQUIRE that a gradient check passed, printing its per-tensor report otherwise.
#define REQUIRE_GRADCHECK(r) \
  do {                       \
    INFO((r).report());      \
    REQUIRE((r).ok());       \
  } while (0)
