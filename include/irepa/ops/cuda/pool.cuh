#pragma once
// CUDA backend of ops/cpu/pool.hpp (CudaContext overloads; nvcc only).

#include "irepa/ops/cpu/pool.hpp"
#include "irepa/ops/cuda/common.cuh"

namespace irepa::ops {

namespace cuda_detail {
/// One thread per output element of y [B, h, w, C].
template <class T>
__global__ void max_pool_channels_last_kernel(const T* x, T* y, std::int64_t H, std::int64_t W, std::int64_t C, std::int64_t h,
                                              std::int64_t w, std::int64_t s, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t c = i % C, j = (i / C) % w, r = (i / (C * w)) % h, b = i / (C * w * h);
    const T* p = x + ((b * H + r * s) * W + j * s) * C + c;
    T m = p[0];
    for (std::int64_t di = 0; di < s; ++di)
      for (std::int64_t dj = 0; dj < s; ++dj) m = max(m, p[(di * W + dj) * C]);
    y[i] = m;
  }
}
}  // namespace cuda_detail

/// x [B, H, W, C] -> [B, H / s, W / s, C], the max over each s x s block.
template <class T>
Tensor<T, Cuda> max_pool_channels_last(const CudaContext& ctx, ConstView<T, Cuda> x, std::int64_t s) {
  detail::check_max_pool(x.shape(), s);
  check_contiguous("max_pool_channels_last", x);
  const std::int64_t B = x.size(0), H = x.size(1), W = x.size(2), C = x.size(3), h = H / s, w = W / s;
  Tensor<T, Cuda> y(Shape{B, h, w, C});
  if (y.numel() == 0) return y;
  cuda_detail::max_pool_channels_last_kernel<T><<<cuda_detail::blocks_for(y.numel()), cuda_detail::kThreads, 0, ctx.stream()>>>(
      x.data(), y.data(), H, W, C, h, w, s, y.numel());
  CudaContext::check_launch("max_pool_channels_last");
  return y;
}

namespace cuda_detail {
/// One thread per output element of y [B, Ho, Wo, C]: the max or in-image mean of its window.
template <class T>
__global__ void pool2d_kernel(const T* x, T* y, std::int64_t H, std::int64_t W, std::int64_t C, std::int64_t Ho, std::int64_t Wo,
                              Pool2dSpec s, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t c = i % C, ow = (i / C) % Wo, oh = (i / (C * Wo)) % Ho, b = i / (C * Wo * Ho);
    const std::int64_t h0 = max(std::int64_t{0}, oh * s.stride - s.pad), h1 = min(H, oh * s.stride - s.pad + s.kernel);
    const std::int64_t w0 = max(std::int64_t{0}, ow * s.stride - s.pad), w1 = min(W, ow * s.stride - s.pad + s.kernel);
    T acc = x[((b * H + h0) * W + w0) * C + c];
    for (std::int64_t h = h0; h < h1; ++h)
      for (std::int64_t w = w0; w < w1; ++w) {
        if (h == h0 && w == w0) continue;
        const T v = x[((b * H + h) * W + w) * C + c];
        acc = s.mode == PoolMode::Max ? (v > acc ? v : acc) : acc + v;
      }
    y[i] = s.mode == PoolMode::Max ? acc : acc / static_cast<T>((h1 - h0) * (w1 - w0));
  }
}
}  // namespace cuda_detail

/// y [B, Ho, Wo, C] = the max or in-image mean of each window of x [B, H, W, C] (as the CPU's).
template <class T>
void pool2d_forward(const CudaContext& ctx, In<T, Cuda> x, const Pool2dSpec& s, TensorView<T, Cuda> y) {
  detail::check_pool2d(x.shape(), s, y.shape());
  check_contiguous("pool2d_forward", x, y);
  if (y.numel() == 0) return;
  cuda_detail::pool2d_kernel<T><<<cuda_detail::blocks_for(y.numel()), cuda_detail::kThreads, 0, ctx.stream()>>>(
      x.data(), y.data(), x.size(1), x.size(2), x.size(3), y.size(1), y.size(2), s, y.numel());
  CudaContext::check_launch("pool2d_forward");
}

}  // namespace irepa::ops
