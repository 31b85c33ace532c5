#pragma once
// Multi-head softmax attention on the GPU (CudaContext overloads of ops/cpu/attention.hpp), the
// straightforward way: q, k, v split per head, logits and probabilities materialised
// ([B, H, T, T]) by batched cuBLAS products, a row softmax kernel, and the same products
// transposed for the backward. Same cache and layout as the CPU path; float or double.
// q/k RMSNorm and RoPE (JiT) are not on the GPU yet: a spec asking for them is an error, not a
// silent fallback. (The fused flash-style kernel for bf16 is the performance path still owed.)

#include "irepa/ops/cpu/attention.hpp"
#include "irepa/ops/cuda/gemm.cuh"

namespace irepa::ops {

namespace cuda_detail {

/// qkv [B, N, 3D] -> q, k, v [B, H, N, hd] (which = 0, 1, 2 picks the part), or back (scatter).
template <class T, bool Scatter>
__global__ void qkv_heads_kernel(T* qkv, T* q, T* k, T* v, std::int64_t B, std::int64_t N, std::int64_t H, std::int64_t hd) {
  const std::int64_t D = H * hd, total = B * N * D;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t c = i % D, t = (i / D) % N, b = i / (N * D), h = c / hd, j = c % hd;
    const std::int64_t src = (b * N + t) * 3 * D + c, dst = ((b * H + h) * N + t) * hd + j;
    if constexpr (Scatter) {
      qkv[src] = q[dst], qkv[src + D] = k[dst], qkv[src + 2 * D] = v[dst];
    } else {
      q[dst] = qkv[src], k[dst] = qkv[src + D], v[dst] = qkv[src + 2 * D];
    }
  }
}

/// o [B, H, N, hd] <-> out [B, N, D].
template <class T, bool ToHeads>
__global__ void merge_heads_kernel(T* heads, T* out, std::int64_t B, std::int64_t N, std::int64_t H, std::int64_t hd) {
  const std::int64_t D = H * hd, total = B * N * D;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t c = i % D, t = (i / D) % N, b = i / (N * D), h = c / hd, j = c % hd;
    const std::int64_t o = ((b * H + h) * N + t) * hd + j;
    if constexpr (ToHeads) heads[o] = out[i];
    else out[i] = heads[o];
  }
}

/// Each row of p [rows, N] replaced by its softmax; one block per row.
template <class T>
__global__ void softmax_rows_kernel(T* p, std::int64_t N) {
  __shared__ T scratch[32];
  T* r = p + blockIdx.x * N;
  T m = -INFINITY;
  for (std::int64_t j = threadIdx.x; j < N; j += blockDim.x) m = m > r[j] ? m : r[j];
  m = block_max(m, scratch);
  T s = 0;
  for (std::int64_t j = threadIdx.x; j < N; j += blockDim.x) {
    const T e = exp(r[j] - m);
    r[j] = e;
    s += e;
  }
  const T inv = T(1) / block_sum(s, scratch);
  for (std::int64_t j = threadIdx.x; j < N; j += blockDim.x) r[j] *= inv;
}

/// dp [rows, N] <- p * (dp - rowsum(dp * p)); one block per row.
template <class T>
__global__ void softmax_backward_rows_kernel(const T* p, T* dp, std::int64_t N) {
  __shared__ T scratch[32];
  const T* pr = p + blockIdx.x * N;
  T* dr = dp + blockIdx.x * N;
  T s = 0;
  for (std::int64_t j = threadIdx.x; j < N; j += blockDim.x) s += dr[j] * pr[j];
  const T dot = block_sum(s, scratch);
  for (std::int64_t j = threadIdx.x; j < N; j += blockDim.x) dr[j] = pr[j] * (dr[j] - dot);
}

template <class T>
std::int64_t check_cuda_attention(std::string_view op, const Shape& qkv, const AttentionSpec<T>& s) {
  IREPA_CHECK(!s.qk_norm() && !s.rope(), "{}: q/k RMSNorm and RoPE are not implemented on CUDA yet (the CPU path has them)", op);
  return detail::check_attention(op, qkv, s);
}

}  // namespace cuda_detail

