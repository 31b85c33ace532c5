#pragma once
// Reductions of the alignment path on the GPU (CudaContext overloads of ops/cpu/reduce.hpp):
// per-image token mean / std (iREPA's spatial normalisation), L2 normalisation and cosine
// similarity of rows (the alignment loss), forward and backward; spatial_normalize, the
// SpatialNorm policy's formula; and softmax cross-entropy (the metric classifier's loss). Sums
// over tokens run one thread per (image, channel) down the tokens (coalesced, deterministic);
// row sums one block per row.

#include <math_constants.h>

#include "irepa/ops/cpu/reduce.hpp"
#include "irepa/ops/cuda/common.cuh"

namespace irepa::ops {

namespace cuda_detail {

template <class T>
__global__ void token_mean_std_kernel(const T* x, T* mean, T* std, std::int64_t B, std::int64_t N, std::int64_t D) {
  for (std::int64_t c = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; c < B * D;
       c += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t b = c / D, d = c % D;
    const T* xb = x + b * N * D + d;
    T m = 0;
    for (std::int64_t t = 0; t < N; ++t) m += xb[t * D];
    m /= static_cast<T>(N);
    T v = 0;
    for (std::int64_t t = 0; t < N; ++t) v += (xb[t * D] - m) * (xb[t * D] - m);
    mean[c] = m;
    std[c] = sqrt(v / static_cast<T>(N - 1));
  }
}

template <class T>
__global__ void token_mean_std_backward_kernel(const T* x, const T* mean, const T* std, const T* dmean, const T* dstd, T* dx,
                                               std::int64_t N, std::int64_t D, std::int64_t total) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t j = (i / (N * D)) * D + i % D;
    const T s = std[j];
    const T ds = s > T(0) ? dstd[j] * (x[i] - mean[j]) / (static_cast<T>(N - 1) * s) : T(0);
    dx[i] = dmean[j] / static_cast<T>(N) + ds;
  }
}

template <class T>
__global__ void spatial_normalize_kernel(const T* z, const T* mean, const T* std, T alpha, T eps, T* out, std::int64_t N,
                                         std::int64_t D, std::int64_t total) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t j = (i / (N * D)) * D + i % D;
    out[i] = (z[i] - alpha * mean[j]) / (std[j] + eps);
  }
}

/// y = x / max(|x|, eps) for one row, by the block; returns |x| to every thread.
template <class T>
__device__ T l2_normalize_row(const T* x, std::int64_t D, T eps, T* y, T* scratch) {
  T ss = 0;
  for (std::int64_t i = threadIdx.x; i < D; i += blockDim.x) ss += x[i] * x[i];
  const T n = sqrt(block_sum(ss, scratch));
  const T inv = T(1) / (n > eps ? n : eps);
  for (std::int64_t i = threadIdx.x; i < D; i += blockDim.x) y[i] = x[i] * inv;
  return n;
}

/// dx = (g - y (y . g)) / n when n > eps, else g / eps, with g = scale * dy (dy null: g = scale * other).
template <class T>
__device__ void l2_normalize_row_backward(const T* y, T n, const T* g_src, T g_scale, std::int64_t D, T eps, T* dx, T* scratch) {
  if (n > eps) {
    T dot = 0;
    for (std::int64_t i = threadIdx.x; i < D; i += blockDim.x) dot += y[i] * g_scale * g_src[i];
    dot = block_sum(dot, scratch);
    for (std::int64_t i = threadIdx.x; i < D; i += blockDim.x) dx[i] = (g_scale * g_src[i] - y[i] * dot) / n;
  } else {
    for (std::int64_t i = threadIdx.x; i < D; i += blockDim.x) dx[i] = g_scale * g_src[i] / eps;
  }
}

template <class T>
__global__ void l2_normalize_kernel(const T* x, T eps, T* y, T* norm, std::int64_t D) {
  __shared__ T scratch[32];
  const T n = l2_normalize_row(x + blockIdx.x * D, D, eps, y + blockIdx.x * D, scratch);
  if (threadIdx.x == 0) norm[blockIdx.x] = n;
}

template <class T>
__global__ void l2_normalize_backward_kernel(const T* y, const T* norm, const T* dy, T eps, T* dx, std::int64_t D) {
  __shared__ T scratch[32];
  const std::int64_t o = blockIdx.x * D;
  l2_normalize_row_backward(y + o, norm[blockIdx.x], dy + o, T(1), D, eps, dx + o, scratch);
}

