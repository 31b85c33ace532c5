#pragma once
// Foreground masks for the spatial metrics, prepared as the reference's metrics script does:
// each PNG is resized to resolution x resolution with PIL's default filter (bicubic for "L"
// images, nearest for "1" and "P"), foreground = value > 0, max-pooled to the token grid in
// pool x pool cells, and an image is kept only when at least min_count cells are foreground and
// min_count are background. Unlike the reference, the kept masks stay paired with their own
// images (kept[i] is the index of the image mask i belongs to).
// The resizing is io::pil_resize (Pillow's 8-bit resampling, exactly).

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "irepa/core/error.hpp"
#include "irepa/core/tensor.hpp"
#include "irepa/io/pil_resize.hpp"
#include "irepa/io/png.hpp"

namespace irepa::metrics {

// Pillow-exact resizing lives in io/ (the image data path uses it too).
using io::pil_resize;
using io::ResizeFilter;

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
