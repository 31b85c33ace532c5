#pragma once
// CUDA backend of ops/cpu/tensor_ops.hpp (CudaContext overloads; nvcc only): copies, sums,
// adaLN's chunking, a broadcast row add, unpatchify and JiT's in-context tokens, all on the
// context's stream.

#include "irepa/ops/cpu/tensor_ops.hpp"
#include "irepa/ops/cuda/common.cuh"

namespace irepa::ops {

namespace cuda_detail {

template <class T>
__global__ void add_into_kernel(T* acc, const T* x, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    acc[i] += x[i];
}

template <class T>
__global__ void scale_kernel(T* x, T s, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    x[i] *= s;
}

template <class T>
__global__ void add_broadcast_kernel(T* acc, const T* row, std::int64_t R, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    acc[i] += row[i % R];
}

/// One thread per image element; Inverse gathers tokens from the image.
template <class T, bool Inverse>
__global__ void unpatchify_kernel(const T* src, T* dst, std::int64_t B, std::int64_t C, std::int64_t p, std::int64_t gh,
                                  std::int64_t gw) {
  const std::int64_t H = gh * p, W = gw * p, n = B * C * H * W;
  for (std::int64_t px = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; px < n;
       px += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t xw = px % W, yh = (px / W) % H, ch = (px / (W * H)) % C, b = px / (W * H * C);
    const std::int64_t r = yh / p, i = yh % p, q = xw / p, j = xw % p;
    const std::int64_t tk = ((b * gh + r) * gw + q) * (p * p * C) + (i * p + j) * C + ch;
    if constexpr (Inverse)
      dst[tk] = src[px];
    else
      dst[px] = src[tk];
  }
}

/// Copies `rows` runs of `width` elements between pitched layouts on ctx's stream.
template <class T>
void copy_2d(const CudaContext& ctx, T* dst, std::int64_t dst_pitch, const T* src, std::int64_t src_pitch, std::int64_t width,
             std::int64_t rows, std::string_view op) {
  if (rows == 0 || width == 0) return;
  CudaContext::check(cudaMemcpy2DAsync(dst, sizeof(T) * static_cast<std::size_t>(dst_pitch), src,
                                       sizeof(T) * static_cast<std::size_t>(src_pitch), sizeof(T) * static_cast<std::size_t>(width),
                                       static_cast<std::size_t>(rows), cudaMemcpyDeviceToDevice, ctx.stream()),
                     op);
}

/// The in-context rows: out[b, l] = emb[b] + posemb[l] for l < L (row pitch (L + N) D).
template <class T>
__global__ void context_rows_kernel(const T* emb, const T* posemb, T* out, std::int64_t B, std::int64_t L, std::int64_t N,
                                    std::int64_t D) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < B * L * D;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t d = i % D, l = (i / D) % L, b = i / (L * D);
    out[(b * (L + N) + l) * D + d] = emb[b * D + d] + posemb[l * D + d];
  }
}

/// dposemb[l, d] += sum over images in order; one thread per (l, d).
template <class T>
__global__ void context_posemb_grad_kernel(const T* dout, T* dposemb, std::int64_t B, std::int64_t L, std::int64_t N, std::int64_t D) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < L * D;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    T s = dposemb[i];
    for (std::int64_t b = 0; b < B; ++b) s += dout[b * (L + N) * D + i];
    dposemb[i] = s;
  }
}

/// demb[b, d] += sum over the L in-context rows in order; one thread per (b, d).
template <class T>
__global__ void context_emb_grad_kernel(const T* dout, T* demb, std::int64_t B, std::int64_t L, std::int64_t N, std::int64_t D) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < B * D;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t b = i / D, d = i % D;
    T s = demb[i];
    for (std::int64_t l = 0; l < L; ++l) s += dout[(b * (L + N) + l) * D + d];
    demb[i] = s;
  }
}

/// dst[b, start + n] += src[b, n] over [B, N, D] (dst row pitch M D).
template <class T>
__global__ void add_slice_tokens_kernel(T* dst, const T* src, std::int64_t M, std::int64_t start, std::int64_t N, std::int64_t ND,
                                        std::int64_t total) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t b = i / ND, r = i % ND, D = ND / N;
    dst[(b * M + start) * D + r] += src[i];
  }
}

/// x[i] = x[i] w[i % D] + b[i % D] (a LayerNorm's affine part).
template <class T>
__global__ void scale_shift_rows_kernel(T* x, const T* w, const T* b, std::int64_t D, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    x[i] = x[i] * w[i % D] + b[i % D];
}