template <class T>
__global__ void cosine_kernel(const T* a, const T* b, T eps, T* an, T* bn, T* a_norm, T* b_norm, T* s, std::int64_t D) {
  __shared__ T scratch[32];
  const std::int64_t o = blockIdx.x * D;
  const T na = l2_normalize_row(a + o, D, eps, an + o, scratch);
  const T nb = l2_normalize_row(b + o, D, eps, bn + o, scratch);
  T dot = 0;
  for (std::int64_t i = threadIdx.x; i < D; i += blockDim.x) dot += an[o + i] * bn[o + i];
  dot = block_sum(dot, scratch);
  if (threadIdx.x == 0) a_norm[blockIdx.x] = na, b_norm[blockIdx.x] = nb, s[blockIdx.x] = dot;
}

template <class T>
__global__ void cosine_backward_kernel(const T* an, const T* bn, const T* a_norm, const T* b_norm, const T* ds, T eps, T* da, T* db,
                                       std::int64_t D) {
  __shared__ T scratch[32];
  const std::int64_t o = blockIdx.x * D, r = blockIdx.x;
  if (da) l2_normalize_row_backward(an + o, a_norm[r], bn + o, ds[r], D, eps, da + o, scratch);  // g = ds * bn
  if (db) l2_normalize_row_backward(bn + o, b_norm[r], an + o, ds[r], D, eps, db + o, scratch);  // g = ds * an
}

template <class T>
__global__ void row_sum_kernel(const T* s, std::int64_t n, double factor, double* out) {
  __shared__ double scratch[32];
  double acc = 0;
  for (std::int64_t i = threadIdx.x; i < n; i += blockDim.x) acc += static_cast<double>(s[i]);
  acc = block_sum(acc, scratch);
  if (threadIdx.x == 0) out[0] = factor * acc / static_cast<double>(n);
}

__global__ inline void loss_totals_kernel(double* s, std::int64_t encoders, double coeff) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  double mean = 0;
  for (std::int64_t j = 0; j < encoders; ++j) mean += s[3 + j] / static_cast<double>(encoders);
  s[2] = mean;
  s[0] = s[1] + coeff * mean;
}

// One thread per row: K is a class count, and the rows of a batch fill the GPU.
template <class T>
__global__ void softmax_cross_entropy_kernel(const T* z, const std::int64_t* y, double* loss, T* dz, std::int64_t B, std::int64_t K,
                                             double scale) {
  for (std::int64_t b = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; b < B;
       b += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const T* zb = z + b * K;
    T m = zb[0];
    for (std::int64_t k = 1; k < K; ++k) m = zb[k] > m ? zb[k] : m;
    double sum = 0;
    for (std::int64_t k = 0; k < K; ++k) sum += exp(static_cast<double>(zb[k] - m));
    const std::int64_t label = y[b];
    if (label < 0 || label >= K) {  // the host checks labels; a bad one shows as a NaN loss
      loss[b] = CUDART_NAN;
      continue;
    }
    loss[b] = static_cast<double>(m) + log(sum) - static_cast<double>(zb[label]);
    if (!dz) continue;
    for (std::int64_t k = 0; k < K; ++k)
      dz[b * K + k] = static_cast<T>(scale * (exp(static_cast<double>(zb[k] - m)) / sum - (k == label ? 1.0 : 0.0)));
  }
}

}  // namespace cuda_detail

/// mean, std [B, D] over the tokens of x [B, T >= 2, D] (std unbiased, as torch.std).
template <class T>
void token_mean_std_forward(const CudaContext& ctx, In<T, Cuda> x, TensorView<T, Cuda> mean, TensorView<T, Cuda> std) {
  detail::check_token_mean_std("token_mean_std_forward", x.shape(), mean.shape(), std.shape());
  check_contiguous("token_mean_std_forward", x, mean, std);
  const std::int64_t B = x.size(0), N = x.size(1), D = x.size(2);
  if (B * D == 0) return;
  cuda_detail::token_mean_std_kernel<T><<<cuda_detail::blocks_for(B * D), cuda_detail::kThreads, 0, ctx.stream()>>>(
      x.data(), mean.data(), std.data(), B, N, D);
  CudaContext::check_launch("token_mean_std_forward");
}

