#pragma once
// Activations on the CPU: GELU (tanh approximation, as timm's GELU(approximate="tanh")),
// SiLU, ReLU, and SwiGLU (silu(x1) * x2 with x = [x1 | x2] split on the last dimension); forward
// only for the frozen encoders: exact GELU and CLIP's QuickGELU.

#include <algorithm>
#include <cmath>

#include "irepa/core/context.hpp"
#include "irepa/core/tensor.hpp"

namespace irepa::ops {

namespace detail {

// Each activation is written once over Eigen arrays, so the same code is vectorised (Eigen's
// packet exp / tanh for float) and usable on a single element.
template <class T>
struct GeluTanh {
  template <class A>
  static auto f(const A& x) {
    const T k0 = T(0.7978845608028654), k1 = T(0.044715);  // sqrt(2 / pi)
    return (T(0.5) * x * (T(1) + (k0 * (x + k1 * x.cube())).tanh())).eval();
  }
  template <class A>
  static auto df(const A& x) {
    const T k0 = T(0.7978845608028654), k1 = T(0.044715);
    const auto th = (k0 * (x + k1 * x.cube())).tanh().eval();
    return (T(0.5) * (T(1) + th) + T(0.5) * x * (T(1) - th.square()) * k0 * (T(1) + T(3) * k1 * x.square())).eval();
  }
};
template <class T>
struct Silu {
  template <class A>
  static auto sigmoid(const A& x) {
    return (T(1) + (-x).exp()).inverse().eval();
  }
  template <class A>
  static auto f(const A& x) {
    return (x * sigmoid(x)).eval();
  }
  template <class A>
  static auto df(const A& x) {
    const auto s = sigmoid(x);
    return (s * (T(1) + x * (T(1) - s))).eval();
  }
};

template <class T>
struct Relu {
  template <class A>
  static auto f(const A& x) {
    return x.max(T(0)).eval();
  }
  template <class A>
  static auto df(const A& x) {  // 0 at x = 0, as torch
    return (x > T(0)).template cast<T>().eval();
  }
};

template <class T>
using ArrayMap = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T>
using CArrayMap = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

/// Runs f(begin, len) over [0, n) in chunks of at most 4096 elements, in parallel.
template <class F>
void chunked(const CpuContext& ctx, std::int64_t n, double cost, F&& f) {
  constexpr std::int64_t chunk = 4096;
  ctx.parallel_for((n + chunk - 1) / chunk, cost * chunk, [&](std::int64_t c0, std::int64_t c1) {
    for (std::int64_t c = c0; c < c1; ++c) f(c * chunk, std::min(chunk, n - c * chunk));
  });
}

/// y = F::f(x), elementwise.
template <class F, class T>
void map_forward(const CpuContext& ctx, std::string_view op, ConstView<T> x, TensorView<T> y) {
  check_shape(op, "output", y.shape(), x.shape());
  check_contiguous(op, x, y);
  chunked(ctx, x.numel(), 20.0, [&](std::int64_t i, std::int64_t n) {
    ArrayMap<T>(y.data() + i, n) = F::f(CArrayMap<T>(x.data() + i, n));
  });
}
/// dx = dy * F::df(x), elementwise.
template <class F, class T>
void map_backward(const CpuContext& ctx, std::string_view op, ConstView<T> x, ConstView<T> dy, TensorView<T> dx) {
  check_shape(op, "dy", dy.shape(), x.shape());
  check_shape(op, "dx", dx.shape(), x.shape());
  check_contiguous(op, x, dy, dx);
  chunked(ctx, x.numel(), 25.0, [&](std::int64_t i, std::int64_t n) {
    ArrayMap<T>(dx.data() + i, n) = CArrayMap<T>(dy.data() + i, n) * F::df(CArrayMap<T>(x.data() + i, n));
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

/// y = max(x, 0).  Any shape; y may be x.
template <class T>
void relu_forward(const CpuContext& ctx, In<T> x, TensorView<T> y) {
  detail::map_forward<detail::Relu<T>, T>(ctx, "relu_forward", x, y);
}
/// dx = dy where x > 0, else 0. The forward's output may stand for x (the same sign).
template <class T>
void relu_backward(const CpuContext& ctx, In<T> x, In<T> dy, TensorView<T> dx) {
  detail::map_backward<detail::Relu<T>, T>(ctx, "relu_backward", x, dy, dx);
}

namespace detail {
/// y = f(x) one element at a time with the C library's erf / exp (the encoders' forward-only
/// activations; x and y may be the same buffer).
template <class T, class F>
void scalar_map(const CpuContext& ctx, std::string_view op, ConstView<T> x, TensorView<T> y, F f) {
  check_shape(op, "output", y.shape(), x.shape());
  check_contiguous(op, x, y);
  ctx.parallel_for(x.numel(), 20.0, [&](std::int64_t i0, std::int64_t i1) {
    for (std::int64_t i = i0; i < i1; ++i) y.data()[i] = f(x.data()[i]);
  });
}
}  // namespace detail

/// Exact GELU, y = 0.5 x (1 + erf(x / sqrt 2)) (nn.GELU()). Forward only; y may be x.
template <class T>
void gelu_forward(const CpuContext& ctx, In<T> x, TensorView<T> y) {
  detail::scalar_map<T>(ctx, "gelu_forward", x, y, [](T v) { return T(0.5) * v * (T(1) + std::erf(v * static_cast<T>(M_SQRT1_2))); });
}
/// CLIP's QuickGELU, y = x sigmoid(1.702 x). Forward only; y may be x.
template <class T>
void quick_gelu_forward(const CpuContext& ctx, In<T> x, TensorView<T> y) {
  detail::scalar_map<T>(ctx, "quick_gelu_forward", x, y, [](T v) { return v / (T(1) + std::exp(static_cast<T>(-1.702) * v)); });
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
      detail::ArrayMap<T>(y.data() + r * H, H) =
          detail::Silu<T>::f(detail::CArrayMap<T>(a, H)) * detail::CArrayMap<T>(a + H, H);
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
      const detail::CArrayMap<T> x1(x.data() + r * 2 * H, H), x2(x.data() + r * 2 * H + H, H), g(dy.data() + r * H, H);
      const auto s = detail::Silu<T>::sigmoid(x1);
      detail::ArrayMap<T>(dx.data() + r * 2 * H, H) = g * x2 * (s * (T(1) + x1 * (T(1) - s)));
      detail::ArrayMap<T>(dx.data() + r * 2 * H + H, H) = g * x1 * s;
    }
  });
}

}  // namespace irepa::ops
