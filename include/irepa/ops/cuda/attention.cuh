#pragma once
// Multi-head softmax attention on the GPU (CudaContext overloads of ops/cpu/attention.hpp), the
// straightforward way: q, k, v split per head, logits and probabilities materialised
// ([B, H, T, T]) by batched cuBLAS products, a row softmax kernel, and the same products
// transposed for the backward. Same cache and layout as the CPU path; float or double.
// JiT's q/k RMSNorm and RoPE run on the split heads [B, H, T, hd] with the norm and RoPE ops
// (RoPE sees the heads as [B H, T, 1, hd], so its table is indexed by the token). The spec's
// weights and tables are device views. With ctx.fused_attention() (float, head dim <= 128) the
// products and the softmax run as the fused kernels of flash_attention.cuh instead, and the
// cache holds the output and log-sum-exp in place of the probabilities.

#include "irepa/ops/cpu/attention.hpp"
#include "irepa/ops/cuda/flash_attention.cuh"
#include "irepa/ops/cuda/gemm.cuh"
#include "irepa/ops/cuda/norm.cuh"
#include "irepa/ops/cuda/rope.cuh"

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

/// The row r [N] replaced by its softmax, by the whole block (scratch: 32 values of shared memory).
template <class T>
__device__ void softmax_row(T* r, std::int64_t N, T* scratch) {
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

/// Each row of p [rows, N] replaced by its softmax; one block per row.
template <class T>
__global__ void softmax_rows_kernel(T* p, std::int64_t N) {
  __shared__ T scratch[32];
  softmax_row(p + blockIdx.x * N, N, scratch);
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

/// [B, H, T, hd] seen as [B H, T, 1, hd]: the RoPE op then indexes its table by the token.
template <class T>
TensorView<T, Cuda> rope_rows(TensorView<T, Cuda> heads) {
  return heads.reshape(Shape{heads.size(0) * heads.size(1), heads.size(2), 1, heads.size(3)});
}

}  // namespace cuda_detail

/// out = softmax(q k^T * scale) v per head; returns the cache for attention_backward.
template <class T>
AttentionCache<T, Cuda> attention_forward(const CudaContext& ctx, In<T, Cuda> qkv, const AttentionSpec<T, Cuda>& spec,
                                          TensorView<T, Cuda> out) {
  const std::int64_t hd = detail::check_attention("attention_forward", qkv.shape(), spec);
  const std::int64_t B = qkv.size(0), N = qkv.size(1), D = qkv.size(2) / 3, H = spec.heads;
  check_shape("attention_forward", "output", out.shape(), Shape{B, N, D});
  check_contiguous("attention_forward", qkv, out);
  const T scale = spec.scale != T(0) ? spec.scale : T(1) / std::sqrt(static_cast<T>(hd));
  AttentionCache<T, Cuda> c;
  c.q = Tensor<T, Cuda>(Shape{B, H, N, hd});
  c.k = Tensor<T, Cuda>(Shape{B, H, N, hd});
  c.v = Tensor<T, Cuda>(Shape{B, H, N, hd});
  if (B * N == 0) return c;
  const unsigned blocks = cuda_detail::blocks_for(B * N * D);
  if (spec.qk_norm()) {  // split into the raw q, k (kept for backward), then normalise into c.q, c.k
    c.q_raw = Tensor<T, Cuda>(Shape{B, H, N, hd});
    c.k_raw = Tensor<T, Cuda>(Shape{B, H, N, hd});
    c.q_r = Tensor<T, Cuda>(Shape{B, H, N});
    c.k_r = Tensor<T, Cuda>(Shape{B, H, N});
    cuda_detail::qkv_heads_kernel<T, false><<<blocks, cuda_detail::kThreads, 0, ctx.stream()>>>(
        const_cast<T*>(qkv.data()), c.q_raw.data(), c.k_raw.data(), c.v.data(), B, N, H, hd);
    CudaContext::check_launch("attention_forward: split heads");
    rms_norm_forward<T>(ctx, c.q_raw.cview(), spec.q_norm_weight, spec.norm_eps, c.q.view(), c.q_r.view().reshape(Shape{B * H * N}));
    rms_norm_forward<T>(ctx, c.k_raw.cview(), spec.k_norm_weight, spec.norm_eps, c.k.view(), c.k_r.view().reshape(Shape{B * H * N}));
  } else {
    cuda_detail::qkv_heads_kernel<T, false><<<blocks, cuda_detail::kThreads, 0, ctx.stream()>>>(
        const_cast<T*>(qkv.data()), c.q.data(), c.k.data(), c.v.data(), B, N, H, hd);
    CudaContext::check_launch("attention_forward: split heads");
  }
  if (spec.rope()) {
    const auto q = cuda_detail::rope_rows(c.q.view()), k = cuda_detail::rope_rows(c.k.view());
    rope_forward<T>(ctx, q, spec.rope_cos, spec.rope_sin, spec.rope_mode, q);
    rope_forward<T>(ctx, k, spec.rope_cos, spec.rope_sin, spec.rope_mode, k);
  }
  if (ctx.fused_attention() && cuda_detail::flash_supported<T>(B * H, N, hd)) {
    if constexpr (std::is_same_v<T, float>) {
      c.o = Tensor<T, Cuda>(Shape{B, H, N, hd});
      c.lse = Tensor<T, Cuda>(Shape{B, H, N});
      cuda_detail::flash_forward(ctx, c.q.data(), c.k.data(), c.v.data(), c.o.data(), out.data(), c.lse.data(), B, H, N, hd, scale);
      return c;
    }
  }
  c.probs = Tensor<T, Cuda>(Shape{B, H, N, N});
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

/// dqkv [B, T, 3D] assigned; dq_norm_weight, dk_norm_weight [hd] accumulated (used only with q/k norm).
template <class T>
void attention_backward(const CudaContext& ctx, const AttentionSpec<T, Cuda>& spec, const AttentionCache<T, Cuda>& c, In<T, Cuda> dout,
                        TensorView<T, Cuda> dqkv, TensorView<T, Cuda> dq_norm_weight = {}, TensorView<T, Cuda> dk_norm_weight = {}) {
  const std::int64_t hd = detail::check_attention("attention_backward", dqkv.shape(), spec);
  const std::int64_t B = dqkv.size(0), N = dqkv.size(1), D = dqkv.size(2) / 3, H = spec.heads;
  check_shape("attention_backward", "dout", dout.shape(), Shape{B, N, D});
  check_shape("attention_backward", "cached q", c.q.shape(), Shape{B, H, N, hd});
  check_contiguous("attention_backward", dout, dqkv);
  if (spec.qk_norm()) {
    check_shape("attention_backward", "dq_norm_weight", dq_norm_weight.shape(), Shape{hd});
    check_shape("attention_backward", "dk_norm_weight", dk_norm_weight.shape(), Shape{hd});
  }
  if (B * N == 0) return;
  const T scale = spec.scale != T(0) ? spec.scale : T(1) / std::sqrt(static_cast<T>(hd));
  const unsigned blocks = cuda_detail::blocks_for(B * N * D);
  Tensor<T, Cuda> dO(Shape{B, H, N, hd}), dQ(Shape{B, H, N, hd}), dK(Shape{B, H, N, hd}), dV(Shape{B, H, N, hd});
  cuda_detail::merge_heads_kernel<T, true><<<blocks, cuda_detail::kThreads, 0, ctx.stream()>>>(dO.data(), const_cast<T*>(dout.data()),
                                                                                              B, N, H, hd);
  CudaContext::check_launch("attention_backward: split dout");
  const std::int64_t sq = N * hd, sp = N * N;
  if (c.lse.numel() > 0) {  // the forward ran the fused kernels
    if constexpr (std::is_same_v<T, float>)
      cuda_detail::flash_backward(ctx, c.q.data(), c.k.data(), c.v.data(), c.o.data(), c.lse.data(), dO.data(), dQ.data(), dK.data(),
                                  dV.data(), B, H, N, hd, scale);
  } else {
    check_shape("attention_backward", "cached probabilities", c.probs.shape(), Shape{B, H, N, N});
    cuda_detail::gemm_row_major_batched<T>(ctx, B * H, N, hd, N, c.probs.data(), true, sp, dO.data(), false, sq, dV.data(), sq, T(1),
                                           T(0), "attention_backward: p^T dO");
    Tensor<T, Cuda> dP(Shape{B, H, N, N});
    cuda_detail::gemm_row_major_batched<T>(ctx, B * H, N, N, hd, dO.data(), false, sq, c.v.data(), true, sq, dP.data(), sp, T(1), T(0),
                                           "attention_backward: dO v^T");
    cuda_detail::softmax_backward_rows_kernel<T><<<static_cast<unsigned>(B * H * N), cuda_detail::row_threads(N), 0, ctx.stream()>>>(
        c.probs.data(), dP.data(), N);
    CudaContext::check_launch("attention_backward: softmax");
    cuda_detail::gemm_row_major_batched<T>(ctx, B * H, N, hd, N, dP.data(), false, sp, c.k.data(), false, sq, dQ.data(), sq, scale,
                                           T(0), "attention_backward: dS k");
    cuda_detail::gemm_row_major_batched<T>(ctx, B * H, N, hd, N, dP.data(), true, sp, c.q.data(), false, sq, dK.data(), sq, scale,
                                           T(0), "attention_backward: dS^T q");
  }
  if (spec.rope()) {  // back through the rotation (in place)
    const auto dq = cuda_detail::rope_rows(dQ.view()), dk = cuda_detail::rope_rows(dK.view());
    rope_backward<T>(ctx, spec.rope_cos, spec.rope_sin, spec.rope_mode, dq, dq);
    rope_backward<T>(ctx, spec.rope_cos, spec.rope_sin, spec.rope_mode, dk, dk);
  }
  if (spec.qk_norm()) {  // back through the RMSNorms, into the raw q, k
    Tensor<T, Cuda> dq_raw(Shape{B, H, N, hd}), dk_raw(Shape{B, H, N, hd});
    rms_norm_backward<T>(ctx, c.q_raw.cview(), spec.q_norm_weight, c.q_r.cview().reshape(Shape{B * H * N}), dQ.cview(), dq_raw.view(),
                         dq_norm_weight);
    rms_norm_backward<T>(ctx, c.k_raw.cview(), spec.k_norm_weight, c.k_r.cview().reshape(Shape{B * H * N}), dK.cview(), dk_raw.view(),
                         dk_norm_weight);
    dQ = std::move(dq_raw);
    dK = std::move(dk_raw);
  }
  cuda_detail::qkv_heads_kernel<T, true><<<blocks, cuda_detail::kThreads, 0, ctx.stream()>>>(dqkv.data(), dQ.data(), dK.data(),
                                                                                            dV.data(), B, N, H, hd);
  CudaContext::check_launch("attention_backward: merge heads");
}

}  // namespace irepa::ops