/// dx[b, t, d] = dmean / T + dstd * (x - mean) / ((T - 1) std); a zero std contributes nothing.
template <class T>
void token_mean_std_backward(const CudaContext& ctx, In<T, Cuda> x, In<T, Cuda> mean, In<T, Cuda> std, In<T, Cuda> dmean,
                             In<T, Cuda> dstd, TensorView<T, Cuda> dx) {
  detail::check_token_mean_std_backward("token_mean_std_backward", x.shape(), mean.shape(), std.shape(), dmean.shape(), dstd.shape(),
                                        dx.shape());
  check_contiguous("token_mean_std_backward", x, mean, std, dmean, dstd, dx);
  const std::int64_t n = x.numel();
  if (n == 0) return;
  cuda_detail::token_mean_std_backward_kernel<T><<<cuda_detail::blocks_for(n), cuda_detail::kThreads, 0, ctx.stream()>>>(
      x.data(), mean.data(), std.data(), dmean.data(), dstd.data(), dx.data(), x.size(1), x.size(2), n);
  CudaContext::check_launch("token_mean_std_backward");
}

/// iREPA's spatial normalisation (the SpatialNorm policy): out = (z - alpha mean_T z) / (std_T z + eps)
/// per image and channel. z, out [B, T, D] (out may alias z).
template <class T>
void spatial_normalize(const CudaContext& ctx, In<T, Cuda> z, T alpha, T eps, TensorView<T, Cuda> out) {
  check_shape("spatial_normalize", "output", out.shape(), z.shape());
  check_contiguous("spatial_normalize", z, out);
  Tensor<T, Cuda> mean(Shape{z.size(0), z.size(2)}), std(Shape{z.size(0), z.size(2)});
  token_mean_std_forward<T>(ctx, z, mean.view(), std.view());
  const std::int64_t n = z.numel();
  cuda_detail::spatial_normalize_kernel<T><<<cuda_detail::blocks_for(n), cuda_detail::kThreads, 0, ctx.stream()>>>(
      z.data(), mean.data(), std.data(), alpha, eps, out.data(), z.size(1), z.size(2), n);
  CudaContext::check_launch("spatial_normalize");
}

/// y = x / max(|x|_2, eps) over the last dimension (F.normalize). x, y [..., D]; norm [rows].
template <class T>
void l2_normalize_forward(const CudaContext& ctx, In<T, Cuda> x, T eps, TensorView<T, Cuda> y, TensorView<T, Cuda> norm) {
  check_shape("l2_normalize_forward", "output", y.shape(), x.shape());
  check_shape("l2_normalize_forward", "norm", norm.shape(), Shape{x.shape().rows()});
  check_contiguous("l2_normalize_forward", x, y, norm);
  const std::int64_t rows = x.shape().rows(), D = x.shape().last();
  if (rows == 0) return;
  cuda_detail::l2_normalize_kernel<T><<<static_cast<unsigned>(rows), cuda_detail::row_threads(D), 0, ctx.stream()>>>(
      x.data(), eps, y.data(), norm.data(), D);
  CudaContext::check_launch("l2_normalize_forward");
}

/// dx assigned, from the forward's y and norm.
template <class T>
void l2_normalize_backward(const CudaContext& ctx, In<T, Cuda> y, In<T, Cuda> norm, In<T, Cuda> dy, T eps, TensorView<T, Cuda> dx) {
  check_shape("l2_normalize_backward", "dy", dy.shape(), y.shape());
  check_shape("l2_normalize_backward", "dx", dx.shape(), y.shape());
  check_shape("l2_normalize_backward", "norm", norm.shape(), Shape{y.shape().rows()});
  check_contiguous("l2_normalize_backward", y, norm, dy, dx);
  const std::int64_t rows = y.shape().rows(), D = y.shape().last();
  if (rows == 0) return;
  cuda_detail::l2_normalize_backward_kernel<T><<<static_cast<unsigned>(rows), cuda_detail::row_threads(D), 0, ctx.stream()>>>(
      y.data(), norm.data(), dy.data(), eps, dx.data(), D);
  CudaContext::check_launch("l2_normalize_backward");
}

