#pragma once
// CUDA backend of ops/cpu/window.hpp (CudaContext overloads; nvcc only). Window attention runs
// as the plain attention path does: q, k, v split per head (the queries max-pooled on the way),
// logits materialised by batched cuBLAS products, SAM's relative positions as one product of the
// queries with each table ([rows, 2 ws - 1]) gathered into the logits by the softmax kernel, and
// the probabilities times v. Windows are taken in chunks so that the logits stay under 1 GiB.

#include <algorithm>

#include "irepa/ops/cpu/window.hpp"
#include "irepa/ops/cuda/attention.cuh"
#include "irepa/ops/cuda/common.cuh"
#include "irepa/ops/cuda/gemm.cuh"

namespace irepa::ops {

namespace cuda_detail {

template <class T>
__global__ void window_partition_kernel(const T* x, T* out, std::int64_t S, std::int64_t C, std::int64_t ws, std::int64_t per,
                                        std::int64_t n) {
  const std::int64_t L = ws * ws;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t c = i % C, t = (i / C) % L, u = i / (C * L), b = u / (per * per), w = u % (per * per);
    const std::int64_t row = (w / per) * ws + t / ws, col = (w % per) * ws + t % ws;
    out[i] = row < S && col < S ? x[((b * S + row) * S + col) * C + c] : T(0);
  }
}

template <class T>
__global__ void window_merge_kernel(const T* w, T* out, std::int64_t S, std::int64_t C, std::int64_t q, std::int64_t per,
                                    std::int64_t n) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t c = i % C, col = (i / C) % S, row = (i / (C * S)) % S, b = i / (C * S * S);
    const std::int64_t u = (b * per + row / q) * per + col / q, t = (row % q) * q + col % q;
    out[i] = w[(u * q * q + t) * C + c];
  }
}

/// qkv [n, L, 3D] -> k, v [n, H, L, hd] and the (pooled) queries q [n, H, Lq, hd], unscaled.
template <class T>
__global__ void window_qkv_kernel(const T* qkv, T* q, T* k, T* v, std::int64_t H, std::int64_t hd, std::int64_t ws, std::int64_t s,
                                  std::int64_t n) {
  const std::int64_t Dm = H * hd, L = ws * ws, qs = ws / s, Lq = qs * qs;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n * L * Dm;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t c = i % Dm, t = (i / Dm) % L, u = i / (Dm * L), h = c / hd, j = c % hd;
    const T* src = qkv + u * L * 3 * Dm;
    k[((u * H + h) * L + t) * hd + j] = src[t * 3 * Dm + Dm + c];
    v[((u * H + h) * L + t) * hd + j] = src[t * 3 * Dm + 2 * Dm + c];
    if (t < Lq) {  // query t of the pooled window: the max over its s x s block
      const std::int64_t a = t / qs, b = t % qs;
      T m = src[((a * s) * ws + b * s) * 3 * Dm + c];
      for (std::int64_t di = 0; di < s; ++di)
        for (std::int64_t dj = 0; dj < s; ++dj) m = max(m, src[((a * s + di) * ws + b * s + dj) * 3 * Dm + c]);
      q[((u * H + h) * Lq + t) * hd + j] = m;
    }
  }
}

/// Each row of p [rows, L] (row r: query r % L of its window, L = ws^2) gains the relative
/// positions rh, rw [rows, 2 ws - 1] when given, then becomes its softmax; one block per row.
template <class T>
__global__ void window_softmax_kernel(T* p, const T* rh, const T* rw, std::int64_t L, std::int64_t ws) {
  __shared__ T scratch[32];
  T* r = p + blockIdx.x * L;
  if (rh) {
    const std::int64_t t = blockIdx.x % L, qh = t / ws, qw = t % ws, R = 2 * ws - 1;
    const T* h = rh + blockIdx.x * R;
    const T* w = rw + blockIdx.x * R;
    for (std::int64_t j = threadIdx.x; j < L; j += blockDim.x) r[j] = (r[j] + h[qh - j / ws + ws - 1]) + w[qw - j % ws + ws - 1];
    __syncthreads();
  }
  softmax_row(r, L, scratch);
}

}  // namespace cuda_detail

template <class T>
void window_partition(const CudaContext& ctx, In<T, Cuda> x, std::int64_t ws, TensorView<T, Cuda> out) {
  detail::check_window_partition(x.shape(), ws, out.shape());
  check_contiguous("window_partition", x, out);
  if (out.numel() == 0) return;
  cuda_detail::window_partition_kernel<T><<<cuda_detail::blocks_for(out.numel()), cuda_detail::kThreads, 0, ctx.stream()>>>(
      x.data(), out.data(), x.size(1), x.size(3), ws, detail::windows_per_side(x.size(1), ws), out.numel());
  CudaContext::check_launch("window_partition");
}

