#pragma once
// CPU backend of ops/pool.hpp: max pooling on channels-last grids (forward only; the frozen
// encoders use it): torch's max_pool2d(kernel = stride = s) with floor, so a last partial row or
// column is dropped.

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

}  // namespace irepa::ops