/// s[r] = <a_r / max(|a_r|, eps), b_r / max(|b_r|, eps)>.  a, b [..., D]; s [rows].
template <class T>
CosineCache<T, Cuda> cosine_similarity_forward(const CudaContext& ctx, In<T, Cuda> a, In<T, Cuda> b, T eps, TensorView<T, Cuda> s) {
  check_shape("cosine_similarity_forward", "second input", b.shape(), a.shape());
  check_shape("cosine_similarity_forward", "output", s.shape(), Shape{a.shape().rows()});
  check_contiguous("cosine_similarity_forward", a, b, s);
  const std::int64_t rows = a.shape().rows(), D = a.shape().last();
  CosineCache<T, Cuda> c{Tensor<T, Cuda>(a.shape()), Tensor<T, Cuda>(a.shape()), Tensor<T, Cuda>(Shape{rows}),
                         Tensor<T, Cuda>(Shape{rows})};
  if (rows == 0) return c;
  cuda_detail::cosine_kernel<T><<<static_cast<unsigned>(rows), cuda_detail::row_threads(D), 0, ctx.stream()>>>(
      a.data(), b.data(), eps, c.an.data(), c.bn.data(), c.a_norm.data(), c.b_norm.data(), s.data(), D);
  CudaContext::check_launch("cosine_similarity_forward");
  return c;
}

/// da, db assigned (either may be empty to skip it).
template <class T>
void cosine_similarity_backward(const CudaContext& ctx, const CosineCache<T, Cuda>& c, In<T, Cuda> ds, T eps, TensorView<T, Cuda> da,
                                TensorView<T, Cuda> db) {
  const Shape& shape = c.an.shape();
  check_shape("cosine_similarity_backward", "ds", ds.shape(), Shape{shape.rows()});
  if (da.numel()) check_shape("cosine_similarity_backward", "da", da.shape(), shape);
  if (db.numel()) check_shape("cosine_similarity_backward", "db", db.shape(), shape);
  check_contiguous("cosine_similarity_backward", ds, da, db);
  const std::int64_t rows = shape.rows(), D = shape.last();
  if (rows == 0) return;
  cuda_detail::cosine_backward_kernel<T><<<static_cast<unsigned>(rows), cuda_detail::row_threads(D), 0, ctx.stream()>>>(
      c.an.data(), c.bn.data(), c.a_norm.data(), c.b_norm.data(), ds.data(), eps, da.numel() ? da.data() : nullptr,
      db.numel() ? db.data() : nullptr, D);
  CudaContext::check_launch("cosine_similarity_backward");
}

/// out[0] = factor * sum(s) / n in double, one block (a fixed order: the same bits every run).
template <class T>
void row_mean(const CudaContext& ctx, In<T, Cuda> s, double factor, TensorView<double, Cuda> out) {
  IREPA_CHECK(out.numel() == 1, "row_mean: the result goes into a [1] scalar, got shape {}", out.shape().str());
  IREPA_CHECK(s.numel() > 0, "row_mean: no rows to average");
  check_contiguous("row_mean", s, out);
  cuda_detail::row_sum_kernel<T><<<1, 1024, 0, ctx.stream()>>>(s.data(), s.numel(), factor, out.data());
  CudaContext::check_launch("row_mean");
}

/// The objective's totals from its scalars on the device, as the CPU op.
inline void loss_totals(const CudaContext& ctx, TensorView<double, Cuda> scalars, std::int64_t encoders, double coeff) {
  IREPA_CHECK(scalars.numel() == 3 + encoders, "loss_totals: {} scalars for {} encoders (expected {})", scalars.numel(), encoders,
              3 + encoders);
  cuda_detail::loss_totals_kernel<<<1, 32, 0, ctx.stream()>>>(scalars.data(), encoders, coeff);
  CudaContext::check_launch("loss_totals");
}

/// Softmax cross-entropy, as the CPU op (labels out of 0..K-1 give a NaN loss: the caller checks
/// them on the host).
template <class T>
void softmax_cross_entropy(const CudaContext& ctx, In<T, Cuda> z, In<std::int64_t, Cuda> y, TensorView<double, Cuda> loss,
                           TensorView<T, Cuda> dz, double scale) {
  detail::check_cross_entropy(z.shape(), y.shape(), loss.shape(), dz.numel() > 0, dz.shape());
  check_contiguous("softmax_cross_entropy", z, y, loss);
  if (dz.numel() > 0) check_contiguous("softmax_cross_entropy", dz);
  const std::int64_t B = z.size(0), K = z.size(1);
  if (B == 0) return;
  cuda_detail::softmax_cross_entropy_kernel<T><<<cuda_detail::blocks_for(B), cuda_detail::kThreads, 0, ctx.stream()>>>(
      z.data(), y.data(), loss.data(), dz.numel() > 0 ? dz.data() : nullptr, B, K, scale);
  CudaContext::check_launch("softmax_cross_entropy");
}

}  // namespace irepa::ops
