#pragma once
// Foreground masks for the spatial metrics, prepared as the reference's metrics script does:
// each PNG is resized to resolution x resolution with PIL's default filter (bicubic for "L"
// images, nearest for "1" and "P"), foreground = value > 0, max-pooled to the token grid in
// pool x pool cells, and an image is kept only when at least min_count cells are foreground and
// min_count are background. Unlike the reference, the kept masks stay paired with their own
// images (kept[i] is the index of the image mask i belongs to).
//
// pil_resize reproduces Pillow's 8-bit resampling exactly: separable, horizontal pass first,
// filter support scaled by the downscale factor, weights normalised and rounded to 22-bit fixed
// point, each pass rounded and clipped to 0..255.

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "irepa/core/error.hpp"
#include "irepa/core/tensor.hpp"
#include "irepa/io/png.hpp"

namespace irepa::metrics {

enum class ResizeFilter { Nearest, Bicubic };

namespace detail {
inline double bicubic_weight(double x) {
  constexpr double a = -0.5;
  x = std::abs(x);
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

/// Pillow's per-output-pixel taps: first source index, count and fixed-point weights.
struct Taps {
  std::vector<int> first, count;
  std::vector<std::int32_t> w;  // [out, ksize]
  int ksize = 0;
};
inline Taps bicubic_taps(int in, int out) {
  constexpr int precision = 22;  // 32 - 8 - 2 bits
  const double scale = static_cast<double>(in) / out, filterscale = std::max(scale, 1.0);
  const double support = 2.0 * filterscale;
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
    for (int x = 0; x < n; ++x) sum += (k[static_cast<std::size_t>(x)] = bicubic_weight((x + lo - center + 0.5) / filterscale));
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

/// img [H, W] uint8 -> [out_h, out_w], as PIL's Image.resize((out_w, out_h), filter).
inline Tensor<std::uint8_t> pil_resize(ConstView<std::uint8_t> img, std::int64_t out_h, std::int64_t out_w, ResizeFilter filter) {
  IREPA_CHECK(img.rank() == 2 && img.is_contiguous() && out_h > 0 && out_w > 0,
              "pil_resize: image has shape {}, expected a contiguous [H, W], to {}x{}", img.shape().str(), out_h, out_w);
  const int H = static_cast<int>(img.size(0)), W = static_cast<int>(img.size(1));
  const int oh = static_cast<int>(out_h), ow = static_cast<int>(out_w);
  Tensor<std::uint8_t> out(Shape{out_h, out_w});
  if (filter == ResizeFilter::Nearest) {
    const double ay = static_cast<double>(H) / oh, ax = static_cast<double>(W) / ow;  // Pillow's affine a[4], a[0]
    for (int y = 0; y < oh; ++y)
      for (int x = 0; x < ow; ++x) {
        const int sy = std::min(static_cast<int>(ay * (y + 0.5)), H - 1), sx = std::min(static_cast<int>(ax * (x + 0.5)), W - 1);
        out(y, x) = img(sy, sx);
      }
    return out;
  }
  if (H == oh && W == ow) {
    out.view().copy_from(img);
    return out;
  }
  const detail::Taps th = detail::bicubic_taps(W, ow), tv = detail::bicubic_taps(H, oh);
  // Horizontal pass over the rows the vertical pass reads (Pillow's ybox), when the width changes.
  const int y0 = tv.first.front(), y1 = tv.first.back() + tv.count.back();
  const bool horizontal = ow != W, vertical = oh != H;
  Tensor<std::uint8_t> mid(Shape{horizontal ? y1 - y0 : H, ow});
  const int row0 = horizontal ? y0 : 0;
  for (int y = 0; y < mid.size(0); ++y)
    for (int x = 0; x < ow; ++x) {
      if (!horizontal) {
        mid(y, x) = img(y, x);
        continue;
      }
      std::int64_t acc = 1 << 21;
      const std::int32_t* k = th.w.data() + static_cast<std::size_t>(x) * static_cast<std::size_t>(th.ksize);
      for (int i = 0; i < th.count[static_cast<std::size_t>(x)]; ++i)
        acc += static_cast<std::int64_t>(img(y + row0, th.first[static_cast<std::size_t>(x)] + i)) * k[i];
      mid(y, x) = detail::clip8(acc);
    }
  if (!vertical) {
    out.view().copy_from(mid.cview());
    return out;
  }
  for (int y = 0; y < oh; ++y)
    for (int x = 0; x < ow; ++x) {
      std::int64_t acc = 1 << 21;
      const std::int32_t* k = tv.w.data() + static_cast<std::size_t>(y) * static_cast<std::size_t>(tv.ksize);
      for (int i = 0; i < tv.count[static_cast<std::size_t>(y)]; ++i)
        acc += static_cast<std::int64_t>(mid(tv.first[static_cast<std::size_t>(y)] - row0 + i, x)) * k[i];
      out(y, x) = detail::clip8(acc);
    }
  return out;
}

struct MaskOptions {
  std::int64_t resolution = 256;  // masks are resized to resolution x resolution
  std::int64_t pool = 16;         // max-pool cell: the token grid is resolution / pool per side
  std::int64_t min_count = 64;    // keep an image when >= this many cells are fg and >= this many bg
};

/// A resized mask [S, S] -> foreground per grid cell [(S/pool)^2], row-major (max-pool of > 0).
inline Tensor<std::uint8_t> mask_to_grid(ConstView<std::uint8_t> m, std::int64_t pool) {
  IREPA_CHECK(m.rank() == 2 && pool > 0 && m.size(0) % pool == 0 && m.size(1) % pool == 0,
              "mask_to_grid: mask {} is not a whole number of {}x{} cells", m.shape().str(), pool, pool);
  const std::int64_t gh = m.size(0) / pool, gw = m.size(1) / pool;
  Tensor<std::uint8_t> g(Shape{gh * gw});
  g.fill(0);
  for (std::int64_t y = 0; y < m.size(0); ++y)
    for (std::int64_t x = 0; x < m.size(1); ++x)
      if (m(y, x) > 0) g[(y / pool) * gw + x / pool] = 1;
  return g;
}

struct GridMasks {
  Tensor<std::uint8_t> masks;        // [K, T] kept masks on the token grid (1 = foreground)
  std::vector<std::int64_t> kept;    // [K] image index of each kept mask
  std::vector<std::string> files;    // every PNG read, in image order
};

/// Reads every *.png of a folder in name order (PNG i belongs to image i), prepares them as the
/// reference does and keeps the images with enough foreground and background cells.
inline GridMasks load_png_masks(const std::string& dir, const MaskOptions& o = {}) {
  namespace fs = std::filesystem;
  IREPA_CHECK(fs::is_directory(dir), "load_png_masks: '{}' is not a folder of PNG masks", dir);
  GridMasks r;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && e.path().extension() == ".png") r.files.push_back(e.path().string());
  std::sort(r.files.begin(), r.files.end());
  IREPA_CHECK(!r.files.empty(), "load_png_masks: no *.png files in '{}'", dir);
  const std::int64_t T = (o.resolution / o.pool) * (o.resolution / o.pool);
  std::vector<Tensor<std::uint8_t>> grids;
  for (std::size_t i = 0; i < r.files.size(); ++i) {
    const io::PngImage png = io::read_png(r.files[i]);
    IREPA_CHECK(png.mode != "RGB", "load_png_masks: '{}' is an RGB image; masks must be single-channel (grey, 1-bit or palette)",
                r.files[i]);
    const auto filter = png.mode == "L" ? ResizeFilter::Bicubic : ResizeFilter::Nearest;
    const auto grid = mask_to_grid(pil_resize(png.pixels, o.resolution, o.resolution, filter), o.pool);
    std::int64_t fg = 0;
    for (std::int64_t t = 0; t < T; ++t) fg += grid[t];
    if (fg >= o.min_count && T - fg >= o.min_count) {
      r.kept.push_back(static_cast<std::int64_t>(i));
      grids.push_back(grid.clone());
    }
  }
  r.masks = Tensor<std::uint8_t>(Shape{static_cast<std::int64_t>(grids.size()), T});
  for (std::size_t k = 0; k < grids.size(); ++k) std::copy_n(grids[k].data(), T, r.masks.data() + static_cast<std::int64_t>(k) * T);
  return r;
}

}  // namespace irepa::metrics
