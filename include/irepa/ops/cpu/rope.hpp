#pragma once
// Rotary position embedding on the CPU. A table gives, per token and per rotated pair, cos and
// sin of the angle: cos, sin [T, hd/2]. Two pairings of a head's hd channels:
//  - Interleaved (JiT, PE): pair p = (x[2p], x[2p+1]);
//  - HalfSplit (DINOv3, Llama style): pair p = (x[p], x[p + hd/2]).
// Each pair rotates (a, b) -> (a cos - b sin, b cos + a sin); the backward pass rotates back.

#include <cmath>
#include <utility>

#include "irepa/core/context.hpp"
#include "irepa/core/tensor.hpp"

namespace irepa::ops {

enum class RopeMode { Interleaved, HalfSplit };

namespace detail {
/// Rotates one head row x[hd] in place by the angles of one table row (inverse: by minus them).
template <class T>
void rope_row(T* x, const T* cos, const T* sin, std::int64_t hd, RopeMode mode, bool inverse) {
  const std::int64_t pairs = hd / 2;
  for (std::int64_t p = 0; p < pairs; ++p) {
    const std::int64_t ia = mode == RopeMode::Interleaved ? 2 * p : p;
    const std::int64_t ib = mode == RopeMode::Interleaved ? 2 * p + 1 : p + pairs;
    const T c = cos[p], s = inverse ? -sin[p] : sin[p];
    const T a = x[ia], b = x[ib];
    x[ia] = a * c - b * s;
    x[ib] = b * c + a * s;
  }
}
inline void check_rope_table(std::string_view op, const Shape& cos, const Shape& sin, std::int64_t tokens, std::int64_t hd) {
  IREPA_CHECK(hd % 2 == 0, "{}: head dim {} is odd; RoPE rotates pairs", op, hd);
  check_shape(op, "rope cos table", cos, Shape{tokens, hd / 2});
  check_shape(op, "rope sin table", sin, Shape{tokens, hd / 2});
}
}  // namespace detail

namespace detail {
template <class T>
void rope_apply(const CpuContext& ctx, std::string_view op, ConstView<T> x, ConstView<T> cos, ConstView<T> sin,
                RopeMode mode, TensorView<T> y, bool inverse) {
  IREPA_CHECK(x.rank() == 4, "{}: input has shape {}, expected [B, T, H, hd]", op, x.shape().str());
  check_rope_table(op, cos.shape(), sin.shape(), x.size(1), x.size(3));
  check_shape(op, "output", y.shape(), x.shape());
  check_contiguous(op, x, cos, sin, y);
  const std::int64_t N = x.size(1), H = x.size(2), hd = x.size(3);
  if (y.data() != x.data()) y.copy_from(x);
  ctx.parallel_for(x.size(0) * N * H, 3.0 * static_cast<double>(hd), [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const std::int64_t t = (r / H) % N;
      rope_row(y.data() + r * hd, cos.data() + t * (hd / 2), sin.data() + t * (hd / 2), hd, mode, inverse);
    }
  });
}
}  // namespace detail

/// y = rope(x).  x, y [B, T, H, hd] (y may be x); cos, sin [T, hd/2].
template <class T>
void rope_forward(const CpuContext& ctx, In<T> x, In<T> cos, In<T> sin, RopeMode mode, TensorView<T> y) {
  detail::rope_apply<T>(ctx, "rope_forward", x, cos, sin, mode, y, false);
}

/// dx = rope^-1(dy): a rotation's transpose is its inverse. dx assigned (may be dy).
template <class T>
void rope_backward(const CpuContext& ctx, In<T> cos, In<T> sin, RopeMode mode, In<T> dy, TensorView<T> dx) {
  detail::rope_apply<T>(ctx, "rope_backward", dy, cos, sin, mode, dx, true);
}

/// Axial 2-D RoPE table as JiT builds it: per axis dim = hd/2 channels with frequencies
/// f_i = theta^(-2i/dim), i < dim/2, each used by one interleaved pair; the first dim/2 pairs
/// turn with the token's row, the last dim/2 with its column. `prefix` leading tokens (JiT's
/// in-context class tokens) get angle 0. Perception Encoder's table is the same with the axes
/// swapped (columns_first) and positions counted from `offset` = 1 when it has a class token.
/// Computed in double. Returns {cos, sin} [prefix + gh*gw, hd/2].
template <class T>
std::pair<Tensor<T>, Tensor<T>> rope_table_axial_2d(std::int64_t gh, std::int64_t gw, std::int64_t head_dim,
                                                    double theta = 10000.0, std::int64_t prefix = 0, std::int64_t offset = 0,
                                                    bool columns_first = false) {
  IREPA_CHECK(head_dim % 4 == 0 && head_dim > 0, "rope_table_axial_2d: head dim {} must be a positive multiple of 4",
              head_dim);
  IREPA_CHECK(gh > 0 && gw > 0 && prefix >= 0, "rope_table_axial_2d: bad grid {}x{} / prefix {}", gh, gw, prefix);
  const std::int64_t pairs = head_dim / 2, dim = head_dim / 2, half = dim / 2;
  Tensor<T> c(Shape{prefix + gh * gw, pairs}), s(Shape{prefix + gh * gw, pairs});
  for (std::int64_t t = 0; t < prefix + gh * gw; ++t)
    for (std::int64_t p = 0; p < pairs; ++p) {
      double angle = 0;
      if (t >= prefix) {
        const std::int64_t row = (t - prefix) / gw + offset, col = (t - prefix) % gw + offset;
        const std::int64_t i = p < half ? p : p - half;
        const double f = std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(dim));
        angle = static_cast<double>((p < half) != columns_first ? row : col) * f;
      }
      c(t, p) = static_cast<T>(std::cos(angle));
      s(t, p) = static_cast<T>(std::sin(angle));
    }
  return {std::move(c), std::move(s)};
}

}  // namespace irepa::ops