/// acc[i] += gamma[i % D] x[i] (gamma null: acc[i] += x[i]).
template <class T>
__global__ void add_scaled_rows_kernel(T* acc, const T* gamma, const T* x, std::int64_t D, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    acc[i] += (gamma ? gamma[i % D] : T(1)) * x[i];
}

/// out[b, t, d] = a x[b, 0, d] + keep x[b, start + t, d].
template <class T>
__global__ void blend_first_token_kernel(const T* x, T* out, std::int64_t M, std::int64_t start, std::int64_t N, std::int64_t D, T a,
                                         T keep, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t d = i % D, t = (i / D) % N, b = i / (D * N);
    out[i] = x[b * M * D + d] * a + x[(b * M + start + t) * D + d] * keep;
  }
}

}  // namespace cuda_detail

/// dst = src (same shape, contiguous).
template <class T>
void copy(const CudaContext& ctx, In<T, Cuda> src, TensorView<T, Cuda> dst) {
  check_shape("copy", "destination", dst.shape(), src.shape());
  check_contiguous("copy", src, dst);
  if (src.numel())
    CudaContext::check(cudaMemcpyAsync(dst.data(), src.data(), sizeof(T) * static_cast<std::size_t>(src.numel()),
                                       cudaMemcpyDeviceToDevice, ctx.stream()),
                       "copy: cudaMemcpyAsync");
}

/// acc += x, elementwise (same shapes).
template <class T>
void add_into(const CudaContext& ctx, TensorView<T, Cuda> acc, In<T, Cuda> x) {
  check_shape("add_into", "addend", x.shape(), acc.shape());
  check_contiguous("add_into", acc, x);
  if (acc.numel() == 0) return;
  cuda_detail::add_into_kernel<T><<<cuda_detail::blocks_for(acc.numel()), cuda_detail::kThreads, 0, ctx.stream()>>>(
      acc.data(), x.data(), acc.numel());
  CudaContext::check_launch("add_into");
}

/// x *= s, elementwise.
template <class T>
void scale(const CudaContext& ctx, TensorView<T, Cuda> x, std::type_identity_t<T> s) {
  check_contiguous("scale", x);
  if (x.numel() == 0) return;
  cuda_detail::scale_kernel<T><<<cuda_detail::blocks_for(x.numel()), cuda_detail::kThreads, 0, ctx.stream()>>>(x.data(), s, x.numel());
  CudaContext::check_launch("scale");
}

/// acc [n, ...] += row [...] for each of the n leading slices.
template <class T>
void add_broadcast(const CudaContext& ctx, TensorView<T, Cuda> acc, In<T, Cuda> row) {
  check_contiguous("add_broadcast", acc, row);
  const std::int64_t R = row.numel();
  IREPA_CHECK(R > 0 && acc.numel() % R == 0, "add_broadcast: {} values do not repeat a row of {}", acc.numel(), R);
  cuda_detail::add_broadcast_kernel<T><<<cuda_detail::blocks_for(acc.numel()), cuda_detail::kThreads, 0, ctx.stream()>>>(
      acc.data(), row.data(), R, acc.numel());
  CudaContext::check_launch("add_broadcast");
}

/// m [B, k D] -> out [k, B, D] (adaLN's chunk, each chunk contiguous): one pitched copy per chunk.
template <class T>
void split_chunks(const CudaContext& ctx, In<T, Cuda> m, TensorView<T, Cuda> out) {
  detail::check_chunks("split_chunks", m.shape(), out.shape());
  check_contiguous("split_chunks", m, out);
  const std::int64_t k = out.size(0), B = out.size(1), D = out.size(2);
  for (std::int64_t j = 0; j < k; ++j)
    cuda_detail::copy_2d(ctx, out.data() + j * B * D, D, m.data() + j * D, k * D, D, B, "split_chunks: cudaMemcpy2DAsync");
}

/// c [k, B, D] -> out [B, k D], the inverse of split_chunks.
template <class T>
void merge_chunks(const CudaContext& ctx, In<T, Cuda> c, TensorView<T, Cuda> out) {
  detail::check_chunks("merge_chunks", out.shape(), c.shape());
  check_contiguous("merge_chunks", c, out);
  const std::int64_t k = c.size(0), B = c.size(1), D = c.size(2);
  for (std::int64_t j = 0; j < k; ++j)
    cuda_detail::copy_2d(ctx, out.data() + j * D, k * D, c.data() + j * B * D, D, D, B, "merge_chunks: cudaMemcpy2DAsync");
}

