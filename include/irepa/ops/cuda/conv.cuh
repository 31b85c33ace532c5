#pragma once
// Same-padded k x k convolution (stride 1) on the GPU, channels-last (CudaContext overloads of
// ops/cpu/conv.hpp's conv2d_same_*: iREPA's 3x3 projector): im2col in the CPU path's column
// order (ki, kj, c), one cuBLAS product with the weight as taps [Cout, k*k*Cin], and for the
// backward the gather col2im (no atomics) and the taps added back into [Cout, Cin, k, k].

#include "irepa/ops/cpu/conv.hpp"
#include "irepa/ops/cuda/gemm.cuh"

namespace irepa::ops {

namespace cuda_detail {

template <class T>
__global__ void im2col_same_kernel(const T* x, std::int64_t B, std::int64_t H, std::int64_t W, std::int64_t C, int k, T* col) {
  const int p = k / 2;
  const std::int64_t rowlen = static_cast<std::int64_t>(k) * k * C, total = B * H * W * rowlen;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t r = i / rowlen, e = i % rowlen, tap = e / C, c = e % C;
    const std::int64_t b = r / (H * W), h = (r / W) % H, w = r % W;
    const std::int64_t hh = h + tap / k - p, ww = w + tap % k - p;
    col[i] = hh < 0 || hh >= H || ww < 0 || ww >= W ? T(0) : x[((b * H + hh) * W + ww) * C + c];
  }
}

/// dx [B, H, W, C] (assigned) = the sum of the column entries that read each pixel.
template <class T>
__global__ void col2im_same_kernel(const T* col, std::int64_t B, std::int64_t H, std::int64_t W, std::int64_t C, int k, T* dx) {
  const int p = k / 2;
  const std::int64_t rowlen = static_cast<std::int64_t>(k) * k * C, total = B * H * W * C;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t r = i / C, c = i % C, b = r / (H * W), h = (r / W) % H, w = r % W;
    T s = 0;
    for (int a = 0; a < k; ++a)
      for (int j = 0; j < k; ++j) {
        const std::int64_t ho = h - a + p, wo = w - j + p;
        if (ho < 0 || ho >= H || wo < 0 || wo >= W) continue;
        s += col[((b * H + ho) * W + wo) * rowlen + (static_cast<std::int64_t>(a) * k + j) * C + c];
      }
    dx[i] = s;
  }
}

/// taps [Co, k*k, Ci] from w [Co, Ci, k*k] (Add = false), or w += taps (Add = true).
template <class T, bool Add>
__global__ void taps_kernel(T* w, T* taps, std::int64_t Co, std::int64_t Ci, int kk) {
  const std::int64_t total = Co * Ci * kk;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t o = i / (Ci * kk), c = (i / kk) % Ci, t = i % kk;  // i indexes w
    const std::int64_t ti = (o * kk + t) * Ci + c;
    if constexpr (Add) w[i] += taps[ti];
    else taps[ti] = w[i];
  }
}

}  // namespace cuda_detail

/// y = conv(x, w) + b, same padding, stride 1.  x [B, H, W, Cin], w [Cout, Cin, k, k], b [Cout] or
/// empty, y [B, H, W, Cout].
template <class T>
void conv2d_same_forward(const CudaContext& ctx, In<T, Cuda> x, In<T, Cuda> w, In<T, Cuda> b, TensorView<T, Cuda> y) {
  detail::check_conv_same("conv2d_same_forward", x.shape(), w.shape(), b.numel() > 0, b.shape(), y.shape());
  check_contiguous("conv2d_same_forward", x, w, b, y);
  const std::int64_t B = x.size(0), H = x.size(1), W = x.size(2), Ci = x.size(3), Co = w.size(0);
  const int k = static_cast<int>(w.size(2));
  const std::int64_t K = static_cast<std::int64_t>(k) * k * Ci, N = B * H * W;
  if (N == 0) return;
  Tensor<T, Cuda> col(Shape{N, K}), wt(Shape{Co, K});
  cuda_detail::im2col_same_kernel<T><<<cuda_detail::blocks_for(N * K), cuda_detail::kThreads, 0, ctx.stream()>>>(x.data(), B, H, W,
                                                                                                                 Ci, k, col.data());
  CudaContext::check_launch("conv2d_same_forward: im2col");
  cuda_detail::taps_kernel<T, false><<<cuda_detail::blocks_for(Co * K), cuda_detail::kThreads, 0, ctx.stream()>>>(
      const_cast<T*>(w.data()), wt.data(), Co, Ci, k * k);
  CudaContext::check_launch("conv2d_same_forward: taps");
  cuda_detail::gemm_row_major<T>(ctx, N, Co, K, col.data(), false, wt.data(), true, y.data(), T(1), T(0), "conv2d_same_forward: gemm");
  if (b.numel() > 0) {
    Tensor<T, Cuda> ones(Shape{N, 1});
    fill<T>(ctx, ones.view(), T(1));
    // y += 1 b^T: the bias as a rank-1 product keeps to cuBLAS, as the weight product does.
    cuda_detail::gemm_row_major<T>(ctx, N, Co, 1, ones.data(), false, b.data(), false, y.data(), T(1), T(1), "conv2d_same_forward: bias");
  }
}

