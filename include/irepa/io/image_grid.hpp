#pragma once
// Sample grids: a batch of images [N, C, H, W] (C = 1 or 3) in a value range, tiled into one
// uint8 picture with a border between tiles, written as PNG (grey for C = 1, RGB for C = 3).

#include <cmath>
#include <string>

#include "irepa/io/png.hpp"

namespace irepa::io {

struct GridOptions {
  std::int64_t columns = 0;  // 0: ceil(sqrt(N))
  std::int64_t padding = 2;
  double lo = -1.0, hi = 1.0;  // the value range mapped to 0..255 (clamped)
  std::uint8_t background = 255;
  std::int64_t scale = 1;  // each pixel drawn as scale x scale (nearest), for small images
};

template <class T>
Tensor<std::uint8_t> image_grid(ConstView<T> images, const GridOptions& o = {}) {
  IREPA_CHECK(images.rank() == 4 && (images.size(1) == 1 || images.size(1) == 3) && images.is_contiguous(),
              "image_grid: images have shape {}, expected contiguous [N, 1 or 3, H, W]", images.shape().str());
  IREPA_CHECK(o.hi > o.lo, "image_grid: empty value range [{}, {}]", o.lo, o.hi);
  IREPA_CHECK(o.scale >= 1 && o.padding >= 0, "image_grid: scale {} and padding {} (expected >= 1 and >= 0)", o.scale, o.padding);
  const std::int64_t N = images.size(0), C = images.size(1), s = o.scale, h = images.size(2), w = images.size(3);
  IREPA_CHECK(N >= 1 && h >= 1 && w >= 1 && o.columns >= 0 && s <= 64,
              "image_grid: {} images of {}x{} in {} columns at scale {}; expected at least one image, columns >= 0 (0: square) and scale <= 64",
              N, h, w, o.columns, s);
  const std::int64_t H = h * s, W = w * s;
  const std::int64_t cols = o.columns > 0 ? o.columns : static_cast<std::int64_t>(std::ceil(std::sqrt(static_cast<double>(N))));
  const std::int64_t rows = (N + cols - 1) / cols, p = o.padding;
  const std::int64_t GH = rows * H + (rows + 1) * p, GW = cols * W + (cols + 1) * p;
  Tensor<std::uint8_t> g = C == 1 ? Tensor<std::uint8_t>(Shape{GH, GW}) : Tensor<std::uint8_t>(Shape{GH, GW, 3});
  g.fill(o.background);
  for (std::int64_t n = 0; n < N; ++n) {
    const std::int64_t y0 = p + (n / cols) * (H + p), x0 = p + (n % cols) * (W + p);
    for (std::int64_t c = 0; c < C; ++c)
      for (std::int64_t y = 0; y < H; ++y)
        for (std::int64_t x = 0; x < W; ++x) {
          const double v = (static_cast<double>(images.data()[((n * C + c) * h + y / s) * w + x / s]) - o.lo) / (o.hi - o.lo);
          const auto u = static_cast<std::uint8_t>(std::lround(std::clamp(std::isnan(v) ? 0.0 : v, 0.0, 1.0) * 255.0));
          g.data()[((y0 + y) * GW + x0 + x) * C + c] = u;
        }
  }
  return g;
}

template <class T>
void write_image_grid(const std::string& path, ConstView<T> images, const GridOptions& o = {}) {
  write_png(path, image_grid<T>(images, o));
}

}  // namespace irepa::io