/// tokens [B, h w, p p C] -> image [B, C, h p, w p] (inverse: image -> tokens), as the CPU op.
template <class T>
void unpatchify(const CudaContext& ctx, In<T, Cuda> src, TensorView<T, Cuda> dst, std::int64_t C, std::int64_t p, TokenGrid grid,
                bool inverse) {
  const Shape& image = inverse ? src.shape() : dst.shape();
  detail::check_unpatchify(inverse ? dst.shape() : src.shape(), image, C, p, grid);
  check_contiguous("unpatchify", src, dst);
  const std::int64_t n = image.numel();
  if (n == 0) return;
  if (inverse)
    cuda_detail::unpatchify_kernel<T, true><<<cuda_detail::blocks_for(n), cuda_detail::kThreads, 0, ctx.stream()>>>(
        src.data(), dst.data(), image[0], C, p, grid.h, grid.w);
  else
    cuda_detail::unpatchify_kernel<T, false><<<cuda_detail::blocks_for(n), cuda_detail::kThreads, 0, ctx.stream()>>>(
        src.data(), dst.data(), image[0], C, p, grid.h, grid.w);
  CudaContext::check_launch("unpatchify");
}

/// JiT's in-context tokens: out [B, L + N, D] = (emb[b] + posemb[l], then x), as the CPU op.
template <class T>
void prepend_context(const CudaContext& ctx, In<T, Cuda> emb, In<T, Cuda> posemb, In<T, Cuda> x, TensorView<T, Cuda> out) {
  detail::check_context_tokens("prepend_context", emb.shape(), posemb.shape(), x.shape(), out.shape());
  check_contiguous("prepend_context", emb, posemb, x, out);
  const std::int64_t B = x.size(0), N = x.size(1), D = x.size(2), L = posemb.size(0);
  if (B * L * D > 0) {
    cuda_detail::context_rows_kernel<T><<<cuda_detail::blocks_for(B * L * D), cuda_detail::kThreads, 0, ctx.stream()>>>(
        emb.data(), posemb.data(), out.data(), B, L, N, D);
    CudaContext::check_launch("prepend_context");
  }
  cuda_detail::copy_2d(ctx, out.data() + L * D, (L + N) * D, x.data(), N * D, N * D, B, "prepend_context: cudaMemcpy2DAsync");
}

/// Its backward: demb [B, D] and dposemb [L, D] accumulated, dx [B, N, D] assigned.
template <class T>
void prepend_context_backward(const CudaContext& ctx, In<T, Cuda> dout, TensorView<T, Cuda> demb, TensorView<T, Cuda> dposemb,
                              TensorView<T, Cuda> dx) {
  detail::check_context_tokens("prepend_context_backward", demb.shape(), dposemb.shape(), dx.shape(), dout.shape());
  check_contiguous("prepend_context_backward", dout, demb, dposemb, dx);
  const std::int64_t B = dx.size(0), N = dx.size(1), D = dx.size(2), L = dposemb.size(0);
  if (L * D > 0) {
    cuda_detail::context_posemb_grad_kernel<T><<<cuda_detail::blocks_for(L * D), cuda_detail::kThreads, 0, ctx.stream()>>>(
        dout.data(), dposemb.data(), B, L, N, D);
    CudaContext::check_launch("prepend_context_backward: positions");
    cuda_detail::context_emb_grad_kernel<T><<<cuda_detail::blocks_for(B * D), cuda_detail::kThreads, 0, ctx.stream()>>>(
        dout.data(), demb.data(), B, L, N, D);
    CudaContext::check_launch("prepend_context_backward: label embedding");
  }
  cuda_detail::copy_2d(ctx, dx.data(), N * D, dout.data() + L * D, (L + N) * D, N * D, B,
                       "prepend_context_backward: cudaMemcpy2DAsync");
}

/// out [B, N, D] = x [B, M, D] tokens [start, start + N).
template <class T>
void slice_tokens(const CudaContext& ctx, In<T, Cuda> x, std::int64_t start, TensorView<T, Cuda> out) {
  detail::check_token_slice("slice_tokens", x.shape(), start, out.shape());
  check_contiguous("slice_tokens", x, out);
  const std::int64_t B = x.size(0), M = x.size(1), N = out.size(1), D = x.size(2);
  cuda_detail::copy_2d(ctx, out.data(), N * D, x.data() + start * D, M * D, N * D, B, "slice_tokens: cudaMemcpy2DAsync");
}

