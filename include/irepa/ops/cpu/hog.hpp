#pragma once
// CPU backend of ops/hog.hpp: the HOG target encoder's computation with scikit-image's
// semantics (models/hog.hpp says what it is and how it matches the reference's precisions):
// bilinear resize to the working resolution, grey, central-difference gradients, orientation
// histograms of cells, L2-Hys blocks, per-position L2 norm, bilinear resize to the token grid.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "irepa/core/context.hpp"
#include "irepa/core/error.hpp"
#include "irepa/core/tensor.hpp"

namespace irepa::ops {

/// The HOG computation's sizes (models/hog.hpp's HogConfig, validated there).
struct HogParams {
  std::int64_t resolution = 256;   // images are resized to resolution x resolution first
  std::int64_t grid = 16;          // output token grid (grid x grid tokens)
  std::int64_t dim = 128;          // channels per token = cells_per_block^2 * orientations
  std::int64_t pixels_per_cell = 2;
  std::int64_t cells_per_block = 4;

  std::int64_t orientations() const { return dim / (cells_per_block * cells_per_block); }
  std::int64_t cells() const { return resolution / pixels_per_cell; }     // per side
  std::int64_t blocks() const { return cells() - cells_per_block + 1; }  // per side
  std::int64_t tokens() const { return grid * grid; }
};

namespace detail {

inline void check_hog(const Shape& images, const HogParams& p, const Shape& out) {
  IREPA_CHECK(images.rank() == 4 && (images[1] == 3 || images[1] == 1),
              "HogEncoder: images have shape {}, expected contiguous [B, 3 or 1, H, W] in 0..255", images.str());
  const bool ok = out.rank() == 3 && out[0] == images[0] && out[1] == p.tokens() && out[2] == p.dim;
  IREPA_CHECK(ok, "hog_tokens: output has shape {}, expected [{}, {}, {}]", out.str(), images[0], p.tokens(), p.dim);
}

/// F.interpolate(mode="bilinear", align_corners=False) on one [h, w] float plane (torch's index
/// and weight rule: source = (dst + 0.5) * in / out - 0.5 clamped at 0, right neighbour clamped).
inline void hog_bilinear_plane(const float* src, std::int64_t h, std::int64_t w, float* dst, std::int64_t oh, std::int64_t ow,
                           std::int64_t src_stride = 1, std::int64_t dst_stride = 1) {
  auto axis = [](std::int64_t in, std::int64_t out, std::vector<std::int64_t>& i0, std::vector<std::int64_t>& i1,
                 std::vector<float>& l1) {
    const float scale = static_cast<float>(in) / static_cast<float>(out);
    i0.resize(static_cast<std::size_t>(out)), i1.resize(static_cast<std::size_t>(out)), l1.resize(static_cast<std::size_t>(out));
    for (std::int64_t o = 0; o < out; ++o) {
      const float s = std::max(scale * (static_cast<float>(o) + 0.5f) - 0.5f, 0.0f);
      const auto a = static_cast<std::int64_t>(s);
      i0[static_cast<std::size_t>(o)] = a;
      i1[static_cast<std::size_t>(o)] = a + (a < in - 1 ? 1 : 0);
      l1[static_cast<std::size_t>(o)] = s - static_cast<float>(a);
    }
  };
  std::vector<std::int64_t> y0, y1, x0, x1;
  std::vector<float> ly, lx;
  axis(h, oh, y0, y1, ly);
  axis(w, ow, x0, x1, lx);
  for (std::int64_t oy = 0; oy < oh; ++oy) {
    const auto yi = static_cast<std::size_t>(oy);
    const float b1 = ly[yi], b0 = 1.0f - b1;
    for (std::int64_t ox = 0; ox < ow; ++ox) {
      const auto xi = static_cast<std::size_t>(ox);
      const float a1 = lx[xi], a0 = 1.0f - a1;
      auto at = [&](std::int64_t y, std::int64_t x) { return src[(y * w + x) * src_stride]; };
      dst[(oy * ow + ox) * dst_stride] = b0 * (a0 * at(y0[yi], x0[xi]) + a1 * at(y0[yi], x1[xi])) +
                                         b1 * (a0 * at(y1[yi], x0[xi]) + a1 * at(y1[yi], x1[xi]));
    }
  }
}

/// The grey image as the reference computes it in numpy float32 from [C, n] planes.
inline void hog_to_gray(const float* rgb, std::int64_t C, std::int64_t n, float* g) {
  const float* r = rgb;
  const float* gg = C == 3 ? rgb + n : rgb;
  const float* bb = C == 3 ? rgb + 2 * n : rgb;
  for (std::int64_t i = 0; i < n; ++i) {
    const float rr = std::clamp(r[i], 0.0f, 255.0f), g1 = std::clamp(gg[i], 0.0f, 255.0f), b1 = std::clamp(bb[i], 0.0f, 255.0f);
    const float v = static_cast<float>((0.2126 * rr + 0.7152 * g1 + 0.0722 * b1) / 255.0);
    g[i] = std::clamp(v, 0.0f, 1.0f);
  }
}


/// HOG blocks of one grey [res, res] image, L2-Hys normalised: [HB, WB, D] with D ordered as
/// scikit-image's (block row, block col, orientation).
inline std::vector<float> hog_blocks(const HogParams& c_, const float* gray) {
  const std::int64_t R = c_.resolution, ppc = c_.pixels_per_cell, cb = c_.cells_per_block, nb = c_.orientations();
  const std::int64_t nc = c_.cells(), NB = c_.blocks(), D = c_.dim;
  // Gradient in float32 (image dtype), zero on the border rows/columns, as scikit-image.
  std::vector<double> mag(static_cast<std::size_t>(R * R)), ang(static_cast<std::size_t>(R * R));
  for (std::int64_t y = 0; y < R; ++y)
    for (std::int64_t x = 0; x < R; ++x) {
      const float gr = (y == 0 || y == R - 1) ? 0.0f : gray[(y + 1) * R + x] - gray[(y - 1) * R + x];
      const float gc = (x == 0 || x == R - 1) ? 0.0f : gray[y * R + x + 1] - gray[y * R + x - 1];
      const auto i = static_cast<std::size_t>(y * R + x);
      mag[i] = std::hypot(static_cast<double>(gc), static_cast<double>(gr));
      // numpy: rad2deg(arctan2(g_row, g_col)) % 180 (floor-mod; -0 becomes +0).
      double a = std::atan2(static_cast<double>(gr), static_cast<double>(gc)) * (180.0 / M_PI);
      double m = std::fmod(a, 180.0);
      if (m != 0 && m < 0) m += 180.0;
      if (m == 0) m = 0.0;
      ang[i] = m;
    }
  // Cell histograms: bin i holds angles in [i, i+1) * 180/nb (bounds in float, as the Cython
  // kernel); the sum is accumulated in a float and divided by the cell's pixel count.
  const float per = 180.0f / static_cast<float>(nb);
  std::vector<double> hist(static_cast<std::size_t>(nc * nc * nb));
  const std::int64_t lo = -(ppc / 2), hi = (ppc + 1) / 2;
  for (std::int64_t o = 0; o < nb; ++o) {
    const float start = per * static_cast<float>(o + 1), end = per * static_cast<float>(o);
    for (std::int64_t cy = 0; cy < nc; ++cy)
      for (std::int64_t cx = 0; cx < nc; ++cx) {
        const std::int64_t r = ppc / 2 + cy * ppc, c = ppc / 2 + cx * ppc;
        float total = 0;
        for (std::int64_t dy = lo; dy < hi; ++dy) {
          const std::int64_t y = r + dy;
          if (y < 0 || y >= R) continue;
          for (std::int64_t dx = lo; dx < hi; ++dx) {
            const std::int64_t x = c + dx;
            if (x < 0 || x >= R) continue;
            const double a = ang[static_cast<std::size_t>(y * R + x)];
            if (a >= static_cast<double>(start) || a < static_cast<double>(end)) continue;
            total = static_cast<float>(static_cast<double>(total) + mag[static_cast<std::size_t>(y * R + x)]);
          }
        }
        hist[static_cast<std::size_t>((cy * nc + cx) * nb + o)] = static_cast<double>(total / static_cast<float>(ppc * ppc));
      }
  }
  // Blocks: L2-Hys in double (eps 1e-5), stored as float32.
  std::vector<float> out(static_cast<std::size_t>(NB * NB * D));
  std::vector<double> v(static_cast<std::size_t>(D));
  constexpr double eps2 = 1e-5 * 1e-5;
  for (std::int64_t by = 0; by < NB; ++by)
    for (std::int64_t bx = 0; bx < NB; ++bx) {
      std::size_t k = 0;
      for (std::int64_t i = 0; i < cb; ++i)
        for (std::int64_t j = 0; j < cb; ++j)
          for (std::int64_t o = 0; o < nb; ++o) v[k++] = hist[static_cast<std::size_t>(((by + i) * nc + bx + j) * nb + o)];
      double s = 0;
      for (double e : v) s += e * e;
      double n = std::sqrt(s + eps2);
      for (double& e : v) e = std::min(e / n, 0.2);
      s = 0;
      for (double e : v) s += e * e;
      n = std::sqrt(s + eps2);
      float* dst = out.data() + (by * NB + bx) * D;
      for (std::int64_t d = 0; d < D; ++d) dst[d] = static_cast<float>(v[static_cast<std::size_t>(d)] / n);
    }
  return out;
}


/// One grey image -> tokens [grid^2, dim]: blocks, per-position L2 normalisation (torch's
/// F.normalize, eps 1e-12, float32), bilinear resize of each channel to the grid.
inline void hog_encode_gray(const HogParams& c_, const float* gray, float* tokens) {
  const std::int64_t NB = c_.blocks(), D = c_.dim, G = c_.grid;
  std::vector<float> f = hog_blocks(c_, gray);  // [NB, NB, D]
  for (std::int64_t p = 0; p < NB * NB; ++p) {
    float* v = f.data() + p * D;
    float s = 0;
    for (std::int64_t d = 0; d < D; ++d) s += v[d] * v[d];
    const float n = std::max(std::sqrt(s), 1e-12f);
    for (std::int64_t d = 0; d < D; ++d) v[d] /= n;
  }
  for (std::int64_t d = 0; d < D; ++d) hog_bilinear_plane(f.data() + d, NB, NB, tokens + d, G, G, D, D);
}

}  // namespace detail

/// out [B, grid^2, dim] (float32) from images [B, C, H, W] in 0..255, C = 3 (RGB) or 1 (grey,
/// used as R = G = B); gray (optional) receives the [B, res, res] grey images.
inline void hog_tokens(const CpuContext& ctx, In<float> images, const HogParams& p, TensorView<float> out, float* gray = nullptr) {
  detail::check_hog(images.shape(), p, out.shape());
  check_contiguous("hog_tokens", images, out);
  const std::int64_t B = images.size(0), C = images.size(1), H = images.size(2), W = images.size(3), R = p.resolution;
  ctx.parallel_for(B, 400.0 * static_cast<double>(R * R), [&](std::int64_t b0, std::int64_t b1) {
    std::vector<float> plane(static_cast<std::size_t>(C * R * R)), g(static_cast<std::size_t>(R * R));
    for (std::int64_t b = b0; b < b1; ++b) {
      for (std::int64_t ch = 0; ch < C; ++ch)  // [C, R, R]
        detail::hog_bilinear_plane(images.data() + (b * C + ch) * H * W, H, W, plane.data() + ch * R * R, R, R);
      detail::hog_to_gray(plane.data(), C, R * R, g.data());
      if (gray) std::copy(g.begin(), g.end(), gray + b * R * R);
      detail::hog_encode_gray(p, g.data(), out.data() + b * p.tokens() * p.dim);
    }
  });
}

}  // namespace irepa::ops
