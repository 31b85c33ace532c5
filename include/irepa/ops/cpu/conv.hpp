#pragma once
// Convolutions on the CPU, as im2col + GEMM.
//  - conv2d_same: k x k, stride 1, zero padding k/2 (odd k), on channels-last maps
//    x [B, H, W, Cin] (a token grid [B, T, D] viewed as [B, H, W, D]); w [Cout, Cin, k, k].
//  - patchify: kernel = stride = p on channels-first images x [B, C, H, W] -> tokens [B, T, D],
//    T = (H/p)(W/p) row-major; w [D, C, p, p].
//  - conv2d_forward: any kh x kw kernel, stride and zero padding per side (Conv2dSpec), on
//    channels-last maps, forward only (the SD-VAE: same 3x3, 1x1, and its pad-then-stride-2
//    downsampling; Inception-v3's 1x7 / 7x1 / 1x3 / 3x1 factorised kernels). The columns are built a block of output pixels at a time, so a 3x3 conv
//    over a 256x256x256 map never holds its whole [H W, 9 C] column matrix.
// Weights keep PyTorch's layout; k = 1 is the 1x1 convolution.

#include <algorithm>
#include <cstring>
#include <vector>

#include "irepa/ops/cpu/gemm.hpp"

namespace irepa::ops {

namespace detail {

inline void check_conv_same(std::string_view op, const Shape& x, const Shape& w, bool has_bias, const Shape& b, const Shape& y) {
  IREPA_CHECK(w.rank() == 4 && w[2] == w[3] && w[2] % 2 == 1,
              "{}: weight has shape {}, expected [Cout, Cin, k, k] with odd k", op, w.str());
  IREPA_CHECK(x.rank() == 4 && x[3] == w[1], "{}: input has shape {}, expected [B, H, W, {}]", op, x.str(), w[1]);
  IREPA_CHECK(!has_bias || b == Shape{w[0]}, "{}: bias has shape {}, expected [{}] (or empty)", op, b.str(), w[0]);
  check_shape(op, "output", y, Shape{x[0], x[1], x[2], w[0]});
}

/// im2col for a same-padded k x k window, column order (ki, kj, c) so each tap is one
/// contiguous copy of Cin channels. col [B*H*W, k*k*Cin].
template <class T>
void im2col_same(const CpuContext& ctx, const T* x, std::int64_t B, std::int64_t H, std::int64_t W, std::int64_t C, int k,
                 T* col) {
  const int p = k / 2;
  const std::int64_t rowlen = static_cast<std::int64_t>(k) * k * C;
  ctx.parallel_for(B * H * W, static_cast<double>(rowlen), [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const std::int64_t b = r / (H * W), h = (r / W) % H, w = r % W;
      T* dst = col + r * rowlen;
      for (int i = 0; i < k; ++i)
        for (int j = 0; j < k; ++j, dst += C) {
          const std::int64_t hh = h + i - p, ww = w + j - p;
          if (hh < 0 || hh >= H || ww < 0 || ww >= W)
            std::fill_n(dst, C, T(0));
          else
            std::memcpy(dst, x + ((b * H + hh) * W + ww) * C, static_cast<std::size_t>(C) * sizeof(T));
        }
    }
  });
}

/// Inverse of im2col_same: dx (assigned) = sum of the column entries that read each pixel.
/// Parallel over output pixels (gather), so no two threads write one element.
template <class T>
void col2im_same(const CpuContext& ctx, const T* col, std::int64_t B, std::int64_t H, std::int64_t W, std::int64_t C, int k,
                 T* dx) {
  const int p = k / 2;
  const std::int64_t rowlen = static_cast<std::int64_t>(k) * k * C;
  ctx.parallel_for(B * H * W, static_cast<double>(rowlen), [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const std::int64_t b = r / (H * W), h = (r / W) % H, w = r % W;
      T* dst = dx + r * C;
      std::fill_n(dst, C, T(0));
      // Output pixel (h - i + p, w - j + p) read this pixel through tap (i, j).
      for (int i = 0; i < k; ++i)
        for (int j = 0; j < k; ++j) {
          const std::int64_t ho = h - i + p, wo = w - j + p;
          if (ho < 0 || ho >= H || wo < 0 || wo >= W) continue;
          const T* src = col + ((b * H + ho) * W + wo) * rowlen + (static_cast<std::int64_t>(i) * k + j) * C;
          for (std::int64_t c = 0; c < C; ++c) dst[c] += src[c];
        }
    }
  });
}

