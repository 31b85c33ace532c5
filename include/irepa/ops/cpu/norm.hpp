#pragma once
// Row normalisations on the CPU, over the last dimension D.
//  - LayerNorm without affine (SiT): y = (x - mean) * rstd, rstd = 1 / sqrt(var + eps), biased var.
//  - RMSNorm with weight (JiT, q/k norm): y = w * x * r, r = 1 / sqrt(mean(x^2) + eps).
//  - GroupNorm over channels-last maps (the SD-VAE), forward only, optionally followed by SiLU.
// The row kernels are shared with attention's per-head q/k RMSNorm.

#include <algorithm>
#include <cmath>
#include <vector>

#include "irepa/core/context.hpp"
#include "irepa/core/tensor.hpp"

namespace irepa::ops {

namespace detail {

template <class T>
T layer_norm_row(const T* x, std::int64_t D, T eps, T* y) {
  T mean = 0;
  for (std::int64_t i = 0; i < D; ++i) mean += x[i];
  mean /= static_cast<T>(D);
  T var = 0;
  for (std::int64_t i = 0; i < D; ++i) var += (x[i] - mean) * (x[i] - mean);
  var /= static_cast<T>(D);
  const T rstd = T(1) / std::sqrt(var + eps);
  for (std::int64_t i = 0; i < D; ++i) y[i] = (x[i] - mean) * rstd;
  return rstd;
}
/// dx = rstd * (dy - mean(dy) - y * mean(dy * y)), y the normalised row.
template <class T>
void layer_norm_row_backward(const T* y, T rstd, const T* dy, std::int64_t D, T* dx) {
  T m1 = 0, m2 = 0;
  for (std::int64_t i = 0; i < D; ++i) {
    m1 += dy[i];
    m2 += dy[i] * y[i];
  }
  m1 /= static_cast<T>(D);
  m2 /= static_cast<T>(D);
  for (std::int64_t i = 0; i < D; ++i) dx[i] = rstd * (dy[i] - m1 - y[i] * m2);
}

/// y = w * x * r; returns r. w may be null (no weight).
template <class T>
T rms_norm_row(const T* x, const T* w, std::int64_t D, T eps, T* y) {
  T ss = 0;
  for (std::int64_t i = 0; i < D; ++i) ss += x[i] * x[i];
  const T r = T(1) / std::sqrt(ss / static_cast<T>(D) + eps);
  for (std::int64_t i = 0; i < D; ++i) y[i] = (w ? w[i] : T(1)) * x[i] * r;
  return r;
}
/// With g = dy * w and xh = x * r: dx = r * (g - xh * mean(g * xh)); dw_row[i] = dy[i] * xh[i]
/// (written, not added: callers reduce rows so threads never share a dw element).
template <class T>
void rms_norm_row_backward(const T* x, const T* w, T r, const T* dy, std::int64_t D, T* dx, T* dw_row) {
  T m = 0;
  for (std::int64_t i = 0; i < D; ++i) m += dy[i] * (w ? w[i] : T(1)) * x[i] * r;
  m /= static_cast<T>(D);
  for (std::int64_t i = 0; i < D; ++i) {
    const T xh = x[i] * r;
    if (dw_row) dw_row[i] = dy[i] * xh;
    dx[i] = r * (dy[i] * (w ? w[i] : T(1)) - xh * m);
  }
}

/// Adds the column sums of rows [N, D] to out [D], in parallel over columns.
template <class T>
void add_column_sums(const CpuContext& ctx, const T* rows, std::int64_t N, std::int64_t D, T* out) {
  ctx.parallel_for(D, static_cast<double>(N), [&](std::int64_t c0, std::int64_t c1) {
    for (std::int64_t n = 0; n < N; ++n)
      for (std::int64_t c = c0; c < c1; ++c) out[c] += rows[n * D + c];
  });
}

inline void check_layer_norm(std::string_view op, const Shape& x, const Shape& y, const Shape& rstd) {
  check_shape(op, "output", y, x);
  check_shape(op, "rstd", rstd, Shape{x.rows()});
}
inline void check_layer_norm_backward(std::string_view op, const Shape& y, const Shape& rstd, const Shape& dy, const Shape& dx) {
  check_shape(op, "dy", dy, y);
  check_shape(op, "dx", dx, y);
  check_shape(op, "rstd", rstd, Shape{y.rows()});
}
inline void check_rms_norm(std::string_view op, const Shape& x, const Shape& w, const Shape& y, const Shape& r) {
  check_shape(op, "weight", w, Shape{x.last()});
  check_shape(op, "output", y, x);
  check_shape(op, "r", r, Shape{x.rows()});
}
inline void check_rms_norm_backward(std::string_view op, const Shape& x, const Shape& w, const Shape& r, const Shape& dy,
                                    const Shape& dx, const Shape& dw) {
  check_shape(op, "weight", w, Shape{x.last()});
  check_shape(op, "dw", dw, Shape{x.last()});
  check_shape(op, "dy", dy, x);
  check_shape(op, "dx", dx, x);
  check_shape(op, "r", r, Shape{x.rows()});
}

}  // namespace detail

/// y = LayerNorm(x) without affine parameters. x, y [..., D]; rstd [rows] (saved for backward).
template <class T>
void layer_norm_forward(const CpuContext& ctx, In<T> x, T eps, TensorView<T> y, TensorView<T> rstd) {
  detail::check_layer_norm("layer_norm_forward", x.shape(), y.shape(), rstd.shape());
  check_contiguous("layer_norm_forward", x, y, rstd);
  const std::int64_t D = x.shape().last();
  ctx.parallel_for(x.shape().rows(), 5.0 * static_cast<double>(D), [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) rstd[r] = detail::layer_norm_row(x.data() + r * D, D, eps, y.data() + r * D);
  });
}

