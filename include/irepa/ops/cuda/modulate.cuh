#pragma once
// adaLN on the GPU (CudaContext overloads of ops/cpu/modulate.hpp; adaln_norm_* fuse LayerNorm
// with the modulation). x, y [B, T, D]; shift,
// scale, gate [B, D]. The per-image sums of the backward run one thread per (image, channel)
// down the tokens: coalesced across channels and deterministic.

#include "irepa/ops/cpu/modulate.hpp"
#include "irepa/ops/cuda/common.cuh"
#include "irepa/ops/cuda/norm.cuh"

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

/// LayerNorm + modulate in one pass over each row (one block per token): xn, rstd and h written.
template <class T>
__global__ void adaln_norm_forward_kernel(const T* x, T eps, const T* shift, const T* scale, T* xn, T* rstd, T* h, std::int64_t N,
                                          std::int64_t D) {
  __shared__ T scratch[32];
  const std::int64_t row = blockIdx.x, o = row * D, bd = (row / N) * D;
  T s = 0;
  for (std::int64_t i = threadIdx.x; i < D; i += blockDim.x) s += x[o + i];
  const T mean = block_sum(s, scratch) / static_cast<T>(D);
  T v = 0;
  for (std::int64_t i = threadIdx.x; i < D; i += blockDim.x) v += (x[o + i] - mean) * (x[o + i] - mean);
  const T r = T(1) / sqrt(block_sum(v, scratch) / static_cast<T>(D) + eps);
  for (std::int64_t i = threadIdx.x; i < D; i += blockDim.x) {
    const T n = (x[o + i] - mean) * r;
    xn[o + i] = n;
    h[o + i] = n * (T(1) + scale[bd + i]) + shift[bd + i];
  }
  if (threadIdx.x == 0) rstd[row] = r;
}

/// The row part of the backward: g = dh (1 + scale) stays in registers, dx = r (g - mean g -
/// xn mean(g xn)) + residual. (dshift, dscale: modulate_backward_kernel without dx.)
template <class T>
__global__ void adaln_norm_backward_kernel(const T* xn, const T* rstd, const T* scale, const T* dh, const T* residual, T* dx,
                                           std::int64_t N, std::int64_t D) {
  __shared__ T scratch[32];
  const std::int64_t row = blockIdx.x, o = row * D, bd = (row / N) * D;
  T a = 0, b = 0;
  for (std::int64_t i = threadIdx.x; i < D; i += blockDim.x) {
    const T g = dh[o + i] * (T(1) + scale[bd + i]);
    a += g, b += g * xn[o + i];
  }
  const T m1 = block_sum(a, scratch) / static_cast<T>(D);
  const T m2 = block_sum(b, scratch) / static_cast<T>(D);
  const T r = rstd[row];
  for (std::int64_t i = threadIdx.x; i < D; i += blockDim.x) {
    const T g = dh[o + i] * (T(1) + scale[bd + i]);
    dx[o + i] = r * (g - m1 - xn[o + i] * m2) + (residual ? residual[o + i] : T(0));
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

/// xn = LayerNorm(x), rstd [B T], h = xn (1 + scale) + shift, in one kernel.
template <class T>
void adaln_norm_forward(const CudaContext& ctx, In<T, Cuda> x, T eps, In<T, Cuda> shift, In<T, Cuda> scale, TensorView<T, Cuda> xn,
                        TensorView<T, Cuda> rstd, TensorView<T, Cuda> h) {
  detail::check_modulate("adaln_norm_forward", x.shape(), shift.shape(), scale.shape(), h.shape());
  detail::check_layer_norm("adaln_norm_forward", x.shape(), xn.shape(), rstd.shape());
  check_contiguous("adaln_norm_forward", x, shift, scale, xn, rstd, h);
  const std::int64_t rows = x.shape().rows(), N = x.size(1), D = x.size(2);
  if (rows == 0 || D == 0) return;
  cuda_detail::adaln_norm_forward_kernel<T><<<static_cast<unsigned>(rows), cuda_detail::row_threads(D), 0, ctx.stream()>>>(
      x.data(), eps, shift.data(), scale.data(), xn.data(), rstd.data(), h.data(), N, D);
  CudaContext::check_launch("adaln_norm_forward");
}

/// dx = LayerNorm'(dh (1 + scale)) + residual (empty: none; may alias dx), dshift = sum_T dh,
/// dscale = sum_T dh xn; all assigned. Two kernels: the rows, then the per-image sums.
template <class T>
void adaln_norm_backward(const CudaContext& ctx, In<T, Cuda> xn, In<T, Cuda> rstd, In<T, Cuda> scale, In<T, Cuda> dh,
                         In<T, Cuda> residual, TensorView<T, Cuda> dx, TensorView<T, Cuda> dshift, TensorView<T, Cuda> dscale) {
  detail::check_modulate("adaln_norm_backward", xn.shape(), dshift.shape(), scale.shape(), dh.shape());
  check_shape("adaln_norm_backward", "dscale", dscale.shape(), scale.shape());
  detail::check_layer_norm_backward("adaln_norm_backward", xn.shape(), rstd.shape(), dh.shape(), dx.shape());
  if (residual.numel()) check_shape("adaln_norm_backward", "residual gradient", residual.shape(), xn.shape());
  check_contiguous("adaln_norm_backward", xn, rstd, scale, dh, residual, dx, dshift, dscale);
  const std::int64_t B = xn.size(0), N = xn.size(1), D = xn.size(2);
  if (B * D == 0) return;
  if (B * N > 0)
    cuda_detail::adaln_norm_backward_kernel<T><<<static_cast<unsigned>(B * N), cuda_detail::row_threads(D), 0, ctx.stream()>>>(
        xn.data(), rstd.data(), scale.data(), dh.data(), residual.numel() ? residual.data() : nullptr, dx.data(), N, D);
  CudaContext::check_launch("adaln_norm_backward: rows");
  cuda_detail::modulate_backward_kernel<T><<<cuda_detail::blocks_for(B * D), cuda_detail::kThreads, 0, ctx.stream()>>>(
      xn.data(), scale.data(), dh.data(), static_cast<T*>(nullptr), dshift.data(), dscale.data(), B, N, D);
  CudaContext::check_launch("adaln_norm_backward: per-image sums");
}

}  // namespace irepa::ops
