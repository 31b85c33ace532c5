#pragma once
// Deterministic shuffling: the order of epoch e is a pure function of (seed, e), so a resumed
// run sees exactly the batches it would have seen, whatever happened before.

#include <numeric>
#include <vector>

#include "irepa/core/rng.hpp"

namespace irepa::data {

/// A permutation of 0..n-1 for (seed, epoch): Fisher-Yates driven by Philox stream `epoch`.
inline std::vector<std::int64_t> epoch_permutation(std::int64_t n, std::uint64_t seed, std::uint64_t epoch) {
  std::vector<std::int64_t> p(static_cast<std::size_t>(n));
  std::iota(p.begin(), p.end(), std::int64_t{0});
  if (n < 2) return p;
  Philox rng(seed, 0x5eed0000ULL + epoch);
  Tensor<double> u(Shape{n - 1});
  rng.uniform(u.view());
  for (std::int64_t i = n - 1; i > 0; --i) {
    const auto j = std::min(static_cast<std::int64_t>(u[n - 1 - i] * static_cast<double>(i + 1)), i);
    std::swap(p[static_cast<std::size_t>(i)], p[static_cast<std::size_t>(j)]);
  }
  return p;
}

/// The (epoch, position) of global sample index k of a run that takes batches in epoch order.
inline std::pair<std::uint64_t, std::int64_t> epoch_and_offset(std::int64_t k, std::int64_t n) {
  return {static_cast<std::uint64_t>(k / n), k % n};
}

}  // namespace irepa::data