/// dx (assigned) from the forward's output y and rstd.
template <class T>
void layer_norm_backward(const CpuContext& ctx, In<T> y, In<T> rstd, In<T> dy, TensorView<T> dx) {
  detail::check_layer_norm_backward("layer_norm_backward", y.shape(), rstd.shape(), dy.shape(), dx.shape());
  check_contiguous("layer_norm_backward", y, rstd, dy, dx);
  const std::int64_t D = y.shape().last();
  ctx.parallel_for(y.shape().rows(), 6.0 * static_cast<double>(D), [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r)
      detail::layer_norm_row_backward(y.data() + r * D, rstd.data()[r], dy.data() + r * D, D, dx.data() + r * D);
  });
}

/// y = w * x / sqrt(mean(x^2) + eps).  x, y [..., D]; w [D]; r [rows] (saved for backward).
template <class T>
void rms_norm_forward(const CpuContext& ctx, In<T> x, In<T> w, T eps, TensorView<T> y, TensorView<T> r) {
  const std::int64_t D = x.shape().last();
  detail::check_rms_norm("rms_norm_forward", x.shape(), w.shape(), y.shape(), r.shape());
  check_contiguous("rms_norm_forward", x, w, y, r);
  ctx.parallel_for(x.shape().rows(), 4.0 * static_cast<double>(D), [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t i = r0; i < r1; ++i) r[i] = detail::rms_norm_row(x.data() + i * D, w.data(), D, eps, y.data() + i * D);
  });
}

/// dx assigned; dw accumulated.
template <class T>
void rms_norm_backward(const CpuContext& ctx, In<T> x, In<T> w, In<T> r, In<T> dy, TensorView<T> dx, TensorView<T> dw) {
  const std::int64_t D = x.shape().last(), N = x.shape().rows();
  detail::check_rms_norm_backward("rms_norm_backward", x.shape(), w.shape(), r.shape(), dy.shape(), dx.shape(), dw.shape());
  check_contiguous("rms_norm_backward", x, w, r, dy, dx, dw);
  Tensor<T> dw_rows(Shape{N, D});  // per-row contributions, reduced below
  ctx.parallel_for(N, 6.0 * static_cast<double>(D), [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t i = r0; i < r1; ++i)
      detail::rms_norm_row_backward(x.data() + i * D, w.data(), r.data()[i], dy.data() + i * D, D, dx.data() + i * D,
                                    dw_rows.data() + i * D);
  });
  detail::add_column_sums(ctx, dw_rows.data(), N, D, dw.data());
}

namespace detail {
inline void check_group_norm(std::string_view op, const Shape& x, std::int64_t groups, const Shape& w, const Shape& b, const Shape& y) {
  IREPA_CHECK(x.rank() >= 2 && groups > 0 && x.last() % groups == 0,
              "{}: input has shape {} and {} groups, expected [B, ..., C] with C a multiple of the groups", op, x.str(), groups);
  IREPA_CHECK(w == Shape{x.last()} && b == Shape{x.last()}, "{}: weight {} and bias {}, expected [{}] each", op, w.str(), b.str(),
              x.last());
  check_shape(op, "output", y, x);
}
/// Pixels per block of the statistics: a fixed size, so the sums do not depend on the thread count.
inline constexpr std::int64_t kGroupNormBlock = 1024;
}  // namespace detail

