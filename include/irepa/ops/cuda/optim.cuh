#pragma once
// The optimizer's passes over a flat arena on the GPU (CudaContext overloads of ops/cpu/optim.hpp):
// the squared gradient norm into a device scalar (for clipping), the clip factor from it, and
// the fused AdamW + EMA update of train/optim.hpp's AdamW::step, one kernel each; the update
// reads the clip factor from device memory, so nothing comes back to the host. The norm is
// reduced in a fixed order (fixed grid, then one block over the partials): the same bits on
// every run.

#include "irepa/ops/cpu/optim.hpp"
#include "irepa/ops/cuda/common.cuh"

namespace irepa::ops {

namespace cuda_detail {

constexpr int kNormBlocks = 512;

template <class T>
__global__ void sq_sum_partials_kernel(const T* g, std::int64_t n, double* partials) {
  __shared__ double scratch[32];
  double s = 0;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    s += static_cast<double>(g[i]) * static_cast<double>(g[i]);
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) partials[blockIdx.x] = s;
}

__global__ inline void sum_partials_kernel(const double* partials, int n, double* out) {
  __shared__ double scratch[32];
  double s = 0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) s += partials[i];
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) *out = s;
}

__global__ inline void clip_scale_kernel(const double* sq, double max_norm, double* norm, double* scale) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  const double n = sqrt(sq[0]);
  const double coef = max_norm / (n + 1e-6);
  norm[0] = n;
  scale[0] = coef < 1.0 ? coef : 1.0;
}

template <class T>
__global__ void adamw_ema_kernel(T* p, const T* g, T* m, T* v, std::int64_t n, T b1, T b2, T eps, T step_size, T bc2_sqrt,
                                 T keep, const double* grad_scale, T* e0, T d0, T* e1, T d1) {
  const double s = *grad_scale;
  const T gs = s < 1.0 ? static_cast<T>(s) : T(1);
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const T gi = g[i] * gs;
    const T mi = b1 * m[i] + (T(1) - b1) * gi;
    const T vi = b2 * v[i] + (T(1) - b2) * gi * gi;
    const T pi = p[i] * keep - step_size * mi / (sqrt(vi) / bc2_sqrt + eps);
    m[i] = mi, v[i] = vi, p[i] = pi;
    if (e0) e0[i] = e0[i] * d0 + pi * (T(1) - d0);
    if (e1) e1[i] = e1[i] * d1 + pi * (T(1) - d1);
  }
}

template <class T>
__global__ void ema_kernel(T* e, const T* p, std::int64_t n, T d) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    e[i] = e[i] * d + p[i] * (T(1) - d);
}

}  // namespace cuda_detail

/// e = decay e + (1 - decay) p, elementwise (Ema::update on the GPU).
template <class T>
void ema_update(const CudaContext& ctx, TensorView<T, Cuda> e, In<T, Cuda> p, double decay) {
  check_shape("ema_update", "parameters", p.shape(), e.shape());
  check_contiguous("ema_update", e, p);
  if (e.numel() == 0) return;
  cuda_detail::ema_kernel<T><<<cuda_detail::blocks_for(e.numel()), cuda_detail::kThreads, 0, ctx.stream()>>>(
      e.data(), p.data(), e.numel(), static_cast<T>(decay));
  CudaContext::check_launch("ema_update");
}

/// out[0] = sum g^2 over a device buffer, accumulated in double (stays on the device).
template <class T>
void grad_sq_sum(const CudaContext& ctx, In<T, Cuda> g, TensorView<double, Cuda> out) {
  IREPA_CHECK(out.numel() == 1, "grad_sq_sum: the result goes into a [1] scalar, got shape {}", out.shape().str());
  check_contiguous("grad_sq_sum", g, out);
  Tensor<double, Cuda> partials(Shape{cuda_detail::kNormBlocks});
  cuda_detail::sq_sum_partials_kernel<T><<<cuda_detail::kNormBlocks, cuda_detail::kThreads, 0, ctx.stream()>>>(
      g.data(), g.numel(), partials.data());
  CudaContext::check_launch("grad_sq_sum: partials");
  cuda_detail::sum_partials_kernel<<<1, 1024, 0, ctx.stream()>>>(partials.data(), cuda_detail::kNormBlocks, out.data());
  CudaContext::check_launch("grad_sq_sum: total");
}

/// norm[0] = sqrt(sq[0]), scale[0] = the clip factor, on the device (as the CPU op).
inline void clip_scale(const CudaContext& ctx, In<double, Cuda> sq, double max_norm, TensorView<double, Cuda> norm,
                       TensorView<double, Cuda> scale) {
  IREPA_CHECK(sq.numel() == 1 && norm.numel() == 1 && scale.numel() == 1, "clip_scale: [1] scalars expected");
  cuda_detail::clip_scale_kernel<<<1, 32, 0, ctx.stream()>>>(sq.data(), max_norm, norm.data(), scale.data());
  CudaContext::check_launch("clip_scale");
}

/// One fused AdamW step over a contiguous run of the arena (p, g, m, v of one length), the
/// gradients read as grad_scale[0] * g (when below 1; read on the device), with up to two EMAs
/// updated from the new values in the same pass. Same arithmetic as the CPU op.
template <class T>
void adamw_ema_update(const CudaContext& ctx, TensorView<T, Cuda> p, In<T, Cuda> g, TensorView<T, Cuda> m, TensorView<T, Cuda> v,
                      const AdamWCoefficients& c, In<double, Cuda> grad_scale, EmaTarget<T> ema0 = {}, EmaTarget<T> ema1 = {}) {
  check_shape("adamw_ema_update", "grad", g.shape(), p.shape());
  check_shape("adamw_ema_update", "exp_avg", m.shape(), p.shape());
  check_shape("adamw_ema_update", "exp_avg_sq", v.shape(), p.shape());
  IREPA_CHECK(grad_scale.numel() == 1, "adamw_ema_update: the gradient scale is a [1] scalar, got shape {}", grad_scale.shape().str());
  check_contiguous("adamw_ema_update", p, g, m, v);
  const std::int64_t n = p.numel();
  if (n == 0) return;
  cuda_detail::adamw_ema_kernel<T><<<cuda_detail::blocks_for(n), cuda_detail::kThreads, 0, ctx.stream()>>>(
      p.data(), g.data(), m.data(), v.data(), n, static_cast<T>(c.beta1), static_cast<T>(c.beta2), static_cast<T>(c.eps),
      static_cast<T>(c.step_size), static_cast<T>(c.bc2_sqrt), static_cast<T>(c.keep), grad_scale.data(), ema0.values,
      static_cast<T>(ema0.decay), ema1.values, static_cast<T>(ema1.decay));
  CudaContext::check_launch("adamw_ema_update");
}

}  // namespace irepa::ops
