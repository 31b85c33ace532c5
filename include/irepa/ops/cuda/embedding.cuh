#pragma once
// Embeddings on the GPU (CudaContext overloads of ops/cpu/embedding.hpp): the class-label table
// with indices on the device (uploaded with the batch, after the host checked them there: see
// diffusion/objective.hpp's upload) and SiT's sinusoidal timestep features, forward and backward.
// An index outside the table makes its row NaN (and adds nothing in backward), so a bad label
// that got past the host's check shows up as a non-finite loss, never as another row's values.

#include "irepa/ops/cpu/embedding.hpp"
#include "irepa/ops/cuda/common.cuh"

namespace irepa::ops {

namespace cuda_detail {

template <class T>
__global__ void embedding_gather_kernel(const T* table, const std::int64_t* idx, T* out, std::int64_t B, std::int64_t D,
                                        std::int64_t rows) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < B * D;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t r = idx[i / D];
    out[i] = r >= 0 && r < rows ? table[r * D + i % D] : static_cast<T>(NAN);
  }
}

/// dtable[idx[b]] += dy[b], one thread per channel walking the batch in order (deterministic).
template <class T>
__global__ void embedding_scatter_kernel(const std::int64_t* idx, const T* dy, T* dtable, std::int64_t B, std::int64_t D,
                                         std::int64_t rows) {
  for (std::int64_t c = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; c < D;
       c += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    for (std::int64_t b = 0; b < B; ++b)
      if (idx[b] >= 0 && idx[b] < rows) dtable[idx[b] * D + c] += dy[b * D + c];
}

template <class T>
__global__ void timestep_features_kernel(const T* t, T* out, std::int64_t B, std::int64_t dim, double log_max_period) {
  const std::int64_t half = dim / 2;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < B * dim;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t b = i / dim, j = i % dim;
    if (j >= 2 * half) {
      out[i] = T(0);  // odd dim: the zero column
      continue;
    }
    const std::int64_t k = j % half;
    const double a = static_cast<double>(t[b]) * exp(-log_max_period * static_cast<double>(k) / static_cast<double>(half));
    out[i] = static_cast<T>(j < half ? cos(a) : sin(a));
  }
}

template <class T>
__global__ void timestep_features_backward_kernel(const T* t, const T* dout, T* dt, std::int64_t dim, double log_max_period) {
  __shared__ double scratch[32];
  const std::int64_t half = dim / 2, b = blockIdx.x;
  const T* g = dout + b * dim;
  double acc = 0;
  for (std::int64_t k = threadIdx.x; k < half; k += blockDim.x) {
    const double f = exp(-log_max_period * static_cast<double>(k) / static_cast<double>(half));
    const double a = static_cast<double>(t[b]) * f;
    acc += f * (-sin(a) * static_cast<double>(g[k]) + cos(a) * static_cast<double>(g[half + k]));
  }
  acc = block_sum(acc, scratch);
  if (threadIdx.x == 0) dt[b] = static_cast<T>(acc);
}

}  // namespace cuda_detail

/// out[b] = table[idx[b]].  table [N, D], idx [B] and out [B, D] on the device.
template <class T>
void embedding_forward(const CudaContext& ctx, In<T, Cuda> table, In<std::int64_t, Cuda> idx, TensorView<T, Cuda> out) {
  IREPA_CHECK(table.rank() == 2, "embedding_forward: table has shape {}, expected [N, D]", table.shape().str());
  IREPA_CHECK(idx.rank() == 1, "embedding_forward: indices have shape {}, expected [B]", idx.shape().str());
  check_shape("embedding_forward", "output", out.shape(), Shape{idx.size(0), table.size(1)});
  check_contiguous("embedding_forward", table, idx, out);
  const std::int64_t B = idx.size(0), D = table.size(1);
  if (B * D == 0) return;
  cuda_detail::embedding_gather_kernel<T><<<cuda_detail::blocks_for(B * D), cuda_detail::kThreads, 0, ctx.stream()>>>(
      table.data(), idx.data(), out.data(), B, D, table.size(0));
  CudaContext::check_launch("embedding_forward");
}

/// dtable[idx[b]] += dy[b] (a row used twice gets both contributions); idx on the device.
template <class T>
void embedding_backward(const CudaContext& ctx, In<std::int64_t, Cuda> idx, In<T, Cuda> dy, TensorView<T, Cuda> dtable) {
  IREPA_CHECK(dtable.rank() == 2, "embedding_backward: dtable has shape {}, expected [N, D]", dtable.shape().str());
  check_shape("embedding_backward", "dy", dy.shape(), Shape{idx.size(0), dtable.size(1)});
  check_contiguous("embedding_backward", idx, dy, dtable);
  const std::int64_t B = idx.size(0), D = dtable.size(1);
  if (B * D == 0) return;
  cuda_detail::embedding_scatter_kernel<T><<<cuda_detail::blocks_for(D), cuda_detail::kThreads, 0, ctx.stream()>>>(
      idx.data(), dy.data(), dtable.data(), B, D, dtable.size(0));
  CudaContext::check_launch("embedding_backward");
}

/// SiT's timestep features, t [B] -> out [B, dim] (angles in double, as on the CPU).
template <class T>
void timestep_features_forward(const CudaContext& ctx, In<T, Cuda> t, std::int64_t dim, TensorView<T, Cuda> out,
                               double max_period = 10000.0) {
  IREPA_CHECK(t.rank() == 1, "timestep_features_forward: t has shape {}, expected [B]", t.shape().str());
  check_shape("timestep_features_forward", "output", out.shape(), Shape{t.size(0), dim});
  check_contiguous("timestep_features_forward", t, out);
  if (out.numel() == 0) return;
  cuda_detail::timestep_features_kernel<T><<<cuda_detail::blocks_for(out.numel()), cuda_detail::kThreads, 0, ctx.stream()>>>(
      t.data(), out.data(), t.size(0), dim, std::log(max_period));
  CudaContext::check_launch("timestep_features_forward");
}

/// dt[b] = sum_k f_k (-sin(t f_k) dcos_k + cos(t f_k) dsin_k). dt assigned.
template <class T>
void timestep_features_backward(const CudaContext& ctx, In<T, Cuda> t, In<T, Cuda> dout, TensorView<T, Cuda> dt,
                                double max_period = 10000.0) {
  IREPA_CHECK(t.rank() == 1 && dout.rank() == 2 && dout.size(0) == t.size(0),
              "timestep_features_backward: t {} and dout {} do not match ([B] and [B, dim])", t.shape().str(), dout.shape().str());
  check_shape("timestep_features_backward", "dt", dt.shape(), t.shape());
  check_contiguous("timestep_features_backward", t, dout, dt);
  if (t.numel() == 0) return;
  cuda_detail::timestep_features_backward_kernel<T><<<static_cast<unsigned>(t.size(0)), 128, 0, ctx.stream()>>>(
      t.data(), dout.data(), dt.data(), dout.size(1), std::log(max_period));
  CudaContext::check_launch("timestep_features_backward");
}

}  // namespace irepa::ops
