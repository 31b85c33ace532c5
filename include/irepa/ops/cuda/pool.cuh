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

}  // namespace irepa::ops
