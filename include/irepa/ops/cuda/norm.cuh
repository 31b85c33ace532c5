#pragma once
// Normalisations on the GPU (CudaContext overloads of ops/cpu/norm.hpp): LayerNorm without
// affine parameters and RMSNorm with a weight, forward and backward. One block of 128..1024
// threads per row (the row is read from global memory twice; rows are at most a few K values,
// so the second read hits L2). RMSNorm's weight gradient sums the rows' contributions
// column by column in a second kernel: deterministic, no atomics.
// GroupNorm over channels-last maps (forward only): one block per (image, group) for the two-pass
// statistics, summed in double; then one elementwise kernel for the affine part and the SiLU.

#include "irepa/ops/cpu/norm.hpp"
#include "irepa/ops/cuda/common.cuh"

namespace irepa::ops {

namespace cuda_detail {

template <class T>
__global__ void layer_norm_forward_kernel(const T* x, T eps, T* y, T* rstd, std::int64_t D) {
  __shared__ T scratch[32];
  const T* xr = x + blockIdx.x * D;
  T* yr = y + blockIdx.x * D;
  T s = 0;
  for (std::int64_t i = threadIdx.x; i < D; i += blockDim.x) s += xr[i];
  const T mean = block_sum(s, scratch) / static_cast<T>(D);
  T v = 0;
  for (std::int64_t i = threadIdx.x; i < D; i += blockDim.x) v += (xr[i] - mean) * (xr[i] - mean);
  const T r = T(1) / sqrt(block_sum(v, scratch) / static_cast<T>(D) + eps);
  for (std::int64_t i = threadIdx.x; i < D; i += blockDim.x) yr[i] = (xr[i] - mean) * r;
  if (threadIdx.x == 0) rstd[blockIdx.x] = r;
}

template <class T>
__global__ void layer_norm_backward_kernel(const T* y, const T* rstd, const T* dy, T* dx, std::int64_t D) {
  __shared__ T scratch[32];
  const std::int64_t o = blockIdx.x * D;
  T a = 0, b = 0;
  for (std::int64_t i = threadIdx.x; i < D; i += blockDim.x) a += dy[o + i], b += dy[o + i] * y[o + i];
  const T m1 = block_sum(a, scratch) / static_cast<T>(D);
  const T m2 = block_sum(b, scratch) / static_cast<T>(D);
  const T r = rstd[blockIdx.x];
  for (std::int64_t i = threadIdx.x; i < D; i += blockDim.x) dx[o + i] = r * (dy[o + i] - m1 - y[o + i] * m2);
}

template <class T>
__global__ void rms_norm_forward_kernel(const T* x, const T* w, T eps, T* y, T* rr, std::int64_t D) {
  __shared__ T scratch[32];
  const std::int64_t o = blockIdx.x * D;
  T s = 0;
  for (std::int64_t i = threadIdx.x; i < D; i += blockDim.x) s += x[o + i] * x[o + i];
  const T r = T(1) / sqrt(block_sum(s, scratch) / static_cast<T>(D) + eps);
  for (std::int64_t i = threadIdx.x; i < D; i += blockDim.x) y[o + i] = w[i] * x[o + i] * r;
  if (threadIdx.x == 0) rr[blockIdx.x] = r;
}

/// dx assigned; dw_rows[row, i] = dy * x * r written for the column reduction.
template <class T>
__global__ void rms_norm_backward_kernel(const T* x, const T* w, const T* rr, const T* dy, T* dx, T* dw_rows, std::int64_t D) {
  __shared__ T scratch[32];
  const std::int64_t o = blockIdx.x * D;
  const T r = rr[blockIdx.x];
  T s = 0;
  for (std::int64_t i = threadIdx.x; i < D; i += blockDim.x) s += dy[o + i] * w[i] * x[o + i] * r;
  const T m = block_sum(s, scratch) / static_cast<T>(D);
  for (std::int64_t i = threadIdx.x; i < D; i += blockDim.x) {
    const T xh = x[o + i] * r;
    dw_rows[o + i] = dy[o + i] * xh;
    dx[o + i] = r * (dy[o + i] * w[i] - xh * m);
  }
}

/// out[c] += sum over the N rows of rows[., c]: one thread per column, in row order.
template <class T>
__global__ void add_column_sums_kernel(const T* rows, std::int64_t N, std::int64_t D, T* out) {
  for (std::int64_t c = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; c < D;
       c += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    T s = 0;
    for (std::int64_t n = 0; n < N; ++n) s += rows[n * D + c];
    out[c] += s;
  }
}

}  // namespace cuda_detail

/// y = LayerNorm(x) without affine parameters. x, y [..., D]; rstd [rows] (saved for backward).
template <class T>
void layer_norm_forward(const CudaContext& ctx, In<T, Cuda> x, T eps, TensorView<T, Cuda> y, TensorView<T, Cuda> rstd) {
  detail::check_layer_norm("layer_norm_forward", x.shape(), y.shape(), rstd.shape());
  check_contiguous("layer_norm_forward", x, y, rstd);
  const std::int64_t rows = x.shape().rows(), D = x.shape().last();
  if (rows == 0) return;
  cuda_detail::layer_norm_forward_kernel<T><<<static_cast<unsigned>(rows), cuda_detail::row_threads(D), 0, ctx.stream()>>>(
      x.data(), eps, y.data(), rstd.data(), D);
  CudaContext::check_launch("layer_norm_forward");
}

/// dx (assigned) from the forward's output y and rstd.
template <class T>
void layer_norm_backward(const CudaContext& ctx, In<T, Cuda> y, In<T, Cuda> rstd, In<T, Cuda> dy, TensorView<T, Cuda> dx) {
  detail::check_layer_norm_backward("layer_norm_backward", y.shape(), rstd.shape(), dy.shape(), dx.shape());
  check_contiguous("layer_norm_backward", y, rstd, dy, dx);
  const std::int64_t rows = y.shape().rows(), D = y.shape().last();
  if (rows == 0) return;
  cuda_detail::layer_norm_backward_kernel<T><<<static_cast<unsigned>(rows), cuda_detail::row_threads(D), 0, ctx.stream()>>>(
      y.data(), rstd.data(), dy.data(), dx.data(), D);
  CudaContext::check_launch("layer_norm_backward");
}

/// y = w * x / sqrt(mean(x^2) + eps). x, y [..., D]; w [D]; r [rows] (saved for backward).
template <class T>
void rms_norm_forward(const CudaContext& ctx, In<T, Cuda> x, In<T, Cuda> w, T eps, TensorView<T, Cuda> y, TensorView<T, Cuda> r) {
  const std::int64_t rows = x.shape().rows(), D = x.shape().last();
  detail::check_rms_norm("rms_norm_forward", x.shape(), w.shape(), y.shape(), r.shape());
  check_contiguous("rms_norm_forward", x, w, y, r);
  if (rows == 0) return;
  cuda_detail::rms_norm_forward_kernel<T><<<static_cast<unsigned>(rows), cuda_detail::row_threads(D), 0, ctx.stream()>>>(
      x.data(), w.data(), eps, y.data(), r.data(), D);
  CudaContext::check_launch("rms_norm_forward");
}

/// dx assigned; dw accumulated.
template <class T>
void rms_norm_backward(const CudaContext& ctx, In<T, Cuda> x, In<T, Cuda> w, In<T, Cuda> r, In<T, Cuda> dy, TensorView<T, Cuda> dx,
                       TensorView<T, Cuda> dw) {
  const std::int64_t D = x.shape().last(), N = x.shape().rows();
  detail::check_rms_norm_backward("rms_norm_backward", x.shape(), w.shape(), r.shape(), dy.shape(), dx.shape(), dw.shape());
  check_contiguous("rms_norm_backward", x, w, r, dy, dx, dw);
  if (N == 0) return;
  Tensor<T, Cuda> dw_rows(Shape{N, D});  // per-row contributions, reduced below
  cuda_detail::rms_norm_backward_kernel<T><<<static_cast<unsigned>(N), cuda_detail::row_threads(D), 0, ctx.stream()>>>(
      x.data(), w.data(), r.data(), dy.data(), dx.data(), dw_rows.data(), D);
  CudaContext::check_launch("rms_norm_backward");
  cuda_detail::add_column_sums_kernel<T><<<cuda_detail::blocks_for(D), cuda_detail::kThreads, 0, ctx.stream()>>>(
      dw_rows.data(), N, D, dw.data());
  CudaContext::check_launch("rms_norm_backward: column sums");
}

namespace cuda_detail {
/// mean and rstd [B G] of each (image, group) of x [B, P, C]: one block each, sums in double.
template <class T>
__global__ void group_norm_stats_kernel(const T* x, std::int64_t P, std::int64_t C, std::int64_t G, double eps, double* mean, double* rstd) {
  __shared__ double scratch[32];
  const std::int64_t bi = blockIdx.x / G, g = blockIdx.x % G, Cg = C / G, n = P * Cg;
  const T* base = x + bi * P * C + g * Cg;
  double s = 0;
  for (std::int64_t e = threadIdx.x; e < n; e += blockDim.x) s += static_cast<double>(base[(e / Cg) * C + e % Cg]);
  const double m = block_sum(s, scratch) / static_cast<double>(n);
  double v = 0;
  for (std::int64_t e = threadIdx.x; e < n; e += blockDim.x) {
    const double d = static_cast<double>(base[(e / Cg) * C + e % Cg]) - m;
    v += d * d;
  }
  const double var = block_sum(v, scratch) / static_cast<double>(n);
  if (threadIdx.x == 0) mean[blockIdx.x] = m, rstd[blockIdx.x] = 1.0 / sqrt(var + eps);
}

template <class T>
__global__ void group_norm_apply_kernel(const T* x, const double* mean, const double* rstd, const T* w, const T* b, std::int64_t P,
                                        std::int64_t C, std::int64_t G, bool silu, T* y, std::int64_t total) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t c = i % C, s = (i / (P * C)) * G + c / (C / G);
    T v = (x[i] - static_cast<T>(mean[s])) * static_cast<T>(rstd[s]) * w[c] + b[c];
    if (silu) v = v / (T(1) + exp(-v));
    y[i] = v;
  }
}
}  // namespace cuda_detail

