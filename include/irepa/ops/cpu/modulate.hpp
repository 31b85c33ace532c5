#pragma once
// adaLN on the CPU, per-image vectors broadcast over tokens. x, y [B, T, D]; shift, scale, gate [B, D].
//  - modulate:        y = x * (1 + scale) + shift
//  - gated residual:  out = x + gate * y  (adaLN-Zero's residual branch)
//  - adaLN norm:      h = LayerNorm(x) * (1 + scale) + shift, and its backward with the residual
//    stream's gradient added (the pair the GPU fuses into one pass over the row; here the
//    composition of the ops above, so the CPU's values are those of the separate ops).

#include "irepa/core/context.hpp"
#include "irepa/core/tensor.hpp"
#include "irepa/ops/cpu/norm.hpp"
#include "irepa/ops/cpu/tensor_ops.hpp"

namespace irepa::ops {

namespace detail {
inline void check_modulate(std::string_view op, const Shape& x, const Shape& shift, const Shape& scale, const Shape& y) {
  IREPA_CHECK(x.rank() == 3, "{}: input has shape {}, expected [B, T, D]", op, x.str());
  check_shape(op, "shift", shift, Shape{x[0], x[2]});
  check_shape(op, "scale", scale, Shape{x[0], x[2]});
  check_shape(op, "output", y, x);
}
}  // namespace detail

template <class T>
void modulate_forward(const CpuContext& ctx, In<T> x, In<T> shift, In<T> scale, TensorView<T> y) {
  detail::check_modulate("modulate_forward", x.shape(), shift.shape(), scale.shape(), y.shape());
  check_contiguous("modulate_forward", x, shift, scale, y);
  const std::int64_t B = x.size(0), N = x.size(1), D = x.size(2);
  ctx.parallel_for(B * N, 2.0 * static_cast<double>(D), [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const T* sh = shift.data() + (r / N) * D;
      const T* sc = scale.data() + (r / N) * D;
      const T* xr = x.data() + r * D;
      T* yr = y.data() + r * D;
      for (std::int64_t i = 0; i < D; ++i) yr[i] = xr[i] * (T(1) + sc[i]) + sh[i];
    }
  });
}

/// dx = dy * (1 + scale); dshift = sum_T dy; dscale = sum_T dy * x. All three assigned
/// (dx may be empty to skip it).
template <class T>
void modulate_backward(const CpuContext& ctx, In<T> x, In<T> scale, In<T> dy, TensorView<T> dx, TensorView<T> dshift,
                       TensorView<T> dscale) {
  detail::check_modulate("modulate_backward", x.shape(), dshift.shape(), scale.shape(), dy.shape());
  check_shape("modulate_backward", "dscale", dscale.shape(), scale.shape());
  check_contiguous("modulate_backward", x, scale, dy, dx, dshift, dscale);
  const std::int64_t B = x.size(0), N = x.size(1), D = x.size(2);
  if (dx.numel()) check_shape("modulate_backward", "dx", dx.shape(), x.shape());
  // One task per (image, channel block): sums over tokens stay in one thread.
  ctx.parallel_for(B, 3.0 * static_cast<double>(N * D), [&](std::int64_t b0, std::int64_t b1) {
    for (std::int64_t b = b0; b < b1; ++b) {
      T* dsh = dshift.data() + b * D;
      T* dsc = dscale.data() + b * D;
      const T* sc = scale.data() + b * D;
      std::fill_n(dsh, D, T(0));
      std::fill_n(dsc, D, T(0));
      for (std::int64_t n = 0; n < N; ++n) {
        const std::int64_t r = b * N + n;
        const T* g = dy.data() + r * D;
        const T* xr = x.data() + r * D;
        for (std::int64_t i = 0; i < D; ++i) {
          dsh[i] += g[i];
          dsc[i] += g[i] * xr[i];
        }
        if (dx.numel()) {
          T* dxr = dx.data() + r * D;
          for (std::int64_t i = 0; i < D; ++i) dxr[i] = g[i] * (T(1) + sc[i]);
        }
      }
    }
  });
}

