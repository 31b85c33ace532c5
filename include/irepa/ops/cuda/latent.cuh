#pragma once
// Latent arithmetic of the SD-VAE on the GPU (CudaContext overloads of ops/cpu/latent.hpp):
// one thread per latent value.

#include "irepa/ops/cpu/latent.hpp"
#include "irepa/ops/cuda/common.cuh"

namespace irepa::ops {

namespace cuda_detail {
template <class T>
__global__ void posterior_kernel(const T* m, T lo, T hi, T* ms, T* lv, std::int64_t half, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {  // i indexes logvar [B, half]
    const std::int64_t b = i / half, j = i % half, o = b * 2 * half + j;
    T v = m[o + half];
    v = v < lo ? lo : (v > hi ? hi : v);
    ms[o] = m[o], ms[o + half] = exp(T(0.5) * v), lv[i] = v;
  }
}
template <class T>
__global__ void sample_posterior_kernel(const T* ms, const T* eps, const T* scale, const T* bias, T* z, std::int64_t E, std::int64_t P,
                                        std::int64_t n) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t p = i % P, c = (i / P) % E, b = i / (E * P), o = (b * 2 * E + c) * P + p;
    z[i] = (ms[o] + ms[o + E * P] * eps[i] - bias[c]) * scale[c];
  }
}
template <class T>
__global__ void unscale_latents_kernel(const T* z, const T* scale, const T* bias, T* out, std::int64_t E, std::int64_t P, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t c = (i / P) % E;
    out[i] = z[i] / scale[c] + bias[c];
  }
}
}  // namespace cuda_detail

template <class T>
void posterior_from_moments(const CudaContext& ctx, In<T, Cuda> moments, std::type_identity_t<T> lo, std::type_identity_t<T> hi,
                            TensorView<T, Cuda> mean_std, TensorView<T, Cuda> logvar) {
  detail::check_moments("posterior_from_moments", moments.shape(), mean_std.shape(), logvar.shape());
  check_contiguous("posterior_from_moments", moments, mean_std, logvar);
  if (logvar.numel() == 0) return;
  const std::int64_t half = logvar.numel() / moments.size(0);
  cuda_detail::posterior_kernel<T><<<cuda_detail::blocks_for(logvar.numel()), cuda_detail::kThreads, 0, ctx.stream()>>>(
      moments.data(), lo, hi, mean_std.data(), logvar.data(), half, logvar.numel());
  CudaContext::check_launch("posterior_from_moments");
}

template <class T>
void sample_posterior(const CudaContext& ctx, In<T, Cuda> mean_std, In<T, Cuda> eps, In<T, Cuda> scale, In<T, Cuda> bias,
                      TensorView<T, Cuda> z) {
  detail::check_latents("sample_posterior", eps.shape(), scale.shape(), bias.shape(), z.shape());
  check_shape("sample_posterior", "mean_std", mean_std.shape(), Shape{z.size(0), 2 * z.size(1), z.size(2), z.size(3)});
  check_contiguous("sample_posterior", mean_std, eps, scale, bias, z);
  if (z.numel() == 0) return;
  cuda_detail::sample_posterior_kernel<T><<<cuda_detail::blocks_for(z.numel()), cuda_detail::kThreads, 0, ctx.stream()>>>(
      mean_std.data(), eps.data(), scale.data(), bias.data(), z.data(), z.size(1), z.size(2) * z.size(3), z.numel());
  CudaContext::check_launch("sample_posterior");
}

template <class T>
void unscale_latents(const CudaContext& ctx, In<T, Cuda> z, In<T, Cuda> scale, In<T, Cuda> bias, TensorView<T, Cuda> out) {
  detail::check_latents("unscale_latents", z.shape(), scale.shape(), bias.shape(), out.shape());
  check_contiguous("unscale_latents", z, scale, bias, out);
  if (z.numel() == 0) return;
  cuda_detail::unscale_latents_kernel<T><<<cuda_detail::blocks_for(z.numel()), cuda_detail::kThreads, 0, ctx.stream()>>>(
      z.data(), scale.data(), bias.data(), out.data(), z.size(1), z.size(2) * z.size(3), z.numel());
  CudaContext::check_launch("unscale_latents");
}

}  // namespace irepa::ops
