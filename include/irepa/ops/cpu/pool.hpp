#pragma once
// CPU backend of ops/pool.hpp: pooling on channels-last grids, forward only (frozen networks).
//  - max_pool_channels_last: torch's max_pool2d(kernel = stride = s) with floor, so a last
//    partial row or column is dropped (the encoders).
//  - pool2d_forward: k x k windows with any stride and zero padding, max (padding never wins) or
//    average over the window's in-image pixels only (count_include_pad=False, TensorFlow's
//    SAME average pool): Inception-v3's pools.

#include <algorithm>

#include "irepa/core/context.hpp"
#include "irepa/core/tensor.hpp"

namespace irepa::ops {

namespace detail {
inline void check_max_pool(const Shape& x, std::int64_t s) {
  IREPA_CHECK(x.rank() == 4 && s > 0, "max_pool_channels_last: input has shape {} and stride {}, expected [B, H, W, C] and s > 0",
              x.str(), s);
}
}  // namespace detail

/// x [B, H, W, C] -> [B, H / s, W / s, C], the max over each s x s block.
template <class T>
Tensor<T> max_pool_channels_last(const CpuContext& ctx, ConstView<T> x, std::int64_t s) {
  detail::check_max_pool(x.shape(), s);
  const std::int64_t B = x.size(0), H = x.size(1), W = x.size(2), C = x.size(3), h = H / s, w = W / s;
  Tensor<T> y(Shape{B, h, w, C});
  const T* in = x.data();
  T* out = y.data();
  ctx.parallel_for(B * h, static_cast<double>(w * s * s * C), [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const std::int64_t b = r / h, i = r % h;
      for (std::int64_t j = 0; j < w; ++j) {
        T* o = out + ((b * h + i) * w + j) * C;
        std::copy_n(in + ((b * H + i * s) * W + j * s) * C, C, o);
        for (std::int64_t di = 0; di < s; ++di)
          for (std::int64_t dj = 0; dj < s; ++dj) {
            const T* p = in + ((b * H + i * s + di) * W + j * s + dj) * C;
            for (std::int64_t c = 0; c < C; ++c) o[c] = std::max(o[c], p[c]);
          }
      }
    }
  });
  return y;
}

enum class PoolMode { Max, AvgInImage };

/// A k x k pooling window moved by stride, with pad zero rows / columns on every side.
struct Pool2dSpec {
  std::int64_t kernel = 3, stride = 1, pad = 0;
  PoolMode mode = PoolMode::Max;
  std::int64_t out(std::int64_t n) const { return (n + 2 * pad - kernel) / stride + 1; }
};

namespace detail {
inline void check_pool2d(const Shape& x, const Pool2dSpec& s, const Shape& y) {
  IREPA_CHECK(s.kernel > 0 && s.stride > 0 && s.pad >= 0 && s.pad < s.kernel,
              "pool2d_forward: kernel {}, stride {}, padding {}: expected positive kernel and stride and 0 <= padding < kernel", s.kernel,
              s.stride, s.pad);
  IREPA_CHECK(x.rank() == 4 && x[1] + 2 * s.pad >= s.kernel && x[2] + 2 * s.pad >= s.kernel,
              "pool2d_forward: input has shape {}, expected [B, H, W, C] that the padded {}x{} window fits", x.str(), s.kernel, s.kernel);
  check_shape("pool2d_forward", "output", y, Shape{x[0], s.out(x[1]), s.out(x[2]), x[3]});
}
}  // namespace detail

/// y [B, Ho, Wo, C] = the max or in-image mean of each window of x [B, H, W, C].
template <class T>
void pool2d_forward(const CpuContext& ctx, In<T> x, const Pool2dSpec& s, TensorView<T> y) {
  detail::check_pool2d(x.shape(), s, y.shape());
  check_contiguous("pool2d_forward", x, y);
  const std::int64_t B = x.size(0), H = x.size(1), W = x.size(2), C = x.size(3), Ho = y.size(1), Wo = y.size(2);
  ctx.parallel_for(B * Ho * Wo, static_cast<double>(s.kernel * s.kernel * C), [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const std::int64_t b = r / (Ho * Wo), oh = (r / Wo) % Ho, ow = r % Wo;
      const std::int64_t h0 = std::max<std::int64_t>(0, oh * s.stride - s.pad), h1 = std::min(H, oh * s.stride - s.pad + s.kernel);
      const std::int64_t w0 = std::max<std::int64_t>(0, ow * s.stride - s.pad), w1 = std::min(W, ow * s.stride - s.pad + s.kernel);
      T* o = y.data() + r * C;
      std::copy_n(x.data() + ((b * H + h0) * W + w0) * C, C, o);
      for (std::int64_t h = h0; h < h1; ++h)
        for (std::int64_t w = w0; w < w1; ++w) {
          if (h == h0 && w == w0) continue;
          const T* p = x.data() + ((b * H + h) * W + w) * C;
          if (s.mode == PoolMode::Max)
            for (std::int64_t c = 0; c < C; ++c) o[c] = std::max(o[c], p[c]);
          else
            for (std::int64_t c = 0; c < C; ++c) o[c] += p[c];
        }
      if (s.mode == PoolMode::AvgInImage) {
        const T n = static_cast<T>((h1 - h0) * (w1 - w0));
        for (std::int64_t c = 0; c < C; ++c) o[c] /= n;
      }
    }
  });
}

}  // namespace irepa::ops