/// GroupNorm (PyTorch's nn.GroupNorm) on channels-last maps: x [B, ..., C], every axis between the
/// first and the last is space, the C channels form `groups` contiguous groups. Each (image,
/// group) is normalised over its pixels and channels with the biased variance (two passes,
/// sums in double), then y = xhat * w[c] + b[c]; with silu, y = y * sigmoid(y) (the ResNet
/// block's norm + swish in one pass). w, b [C]. Forward only; y may be x.
template <class T>
void group_norm_forward(const CpuContext& ctx, In<T> x, std::int64_t groups, std::type_identity_t<T> eps, In<T> w, In<T> b, bool silu,
                        TensorView<T> y) {
  detail::check_group_norm("group_norm_forward", x.shape(), groups, w.shape(), b.shape(), y.shape());
  check_contiguous("group_norm_forward", x, w, b, y);
  const std::int64_t B = x.size(0), C = x.shape().last(), P = x.numel() / std::max<std::int64_t>(1, B * C), G = groups, Cg = C / G;
  if (x.numel() == 0) return;
  const std::int64_t nblk = (P + detail::kGroupNormBlock - 1) / detail::kGroupNormBlock;
  std::vector<double> part(static_cast<std::size_t>(B * nblk * G));
  std::vector<double> mean(static_cast<std::size_t>(B * G)), rstd(static_cast<std::size_t>(B * G));
  const T* xd = x.data();
  // Sums over (image, block of pixels) per group, of x (pass 0) or of (x - mean)^2 (pass 1).
  auto block_sums = [&](bool centred) {
    ctx.parallel_for(B * nblk, static_cast<double>(detail::kGroupNormBlock * C), [&](std::int64_t i0, std::int64_t i1) {
      for (std::int64_t i = i0; i < i1; ++i) {
        const std::int64_t bi = i / nblk, p0 = (i % nblk) * detail::kGroupNormBlock,
                           p1 = std::min(P, p0 + detail::kGroupNormBlock);
        double* out = part.data() + i * G;
        std::fill_n(out, G, 0.0);
        for (std::int64_t p = p0; p < p1; ++p) {
          const T* row = xd + (bi * P + p) * C;
          for (std::int64_t g = 0; g < G; ++g) {
            double s = 0;
            if (centred) {
              const double m = mean[static_cast<std::size_t>(bi * G + g)];
              for (std::int64_t c = g * Cg; c < (g + 1) * Cg; ++c) s += (static_cast<double>(row[c]) - m) * (static_cast<double>(row[c]) - m);
            } else {
              for (std::int64_t c = g * Cg; c < (g + 1) * Cg; ++c) s += static_cast<double>(row[c]);
            }
            out[g] += s;
          }
        }
      }
    });
  };
  auto reduce = [&](std::vector<double>& into) {  // blocks in order: deterministic
    for (std::int64_t bi = 0; bi < B; ++bi)
      for (std::int64_t g = 0; g < G; ++g) {
        double s = 0;
        for (std::int64_t k = 0; k < nblk; ++k) s += part[static_cast<std::size_t>((bi * nblk + k) * G + g)];
        into[static_cast<std::size_t>(bi * G + g)] = s / static_cast<double>(P * Cg);
      }
  };
  block_sums(false);
  reduce(mean);
  block_sums(true);
  reduce(rstd);
  for (double& v : rstd) v = 1.0 / std::sqrt(v + static_cast<double>(eps));
  const T* wd = w.data();
  const T* bd = b.data();
  T* yd = y.data();
  ctx.parallel_for(B * P, static_cast<double>(4 * C), [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const std::int64_t bi = r / P;
      const T* row = xd + r * C;
      T* out = yd + r * C;
      for (std::int64_t c = 0; c < C; ++c) {
        const std::size_t s = static_cast<std::size_t>(bi * G + c / Cg);
        const T m = static_cast<T>(mean[s]), rs = static_cast<T>(rstd[s]);
        T v = (row[c] - m) * rs * wd[c] + bd[c];
        if (silu) v = v / (T(1) + std::exp(-v));
        out[c] = v;
      }
    }
  });
}

}  // namespace irepa::ops
