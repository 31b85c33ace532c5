#pragma once
// The optimizer's passes over a flat arena on the GPU: the squared gradient norm (for
// clipping) and the fused AdamW + EMA update of train/optim.hpp's AdamW::step, one kernel each.
// The norm is reduced in a fixed order (fixed grid, then one block over the partials), so it is
// the same bits on every run.

#include "irepa/ops/cuda/common.cuh"

namespace irepa::ops {

/// What AdamW::step derives once per step (torch's AdamW): step_size = lr / (1 - beta1^t),
/// bc2_sqrt = sqrt(1 - beta2^t), keep = 1 - lr * weight_decay (1 for undecayed segments).
struct AdamWCoefficients {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double step_size = 0, bc2_sqrt = 1, keep = 1;
  double grad_scale = 1;  // the clip factor, applied as gradients are read
};

/// An EMA fused into the update: e = decay e + (1 - decay) p (null when absent).
template <class T>
struct EmaTarget {
  T* values = nullptr;
  double decay = 0;
};

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

template <class T>
__global__ void adamw_ema_kernel(T* p, const T* g, T* m, T* v, std::int64_t n, T b1, T b2, T eps, T step_size, T bc2_sqrt,
                                 T keep, T gs, T* e0, T d0, T* e1, T d1) {
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

/// sum g^2 over a device buffer, accumulated in double; the host waits for the result.
template <class T>
double grad_sq_sum(const CudaContext& ctx, In<T, Cuda> g) {
  check_contiguous("grad_sq_sum", g);
  Tensor<double, Cuda> partials(Shape{cuda_detail::kNormBlocks}), total(Shape{1});
  cuda_detail::sq_sum_partials_kernel<T><<<cuda_detail::kNormBlocks, cuda_detail::kThreads, 0, ctx.stream()>>>(
      g.data(), g.numel(), partials.data());
  CudaContext::check_launch("grad_sq_sum: partials");
  cuda_detail::sum_partials_kernel<<<1, 1024, 0, ctx.stream()>>>(partials.data(), cuda_detail::kNormBlocks, total.data());
  CudaContext::check_launch("grad_sq_sum: total");
  return to_host<double>(ctx, total.view())[0];
}

/// One fused AdamW step over a contiguous range of the arena (p, g, m, v of one length), with up
/// to two EMAs updated from the new values in the same pass. Same arithmetic as AdamW::step on
/// the CPU.
template <class T>
void adamw_ema_update(const CudaContext& ctx, TensorView<T, Cuda> p, In<T, Cuda> g, TensorView<T, Cuda> m, TensorView<T, Cuda> v,
                      const AdamWCoefficients& c, EmaTarget<T> ema0 = {}, EmaTarget<T> ema1 = {}) {
  check_shape("adamw_ema_update", "grad", g.shape(), p.shape());
  check_shape("adamw_ema_update", "exp_avg", m.shape(), p.shape());
  check_shape("adamw_ema_update", "exp_avg_sq", v.shape(), p.shape());
  check_contiguous("adamw_ema_update", p, g, m, v);
  const std::int64_t n = p.numel();
  if (n == 0) return;
  cuda_detail::adamw_ema_kernel<T><<<cuda_detail::blocks_for(n), cuda_detail::kThreads, 0, ctx.stream()>>>(
      p.data(), g.data(), m.data(), v.data(), n, static_cast<T>(c.beta1), static_cast<T>(c.beta2), static_cast<T>(c.eps),
      static_cast<T>(c.step_size), static_cast<T>(c.bc2_sqrt), static_cast<T>(c.keep), static_cast<T>(c.grad_scale), ema0.values,
      static_cast<T>(ema0.decay), ema1.values, static_cast<T>(ema1.decay));
  CudaContext::check_launch("adamw_ema_update");
}

}  // namespace irepa::ops