/// dst [B, M, D] tokens [start, start + N) += src [B, N, D].
template <class T>
void add_slice_tokens(const CudaContext& ctx, TensorView<T, Cuda> dst, std::int64_t start, In<T, Cuda> src) {
  detail::check_token_slice("add_slice_tokens", dst.shape(), start, src.shape());
  check_contiguous("add_slice_tokens", dst, src);
  const std::int64_t N = src.size(1), total = src.numel();
  if (total == 0) return;
  cuda_detail::add_slice_tokens_kernel<T><<<cuda_detail::blocks_for(total), cuda_detail::kThreads, 0, ctx.stream()>>>(
      dst.data(), src.data(), dst.size(1), start, N, N * src.size(2), total);
  CudaContext::check_launch("add_slice_tokens");
}


namespace cuda_detail {
template <class T>
__global__ void channels_last_kernel(const T* x, T* y, std::int64_t C, std::int64_t P, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t c = i % C, p = (i / C) % P, b = i / (C * P);  // i indexes y [B, P, C]
    y[i] = x[(b * C + c) * P + p];
  }
}
}  // namespace cuda_detail

/// y [B, H, W, C] = x [B, C, H, W].
template <class T>
void channels_last(const CudaContext& ctx, In<T, Cuda> x, TensorView<T, Cuda> y) {
  detail::check_channels_last("channels_last", x.shape(), y.shape());
  check_contiguous("channels_last", x, y);
  if (y.numel() == 0) return;
  cuda_detail::channels_last_kernel<T><<<cuda_detail::blocks_for(y.numel()), cuda_detail::kThreads, 0, ctx.stream()>>>(
      x.data(), y.data(), x.size(1), x.size(2) * x.size(3), y.numel());
  CudaContext::check_launch("channels_last");
}

namespace cuda_detail {
template <class T>
__global__ void channels_first_kernel(const T* x, T* y, std::int64_t C, std::int64_t P, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t p = i % P, c = (i / P) % C, b = i / (C * P);  // i indexes y [B, C, P]
    y[i] = x[(b * P + p) * C + c];
  }
}
template <class T>
__global__ void upsample_nearest2x_kernel(const T* x, T* y, std::int64_t H, std::int64_t W, std::int64_t C, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t c = i % C, j = (i / C) % (2 * W), r = (i / (C * 2 * W)) % (2 * H), b = i / (C * 4 * W * H);
    y[i] = x[((b * H + r / 2) * W + j / 2) * C + c];
  }
}
}  // namespace cuda_detail

/// y [B, C, H, W] = x [B, H, W, C].
template <class T>
void channels_first(const CudaContext& ctx, In<T, Cuda> x, TensorView<T, Cuda> y) {
  detail::check_channels_last("channels_first", y.shape(), x.shape());
  check_contiguous("channels_first", x, y);
  if (y.numel() == 0) return;
  cuda_detail::channels_first_kernel<T><<<cuda_detail::blocks_for(y.numel()), cuda_detail::kThreads, 0, ctx.stream()>>>(
      x.data(), y.data(), y.size(1), y.size(2) * y.size(3), y.numel());
  CudaContext::check_launch("channels_first");
}

/// Nearest x2 upsampling of channels-last maps: y [B, 2H, 2W, C].
template <class T>
void upsample_nearest2x(const CudaContext& ctx, In<T, Cuda> x, TensorView<T, Cuda> y) {
  detail::check_upsample2x("upsample_nearest2x", x.shape(), y.shape());
  check_contiguous("upsample_nearest2x", x, y);
  if (y.numel() == 0) return;
  cuda_detail::upsample_nearest2x_kernel<T><<<cuda_detail::blocks_for(y.numel()), cuda_detail::kThreads, 0, ctx.stream()>>>(
      x.data(), y.data(), x.size(1), x.size(2), x.size(3), y.numel());
  CudaContext::check_launch("upsample_nearest2x");
}

/// x [..., D] = x * w + b per column, in place; w, b [D].
template <class T>
void scale_shift_rows(const CudaContext& ctx, TensorView<T, Cuda> x, In<T, Cuda> w, In<T, Cuda> b) {
  detail::check_row_vector("scale_shift_rows", "weight", w.numel(), x.shape());
  detail::check_row_vector("scale_shift_rows", "bias", b.numel(), x.shape());
  check_contiguous("scale_shift_rows", x, w, b);
  if (x.numel() == 0) return;
  cuda_detail::scale_shift_rows_kernel<T><<<cuda_detail::blocks_for(x.numel()), cuda_detail::kThreads, 0, ctx.stream()>>>(
      x.data(), w.data(), b.data(), x.shape().last(), x.numel());
  CudaContext::check_launch("scale_shift_rows");
}

