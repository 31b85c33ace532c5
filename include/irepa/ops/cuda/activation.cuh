#pragma once
// Activations on the GPU (CudaContext overloads of ops/cpu/activation.hpp): GELU (tanh
// approximation), SiLU, ReLU, SwiGLU, and the encoders' exact GELU and QuickGELU; one grid-stride
// kernel per op, float or double.

#include <cmath>

#include "irepa/ops/cuda/common.cuh"

namespace irepa::ops {

namespace cuda_detail {

struct GeluTanhFn {
  template <class T>
  __device__ static T f(T x) {
    const T k0 = T(0.7978845608028654), k1 = T(0.044715);
    return T(0.5) * x * (T(1) + tanh(k0 * (x + k1 * x * x * x)));
  }
  template <class T>
  __device__ static T df(T x) {
    const T k0 = T(0.7978845608028654), k1 = T(0.044715);
    const T th = tanh(k0 * (x + k1 * x * x * x));
    return T(0.5) * (T(1) + th) + T(0.5) * x * (T(1) - th * th) * k0 * (T(1) + T(3) * k1 * x * x);
  }
};
struct SiluFn {
  template <class T>
  __device__ static T f(T x) {
    return x / (T(1) + exp(-x));
  }
  template <class T>
  __device__ static T df(T x) {
    const T s = T(1) / (T(1) + exp(-x));
    return s * (T(1) + x * (T(1) - s));
  }
};

struct ReluFn {
  template <class T>
  __device__ static T f(T x) {
    return x > T(0) ? x : T(0);
  }
  template <class T>
  __device__ static T df(T x) {
    return x > T(0) ? T(1) : T(0);
  }
};

struct GeluFn {  // exact GELU (forward only)
  template <class T>
  __device__ static T f(T x) {
    return T(0.5) * x * (T(1) + erf(x * T(0.7071067811865476)));
  }
};
struct QuickGeluFn {  // CLIP's x sigmoid(1.702 x) (forward only)
  template <class T>
  __device__ static T f(T x) {
    return x / (T(1) + exp(T(-1.702) * x));
  }
};

template <class F, class T>
__global__ void map_forward_kernel(const T* x, T* y, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    y[i] = F::f(x[i]);
}
template <class F, class T>
__global__ void map_backward_kernel(const T* x, const T* dy, T* dx, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    dx[i] = dy[i] * F::df(x[i]);
}

template <class F, class T>
void map_forward(const CudaContext& ctx, std::string_view op, ConstView<T, Cuda> x, TensorView<T, Cuda> y) {
  check_shape(op, "output", y.shape(), x.shape());
  check_contiguous(op, x, y);
  const std::int64_t n = x.numel();
  if (n == 0) return;
  map_forward_kernel<F, T><<<blocks_for(n), kThreads, 0, ctx.stream()>>>(x.data(), y.data(), n);
  CudaContext::check_launch(op);
}
template <class F, class T>
void map_backward(const CudaContext& ctx, std::string_view op, ConstView<T, Cuda> x, ConstView<T, Cuda> dy,
                  TensorView<T, Cuda> dx) {
  check_shape(op, "dy", dy.shape(), x.shape());
  check_shape(op, "dx", dx.shape(), x.shape());
  check_contiguous(op, x, dy, dx);
  const std::int64_t n = x.numel();
  if (n == 0) return;
  map_backward_kernel<F, T><<<blocks_for(n), kThreads, 0, ctx.stream()>>>(x.data(), dy.data(), dx.data(), n);
  CudaContext::check_launch(op);
}

/// y [rows, H] = silu(x1) * x2 for x [rows, 2H] = [x1 | x2].
template <class T>
__global__ void swiglu_forward_kernel(const T* x, T* y, std::int64_t H, std::int64_t total) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t r = i / H, j = i % H;
    y[i] = SiluFn::f(x[r * 2 * H + j]) * x[r * 2 * H + H + j];
  }
}
template <class T>
__global__ void swiglu_backward_kernel(const T* x, const T* dy, T* dx, std::int64_t H, std::int64_t total) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t r = i / H, j = i % H;
    const T x1 = x[r * 2 * H + j], x2 = x[r * 2 * H + H + j], g = dy[i];
    dx[r * 2 * H + j] = g * x2 * SiluFn::df(x1);
    dx[r * 2 * H + H + j] = g * SiluFn::f(x1);
  }
}

}  // namespace cuda_detail