/// [Cout, Cin, k, k] <-> [Cout, k, k, Cin] (the im2col column order).
/// [Cout, Cin, taps] (PyTorch's layout, taps = kh kw) -> [Cout, taps, Cin] (the columns' order).
template <class T>
void weight_to_taps_n(const T* w, std::int64_t Co, std::int64_t Ci, std::int64_t taps, T* out) {
  for (std::int64_t o = 0; o < Co; ++o)
    for (std::int64_t c = 0; c < Ci; ++c)
      for (std::int64_t t = 0; t < taps; ++t) out[(o * taps + t) * Ci + c] = w[(o * Ci + c) * taps + t];
}
template <class T>
void weight_to_taps(const T* w, std::int64_t Co, std::int64_t Ci, int k, T* out) {
  weight_to_taps_n(w, Co, Ci, static_cast<std::int64_t>(k) * k, out);
}
template <class T>
void add_taps_to_weight(const T* taps, std::int64_t Co, std::int64_t Ci, int k, T* w) {
  for (std::int64_t o = 0; o < Co; ++o)
    for (std::int64_t c = 0; c < Ci; ++c)
      for (int t = 0; t < k * k; ++t) w[(o * Ci + c) * k * k + t] += taps[(o * k * k + t) * Ci + c];
}

}  // namespace detail

/// y = conv(x, w) + b, same padding, stride 1.  x [B, H, W, Cin], w [Cout, Cin, k, k], b [Cout] or empty,
/// y [B, H, W, Cout].
template <class T>
void conv2d_same_forward(const CpuContext& ctx, In<T> x, In<T> w, In<T> b, TensorView<T> y) {
  detail::check_conv_same("conv2d_same_forward", x.shape(), w.shape(), b.numel() > 0, b.shape(), y.shape());
  check_contiguous("conv2d_same_forward", x, w, b, y);
  const std::int64_t B = x.size(0), H = x.size(1), W = x.size(2), Ci = x.size(3), Co = w.size(0);
  const int k = static_cast<int>(w.size(2));
  const std::int64_t K = static_cast<std::int64_t>(k) * k * Ci, N = B * H * W;
  Tensor<T> col(Shape{N, K}), wt(Shape{Co, K});  // [N, k*k*Cin], [Cout, k*k*Cin]
  detail::im2col_same(ctx, x.data(), B, H, W, Ci, k, col.data());
  detail::weight_to_taps(w.data(), Co, Ci, k, wt.data());
  auto ym = cpu::as_matrix(y.data(), N, Co);
  cpu::gemm<T>(ctx, col.cview().matrix(), cpu::Trans::N, wt.cview().matrix(), cpu::Trans::T, ym, false);
  cpu::add_bias_rows<T>(ctx, ym, b);
}