/// out = x + gate * y. out may alias x (the residual stream updated in place).
template <class T>
void gated_residual_forward(const CpuContext& ctx, In<T> x, In<T> gate, In<T> y, TensorView<T> out) {
  detail::check_modulate("gated_residual_forward", x.shape(), gate.shape(), gate.shape(), out.shape());
  check_shape("gated_residual_forward", "branch", y.shape(), x.shape());
  check_contiguous("gated_residual_forward", x, gate, y, out);
  const std::int64_t B = x.size(0), N = x.size(1), D = x.size(2);
  ctx.parallel_for(B * N, 2.0 * static_cast<double>(D), [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const T* g = gate.data() + (r / N) * D;
      const T* xr = x.data() + r * D;
      const T* yr = y.data() + r * D;
      T* o = out.data() + r * D;
      for (std::int64_t i = 0; i < D; ++i) o[i] = xr[i] + g[i] * yr[i];
    }
  });
}

/// The branch's part of the backward (d out / d x is the identity, left to the caller):
/// dy = gate * dout and dgate = sum_T dout * y, both assigned.
template <class T>
void gated_residual_backward(const CpuContext& ctx, In<T> gate, In<T> y, In<T> dout, TensorView<T> dy,
                             TensorView<T> dgate) {
  detail::check_modulate("gated_residual_backward", y.shape(), gate.shape(), dgate.shape(), dout.shape());
  check_shape("gated_residual_backward", "dy", dy.shape(), y.shape());
  check_contiguous("gated_residual_backward", gate, y, dout, dy, dgate);
  const std::int64_t B = y.size(0), N = y.size(1), D = y.size(2);
  ctx.parallel_for(B, 3.0 * static_cast<double>(N * D), [&](std::int64_t b0, std::int64_t b1) {
    for (std::int64_t b = b0; b < b1; ++b) {
      const T* g = gate.data() + b * D;
      T* dg = dgate.data() + b * D;
      std::fill_n(dg, D, T(0));
      for (std::int64_t n = 0; n < N; ++n) {
        const std::int64_t r = (b * N + n) * D;
        for (std::int64_t i = 0; i < D; ++i) {
          dg[i] += dout.data()[r + i] * y.data()[r + i];
          dy.data()[r + i] = g[i] * dout.data()[r + i];
        }
      }
    }
  });
}

/// xn = LayerNorm(x) (no affine), rstd [B T] (both kept for the backward), h = xn (1 + scale) + shift.
template <class T>
void adaln_norm_forward(const CpuContext& ctx, In<T> x, T eps, In<T> shift, In<T> scale, TensorView<T> xn, TensorView<T> rstd,
                        TensorView<T> h) {
  layer_norm_forward<T>(ctx, x, eps, xn, rstd);
  modulate_forward<T>(ctx, xn, shift, scale, h);
}

/// dx = LayerNorm'(dh (1 + scale)) + residual (residual may be empty), dshift = sum_T dh,
/// dscale = sum_T dh xn; all assigned.
template <class T>
void adaln_norm_backward(const CpuContext& ctx, In<T> xn, In<T> rstd, In<T> scale, In<T> dh, In<T> residual, TensorView<T> dx,
                         TensorView<T> dshift, TensorView<T> dscale) {
  if (residual.numel()) check_shape("adaln_norm_backward", "residual gradient", residual.shape(), xn.shape());
  Tensor<T> dxn(xn.shape());
  modulate_backward<T>(ctx, xn, scale, dh, dxn.view(), dshift, dscale);
  layer_norm_backward<T>(ctx, xn, rstd, dxn.cview(), dx);
  if (residual.numel()) add_into<T>(ctx, dx, residual);
}

}  // namespace irepa::ops