/// dx assigned (skipped when empty); dw += ...; db += ... (when non-empty).
template <class T>
void conv2d_same_backward(const CudaContext& ctx, In<T, Cuda> x, In<T, Cuda> w, In<T, Cuda> dy, TensorView<T, Cuda> dx,
                          TensorView<T, Cuda> dw, TensorView<T, Cuda> db) {
  detail::check_conv_same("conv2d_same_backward", x.shape(), w.shape(), db.numel() > 0, db.shape(), dy.shape());
  check_shape("conv2d_same_backward", "dw", dw.shape(), w.shape());
  check_contiguous("conv2d_same_backward", x, w, dy, dx, dw, db);
  const std::int64_t B = x.size(0), H = x.size(1), W = x.size(2), Ci = x.size(3), Co = w.size(0);
  const int k = static_cast<int>(w.size(2));
  const std::int64_t K = static_cast<std::int64_t>(k) * k * Ci, N = B * H * W;
  if (N == 0) return;
  Tensor<T, Cuda> col(Shape{N, K}), taps(Shape{Co, K});
  cuda_detail::im2col_same_kernel<T><<<cuda_detail::blocks_for(N * K), cuda_detail::kThreads, 0, ctx.stream()>>>(x.data(), B, H, W,
                                                                                                                 Ci, k, col.data());
  CudaContext::check_launch("conv2d_same_backward: im2col");
  cuda_detail::gemm_row_major<T>(ctx, Co, K, N, dy.data(), true, col.data(), false, taps.data(), T(1), T(0),
                                 "conv2d_same_backward: dw gemm");  // dy^T col
  cuda_detail::taps_kernel<T, true><<<cuda_detail::blocks_for(Co * K), cuda_detail::kThreads, 0, ctx.stream()>>>(dw.data(), taps.data(),
                                                                                                                Co, Ci, k * k);
  CudaContext::check_launch("conv2d_same_backward: taps into dw");
  if (db.numel() > 0) {
    Tensor<T, Cuda> ones(Shape{1, N});
    fill<T>(ctx, ones.view(), T(1));
    cuda_detail::gemm_row_major<T>(ctx, 1, Co, N, ones.data(), false, dy.data(), false, db.data(), T(1), T(1),
                                   "conv2d_same_backward: db");  // 1^T dy
  }
  if (dx.numel() > 0) {
    check_shape("conv2d_same_backward", "dx", dx.shape(), x.shape());
    cuda_detail::taps_kernel<T, false><<<cuda_detail::blocks_for(Co * K), cuda_detail::kThreads, 0, ctx.stream()>>>(
        const_cast<T*>(w.data()), taps.data(), Co, Ci, k * k);
    CudaContext::check_launch("conv2d_same_backward: taps");
    cuda_detail::gemm_row_major<T>(ctx, N, K, Co, dy.data(), false, taps.data(), false, col.data(), T(1), T(0),
                                   "conv2d_same_backward: dcol gemm");  // dy taps
    cuda_detail::col2im_same_kernel<T><<<cuda_detail::blocks_for(N * Ci), cuda_detail::kThreads, 0, ctx.stream()>>>(
        col.data(), B, H, W, Ci, k, dx.data());
    CudaContext::check_launch("conv2d_same_backward: col2im");
  }
}

}  // namespace irepa::ops
