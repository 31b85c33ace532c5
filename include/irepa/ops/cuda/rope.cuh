#pragma once
// Rotary position embedding on the GPU (CudaContext overloads of ops/cpu/rope.hpp): x, y
// [B, T, H, hd], tables cos, sin [T, hd/2]; one thread per rotated pair.

#include "irepa/ops/cpu/rope.hpp"
#include "irepa/ops/cuda/common.cuh"

namespace irepa::ops {

namespace cuda_detail {

template <class T>
__global__ void rope_kernel(const T* x, const T* cos, const T* sin, T* y, std::int64_t N, std::int64_t H, std::int64_t hd,
                            bool interleaved, bool inverse, std::int64_t total_pairs) {
  const std::int64_t pairs = hd / 2;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < total_pairs;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t p = i % pairs, row = i / pairs, t = (row / H) % N;
    const std::int64_t ia = row * hd + (interleaved ? 2 * p : p), ib = row * hd + (interleaved ? 2 * p + 1 : p + pairs);
    const T c = cos[t * pairs + p], s = inverse ? -sin[t * pairs + p] : sin[t * pairs + p];
    const T a = x[ia], b = x[ib];  // read both before writing: y may be x
    y[ia] = a * c - b * s;
    y[ib] = b * c + a * s;
  }
}

template <class T>
void rope_apply(const CudaContext& ctx, std::string_view op, ConstView<T, Cuda> x, ConstView<T, Cuda> cos, ConstView<T, Cuda> sin,
                RopeMode mode, TensorView<T, Cuda> y, bool inverse) {
  IREPA_CHECK(x.rank() == 4, "{}: input has shape {}, expected [B, T, H, hd]", op, x.shape().str());
  detail::check_rope_table(op, cos.shape(), sin.shape(), x.size(1), x.size(3));
  check_shape(op, "output", y.shape(), x.shape());
  check_contiguous(op, x, cos, sin, y);
  const std::int64_t total = x.numel() / 2;
  if (total == 0) return;
  rope_kernel<T><<<blocks_for(total), kThreads, 0, ctx.stream()>>>(x.data(), cos.data(), sin.data(), y.data(), x.size(1), x.size(2),
                                                                   x.size(3), mode == RopeMode::Interleaved, inverse, total);
  CudaContext::check_launch(op);
}

}  // namespace cuda_detail

/// y = rope(x).  x, y [B, T, H, hd] (y may be x); cos, sin [T, hd/2].
template <class T>
void rope_forward(const CudaContext& ctx, In<T, Cuda> x, In<T, Cuda> cos, In<T, Cuda> sin, RopeMode mode, TensorView<T, Cuda> y) {
  cuda_detail::rope_apply<T>(ctx, "rope_forward", x, cos, sin, mode, y, false);
}

/// dx = rope^-1(dy). dx assigned (may be dy).
template <class T>
void rope_backward(const CudaContext& ctx, In<T, Cuda> cos, In<T, Cuda> sin, RopeMode mode, In<T, Cuda> dy, TensorView<T, Cuda> dx) {
  cuda_detail::rope_apply<T>(ctx, "rope_backward", dy, cos, sin, mode, dx, true);
}

}  // namespace irepa::ops