/// dx assigned (skipped when empty); dw += ...; db += ... (when non-empty).
template <class T>
void conv2d_same_backward(const CpuContext& ctx, In<T> x, In<T> w, In<T> dy, TensorView<T> dx, TensorView<T> dw,
                          TensorView<T> db) {
  detail::check_conv_same("conv2d_same_backward", x.shape(), w.shape(), db.numel() > 0, db.shape(), dy.shape());
  check_shape("conv2d_same_backward", "dw", dw.shape(), w.shape());
  check_contiguous("conv2d_same_backward", x, w, dy, dx, dw, db);
  const std::int64_t B = x.size(0), H = x.size(1), W = x.size(2), Ci = x.size(3), Co = w.size(0);
  const int k = static_cast<int>(w.size(2));
  const std::int64_t K = static_cast<std::int64_t>(k) * k * Ci, N = B * H * W;
  auto dym = cpu::as_matrix(dy.data(), N, Co);
  Tensor<T> col(Shape{N, K}), taps(Shape{Co, K});
  detail::im2col_same(ctx, x.data(), B, H, W, Ci, k, col.data());
  cpu::gemm<T>(ctx, dym, cpu::Trans::T, col.cview().matrix(), cpu::Trans::N, taps.matrix(), false);
  detail::add_taps_to_weight(taps.data(), Co, Ci, k, dw.data());
  if (db.numel()) cpu::add_row_sum<T>(ctx, dym, db.flat());
  if (dx.numel()) {
    check_shape("conv2d_same_backward", "dx", dx.shape(), x.shape());
    detail::weight_to_taps(w.data(), Co, Ci, k, taps.data());
    cpu::gemm<T>(ctx, dym, cpu::Trans::N, taps.cview().matrix(), cpu::Trans::N, col.matrix(), false);  // dcol
    detail::col2im_same(ctx, col.data(), B, H, W, Ci, k, dx.data());
  }
}

/// Stride and zero padding per side of a convolution over channels-last maps.
struct Conv2dSpec {
  std::int64_t stride = 1;
  std::int64_t pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;

  /// k x k, stride 1, k/2 zeros on every side (odd k keeps the size).
  static Conv2dSpec same(std::int64_t k) { return {1, k / 2, k / 2, k / 2, k / 2}; }
  /// The LDM downsampling: one zero row and column added after (right, bottom), then stride 2
  /// without padding, so H -> H / 2 for even H with a 3x3 kernel.
  static Conv2dSpec pad_after_stride2() { return {2, 0, 1, 0, 1}; }
  std::int64_t out_h(std::int64_t h, std::int64_t k) const { return (h + pad_top + pad_bottom - k) / stride + 1; }
  std::int64_t out_w(std::int64_t w, std::int64_t k) const { return (w + pad_left + pad_right - k) / stride + 1; }
};