template <class T>
void window_merge(const CudaContext& ctx, In<T, Cuda> w, TensorView<T, Cuda> out) {
  const std::int64_t q = detail::check_window_merge(w.shape(), out.shape());
  check_contiguous("window_merge", w, out);
  if (out.numel() == 0) return;
  cuda_detail::window_merge_kernel<T><<<cuda_detail::blocks_for(out.numel()), cuda_detail::kThreads, 0, ctx.stream()>>>(
      w.data(), out.data(), out.size(1), out.size(3), q, detail::windows_per_side(out.size(1), q), out.numel());
  CudaContext::check_launch("window_merge");
}

template <class T>
void window_attention_forward(const CudaContext& ctx, In<T, Cuda> qkv, const WindowAttentionSpec<T, Cuda>& spec, TensorView<T, Cuda> out) {
  const std::int64_t hd = detail::check_window_attention(qkv.shape(), spec, out.shape());
  check_contiguous("window_attention_forward", qkv, out, spec.rel_h, spec.rel_w);
  const std::int64_t U = qkv.size(0), L = qkv.size(1), Dm = qkv.size(2) / 3, H = spec.heads, ws = spec.window;
  const std::int64_t s = spec.query_stride, qs = ws / s, Lq = qs * qs, R = 2 * ws - 1;
  const bool rel = spec.relative();
  if (U == 0) return;
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(hd)));
  const std::int64_t per_unit = H * Lq * L * static_cast<std::int64_t>(sizeof(T));
  const std::int64_t chunk = std::clamp<std::int64_t>((std::int64_t{1} << 30) / std::max<std::int64_t>(per_unit, 1), 1, U);
  Tensor<T, Cuda> q(Shape{chunk, H, Lq, hd}), k(Shape{chunk, H, L, hd}), v(Shape{chunk, H, L, hd}), p(Shape{chunk, H, Lq, L}),
      o(Shape{chunk, H, Lq, hd});
  Tensor<T, Cuda> rh(Shape{rel ? chunk * H * Lq : 0, R}), rw(Shape{rel ? chunk * H * Lq : 0, R});
  for (std::int64_t u0 = 0; u0 < U; u0 += chunk) {
    const std::int64_t n = std::min(chunk, U - u0), rows = n * H * Lq;
    cuda_detail::window_qkv_kernel<T><<<cuda_detail::blocks_for(n * L * Dm), cuda_detail::kThreads, 0, ctx.stream()>>>(
        qkv.data() + u0 * L * 3 * Dm, q.data(), k.data(), v.data(), H, hd, ws, s, n);
    CudaContext::check_launch("window_attention_forward: split heads");
    if (rel) {  // q . rel_h[r], q . rel_w[r] for every query and table row r, by the unscaled query
      cuda_detail::gemm_row_major<T>(ctx, rows, R, hd, q.data(), false, spec.rel_h.data(), true, rh.data(), T(1), T(0),
                                     "window_attention_forward: q rel_h");
      cuda_detail::gemm_row_major<T>(ctx, rows, R, hd, q.data(), false, spec.rel_w.data(), true, rw.data(), T(1), T(0),
                                     "window_attention_forward: q rel_w");
    }
    cuda_detail::gemm_row_major_batched<T>(ctx, n * H, Lq, L, hd, q.data(), false, Lq * hd, k.data(), true, L * hd, p.data(), Lq * L,
                                           scale, T(0), "window_attention_forward: q k^T");
    cuda_detail::window_softmax_kernel<T><<<static_cast<unsigned>(rows), cuda_detail::row_threads(L), 0, ctx.stream()>>>(
        p.data(), rel ? rh.data() : nullptr, rel ? rw.data() : nullptr, L, ws);
    CudaContext::check_launch("window_attention_forward: softmax");
    cuda_detail::gemm_row_major_batched<T>(ctx, n * H, Lq, hd, L, p.data(), false, Lq * L, v.data(), false, L * hd, o.data(), Lq * hd,
                                           T(1), T(0), "window_attention_forward: p v");
    cuda_detail::merge_heads_kernel<T, false><<<cuda_detail::blocks_for(n * Lq * Dm), cuda_detail::kThreads, 0, ctx.stream()>>>(
        o.data(), out.data() + u0 * Lq * Dm, n, Lq, H, hd);
    CudaContext::check_launch("window_attention_forward: merge heads");
  }
}

}  // namespace irepa::ops
