#pragma once
// Same-padded k x k convolution (stride 1) on the GPU, channels-last (CudaContext overloads of
// ops/cpu/conv.hpp's conv2d_same_*: iREPA's 3x3 projector): im2col in the CPU path's column
// order (ki, kj, c), one cuBLAS product with the weight as taps [Cout, k*k*Cin], and for the
// backward the gather col2im (no atomics) and the taps added back into [Cout, Cin, k, k].
// Also the patch embedding (patchify, kernel = stride = p): patches gathered into columns in
// the CPU path's order (c, i, j), then the linear op with the weight viewed as [D, C p p].
// The general forward conv (conv2d_forward: stride and padding per side, the SD-VAE's) builds
// its columns a block of output pixels at a time and runs each block through the linear op
// with the weight as taps (a 1x1 conv is the linear op on the map itself).

#include "irepa/ops/cpu/conv.hpp"
#include "irepa/ops/cuda/gemm.cuh"
#include "irepa/ops/cuda/linear.cuh"

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

/// Image [B, C, H, W] <-> columns [B*T, C*p*p] (order (c, i, j)); every pixel is in one patch,
/// so both directions are plain gathers. One thread per column element.
template <class T, bool Scatter>
__global__ void patch_columns_kernel(T* img, T* col, std::int64_t B, std::int64_t C, std::int64_t H, std::int64_t W,
                                     std::int64_t p) {
  const std::int64_t gh = H / p, gw = W / p, K = C * p * p, total = B * gh * gw * K;
  for (std::int64_t e = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t r = e / K, kk = e % K, c = kk / (p * p), i = (kk / p) % p, j = kk % p;
    const std::int64_t b = r / (gh * gw), ph = (r / gw) % gh, pw = r % gw;
    const std::int64_t px = ((b * C + c) * H + ph * p + i) * W + pw * p + j;
    if constexpr (Scatter)
      img[px] = col[e];
    else
      col[e] = img[px];
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
    cuda_detail::gemm_row_major<T>(ctx, N, Co, 1, ones.data(), false, b.data(), false, y.data(), T(1), T(1), "conv2d_same_forward: bias",
                                   /*exact=*/true);
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
                                   "conv2d_same_backward: db", /*exact=*/true);  // 1^T dy
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

/// Patch embedding: y[b, t, :] = W patch(b, t) + b.  x [B, C, H, W], w [D, C, p, p], y [B, (H/p)(W/p), D].
template <class T>
void patchify_forward(const CudaContext& ctx, In<T, Cuda> x, In<T, Cuda> w, In<T, Cuda> b, TensorView<T, Cuda> y) {
  detail::check_patchify("patchify_forward", x.shape(), w.shape(), b.numel() > 0, b.shape(), y.shape());
  check_contiguous("patchify_forward", x, w, b, y);
  const std::int64_t B = x.size(0), C = x.size(1), p = w.size(2), D = w.size(0), N = y.size(0) * y.size(1), K = C * p * p;
  if (N == 0) return;
  Tensor<T, Cuda> col(Shape{N, K});
  cuda_detail::patch_columns_kernel<T, false><<<cuda_detail::blocks_for(N * K), cuda_detail::kThreads, 0, ctx.stream()>>>(
      const_cast<T*>(x.data()), col.data(), B, C, x.size(2), x.size(3), p);
  CudaContext::check_launch("patchify_forward: columns");
  linear_forward<T>(ctx, col.cview(), w.reshape(Shape{D, K}), b, y.reshape(Shape{N, D}));
}

/// dx assigned (skipped when empty); dw, db accumulated.
template <class T>
void patchify_backward(const CudaContext& ctx, In<T, Cuda> x, In<T, Cuda> w, In<T, Cuda> dy, TensorView<T, Cuda> dx,
                       TensorView<T, Cuda> dw, TensorView<T, Cuda> db) {
  detail::check_patchify("patchify_backward", x.shape(), w.shape(), db.numel() > 0, db.shape(), dy.shape());
  check_shape("patchify_backward", "dw", dw.shape(), w.shape());
  check_contiguous("patchify_backward", x, w, dy, dx, dw, db);
  const std::int64_t B = x.size(0), C = x.size(1), p = w.size(2), D = w.size(0), N = dy.size(0) * dy.size(1), K = C * p * p;
  if (N == 0) return;
  if (dx.numel()) check_shape("patchify_backward", "dx", dx.shape(), x.shape());
  Tensor<T, Cuda> col(Shape{N, K}), dcol(Shape{dx.numel() ? N : 0, K});
  cuda_detail::patch_columns_kernel<T, false><<<cuda_detail::blocks_for(N * K), cuda_detail::kThreads, 0, ctx.stream()>>>(
      const_cast<T*>(x.data()), col.data(), B, C, x.size(2), x.size(3), p);
  CudaContext::check_launch("patchify_backward: columns");
  linear_backward<T>(ctx, col.cview(), w.reshape(Shape{D, K}), dy.reshape(Shape{N, D}), dcol.view(), dw.reshape(Shape{D, K}), db);
  if (dx.numel()) {
    cuda_detail::patch_columns_kernel<T, true><<<cuda_detail::blocks_for(N * K), cuda_detail::kThreads, 0, ctx.stream()>>>(
        dx.data(), dcol.data(), B, C, x.size(2), x.size(3), p);
    CudaContext::check_launch("patchify_backward: scatter");
  }
}

namespace cuda_detail {
/// One thread per column entry of cols [B, Gh Gw, C k k].
template <class T>
__global__ void im2col_kernel(const T* x, std::int64_t C, std::int64_t H, std::int64_t W, std::int64_t k, std::int64_t stride,
                              std::int64_t pad, std::int64_t gw, std::int64_t P, T* cols, std::int64_t n) {
  const std::int64_t K = C * k * k;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t e = i % K, p = i / K, b = p / P, r = (p % P) / gw, q = (p % P) % gw;
    const std::int64_t c = e / (k * k), di = (e / k) % k, dj = e % k;
    const std::int64_t y = r * stride - pad + di, xx = q * stride - pad + dj;
    cols[i] = y >= 0 && y < H && xx >= 0 && xx < W ? x[((b * C + c) * H + y) * W + xx] : T(0);
  }
}
}  // namespace cuda_detail