namespace detail {
inline void check_conv2d(std::string_view op, const Shape& x, const Shape& w, bool has_bias, const Shape& b, const Conv2dSpec& s,
                         const Shape& y) {
  IREPA_CHECK(w.rank() == 4 && w[2] > 0 && w[3] > 0, "{}: weight has shape {}, expected [Cout, Cin, kh, kw]", op, w.str());
  IREPA_CHECK(s.stride > 0 && s.pad_top >= 0 && s.pad_bottom >= 0 && s.pad_left >= 0 && s.pad_right >= 0,
              "{}: stride {} and padding ({}, {}, {}, {}) (top, bottom, left, right): expected a positive stride and no negative padding",
              op, s.stride, s.pad_top, s.pad_bottom, s.pad_left, s.pad_right);
  IREPA_CHECK(x.rank() == 4 && x[3] == w[1] && x[1] + s.pad_top + s.pad_bottom >= w[2] && x[2] + s.pad_left + s.pad_right >= w[3],
              "{}: input has shape {}, expected [B, H, W, {}] that the padded {}x{} kernel fits", op, x.str(), w[1], w[2], w[3]);
  IREPA_CHECK(!has_bias || b == Shape{w[0]}, "{}: bias has shape {}, expected [{}] (or empty)", op, b.str(), w[0]);
  check_shape(op, "output", y, Shape{x[0], s.out_h(x[1], w[2]), s.out_w(x[2], w[3]), w[0]});
}

/// Rows [r0, r1) of the columns of a general conv: row r is output pixel r (b, oh, ow) of
/// [B, Ho, Wo], its entries in tap-major order (ki, kj, c) like im2col_same's.
template <class T>
void im2col_rows(const CpuContext& ctx, const T* x, std::int64_t H, std::int64_t W, std::int64_t C, std::int64_t kh, std::int64_t kw,
                 const Conv2dSpec& s, std::int64_t Ho, std::int64_t Wo, std::int64_t r0, std::int64_t r1, T* col) {
  const std::int64_t rowlen = kh * kw * C;
  ctx.parallel_for(r1 - r0, static_cast<double>(rowlen), [&](std::int64_t a, std::int64_t e) {
    for (std::int64_t r = r0 + a; r < r0 + e; ++r) {
      const std::int64_t b = r / (Ho * Wo), oh = (r / Wo) % Ho, ow = r % Wo;
      T* dst = col + (r - r0) * rowlen;
      for (std::int64_t i = 0; i < kh; ++i)
        for (std::int64_t j = 0; j < kw; ++j, dst += C) {
          const std::int64_t hh = oh * s.stride - s.pad_top + i, ww = ow * s.stride - s.pad_left + j;
          if (hh < 0 || hh >= H || ww < 0 || ww >= W)
            std::fill_n(dst, C, T(0));
          else
            std::memcpy(dst, x + ((b * H + hh) * W + ww) * C, static_cast<std::size_t>(C) * sizeof(T));
        }
    }
  });
}

/// Output pixels per block of columns: about 8M column entries (64 MB in double) at a time.
inline std::int64_t conv_rows_per_block(std::int64_t rows, std::int64_t rowlen) {
  return std::max<std::int64_t>(1, std::min(rows, (std::int64_t{1} << 23) / std::max<std::int64_t>(1, rowlen)));
}
}  // namespace detail

/// y = conv(x, w) + b with the spec's stride and padding.  x [B, H, W, Cin], w [Cout, Cin, kh, kw],
/// b [Cout] or empty, y [B, Ho, Wo, Cout]. Forward only.
template <class T>
void conv2d_forward(const CpuContext& ctx, In<T> x, In<T> w, In<T> b, const Conv2dSpec& spec, TensorView<T> y) {
  detail::check_conv2d("conv2d_forward", x.shape(), w.shape(), b.numel() > 0, b.shape(), spec, y.shape());
  check_contiguous("conv2d_forward", x, w, b, y);
  const std::int64_t B = x.size(0), H = x.size(1), W = x.size(2), Ci = x.size(3), Co = w.size(0), kh = w.size(2), kw = w.size(3);
  const std::int64_t Ho = y.size(1), Wo = y.size(2), N = B * Ho * Wo, K = kh * kw * Ci;
  if (N == 0) return;
  auto ym = cpu::as_matrix(y.data(), N, Co);
  const bool pointwise = kh == 1 && kw == 1 && spec.stride == 1 && spec.pad_top == 0 && spec.pad_left == 0 && Ho == H && Wo == W;
  if (pointwise) {  // a 1x1 conv is a linear over the pixels
    cpu::gemm<T>(ctx, cpu::as_matrix(x.data(), N, Ci), cpu::Trans::N, cpu::as_matrix(w.data(), Co, Ci), cpu::Trans::T, ym, false);
  } else {
    Tensor<T> wt(Shape{Co, K});  // [Cout, k*k*Cin]
    detail::weight_to_taps_n(w.data(), Co, Ci, kh * kw, wt.data());
    const std::int64_t rows = detail::conv_rows_per_block(N, K);
    Tensor<T> col(Shape{rows, K});
    for (std::int64_t r0 = 0; r0 < N; r0 += rows) {
      const std::int64_t n = std::min(rows, N - r0);
      detail::im2col_rows(ctx, x.data(), H, W, Ci, kh, kw, spec, Ho, Wo, r0, r0 + n, col.data());
      cpu::gemm<T>(ctx, cpu::as_matrix(static_cast<const T*>(col.data()), n, K), cpu::Trans::N, wt.cview().matrix(), cpu::Trans::T,
                   cpu::as_matrix(y.data() + r0 * Co, n, Co), false);
    }
  }
  cpu::add_bias_rows<T>(ctx, ym, b);
}

