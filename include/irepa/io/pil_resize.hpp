#pragma once
// Pillow's 8-bit resampling, exactly (Image.resize on "L" and "RGB" images), and ADM's
// center_crop_arr, which the reference's image datasets apply:
//  - pil_resize: separable, horizontal pass first (only where that side changes), filter support
//    scaled by the downscale factor, weights normalised and rounded to 22-bit fixed point, each
//    pass rounded and clipped to 0..255; every channel of [H, W, C] the same way. Nearest is
//    Pillow's affine nearest neighbour.
//  - center_crop_arr: while the short side is at least twice the target, box-downsample by 2
//    (floor of each side); then bicubic so the short side is the target (sides rounded half to
//    even, as Python's round); then the centred square crop.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "irepa/core/error.hpp"
#include "irepa/core/tensor.hpp"

namespace irepa::io {

enum class ResizeFilter { Nearest, Box, Bilinear, Bicubic };

namespace detail {
inline double resize_weight(ResizeFilter f, double x) {
  switch (f) {
    case ResizeFilter::Box:
      return x > -0.5 && x <= 0.5 ? 1.0 : 0.0;
    case ResizeFilter::Bilinear:
      x = std::abs(x);
      return x < 1 ? 1 - x : 0;
    default: {
      constexpr double a = -0.5;
      x = std::abs(x);
      if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
      if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
      return 0;
    }
  }
}
inline double resize_support(ResizeFilter f) { return f == ResizeFilter::Box ? 0.5 : f == ResizeFilter::Bilinear ? 1.0 : 2.0; }

/// Pillow's per-output-pixel taps: first source index, count and fixed-point weights.
struct Taps {
  std::vector<int> first, count;
  std::vector<std::int32_t> w;  // [out, ksize]
  int ksize = 0;
};
inline Taps resize_taps(ResizeFilter f, int in, int out) {
  constexpr int precision = 22;  // 32 - 8 - 2 bits
  const double scale = static_cast<double>(in) / out, filterscale = std::max(scale, 1.0);
  const double support = resize_support(f) * filterscale;
  Taps t;
  t.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  t.first.resize(static_cast<std::size_t>(out));
  t.count.resize(static_cast<std::size_t>(out));
  t.w.assign(static_cast<std::size_t>(out) * static_cast<std::size_t>(t.ksize), 0);
  std::vector<double> k(static_cast<std::size_t>(t.ksize));
  for (int o = 0; o < out; ++o) {
    const double center = (o + 0.5) * scale;
    const int lo = std::max(static_cast<int>(center - support + 0.5), 0);
    const int hi = std::min(static_cast<int>(center + support + 0.5), in);
    const int n = hi - lo;
    double sum = 0;
    for (int x = 0; x < n; ++x) sum += (k[static_cast<std::size_t>(x)] = resize_weight(f, (x + lo - center + 0.5) / filterscale));
    for (int x = 0; x < n; ++x) {
      const double v = sum != 0 ? k[static_cast<std::size_t>(x)] / sum : k[static_cast<std::size_t>(x)];
      t.w[static_cast<std::size_t>(o * t.ksize + x)] =
          static_cast<std::int32_t>(v < 0 ? -0.5 + v * (1 << precision) : 0.5 + v * (1 << precision));
    }
    t.first[static_cast<std::size_t>(o)] = lo;
    t.count[static_cast<std::size_t>(o)] = n;
  }
  return t;
}
inline std::uint8_t clip8(std::int64_t acc) {
  return static_cast<std::uint8_t>(std::clamp<std::int64_t>(acc >> 22, 0, 255));  // arithmetic shift: floor
}
}  // namespace detail

/// img [H, W] or [H, W, C] uint8 -> [out_h, out_w(, C)], as PIL's Image.resize((out_w, out_h), filter).
inline Tensor<std::uint8_t> pil_resize(ConstView<std::uint8_t> img, std::int64_t out_h, std::int64_t out_w, ResizeFilter filter) {
  IREPA_CHECK((img.rank() == 2 || img.rank() == 3) && img.is_contiguous() && out_h > 0 && out_w > 0 && img.numel() > 0,
              "pil_resize: image has shape {}, expected a contiguous non-empty [H, W] or [H, W, C], to {}x{}", img.shape().str(), out_h,
              out_w);
  const int H = static_cast<int>(img.size(0)), W = static_cast<int>(img.size(1)), C = img.rank() == 3 ? static_cast<int>(img.size(2)) : 1;
  const int oh = static_cast<int>(out_h), ow = static_cast<int>(out_w);
  Tensor<std::uint8_t> out(img.rank() == 3 ? Shape{out_h, out_w, C} : Shape{out_h, out_w});
  const std::uint8_t* in = img.data();
  std::uint8_t* o = out.data();
  if (filter == ResizeFilter::Nearest) {
    const double ay = static_cast<double>(H) / oh, ax = static_cast<double>(W) / ow;  // Pillow's affine a[4], a[0]
    for (int y = 0; y < oh; ++y)
      for (int x = 0; x < ow; ++x) {
        const int sy = std::min(static_cast<int>(ay * (y + 0.5)), H - 1), sx = std::min(static_cast<int>(ax * (x + 0.5)), W - 1);
        std::copy_n(in + (static_cast<std::int64_t>(sy) * W + sx) * C, C, o + (static_cast<std::int64_t>(y) * ow + x) * C);
      }
    return out;
  }
  if (H == oh && W == ow) {
    out.view().copy_from(img);
    return out;
  }
  const detail::Taps th = detail::resize_taps(filter, W, ow), tv = detail::resize_taps(filter, H, oh);
  // Horizontal pass over the rows the vertical pass reads (Pillow's ybox), when the width changes.
  const bool horizontal = ow != W, vertical = oh != H;
  const int y0 = vertical ? tv.first.front() : 0, y1 = vertical ? tv.first.back() + tv.count.back() : H;
  const int row0 = horizontal ? y0 : 0, rows = horizontal ? y1 - y0 : H;
  std::vector<std::uint8_t> mid(static_cast<std::size_t>(rows) * static_cast<std::size_t>(ow) * static_cast<std::size_t>(C));
  for (int y = 0; y < rows; ++y)
    for (int x = 0; x < ow; ++x)
      for (int c = 0; c < C; ++c) {
        std::uint8_t& m = mid[(static_cast<std::size_t>(y) * ow + x) * C + c];
        if (!horizontal) {
          m = in[(static_cast<std::int64_t>(y) * W + x) * C + c];
          continue;
        }
        std::int64_t acc = 1 << 21;
        const std::int32_t* k = th.w.data() + static_cast<std::size_t>(x) * static_cast<std::size_t>(th.ksize);
        const std::uint8_t* src = in + (static_cast<std::int64_t>(y + row0) * W + th.first[static_cast<std::size_t>(x)]) * C + c;
        for (int i = 0; i < th.count[static_cast<std::size_t>(x)]; ++i) acc += static_cast<std::int64_t>(src[i * C]) * k[i];
        m = detail::clip8(acc);
      }
  if (!vertical) {
    std::copy(mid.begin(), mid.end(), o);
    return out;
  }
  for (int y = 0; y < oh; ++y) {
    const std::int32_t* k = tv.w.data() + static_cast<std::size_t>(y) * static_cast<std::size_t>(tv.ksize);
    const int first = tv.first[static_cast<std::size_t>(y)] - row0, n = tv.count[static_cast<std::size_t>(y)];
    for (int x = 0; x < ow; ++x)
      for (int c = 0; c < C; ++c) {
        std::int64_t acc = 1 << 21;
        for (int i = 0; i < n; ++i) acc += static_cast<std::int64_t>(mid[(static_cast<std::size_t>(first + i) * ow + x) * C + c]) * k[i];
        o[(static_cast<std::int64_t>(y) * ow + x) * C + c] = detail::clip8(acc);
      }
  }
  return out;
}

/// ADM's center_crop_arr: img [H, W, C] -> [size, size, C].
inline Tensor<std::uint8_t> center_crop_arr(ConstView<std::uint8_t> img, std::int64_t size) {
  IREPA_CHECK(img.rank() == 3 && size > 0 && img.size(0) > 0 && img.size(1) > 0,
              "center_crop_arr: image has shape {}, expected [H, W, C], to a {}x{} crop", img.shape().str(), size, size);
  Tensor<std::uint8_t> cur = Tensor<std::uint8_t>::copy_of(img);
  while (std::min(cur.size(0), cur.size(1)) >= 2 * size) cur = pil_resize(cur.cview(), cur.size(0) / 2, cur.size(1) / 2, ResizeFilter::Box);
  const double scale = static_cast<double>(size) / static_cast<double>(std::min(cur.size(0), cur.size(1)));
  // Python's round(): half to even, which nearbyint gives in the default rounding mode.
  const auto h = static_cast<std::int64_t>(std::nearbyint(static_cast<double>(cur.size(0)) * scale));
  const auto w = static_cast<std::int64_t>(std::nearbyint(static_cast<double>(cur.size(1)) * scale));
  cur = pil_resize(cur.cview(), h, w, ResizeFilter::Bicubic);
  const std::int64_t cy = (h - size) / 2, cx = (w - size) / 2, C = cur.size(2);
  Tensor<std::uint8_t> out(Shape{size, size, C});
  for (std::int64_t y = 0; y < size; ++y) std::copy_n(cur.data() + ((cy + y) * w + cx) * C, size * C, out.data() + y * size * C);
  return out;
}

}  // namespace irepa::io