/// out = softmax(q k^T * scale) v per head; returns the cache for attention_backward.
template <class T>
AttentionCache<T, Cuda> attention_forward(const CudaContext& ctx, In<T, Cuda> qkv, const AttentionSpec<T>& spec, TensorView<T, Cuda> out) {
  const std::int64_t hd = cuda_detail::check_cuda_attention("attention_forward", qkv.shape(), spec);
  const std::int64_t B = qkv.size(0), N = qkv.size(1), D = qkv.size(2) / 3, H = spec.heads;
  check_shape("attention_forward", "output", out.shape(), Shape{B, N, D});
  check_contiguous("attention_forward", qkv, out);
  const T scale = spec.scale != T(0) ? spec.scale : T(1) / std::sqrt(static_cast<T>(hd));
  AttentionCache<T, Cuda> c;
  c.q = Tensor<T, Cuda>(Shape{B, H, N, hd});
  c.k = Tensor<T, Cuda>(Shape{B, H, N, hd});
  c.v = Tensor<T, Cuda>(Shape{B, H, N, hd});
  c.probs = Tensor<T, Cuda>(Shape{B, H, N, N});
  if (B * N == 0) return c;
  const unsigned blocks = cuda_detail::blocks_for(B * N * D);
  cuda_detail::qkv_heads_kernel<T, false><<<blocks, cuda_detail::kThreads, 0, ctx.stream()>>>(
      const_cast<T*>(qkv.data()), c.q.data(), c.k.data(), c.v.data(), B, N, H, hd);
  CudaContext::check_launch("attention_forward: split heads");
  cuda_detail::gemm_row_major_batched<T>(ctx, B * H, N, N, hd, c.q.data(), false, N * hd, c.k.data(), true, N * hd, c.probs.data(),
                                         N * N, scale, T(0), "attention_forward: q k^T");
  cuda_detail::softmax_rows_kernel<T><<<static_cast<unsigned>(B * H * N), cuda_detail::row_threads(N), 0, ctx.stream()>>>(
      c.probs.data(), N);
  CudaContext::check_launch("attention_forward: softmax");
  Tensor<T, Cuda> o(Shape{B, H, N, hd});
  cuda_detail::gemm_row_major_batched<T>(ctx, B * H, N, hd, N, c.probs.data(), false, N * N, c.v.data(), false, N * hd, o.data(),
                                         N * hd, T(1), T(0), "attention_forward: p v");
  cuda_detail::merge_heads_kernel<T, false><<<blocks, cuda_detail::kThreads, 0, ctx.stream()>>>(o.data(), out.data(), B, N, H, hd);
  CudaContext::check_launch("attention_forward: merge heads");
  return c;
}

/// dqkv [B, T, 3D] assigned.
template <class T>
void attention_backward(const CudaContext& ctx, const AttentionSpec<T>& spec, const AttentionCache<T, Cuda>& c, In<T, Cuda> dout,
                        TensorView<T, Cuda> dqkv) {
  const std::int64_t hd = cuda_detail::check_cuda_attention("attention_backward", dqkv.shape(), spec);
  const std::int64_t B = dqkv.size(0), N = dqkv.size(1), D = dqkv.size(2) / 3, H = spec.heads;
  check_shape("attention_backward", "dout", dout.shape(), Shape{B, N, D});
  check_shape("attention_backward", "cached q", c.q.shape(), Shape{B, H, N, hd});
  check_contiguous("attention_backward", dout, dqkv);
  if (B * N == 0) return;
  const T scale = spec.scale != T(0) ? spec.scale : T(1) / std::sqrt(static_cast<T>(hd));
  const unsigned blocks = cuda_detail::blocks_for(B * N * D);
  Tensor<T, Cuda> dO(Shape{B, H, N, hd}), dQ(Shape{B, H, N, hd}), dK(Shape{B, H, N, hd}), dV(Shape{B, H, N, hd}), dP(Shape{B, H, N, N});
  cuda_detail::merge_heads_kernel<T, true><<<blocks, cuda_detail::kThreads, 0, ctx.stream()>>>(dO.data(), const_cast<T*>(dout.data()),
                                                                                              B, N, H, hd);
  CudaContext::check_launch("attention_backward: split dout");
  const std::int64_t sq = N * hd, sp = N * N;
  cuda_detail::gemm_row_major_batched<T>(ctx, B * H, N, hd, N, c.probs.data(), true, sp, dO.data(), false, sq, dV.data(), sq, T(1),
                                         T(0), "attention_backward: p^T dO");
  cuda_detail::gemm_row_major_batched<T>(ctx, B * H, N, N, hd, dO.data(), false, sq, c.v.data(), true, sq, dP.data(), sp, T(1), T(0),
                                         "attention_backward: dO v^T");
  cuda_detail::softmax_backward_rows_kernel<T><<<static_cast<unsigned>(B * H * N), cuda_detail::row_threads(N), 0, ctx.stream()>>>(
      c.probs.data(), dP.data(), N);
  CudaContext::check_launch("attention_backward: softmax");
  cuda_detail::gemm_row_major_batched<T>(ctx, B * H, N, hd, N, dP.data(), false, sp, c.k.data(), false, sq, dQ.data(), sq, scale,
                                         T(0), "attention_backward: dS k");
  cuda_detail::gemm_row_major_batched<T>(ctx, B * H, N, hd, N, dP.data(), true, sp, c.q.data(), false, sq, dK.data(), sq, scale,
                                         T(0), "attention_backward: dS^T q");
  cuda_detail::qkv_heads_kernel<T, true><<<blocks, cuda_detail::kThreads, 0, ctx.stream()>>>(dqkv.data(), dQ.data(), dK.data(),
                                                                                            dV.data(), B, N, H, hd);
  CudaContext::check_launch("attention_backward: merge heads");
}

}  // namespace irepa::ops