/// cols [B, Gh Gw, C k k] = the strided, zero-padded k x k patches of x [B, C, H, W].
template <class T>
void im2col(const CudaContext& ctx, In<T, Cuda> x, std::int64_t k, std::int64_t stride, std::int64_t pad, TensorView<T, Cuda> cols) {
  detail::check_im2col(x.shape(), k, stride, pad, cols.shape());
  check_contiguous("im2col", x, cols);
  if (cols.numel() == 0) return;
  cuda_detail::im2col_kernel<T><<<cuda_detail::blocks_for(cols.numel()), cuda_detail::kThreads, 0, ctx.stream()>>>(
      x.data(), x.size(1), x.size(2), x.size(3), k, stride, pad, detail::conv_out_size(x.size(3), k, stride, pad), cols.size(1),
      cols.data(), cols.numel());
  CudaContext::check_launch("im2col");
}

namespace cuda_detail {
/// Rows [r0, r0 + n) of a general conv's columns, tap-major (ki, kj, c): one thread per entry.
template <class T>
__global__ void im2col_rows_kernel(const T* x, std::int64_t H, std::int64_t W, std::int64_t C, std::int64_t kh, std::int64_t kw,
                                   Conv2dSpec s, std::int64_t Ho, std::int64_t Wo, std::int64_t r0, std::int64_t n, T* col) {
  const std::int64_t rowlen = kh * kw * C, total = n * rowlen;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t r = r0 + i / rowlen, e = i % rowlen, tap = e / C, c = e % C;
    const std::int64_t b = r / (Ho * Wo), oh = (r / Wo) % Ho, ow = r % Wo;
    const std::int64_t hh = oh * s.stride - s.pad_top + tap / kw, ww = ow * s.stride - s.pad_left + tap % kw;
    col[i] = hh < 0 || hh >= H || ww < 0 || ww >= W ? T(0) : x[((b * H + hh) * W + ww) * C + c];
  }
}
}  // namespace cuda_detail

/// y = conv(x, w) + b with the spec's stride and padding.  x [B, H, W, Cin], w [Cout, Cin, kh, kw],
/// b [Cout] or empty, y [B, Ho, Wo, Cout]. Forward only.
template <class T>
void conv2d_forward(const CudaContext& ctx, In<T, Cuda> x, In<T, Cuda> w, In<T, Cuda> b, const Conv2dSpec& spec, TensorView<T, Cuda> y) {
  detail::check_conv2d("conv2d_forward", x.shape(), w.shape(), b.numel() > 0, b.shape(), spec, y.shape());
  check_contiguous("conv2d_forward", x, w, b, y);
  const std::int64_t B = x.size(0), H = x.size(1), W = x.size(2), Ci = x.size(3), Co = w.size(0), kh = w.size(2), kw = w.size(3);
  const std::int64_t Ho = y.size(1), Wo = y.size(2), N = B * Ho * Wo, K = kh * kw * Ci;
  if (N == 0) return;
  const bool pointwise = kh == 1 && kw == 1 && spec.stride == 1 && spec.pad_top == 0 && spec.pad_left == 0 && Ho == H && Wo == W;
  if (pointwise) {
    linear_forward<T>(ctx, x.reshape(Shape{N, Ci}), w.reshape(Shape{Co, Ci}), b, y.reshape(Shape{N, Co}));
    return;
  }
  Tensor<T, Cuda> wt(Shape{Co, K});
  cuda_detail::taps_kernel<T, false><<<cuda_detail::blocks_for(Co * K), cuda_detail::kThreads, 0, ctx.stream()>>>(
      const_cast<T*>(w.data()), wt.data(), Co, Ci, static_cast<int>(kh * kw));
  CudaContext::check_launch("conv2d_forward: taps");
  // Blocks of about 64M column entries (256 MB in float): one product per block.
  const std::int64_t rows = std::max<std::int64_t>(1, std::min(N, (std::int64_t{1} << 26) / K));
  Tensor<T, Cuda> col(Shape{rows, K});
  for (std::int64_t r0 = 0; r0 < N; r0 += rows) {
    const std::int64_t n = std::min(rows, N - r0);
    cuda_detail::im2col_rows_kernel<T><<<cuda_detail::blocks_for(n * K), cuda_detail::kThreads, 0, ctx.stream()>>>(
        x.data(), H, W, Ci, kh, kw, spec, Ho, Wo, r0, n, col.data());
    CudaContext::check_launch("conv2d_forward: im2col");
    linear_forward<T>(ctx, ConstView<T, Cuda>(col.data(), Shape{n, K}), wt.cview(), b, TensorView<T, Cuda>(y.data() + r0 * Co, Shape{n, Co}));
  }
}

}  // namespace irepa::ops