namespace detail {
inline void check_patchify(std::string_view op, const Shape& x, const Shape& w, bool has_bias, const Shape& b, const Shape& y) {
  IREPA_CHECK(w.rank() == 4 && w[2] == w[3] && w[2] > 0, "{}: weight has shape {}, expected [D, C, p, p]", op, w.str());
  const std::int64_t p = w[2];
  IREPA_CHECK(x.rank() == 4 && x[1] == w[1] && x[2] % p == 0 && x[3] % p == 0,
              "{}: input has shape {}, expected [B, {}, H, W] with H and W multiples of {}", op, x.str(), w[1], p);
  IREPA_CHECK(!has_bias || b == Shape{w[0]}, "{}: bias has shape {}, expected [{}] (or empty)", op, b.str(), w[0]);
  check_shape(op, "output", y, Shape{x[0], (x[2] / p) * (x[3] / p), w[0]});
}
/// Gathers (scatter = false) or scatters (true) between the image and col [B*T, C*p*p], order (c, i, j).
template <class T>
void patch_columns(const CpuContext& ctx, T* img, std::int64_t B, std::int64_t C, std::int64_t H, std::int64_t W,
                   std::int64_t p, T* col, bool scatter) {
  const std::int64_t gh = H / p, gw = W / p, K = C * p * p;
  ctx.parallel_for(B * gh * gw, static_cast<double>(K), [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const std::int64_t b = r / (gh * gw), ph = (r / gw) % gh, pw = r % gw;
      T* cr = col + r * K;
      for (std::int64_t c = 0; c < C; ++c)
        for (std::int64_t i = 0; i < p; ++i) {
          T* px = img + ((b * C + c) * H + ph * p + i) * W + pw * p;
          T* cc = cr + (c * p + i) * p;
          if (scatter)
            std::memcpy(px, cc, static_cast<std::size_t>(p) * sizeof(T));
          else
            std::memcpy(cc, px, static_cast<std::size_t>(p) * sizeof(T));
        }
    }
  });
}
}  // namespace detail

/// Patch embedding: y[b, t, :] = W * patch(b, t) + b.  x [B, C, H, W], w [D, C, p, p], y [B, (H/p)(W/p), D].
template <class T>
void patchify_forward(const CpuContext& ctx, In<T> x, In<T> w, In<T> b, TensorView<T> y) {
  detail::check_patchify("patchify_forward", x.shape(), w.shape(), b.numel() > 0, b.shape(), y.shape());
  check_contiguous("patchify_forward", x, w, b, y);
  const std::int64_t B = x.size(0), C = x.size(1), p = w.size(2), D = w.size(0), N = y.size(0) * y.size(1);
  Tensor<T> col(Shape{N, C * p * p});
  detail::patch_columns(ctx, const_cast<T*>(x.data()), B, C, x.size(2), x.size(3), p, col.data(), false);
  auto ym = cpu::as_matrix(y.data(), N, D);
  cpu::gemm<T>(ctx, col.cview().matrix(), cpu::Trans::N, cpu::as_matrix(w.data(), D, C * p * p), cpu::Trans::T, ym, false);
  cpu::add_bias_rows<T>(ctx, ym, b);
}

