#pragma once
// What the CUDA test programs share (they run without Catch2, which nvcc does not build here):
// a failure count, EXPECT, the device check, the closing line, and fresh random inputs moved to
// the device and compared with a double reference there.

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>

#include "irepa/core/rng.hpp"
#include "irepa/ops/cuda/common.cuh"

namespace cuda_test {

inline int failures = 0, checks = 0;

/// A device to run on; prints why not (the program then fails: these tests are meant for a GPU).
inline bool have_device() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("no CUDA device\n");
    return false;
  }
  return true;
}

/// The last line: the name, ok or FAILED, and the counts; the exit status.
inline int finish(const char* name) {
  std::printf("%s: %s (%d checks, %d failures)\n", name, failures ? "FAILED" : "ok", checks, failures);
  return failures ? 1 : 0;
}

/// A generator seeded from the system on first use: every run draws fresh inputs.
inline irepa::Philox& rng() {
  static irepa::Philox g([] {
    std::random_device rd;
    return (static_cast<std::uint64_t>(rd()) << 32) | rd();
  }());
  return g;
}
inline irepa::Tensor<double> randn(const irepa::Shape& s, double scale = 1) {
  irepa::Tensor<double> t(s);
  rng().normal(t.view(), 0.0, scale);
  return t;
}
template <class T>
irepa::Tensor<T> as(const irepa::Tensor<double>& x) {
  irepa::Tensor<T> y(x.shape());
  for (std::int64_t i = 0; i < x.numel(); ++i) y[i] = static_cast<T>(x[i]);
  return y;
}
/// x rounded to T, on the device.
template <class T>
irepa::Tensor<T, irepa::Cuda> up(const irepa::CudaContext& ctx, const irepa::Tensor<double>& x) {
  return irepa::to_device(ctx, as<T>(x).cview());
}
/// ||got - want|| / ||want||, got copied back from the device.
template <class T>
double rel(const irepa::CudaContext& ctx, irepa::ConstView<T, irepa::Cuda> got, const irepa::Tensor<double>& want) {
  const irepa::Tensor<T> h = irepa::to_host(ctx, got);
  double d = 0, n = 0;
  for (std::int64_t i = 0; i < want.numel(); ++i) {
    const double x = static_cast<double>(h[i]), y = want[i];
    d += (x - y) * (x - y), n += y * y;
  }
  return std::sqrt(d / std::max(n, 1e-300));
}

}  // namespace cuda_test

#define IREPA_CUDA_EXPECT(cond, ...)             \
  do {                                           \
    ++cuda_test::checks;                         \
    if (!(cond)) {                               \
      ++cuda_test::failures;                     \
      std::printf("FAILED %s: ", #cond);         \
      std::printf(__VA_ARGS__);                  \
      std::printf("\n");                         \
    }                                            \
  } while (0)
