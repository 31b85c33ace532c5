#pragma once
// Activations on the CPU: GELU (tanh approximation, as timm's GELU(approximate="tanh")),
// SiLU, and SwiGLU (silu(x1) * x2 with x = [x1 | x2] split on the last dimension).

#include <cmath>
#include <numbers>

#include "irepa/core/context.hpp"
#include "irepa/core/tensor.hpp"

namespace irepa::ops {

namespace detail {

template <class T>
struct GeluTanh {
  static constexpr T k0 = static_cast<T>(0.7978845608028654);  // sqrt(2 / pi)
  static constexpr T k1 = static_cast<T>(0.044715);
  static T f(T x) { return T(0.5) * x * (T(1) + std::tanh(k0 * (x + k1 * x * x * x))); }
  static T df(T x) {
    const T th = std::tanh(k0 * (x + k1 * x * x * x));
    return T(0.5) * (T(1) + th) + T(0.5) * x * (T(1) - th * th) * k0 * (T(1) + T(3) * k1 * x * x);
  }
};
template <class T>
struct Silu {
  static T sigmoid(T x) { return T(1) / (T(1) + std::exp(-x)); }
  static T f(T x) { return x * sigmoid(x); }
  static T df(T x) {
    const T s = sigmoid(x);
    return s * (T(1) + x * (T(1) - s));
  }
};

/// y[i] = F::f(x[i]) over a flat range, in parallel.
template <class F, class T>
void map_forward(const CpuContext& ctx, std::string_view op, ConstView<T> x, TensorView<T> y) {
  check_shape(op, "output", y.shape(), x.shape());
  check_contiguous(op, x, y);
  ctx.parallel_for(x.numel(), 20.0, [&](std::int64_t i0, std::int64_t i1) {
    for (std::int64_t i = i0; i < i1; ++i) y.data()[i] = F::f(x.data()[i]);
  });
}
/// dx[i] = dy[i] * F::df(x[i]).
template <class F, class T>
void map_backward(const CpuContext& ctx, std::string_view op, ConstView<T> x, ConstView<T> dy, TensorView<T> dx) {
  check_shape(op, "dy", dy.shape(), x.shape());
  check_shape(op, "dx", dx.shape(), x.shape());
  check_contiguous(op, x, dy, dx);
  ctx.parallel_for(x.numel(), 25.0, [&](std::int64_t i0, std::int64_t i1) {
    for (std::int64_t i = i0; i < i1; ++i) dx.data()[i] = dy.data()[i] * F::df(x.data()[i]);
  });
}

}  // namespace detail

/// y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).  Any shape.
template <class T>
void gelu_tanh_forward(const CpuContext& ctx, In<T> x, TensorView<T> y) {
  detail::map_forward<detail::GeluTanh<T>, T>(ctx, "gelu_tanh_forward", x, y);
}
template <class T>
void gelu_tanh_backward(const CpuContext& ctx, In<T> x, In<T> dy, TensorView<T> dx) {
  detail::map_backward<detail::GeluTanh<T>, T>(ctx, "gelu_tanh_backward", x, dy, dx);
}

/// y = x * sigmoid(x).  Any shape.
template <class T>
void silu_forward(const CpuContext& ctx, In<T> x, TensorView<T> y) {
  detail::map_forward<detail::Silu<T>, T>(ctx, "silu_forward", x, y);
}
template <class T>
void silu_backward(const CpuContext& ctx, In<T> x, In<T> dy, TensorView<T> dx) {
  detail::map_backward<detail::Silu<T>, T>(ctx, "silu_backward", x, dy, dx);
}

/// SwiGLU: x [..., 2H] = [x1 | x2] -> y [..., H] = silu(x1) * x2.
template <class T>
void swiglu_forward(const CpuContext& ctx, In<T> x, TensorView<T> y) {
  IREPA_CHECK(x.rank() >= 1 && x.shape().last() % 2 == 0, "swiglu_forward: input has shape {}, expected [..., 2H]",
              x.shape().str());
  Shape ys = x.shape();
  ys[-1] = x.shape().last() / 2;
  check_shape("swiglu_forward", "output", y.shape(), ys);
  check_contiguous("swiglu_forward", x, y);
  const std::int64_t H = ys.last();
  ctx.parallel_for(ys.rows(), 25.0 * static_cast<double>(H), [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const T* a = x.data() + r * 2 * H;
      T* o = y.data() + r * H;
      for (std::int64_t i = 0; i < H; ++i) o[i] = detail::Silu<T>::f(a[i]) * a[H + i];
    }
  });
}
/// dx1 = dy * x2 * silu'(x1); dx2 = dy * silu(x1). dx [..., 2H] assigned.
template <class T>
void swiglu_backward(const CpuContext& ctx, In<T> x, In<T> dy, TensorView<T> dx) {
  check_shape("swiglu_backward", "dx", dx.shape(), x.shape());
  Shape ys = x.shape();
  ys[-1] = x.shape().last() / 2;
  check_shape("swiglu_backward", "dy", dy.shape(), ys);
  check_contiguous("swiglu_backward", x, dy, dx);
  const std::int64_t H = ys.last();
  ctx.parallel_for(ys.rows(), 40.0 * static_cast<double>(H), [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const T* a = x.data() + r * 2 * H;
      const T* g = dy.data() + r * H;
      T* d = dx.data() + r * 2 * H;
      for (std::int64_t i = 0; i < H; ++i) {
        d[i] = g[i] * a[H + i] * detail::Silu<T>::df(a[i]);
        d[H + i] = g[i] * detail::Silu<T>::f(a[i]);
      }
    }
  });
}

}  // namespace irepa::ops