/// dx assigned (every pixel belongs to exactly one patch; skipped when empty); dw, db accumulated.
template <class T>
void patchify_backward(const CpuContext& ctx, In<T> x, In<T> w, In<T> dy, TensorView<T> dx, TensorView<T> dw,
                       TensorView<T> db) {
  detail::check_patchify("patchify_backward", x.shape(), w.shape(), db.numel() > 0, db.shape(), dy.shape());
  check_shape("patchify_backward", "dw", dw.shape(), w.shape());
  check_contiguous("patchify_backward", x, w, dy, dx, dw, db);
  const std::int64_t B = x.size(0), C = x.size(1), p = w.size(2), D = w.size(0), N = dy.size(0) * dy.size(1);
  auto dym = cpu::as_matrix(dy.data(), N, D);
  Tensor<T> col(Shape{N, C * p * p});
  detail::patch_columns(ctx, const_cast<T*>(x.data()), B, C, x.size(2), x.size(3), p, col.data(), false);
  cpu::gemm<T>(ctx, dym, cpu::Trans::T, col.cview().matrix(), cpu::Trans::N, cpu::as_matrix(dw.data(), D, C * p * p), true);
  if (db.numel()) cpu::add_row_sum<T>(ctx, dym, db.flat());
  if (dx.numel()) {
    check_shape("patchify_backward", "dx", dx.shape(), x.shape());
    cpu::gemm<T>(ctx, dym, cpu::Trans::N, cpu::as_matrix(w.data(), D, C * p * p), cpu::Trans::N, col.matrix(), false);
    detail::patch_columns(ctx, dx.data(), B, C, x.size(2), x.size(3), p, col.data(), true);
  }
}

namespace detail {
inline std::int64_t conv_out_size(std::int64_t in, std::int64_t k, std::int64_t stride, std::int64_t pad) {
  return (in + 2 * pad - k) / stride + 1;
}
inline void check_im2col(const Shape& x, std::int64_t k, std::int64_t stride, std::int64_t pad, const Shape& cols) {
  IREPA_CHECK(x.rank() == 4 && k > 0 && stride > 0 && pad >= 0 && x[2] + 2 * pad >= k && x[3] + 2 * pad >= k,
              "im2col: input {} with a {}x{} kernel, stride {}, padding {}; expected [B, C, H, W] that the kernel fits", x.str(), k, k,
              stride, pad);
  const std::int64_t gh = conv_out_size(x[2], k, stride, pad), gw = conv_out_size(x[3], k, stride, pad);
  check_shape("im2col", "columns", cols, Shape{x[0], gh * gw, x[1] * k * k});
}
}  // namespace detail

/// cols [B, Gh Gw, C k k] = the k x k patches of x [B, C, H, W] at the given stride with zero
/// padding (G = (H + 2 pad - k) / stride + 1), each in the weight's (c, i, j) order, so that a
/// strided conv is a linear over the columns (SAM2's 7x7 stride-4 patch embedding).
template <class T>
void im2col(const CpuContext& ctx, In<T> x, std::int64_t k, std::int64_t stride, std::int64_t pad, TensorView<T> cols) {
  detail::check_im2col(x.shape(), k, stride, pad, cols.shape());
  check_contiguous("im2col", x, cols);
  const std::int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const std::int64_t gw = detail::conv_out_size(W, k, stride, pad), P = cols.size(1), K = C * k * k;
  ctx.parallel_for(B * P, static_cast<double>(K), [&](std::int64_t p0, std::int64_t p1) {
    for (std::int64_t p = p0; p < p1; ++p) {
      const std::int64_t b = p / P, r = (p % P) / gw, q = (p % P) % gw;
      const T* img = x.data() + b * C * H * W;
      T* col = cols.data() + p * K;
      for (std::int64_t c = 0; c < C; ++c)
        for (std::int64_t i = 0; i < k; ++i)
          for (std::int64_t j = 0; j < k; ++j) {
            const std::int64_t y = r * stride - pad + i, xx = q * stride - pad + j;
            col[(c * k + i) * k + j] = y >= 0 && y < H && xx >= 0 && xx < W ? img[(c * H + y) * W + xx] : T(0);
          }
    }
  });
}

}  // namespace irepa::ops
