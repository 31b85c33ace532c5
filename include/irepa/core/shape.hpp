#pragma once
// Shape: up to kMaxRank extents, row-major strides, and printing for error messages.

#include <array>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>

#include <fmt/format.h>

#include "irepa/core/checked.hpp"
#include "irepa/core/error.hpp"

namespace irepa {

inline constexpr int kMaxRank = 6;

class Shape {
 public:
  Shape() = default;
  Shape(std::initializer_list<std::int64_t> dims) { assign(std::span(dims.begin(), dims.size())); }
  explicit Shape(std::span<const std::int64_t> dims) { assign(dims); }

  int rank() const { return rank_; }
  std::int64_t operator[](int i) const { return d_[static_cast<std::size_t>(i < 0 ? i + rank_ : i)]; }
  std::int64_t& operator[](int i) { return d_[static_cast<std::size_t>(i < 0 ? i + rank_ : i)]; }
  /// The element count; a shape whose product passes 2^62 is an Error, never a wrapped count.
  std::int64_t numel() const { return checked_numel(dims(), "Shape"); }
  std::span<const std::int64_t> dims() const { return {d_.data(), static_cast<std::size_t>(rank_)}; }
  /// Product of all extents but the last (rows of a [..., D] tensor).
  std::int64_t rows() const { return rank_ == 0 ? 1 : numel() / d_[static_cast<std::size_t>(rank_ - 1)]; }
  std::int64_t last() const { return rank_ == 0 ? 1 : d_[static_cast<std::size_t>(rank_ - 1)]; }

  friend bool operator==(const Shape& a, const Shape& b) {
    if (a.rank_ != b.rank_) return false;
    for (int i = 0; i < a.rank_; ++i)
      if (a.d_[static_cast<std::size_t>(i)] != b.d_[static_cast<std::size_t>(i)]) return false;
    return true;
  }

  std::string str() const {
    std::string s = "[";
    for (int i = 0; i < rank_; ++i) s += (i ? ", " : "") + std::to_string(d_[static_cast<std::size_t>(i)]);
    return s + "]";
  }

 private:
  void assign(std::span<const std::int64_t> dims) {
    IREPA_CHECK(dims.size() <= static_cast<std::size_t>(kMaxRank), "Shape: rank {} exceeds the maximum {}",
                dims.size(), kMaxRank);
    rank_ = static_cast<int>(dims.size());
    for (std::size_t i = 0; i < dims.size(); ++i) {
      IREPA_CHECK(dims[i] >= 0, "Shape: negative extent {} in dimension {}", dims[i], i);
      d_[i] = dims[i];
    }
    (void)checked_numel(dims, "Shape");  // a shape from a file's header may claim any product
  }
  std::array<std::int64_t, kMaxRank> d_{};
  int rank_ = 0;
};

using Strides = std::array<std::int64_t, kMaxRank>;

inline Strides row_major_strides(const Shape& s) {
  Strides st{};
  std::int64_t acc = 1;
  for (int i = s.rank() - 1; i >= 0; --i) {
    st[static_cast<std::size_t>(i)] = acc;
    // A product of trailing extents can pass 64 bits only when another extent is 0 (the
    // element count is checked): no element is ever addressed then, so the stride is moot.
    if (__builtin_mul_overflow(acc, s[i], &acc)) acc = 0;
  }
  return st;
}

/// Throws "op: name shape [..] does not match expected [..]".
inline void check_shape(std::string_view op, std::string_view what, const Shape& got, const Shape& want) {
  IREPA_CHECK(got == want, "{}: {} has shape {}, expected {}", op, what, got.str(), want.str());
}

}  // namespace irepa

template <>
struct fmt::formatter<irepa::Shape> : fmt::formatter<std::string> {
  auto format(const irepa::Shape& s, format_context& ctx) const {
    return fmt::formatter<std::string>::format(s.str(), ctx);
  }
};
