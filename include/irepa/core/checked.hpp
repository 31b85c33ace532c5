#pragma once
// Checked size arithmetic: every element count and byte count computed from input (a file's
// header, a shape, a flag) goes through these, so that an absurd claim is an irepa::Error that
// names where it came from and the numbers, never a product that wraps and a buffer too small.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "irepa/core/error.hpp"

namespace irepa {

/// The largest element or byte count a size may reach (2^62: products of two such sizes, and
/// offsets added to them, stay far from wrapping, and no machine holds that much).
inline constexpr std::int64_t kMaxSize = std::int64_t{1} << 62;

/// a * b for non-negative sizes; an Error naming `what` if it would pass kMaxSize.
inline std::int64_t checked_mul(std::int64_t a, std::int64_t b, std::string_view what) {
  std::int64_t r = 0;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r) || r > kMaxSize)
    fail("{}: the size {} x {} is negative or too large to be real (limit 2^62)", what, a, b);
  return r;
}
/// a + b for non-negative sizes; an Error naming `what` if it would pass kMaxSize.
inline std::int64_t checked_add(std::int64_t a, std::int64_t b, std::string_view what) {
  std::int64_t r = 0;
  if (a < 0 || b < 0 || __builtin_add_overflow(a, b, &r) || r > kMaxSize)
    fail("{}: the size {} + {} is negative or too large to be real (limit 2^62)", what, a, b);
  return r;
}

/// The product of dims (1 for none), each of which must be non-negative.
inline std::int64_t checked_numel(std::span<const std::int64_t> dims, std::string_view what) {
  std::int64_t n = 1;
  for (const std::int64_t d : dims) {
    if (d < 0) fail("{}: the shape [{}] has a negative extent", what, fmt::join(dims, ", "));
    std::int64_t r = 0;
    if (__builtin_mul_overflow(n, d, &r) || r > kMaxSize)
      fail("{}: the shape [{}] has more elements than can exist (limit 2^62)", what, fmt::join(dims, ", "));
    n = r;
  }
  return n;
}
/// numel(dims) * element_size, checked.
inline std::int64_t checked_nbytes(std::span<const std::int64_t> dims, std::size_t element_size, std::string_view what) {
  return checked_mul(checked_numel(dims, what), static_cast<std::int64_t>(element_size), what);
}

}  // namespace irepa