/// acc [..., D] += gamma * x per column; gamma [D], or empty for acc += x.
template <class T>
void add_scaled_rows(const CudaContext& ctx, TensorView<T, Cuda> acc, In<T, Cuda> gamma, In<T, Cuda> x) {
  check_shape("add_scaled_rows", "addend", x.shape(), acc.shape());
  if (gamma.numel() > 0) detail::check_row_vector("add_scaled_rows", "gamma", gamma.numel(), acc.shape());
  check_contiguous("add_scaled_rows", acc, gamma, x);
  if (acc.numel() == 0) return;
  cuda_detail::add_scaled_rows_kernel<T><<<cuda_detail::blocks_for(acc.numel()), cuda_detail::kThreads, 0, ctx.stream()>>>(
      acc.data(), gamma.numel() > 0 ? gamma.data() : nullptr, x.data(), acc.shape().last(), acc.numel());
  CudaContext::check_launch("add_scaled_rows");
}

/// out [B, N, D] = a * x[b, 0] + keep * x[b, start + t].
template <class T>
void blend_first_token(const CudaContext& ctx, In<T, Cuda> x, std::int64_t start, std::type_identity_t<T> a,
                       std::type_identity_t<T> keep, TensorView<T, Cuda> out) {
  detail::check_token_slice("blend_first_token", x.shape(), start, out.shape());
  IREPA_CHECK(start >= 1, "blend_first_token: the slice starts at token {}, which must come after the first", start);
  check_contiguous("blend_first_token", x, out);
  if (out.numel() == 0) return;
  cuda_detail::blend_first_token_kernel<T><<<cuda_detail::blocks_for(out.numel()), cuda_detail::kThreads, 0, ctx.stream()>>>(
      x.data(), out.data(), x.size(1), start, out.size(1), x.size(2), a, keep, out.numel());
  CudaContext::check_launch("blend_first_token");
}

namespace cuda_detail {
/// dst[r, dst_off + j] = src[r, src_off + j] for j < c: one thread per copied element.
template <class T>
__global__ void copy_channel_block_kernel(const T* src, std::int64_t src_stride, std::int64_t src_off, T* dst, std::int64_t dst_stride,
                                          std::int64_t dst_off, std::int64_t c, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t r = i / c, j = i % c;
    dst[r * dst_stride + dst_off + j] = src[r * src_stride + src_off + j];
  }
}
}  // namespace cuda_detail

/// whole[..., offset : offset + c] = part (concatenation along channels, one part at a time).
template <class T>
void copy_channels(const CudaContext& ctx, In<T, Cuda> part, std::int64_t offset, TensorView<T, Cuda> whole) {
  detail::check_copy_channels("copy_channels", part.shape(), whole.shape(), offset);
  check_contiguous("copy_channels", part, whole);
  const std::int64_t c = part.size(part.rank() - 1), C = whole.size(whole.rank() - 1);
  if (part.numel() == 0) return;
  cuda_detail::copy_channel_block_kernel<T><<<cuda_detail::blocks_for(part.numel()), cuda_detail::kThreads, 0, ctx.stream()>>>(
      part.data(), c, 0, whole.data(), C, offset, c, part.numel());
  CudaContext::check_launch("copy_channels");
}

/// part = whole[..., offset : offset + c] (a channel slice).
template <class T>
void slice_channels(const CudaContext& ctx, In<T, Cuda> whole, std::int64_t offset, TensorView<T, Cuda> part) {
  detail::check_copy_channels("slice_channels", part.shape(), whole.shape(), offset);
  check_contiguous("slice_channels", part, whole);
  const std::int64_t c = part.size(part.rank() - 1), C = whole.size(whole.rank() - 1);
  if (part.numel() == 0) return;
  cuda_detail::copy_channel_block_kernel<T><<<cuda_detail::blocks_for(part.numel()), cuda_detail::kThreads, 0, ctx.stream()>>>(
      whole.data(), C, offset, part.data(), c, 0, c, part.numel());
  CudaContext::check_launch("slice_channels");
}

}  // namespace irepa::ops