template <class T>
void gelu_tanh_forward(const CudaContext& ctx, In<T, Cuda> x, TensorView<T, Cuda> y) {
  cuda_detail::map_forward<cuda_detail::GeluTanhFn, T>(ctx, "gelu_tanh_forward", x, y);
}
/// dx assigned, from the forward's input x.
template <class T>
void gelu_tanh_backward(const CudaContext& ctx, In<T, Cuda> x, In<T, Cuda> dy, TensorView<T, Cuda> dx) {
  cuda_detail::map_backward<cuda_detail::GeluTanhFn, T>(ctx, "gelu_tanh_backward", x, dy, dx);
}
/// Exact GELU and CLIP's QuickGELU, forward only (the frozen encoders); y may be x.
template <class T>
void gelu_forward(const CudaContext& ctx, In<T, Cuda> x, TensorView<T, Cuda> y) {
  cuda_detail::map_forward<cuda_detail::GeluFn, T>(ctx, "gelu_forward", x, y);
}
template <class T>
void quick_gelu_forward(const CudaContext& ctx, In<T, Cuda> x, TensorView<T, Cuda> y) {
  cuda_detail::map_forward<cuda_detail::QuickGeluFn, T>(ctx, "quick_gelu_forward", x, y);
}
/// y = max(x, 0); dx = dy where x (or the forward's output) > 0.
template <class T>
void relu_forward(const CudaContext& ctx, In<T, Cuda> x, TensorView<T, Cuda> y) {
  cuda_detail::map_forward<cuda_detail::ReluFn, T>(ctx, "relu_forward", x, y);
}
template <class T>
void relu_backward(const CudaContext& ctx, In<T, Cuda> x, In<T, Cuda> dy, TensorView<T, Cuda> dx) {
  cuda_detail::map_backward<cuda_detail::ReluFn, T>(ctx, "relu_backward", x, dy, dx);
}
template <class T>
void silu_forward(const CudaContext& ctx, In<T, Cuda> x, TensorView<T, Cuda> y) {
  cuda_detail::map_forward<cuda_detail::SiluFn, T>(ctx, "silu_forward", x, y);
}
template <class T>
void silu_backward(const CudaContext& ctx, In<T, Cuda> x, In<T, Cuda> dy, TensorView<T, Cuda> dx) {
  cuda_detail::map_backward<cuda_detail::SiluFn, T>(ctx, "silu_backward", x, dy, dx);
}

/// SwiGLU: x [..., 2H] = [x1 | x2] -> y [..., H] = silu(x1) * x2.
template <class T>
void swiglu_forward(const CudaContext& ctx, In<T, Cuda> x, TensorView<T, Cuda> y) {
  IREPA_CHECK(x.rank() >= 1 && x.shape().last() % 2 == 0, "swiglu_forward: input has shape {}, expected [..., 2H]", x.shape().str());
  Shape ys = x.shape();
  ys[-1] = x.shape().last() / 2;
  check_shape("swiglu_forward", "output", y.shape(), ys);
  check_contiguous("swiglu_forward", x, y);
  if (y.numel() == 0) return;
  cuda_detail::swiglu_forward_kernel<T><<<cuda_detail::blocks_for(y.numel()), cuda_detail::kThreads, 0, ctx.stream()>>>(
      x.data(), y.data(), ys.last(), y.numel());
  CudaContext::check_launch("swiglu_forward");
}
/// dx1 = dy * x2 * silu'(x1); dx2 = dy * silu(x1). dx [..., 2H] assigned.
template <class T>
void swiglu_backward(const CudaContext& ctx, In<T, Cuda> x, In<T, Cuda> dy, TensorView<T, Cuda> dx) {
  check_shape("swiglu_backward", "dx", dx.shape(), x.shape());
  Shape ys = x.shape();
  ys[-1] = x.shape().last() / 2;
  check_shape("swiglu_backward", "dy", dy.shape(), ys);
  check_contiguous("swiglu_backward", x, dy, dx);
  if (dy.numel() == 0) return;
  cuda_detail::swiglu_backward_kernel<T><<<cuda_detail::blocks_for(dy.numel()), cuda_detail::kThreads, 0, ctx.stream()>>>(
      x.data(), dy.data(), dx.data(), ys.last(), dy.numel());
  CudaContext::check_launch("swiglu_backward");
}

}  // namespace irepa::ops
