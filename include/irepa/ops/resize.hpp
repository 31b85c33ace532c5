#pragma once
// Image resizing with PyTorch's F.interpolate semantics (align_corners=False), forward only, for
// encoder preprocessing and position-table resampling: bilinear and bicubic (A = -0.75, border
// taps clamped), each optionally antialiased (torch's antialias=True: the filter is stretched by
// the downscale factor, bicubic with a = -0.5 as Pillow, weights normalised per output pixel).
// Separable: each axis is a list of taps (source index, weight); the width pass runs first.
// Also the per-channel normalisation of encoder inputs. CPU here; when nvcc compiles the
// including file, ops/cuda/resize.cuh adds the CudaContext overloads (same taps, same order).

#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

#include "irepa/core/context.hpp"
#include "irepa/core/error.hpp"
#include "irepa/core/tensor.hpp"

namespace irepa::ops {

// BilinearTf1: TensorFlow 1's ResizeBilinear (align_corners=False, half_pixel_centers=False), the
// resize the ADM evaluator's Inception graph applies: source coordinate o * s with the scale
// s = in / out rounded to float32, lo = floor, hi = min(lo + 1, in - 1).
enum class ResizeMode { Bilinear, Bicubic, BilinearTf1 };

namespace detail {

struct AxisTaps {
  std::int64_t width = 0;          // taps per output index
  std::vector<std::int64_t> index;  // [out, width] source indices
  std::vector<double> weight;       // [out, width]
};

inline double cubic_a(double x, double a) {  // Keys' cubic convolution kernel
  x = std::abs(x);
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

inline AxisTaps axis_taps(std::int64_t in, std::int64_t out, ResizeMode mode, bool antialias) {
  AxisTaps t;
  const double scale = static_cast<double>(in) / static_cast<double>(out);
  IREPA_CHECK(!(antialias && mode == ResizeMode::BilinearTf1), "interpolate: TF1 bilinear resizing has no antialiased form");
  if (mode == ResizeMode::BilinearTf1) {
    // The float32 scale matters: the exact one moves the result by ~3e-8 relative.
    const double s32 = static_cast<double>(static_cast<float>(in) / static_cast<float>(out));
    t.width = 2;
    for (std::int64_t o = 0; o < out; ++o) {
      const double s = static_cast<double>(o) * s32, f = std::floor(s);
      const auto lo = static_cast<std::int64_t>(f);
      const std::int64_t hi = std::min(lo + 1, in - 1);
      t.index.insert(t.index.end(), {lo, hi});
      t.weight.insert(t.weight.end(), {1.0 - (s - f), s - f});
    }
    return t;
  }
  if (antialias) {
    // torch's _upsample_*_aa: support = (taps / 2) * max(scale, 1), filter evaluated at
    // (j - centre) / max(scale, 1); bicubic uses a = -0.5 here (Pillow's), not -0.75.
    const double half = mode == ResizeMode::Bicubic ? 2.0 : 1.0;
    const double support = half * std::max(scale, 1.0), inv = 1.0 / std::max(scale, 1.0);
    t.width = static_cast<std::int64_t>(std::ceil(support)) * 2 + 1;
    t.index.assign(static_cast<std::size_t>(out * t.width), 0);
    t.weight.assign(static_cast<std::size_t>(out * t.width), 0.0);
    for (std::int64_t o = 0; o < out; ++o) {
      const double centre = scale * (static_cast<double>(o) + 0.5);
      const auto lo = std::max<std::int64_t>(static_cast<std::int64_t>(centre - support + 0.5), 0);
      const auto n = std::min<std::int64_t>(static_cast<std::int64_t>(centre + support + 0.5), in) - lo;
      double total = 0;
      for (std::int64_t j = 0; j < n && j < t.width; ++j) {
        const double x = (static_cast<double>(j + lo) - centre + 0.5) * inv;
        const double w = mode == ResizeMode::Bicubic ? cubic_a(x, -0.5) : std::max(0.0, 1.0 - std::abs(x));
        t.index[static_cast<std::size_t>(o * t.width + j)] = j + lo;
        t.weight[static_cast<std::size_t>(o * t.width + j)] = w;
        total += w;
      }
      if (total != 0)
        for (std::int64_t j = 0; j < t.width; ++j) t.weight[static_cast<std::size_t>(o * t.width + j)] /= total;
    }
    return t;
  }
  if (mode == ResizeMode::Bilinear) {
    t.width = 2;
    for (std::int64_t o = 0; o < out; ++o) {
      const double s = std::max(scale * (static_cast<double>(o) + 0.5) - 0.5, 0.0);
      const auto i0 = static_cast<std::int64_t>(s);
      const std::int64_t i1 = i0 + (i0 < in - 1 ? 1 : 0);
      const double l1 = s - static_cast<double>(i0);
      t.index.insert(t.index.end(), {i0, i1});
      t.weight.insert(t.weight.end(), {1.0 - l1, l1});
    }
    return t;
  }
  t.width = 4;  // bicubic, A = -0.75, source index not clamped, taps clamped to the border
  constexpr double A = -0.75;
  for (std::int64_t o = 0; o < out; ++o) {
    const double s = scale * (static_cast<double>(o) + 0.5) - 0.5;
    const double f = std::floor(s), x = s - f;
    const auto i = static_cast<std::int64_t>(f);
    const double w[4] = {((A * (x + 1) - 5 * A) * (x + 1) + 8 * A) * (x + 1) - 4 * A, ((A + 2) * x - (A + 3)) * x * x + 1,
                         ((A + 2) * (1 - x) - (A + 3)) * (1 - x) * (1 - x) + 1,
                         ((A * (2 - x) - 5 * A) * (2 - x) + 8 * A) * (2 - x) - 4 * A};
    for (int k = 0; k < 4; ++k) {
      t.index.push_back(std::clamp<std::int64_t>(i - 1 + k, 0, in - 1));
      t.weight.push_back(w[k]);
    }
  }
  return t;
}

}  // namespace detail

/// x [N, C, H, W] -> [N, C, out_h, out_w], as F.interpolate(x, (out_h, out_w), mode,
/// align_corners=False, antialias). Same size returns a copy (torch's result then is the input).
template <class T>
Tensor<T> interpolate(const CpuContext& ctx, ConstView<T> x, std::int64_t out_h, std::int64_t out_w, ResizeMode mode,
                      bool antialias = false) {
  IREPA_CHECK(x.rank() == 4 && x.is_contiguous() && out_h > 0 && out_w > 0,
              "interpolate: input {} to {}x{}: expected a contiguous [N, C, H, W] and a positive size", x.shape().str(), out_h, out_w);
  const std::int64_t P = x.size(0) * x.size(1), H = x.size(2), W = x.size(3);
  const auto th = detail::axis_taps(H, out_h, mode, antialias), tw = detail::axis_taps(W, out_w, mode, antialias);
  Tensor<T> y(Shape{x.size(0), x.size(1), out_h, out_w});
  ctx.parallel_for(P, static_cast<double>(H * out_w * tw.width + out_h * out_w * th.width), [&](std::int64_t p0, std::int64_t p1) {
    std::vector<double> rows(static_cast<std::size_t>(H * out_w));  // [H, out_w] after the width pass
    for (std::int64_t p = p0; p < p1; ++p) {
      const T* src = x.data() + p * H * W;
      for (std::int64_t r = 0; r < H; ++r)
        for (std::int64_t o = 0; o < out_w; ++o) {
          double s = 0;
          for (std::int64_t k = 0; k < tw.width; ++k) {
            const auto i = static_cast<std::size_t>(o * tw.width + k);
            s += tw.weight[i] * static_cast<double>(src[r * W + tw.index[i]]);
          }
          rows[static_cast<std::size_t>(r * out_w + o)] = s;
        }
      T* dst = y.data() + p * out_h * out_w;
      for (std::int64_t o = 0; o < out_h; ++o)
        for (std::int64_t c = 0; c < out_w; ++c) {
          double s = 0;
          for (std::int64_t k = 0; k < th.width; ++k) {
            const auto i = static_cast<std::size_t>(o * th.width + k);
            s += th.weight[i] * rows[static_cast<std::size_t>(th.index[i] * out_w + c)];
          }
          dst[o * out_w + c] = static_cast<T>(s);
        }
    }
  });
  return y;
}

/// Per-channel normalisation of images: y = (x / divisor - mean[c]) / std[c], in double, then
/// rounded to T (an encoder's /255 and mean / std). At most 4 channels.
struct ChannelNorm {
  double divisor = 1.0;
  std::array<double, 4> mean{0, 0, 0, 0};
  std::array<double, 4> std{1, 1, 1, 1};
};

namespace detail {
inline void check_channel_norm(std::string_view op, const Shape& x, const Shape& y) {
  IREPA_CHECK(x.rank() == 4 && x[1] >= 1 && x[1] <= 4, "{}: images have shape {}, expected [N, C <= 4, H, W]", op, x.str());
  check_shape(op, "output", y, x);
}
}  // namespace detail

/// x, y [N, C, H, W]; y may be x.
template <class T>
void normalize_channels(const CpuContext& ctx, In<T> x, const ChannelNorm& n, TensorView<T> y) {
  detail::check_channel_norm("normalize_channels", x.shape(), y.shape());
  check_contiguous("normalize_channels", x, y);
  const std::int64_t C = x.size(1), hw = x.size(2) * x.size(3);
  ctx.parallel_for(x.size(0) * C, 3.0 * static_cast<double>(hw), [&](std::int64_t p0, std::int64_t p1) {
    for (std::int64_t p = p0; p < p1; ++p) {
      const auto c = static_cast<std::size_t>(p % C);
      for (std::int64_t i = p * hw; i < (p + 1) * hw; ++i)
        y.data()[i] = static_cast<T>((static_cast<double>(x.data()[i]) / n.divisor - n.mean[c]) / n.std[c]);
    }
  });
}

}  // namespace irepa::ops

#if defined(__CUDACC__)
#include "irepa/ops/cuda/resize.cuh"
#endif
