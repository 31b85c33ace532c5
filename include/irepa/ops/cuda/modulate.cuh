#pragma once
// adaLN on the GPU (CudaContext overloads of ops/cpu/modulate.hpp). x, y [B, T, D]; shift,
// scale, gate [B, D]. The per-image sums of the backward run one thread per (image, channel)
// down the tokens: coalesced across channels and deterministic.

#include "irepa/ops/cpu/modulate.hpp"
#include "irepa/ops/cuda/common.cuh"

namespace irepa::ops {

namespace cuda_detail {

template <class T>
__global__ void modulate_forward_kernel(const T* x, const T* shift, const T* scale, T* y, std::int64_t N, std::int64_t D,
                                        std::int64_t total) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t bd = (i / (N * D)) * D + i % D;
    y[i] = x[i] * (T(1) + scale[bd]) + shift[bd];
  }
}

template <class T>
__global__ void modulate_backward_kernel(const T* x, const T* scale, const T* dy, T* dx, T* dshift, T* dscale,
                                         std::int64_t B, std::int64_t N, std::int64_t D) {
  for (std::int64_t c = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; c < B * D;
       c += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t b = c / D, d = c % D;
    const T sc = T(1) + scale[c];
    T sh = 0, ss = 0;
    for (std::int64_t n = 0; n < N; ++n) {
      const std::int64_t r = (b * N + n) * D + d;
      const T g = dy[r];
      sh += g;
      ss += g * x[r];
      if (dx) dx[r] = g * sc;
    }
    dshift[c] = sh;
    dscale[c] = ss;
  }
}

template <class T>
__global__ void gated_residual_forward_kernel(const T* x, const T* gate, const T* y, T* out, std::int64_t N, std::int64_t D,
                                              std::int64_t total) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    out[i] = x[i] + gate[(i / (N * D)) * D + i % D] * y[i];
}

template <class T>
__global__ void gated_residual_backward_kernel(const T* gate, const T* y, const T* dout, T* dy, T* dgate, std::int64_t B,
                                               std::int64_t N, std::int64_t D) {
  for (std::int64_t c = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; c < B * D;
       c += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t b = c / D, d = c % D;
    const T g = gate[c];
    T s = 0;
    for (std::int64_t n = 0; n < N; ++n) {
      const std::int64_t r = (b * N + n) * D + d;
      s += dout[r] * y[r];
      dy[r] = g * dout[r];
    }
    dgate[c] = s;
  }
}

}  // namespace cuda_detail

/// y = x * (1 + scale) + shift.
template <class T>
void modulate_forward(const CudaContext& ctx, In<T, Cuda> x, In<T, Cuda> shift, In<T, Cuda> scale, TensorView<T, Cuda> y) {
  detail::check_modulate("modulate_forward", x.shape(), shift.shape(), scale.shape(), y.shape());
  check_contiguous("modulate_forward", x, shift, scale, y);
  const std::int64_t n = x.numel();
  if (n == 0) return;
  cuda_detail::modulate_forward_kernel<T><<<cuda_detail::blocks_for(n), cuda_detail::kThreads, 0, ctx.stream()>>>(
      x.data(), shift.data(), scale.data(), y.data(), x.size(1), x.size(2), n);
  CudaContext::check_launch("modulate_forward");
}

/// dx = dy * (1 + scale) (skipped when dx is empty); dshift = sum_T dy; dscale = sum_T dy * x; all assigned.
template <class T>
void modulate_backward(const CudaContext& ctx, In<T, Cuda> x, In<T, Cuda> scale, In<T, Cuda> dy, TensorView<T, Cuda> dx,
                       TensorView<T, Cuda> dshift, TensorView<T, Cuda> dscale) {
  detail::check_modulate("modulate_backward", x.shape(), dshift.shape(), scale.shape(), dy.shape());
  check_shape("modulate_backward", "dscale", dscale.shape(), scale.shape());
  check_contiguous("modulate_backward", x, scale, dy, dx, dshift, dscale);
  if (dx.numel()) check_shape("modulate_backward", "dx", dx.shape(), x.shape());
  const std::int64_t B = x.size(0), N = x.size(1), D = x.size(2);
  if (B * D == 0) return;
  cuda_detail::modulate_backward_kernel<T><<<cuda_detail::blocks_for(B * D), cuda_detail::kThreads, 0, ctx.stream()>>>(
      x.data(), scale.data(), dy.data(), dx.numel() ? dx.data() : nullptr, dshift.data(), dscale.data(), B, N, D);
  CudaContext::check_launch("modulate_backward");
}

/// out = x + gate * y; out may alias x.
template <class T>
void gated_residual_forward(const CudaContext& ctx, In<T, Cuda> x, In<T, Cuda> gate, In<T, Cuda> y, TensorView<T, Cuda> out) {
  detail::check_modulate("gated_residual_forward", x.shape(), gate.shape(), gate.shape(), out.shape());
  check_shape("gated_residual_forward", "branch", y.shape(), x.shape());
  check_contiguous("gated_residual_forward", x, gate, y, out);
  const std::int64_t n = x.numel();
  if (n == 0) return;
  cuda_detail::gated_residual_forward_kernel<T><<<cuda_detail::blocks_for(n), cuda_detail::kThreads, 0, ctx.stream()>>>(
      x.data(), gate.data(), y.data(), out.data(), x.size(1), x.size(2), n);
  CudaContext::check_launch("gated_residual_forward");
}

/// dy = gate * dout and dgate = sum_T dout * y, both assigned.
template <class T>
void gated_residual_backward(const CudaContext& ctx, In<T, Cuda> gate, In<T, Cuda> y, In<T, Cuda> dout, TensorView<T, Cuda> dy,
                             TensorView<T, Cuda> dgate) {
  detail::check_modulate("gated_residual_backward", y.shape(), gate.shape(), dgate.shape(), dout.shape());
  check_shape("gated_residual_backward", "dy", dy.shape(), y.shape());
  check_contiguous("gated_residual_backward", gate, y, dout, dy, dgate);
  const std::int64_t B = y.size(0), N = y.size(1), D = y.size(2);
  if (B * D == 0) return;
  cuda_detail::gated_residual_backward_kernel<T><<<cuda_detail::blocks_for(B * D), cuda_detail::kThreads, 0, ctx.stream()>>>(
      gate.data(), y.data(), dout.data(), dy.data(), dgate.data(), B, N, D);
  CudaContext::check_launch("gated_residual_backward");
}

}  // namespace irepa::ops
