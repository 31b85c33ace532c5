#pragma once
// CUDA backend of ops/resize.hpp (CudaContext overloads; nvcc only): F.interpolate's resize with
// the CPU's taps (built on the host, uploaded once per call) and the same order of sums in
// double (the width pass into a double buffer, then the height pass), and the per-channel
// normalisation of encoder inputs.

#include "irepa/ops/cuda/common.cuh"
#include "irepa/ops/resize.hpp"

namespace irepa::ops {

namespace cuda_detail {

/// rows[p, r, o] = sum_k w[o, k] x[p, r, idx[o, k]]: one thread per output of the width pass.
template <class T>
__global__ void resize_width_kernel(const T* x, double* rows, const std::int64_t* idx, const double* w, std::int64_t taps,
                                    std::int64_t W, std::int64_t out_w, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t o = i % out_w, pr = i / out_w;  // pr = p * H + r
    double s = 0;
    for (std::int64_t k = 0; k < taps; ++k) s += w[o * taps + k] * static_cast<double>(x[pr * W + idx[o * taps + k]]);
    rows[i] = s;
  }
}

/// y[p, o, c] = sum_k w[o, k] rows[p, idx[o, k], c].
template <class T>
__global__ void resize_height_kernel(const double* rows, T* y, const std::int64_t* idx, const double* w, std::int64_t taps,
                                     std::int64_t H, std::int64_t out_h, std::int64_t out_w, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t c = i % out_w, o = (i / out_w) % out_h, p = i / (out_w * out_h);
    double s = 0;
    for (std::int64_t k = 0; k < taps; ++k) s += w[o * taps + k] * rows[(p * H + idx[o * taps + k]) * out_w + c];
    y[i] = static_cast<T>(s);
  }
}

template <class T>
__global__ void normalize_channels_kernel(const T* x, T* y, ChannelNorm cn, std::int64_t C, std::int64_t hw, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const auto c = static_cast<std::size_t>((i / hw) % C);
    y[i] = static_cast<T>((static_cast<double>(x[i]) / cn.divisor - cn.mean[c]) / cn.std[c]);
  }
}

/// The taps of one axis on the device: indices [out, width] and weights [out, width].
struct DeviceTaps {
  Tensor<std::int64_t, Cuda> index;
  Tensor<double, Cuda> weight;
  std::int64_t width = 0;
};
inline DeviceTaps upload_taps(const CudaContext& ctx, const detail::AxisTaps& t) {
  const auto n = static_cast<std::int64_t>(t.index.size());
  return {to_device(ctx, ConstView<std::int64_t>(t.index.data(), Shape{n})), to_device(ctx, ConstView<double>(t.weight.data(), Shape{n})),
          t.width};
}

}  // namespace cuda_detail

/// x [N, C, H, W] -> [N, C, out_h, out_w] on the GPU, as the CPU overload.
template <class T>
Tensor<T, Cuda> interpolate(const CudaContext& ctx, ConstView<T, Cuda> x, std::int64_t out_h, std::int64_t out_w, ResizeMode mode,
                            bool antialias = false) {
  IREPA_CHECK(x.rank() == 4 && x.is_contiguous() && out_h > 0 && out_w > 0,
              "interpolate: input {} to {}x{}: expected a contiguous [N, C, H, W] and a positive size", x.shape().str(), out_h, out_w);
  const std::int64_t P = x.size(0) * x.size(1), H = x.size(2), W = x.size(3);
  // The taps stay alive in this frame until the kernels that read them are queued behind the
  // uploads on the same stream; the tensors' memory returns to the cache in stream order.
  const auto th = cuda_detail::upload_taps(ctx, detail::axis_taps(H, out_h, mode, antialias));
  const auto tw = cuda_detail::upload_taps(ctx, detail::axis_taps(W, out_w, mode, antialias));
  Tensor<double, Cuda> rows(Shape{P, H, out_w});
  Tensor<T, Cuda> y(Shape{x.size(0), x.size(1), out_h, out_w});
  if (P == 0) return y;
  cuda_detail::resize_width_kernel<T><<<cuda_detail::blocks_for(rows.numel()), cuda_detail::kThreads, 0, ctx.stream()>>>(
      x.data(), rows.data(), tw.index.data(), tw.weight.data(), tw.width, W, out_w, rows.numel());
  CudaContext::check_launch("interpolate: width pass");
  cuda_detail::resize_height_kernel<T><<<cuda_detail::blocks_for(y.numel()), cuda_detail::kThreads, 0, ctx.stream()>>>(
      rows.data(), y.data(), th.index.data(), th.weight.data(), th.width, H, out_h, out_w, y.numel());
  CudaContext::check_launch("interpolate: height pass");
  return y;
}

/// x, y [N, C, H, W]; y = (x / divisor - mean[c]) / std[c] in double; y may be x.
template <class T>
void normalize_channels(const CudaContext& ctx, In<T, Cuda> x, const ChannelNorm& n, TensorView<T, Cuda> y) {
  detail::check_channel_norm("normalize_channels", x.shape(), y.shape());
  check_contiguous("normalize_channels", x, y);
  if (x.numel() == 0) return;
  cuda_detail::normalize_channels_kernel<T><<<cuda_detail::blocks_for(x.numel()), cuda_detail::kThreads, 0, ctx.stream()>>>(
      x.data(), y.data(), n, x.size(1), x.size(2) * x.size(3), x.numel());
  CudaContext::check_launch("normalize_channels");
}

}  // namespace irepa::ops