/// GroupNorm on channels-last maps x [B, ..., C] (see the CPU overload); y may be x.
template <class T>
void group_norm_forward(const CudaContext& ctx, In<T, Cuda> x, std::int64_t groups, std::type_identity_t<T> eps, In<T, Cuda> w,
                        In<T, Cuda> b, bool silu, TensorView<T, Cuda> y) {
  detail::check_group_norm("group_norm_forward", x.shape(), groups, w.shape(), b.shape(), y.shape());
  check_contiguous("group_norm_forward", x, w, b, y);
  if (x.numel() == 0) return;
  const std::int64_t B = x.size(0), C = x.shape().last(), P = x.numel() / (B * C);
  Tensor<double, Cuda> mean(Shape{B * groups}), rstd(Shape{B * groups});
  cuda_detail::group_norm_stats_kernel<T><<<static_cast<unsigned>(B * groups), 1024, 0, ctx.stream()>>>(
      x.data(), P, C, groups, static_cast<double>(eps), mean.data(), rstd.data());
  CudaContext::check_launch("group_norm_forward: statistics");
  cuda_detail::group_norm_apply_kernel<T><<<cuda_detail::blocks_for(x.numel()), cuda_detail::kThreads, 0, ctx.stream()>>>(
      x.data(), mean.data(), rstd.data(), w.data(), b.data(), P, C, groups, silu, y.data(), x.numel());
  CudaContext::check_launch("group_norm_forward");
}

}  // namespace irepa::ops
