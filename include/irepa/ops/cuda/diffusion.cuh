#pragma once
// The diffusion objectives' and samplers' elementwise steps on the GPU (CudaContext overloads of
// ops/cpu/diffusion.hpp). Elementwise kernels are grid-stride loops; the losses sum each image in
// double in one block, then the images in order in one thread, so a loss is the same bits on
// every run (not the CPU's: the sums' order differs).

#include "irepa/ops/cpu/diffusion.hpp"
#include "irepa/ops/cuda/common.cuh"

namespace irepa::ops {

namespace cuda_detail {

#define IREPA_GRID_STRIDE(i, n)                                                                  \
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)

template <class T>
__global__ void lognormal_time_kernel(const double* n, PathType path, T* t, std::int64_t B) {
  IREPA_GRID_STRIDE(i, B) t[i] = static_cast<T>(irepa::lognormal_time(path, n[i]));
}

template <class T>
__global__ void logit_normal_time_kernel(const double* n, double P_mean, double P_std, T* t, std::int64_t B) {
  IREPA_GRID_STRIDE(i, B) t[i] = static_cast<T>(1.0 / (1.0 + exp(-(P_mean + P_std * n[i]))));
}

template <class T>
__global__ void sit_interpolate_kernel(const T* x, const T* noise, const T* t, PathType path, T* model_input, T* target,
                                       std::int64_t per, std::int64_t n) {
  IREPA_GRID_STRIDE(i, n) {
    const PathCoefficients k = interpolant(path, static_cast<double>(t[i / per]));
    const T xi = x[i], ni = noise[i];
    model_input[i] = static_cast<T>(k.alpha) * xi + static_cast<T>(k.sigma) * ni;
    target[i] = static_cast<T>(k.d_alpha) * xi + static_cast<T>(k.d_sigma) * ni;
  }
}

template <class T>
__device__ inline T jit_inverse_gap(T t, double t_eps) {
  const T gap = T(1) - t, floor = static_cast<T>(t_eps);
  return T(1) / (gap > floor ? gap : floor);
}

template <class T>
__global__ void jit_interpolate_kernel(const T* x, const T* noise, const T* t, double t_eps, T* z, T* target_v, std::int64_t per,
                                       std::int64_t n) {
  IREPA_GRID_STRIDE(i, n) {
    const T tb = t[i / per], inv = jit_inverse_gap(tb, t_eps);
    const T xi = x[i], zi = tb * xi + (T(1) - tb) * noise[i];
    z[i] = zi;
    target_v[i] = (xi - zi) * inv;
  }
}

/// One block per image: dout and the image's sum of squared errors (partial[b], double).
template <class T>
__global__ void mse_image_kernel(const T* out, const T* target, T g, std::int64_t per, T* dout, T* per_sample, double* partial) {
  __shared__ double scratch[32];
  const std::int64_t o = blockIdx.x * per;
  double acc = 0;
  for (std::int64_t i = threadIdx.x; i < per; i += blockDim.x) {
    const T e = out[o + i] - target[o + i];
    acc += static_cast<double>(e) * static_cast<double>(e);
    dout[o + i] = g * e;
  }
  acc = block_sum(acc, scratch);
  if (threadIdx.x == 0) {
    partial[blockIdx.x] = acc / static_cast<double>(per);
    if (per_sample) per_sample[blockIdx.x] = static_cast<T>(acc / static_cast<double>(per));
  }
}

template <class T>
__global__ void jit_mse_image_kernel(const T* out, const T* z, const T* target_v, const T* t, double t_eps, T g, std::int64_t per,
                                     T* v_pred, T* dout, double* partial) {
  __shared__ double scratch[32];
  const std::int64_t o = blockIdx.x * per;
  const T k = jit_inverse_gap(t[blockIdx.x], t_eps);
  double acc = 0;
  for (std::int64_t i = threadIdx.x; i < per; i += blockDim.x) {
    const T vp = (out[o + i] - z[o + i]) * k;
    v_pred[o + i] = vp;
    const T e = vp - target_v[o + i];
    acc += static_cast<double>(e) * static_cast<double>(e);
    dout[o + i] = g * e * k;
  }
  acc = block_sum(acc, scratch);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

/// loss = (sum of the partials, in order) / divisor; one thread.
__global__ inline void ordered_mean_kernel(const double* partial, std::int64_t n, double divisor, double* loss) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  double s = 0;
  for (std::int64_t i = 0; i < n; ++i) s += partial[i];
  loss[0] = s / divisor;
}

template <class T>
__global__ void euler_kernel(const T* x, const T* d, T h, T* out, std::int64_t n) {
  IREPA_GRID_STRIDE(i, n) out[i] = x[i] + h * d[i];
}

template <class T>
__global__ void heun_kernel(const T* x, const T* d1, const T* d2, T h, bool half_each, T* out, std::int64_t n) {
  IREPA_GRID_STRIDE(i, n) {
    const T a = d1[i], b = d2[i], half = T(0.5);
    out[i] = x[i] + h * (half_each ? half * a + half * b : half * (a + b));
  }
}

template <class T>
__global__ void cfg_combine_kernel(const T* d, T s, T* out, std::int64_t n) {
  IREPA_GRID_STRIDE(i, n) out[i] = d[n + i] + s * (d[i] - d[n + i]);
}

template <class T>
__global__ void sde_drift_kernel(const T* v, const T* x, T r, T var, T half_w, T* out, std::int64_t n) {
  IREPA_GRID_STRIDE(i, n) out[i] = v[i] - half_w * ((r * v[i] - x[i]) / var);
}

template <class T>
__global__ void sde_step_kernel(T* x, const T* d, const T* eps, T h, T sw, T sdt, std::int64_t n) {
  IREPA_GRID_STRIDE(i, n) x[i] = x[i] + d[i] * h + sw * (eps[i] * sdt);
}

template <class T>
__global__ void velocity_from_x_kernel(const T* xp, const T* z, T k, T* v, std::int64_t n) {
  IREPA_GRID_STRIDE(i, n) v[i] = (xp[i] - z[i]) * k;
}

#undef IREPA_GRID_STRIDE

}  // namespace cuda_detail

template <class T>
void lognormal_time(const CudaContext& ctx, In<double, Cuda> n, PathType path, TensorView<T, Cuda> t) {
  check_shape("lognormal_time", "t", t.shape(), n.shape());
  check_contiguous("lognormal_time", n, t);
  if (t.numel() == 0) return;
  cuda_detail::lognormal_time_kernel<T><<<cuda_detail::blocks_for(t.numel()), cuda_detail::kThreads, 0, ctx.stream()>>>(
      n.data(), path, t.data(), t.numel());
  CudaContext::check_launch("lognormal_time");
}

template <class T>
void logit_normal_time(const CudaContext& ctx, In<double, Cuda> n, double P_mean, double P_std, TensorView<T, Cuda> t) {
  check_shape("logit_normal_time", "t", t.shape(), n.shape());
  check_contiguous("logit_normal_time", n, t);
  if (t.numel() == 0) return;
  cuda_detail::logit_normal_time_kernel<T><<<cuda_detail::blocks_for(t.numel()), cuda_detail::kThreads, 0, ctx.stream()>>>(
      n.data(), P_mean, P_std, t.data(), t.numel());
  CudaContext::check_launch("logit_normal_time");
}

template <class T>
void sit_interpolate(const CudaContext& ctx, In<T, Cuda> x, In<T, Cuda> noise, In<T, Cuda> t, PathType path,
                     TensorView<T, Cuda> model_input, TensorView<T, Cuda> target) {
  detail::check_interpolation("sit_interpolate", x, noise, t, model_input, "model input", target, "target");
  const std::int64_t n = x.numel();
  cuda_detail::sit_interpolate_kernel<T><<<cuda_detail::blocks_for(n), cuda_detail::kThreads, 0, ctx.stream()>>>(
      x.data(), noise.data(), t.data(), path, model_input.data(), target.data(), n / x.size(0), n);
  CudaContext::check_launch("sit_interpolate");
}

template <class T>
void mse_per_image(const CudaContext& ctx, In<T, Cuda> out, In<T, Cuda> target, double grad_scale, TensorView<T, Cuda> per_sample,
                   TensorView<T, Cuda> dout, TensorView<double, Cuda> loss) {
  detail::check_loss("mse_per_image", out, target, loss, dout);
  detail::check_per_image("mse_per_image", target.shape(), per_sample.shape(), "per-sample losses");
  const std::int64_t B = target.size(0), per = target.numel() / B;
  Tensor<double, Cuda> partial(Shape{B});
  cuda_detail::mse_image_kernel<T><<<static_cast<unsigned>(B), cuda_detail::row_threads(per), 0, ctx.stream()>>>(
      out.data(), target.data(), static_cast<T>(2 * grad_scale / static_cast<double>(B * per)), per, dout.data(), per_sample.data(),
      partial.data());
  CudaContext::check_launch("mse_per_image");
  cuda_detail::ordered_mean_kernel<<<1, 32, 0, ctx.stream()>>>(partial.data(), B, static_cast<double>(B), loss.data());
  CudaContext::check_launch("mse_per_image: batch mean");
}

template <class T>
void jit_interpolate(const CudaContext& ctx, In<T, Cuda> x, In<T, Cuda> noise, In<T, Cuda> t, double t_eps, TensorView<T, Cuda> z,
                     TensorView<T, Cuda> target_v) {
  detail::check_interpolation("jit_interpolate", x, noise, t, z, "z", target_v, "target velocity");
  const std::int64_t n = x.numel();
  cuda_detail::jit_interpolate_kernel<T><<<cuda_detail::blocks_for(n), cuda_detail::kThreads, 0, ctx.stream()>>>(
      x.data(), noise.data(), t.data(), t_eps, z.data(), target_v.data(), n / x.size(0), n);
  CudaContext::check_launch("jit_interpolate");
}

template <class T>
void jit_velocity_mse(const CudaContext& ctx, In<T, Cuda> out, In<T, Cuda> z, In<T, Cuda> target_v, In<T, Cuda> t, double t_eps,
                      double grad_scale, TensorView<T, Cuda> v_pred, TensorView<T, Cuda> dout, TensorView<double, Cuda> loss) {
  detail::check_loss("jit_velocity_mse", out, z, loss, target_v, v_pred, dout);
  detail::check_per_image("jit_velocity_mse", z.shape(), t.shape(), "t");
  check_contiguous("jit_velocity_mse", t);
  const std::int64_t B = z.size(0), per = z.numel() / B;
  Tensor<double, Cuda> partial(Shape{B});
  cuda_detail::jit_mse_image_kernel<T><<<static_cast<unsigned>(B), cuda_detail::row_threads(per), 0, ctx.stream()>>>(
      out.data(), z.data(), target_v.data(), t.data(), t_eps, static_cast<T>(2 * grad_scale / static_cast<double>(B * per)), per,
      v_pred.data(), dout.data(), partial.data());
  CudaContext::check_launch("jit_velocity_mse");
  cuda_detail::ordered_mean_kernel<<<1, 32, 0, ctx.stream()>>>(partial.data(), B, static_cast<double>(B * per), loss.data());
  CudaContext::check_launch("jit_velocity_mse: mean");
}

template <class T>
void euler_update(const CudaContext& ctx, In<T, Cuda> x, In<T, Cuda> d, double h, TensorView<T, Cuda> out) {
  detail::check_update("euler_update", x, d, out);
  if (x.numel() == 0) return;
  cuda_detail::euler_kernel<T><<<cuda_detail::blocks_for(x.numel()), cuda_detail::kThreads, 0, ctx.stream()>>>(
      x.data(), d.data(), static_cast<T>(h), out.data(), x.numel());
  CudaContext::check_launch("euler_update");
}

template <class T>
void heun_update(const CudaContext& ctx, In<T, Cuda> x, In<T, Cuda> d1, In<T, Cuda> d2, double h, HeunForm form,
                 TensorView<T, Cuda> out) {
  detail::check_update("heun_update", x, d1, d2, out);
  if (x.numel() == 0) return;
  cuda_detail::heun_kernel<T><<<cuda_detail::blocks_for(x.numel()), cuda_detail::kThreads, 0, ctx.stream()>>>(
      x.data(), d1.data(), d2.data(), static_cast<T>(h), form == HeunForm::HalfEach, out.data(), x.numel());
  CudaContext::check_launch("heun_update");
}

template <class T>
void cfg_combine(const CudaContext& ctx, In<T, Cuda> d, double scale, TensorView<T, Cuda> out) {
  IREPA_CHECK(d.rank() >= 1 && out.rank() == d.rank() && d.size(0) == 2 * out.size(0) && d.numel() == 2 * out.numel(),
              "cfg_combine: a doubled batch {} for an output of {}", d.shape().str(), out.shape().str());
  check_contiguous("cfg_combine", d, out);
  if (out.numel() == 0) return;
  cuda_detail::cfg_combine_kernel<T><<<cuda_detail::blocks_for(out.numel()), cuda_detail::kThreads, 0, ctx.stream()>>>(
      d.data(), static_cast<T>(scale), out.data(), out.numel());
  CudaContext::check_launch("cfg_combine");
}

template <class T>
void sde_drift(const CudaContext& ctx, In<T, Cuda> v, In<T, Cuda> x, double r, double var, double w, TensorView<T, Cuda> out) {
  detail::check_update("sde_drift", v, x, out);
  if (v.numel() == 0) return;
  cuda_detail::sde_drift_kernel<T><<<cuda_detail::blocks_for(v.numel()), cuda_detail::kThreads, 0, ctx.stream()>>>(
      v.data(), x.data(), static_cast<T>(r), static_cast<T>(var), static_cast<T>(0.5 * w), out.data(), v.numel());
  CudaContext::check_launch("sde_drift");
}

template <class T>
void sde_step(const CudaContext& ctx, TensorView<T, Cuda> x, In<T, Cuda> d, In<T, Cuda> eps, double dt, double w) {
  detail::check_update("sde_step", x, d, eps);
  if (x.numel() == 0) return;
  cuda_detail::sde_step_kernel<T><<<cuda_detail::blocks_for(x.numel()), cuda_detail::kThreads, 0, ctx.stream()>>>(
      x.data(), d.data(), eps.data(), static_cast<T>(dt), static_cast<T>(std::sqrt(w)), static_cast<T>(std::sqrt(std::abs(dt))),
      x.numel());
  CudaContext::check_launch("sde_step");
}

template <class T>
void velocity_from_x(const CudaContext& ctx, In<T, Cuda> x_pred, In<T, Cuda> z, double k, TensorView<T, Cuda> v) {
  detail::check_update("velocity_from_x", x_pred, z, v);
  if (v.numel() == 0) return;
  cuda_detail::velocity_from_x_kernel<T><<<cuda_detail::blocks_for(v.numel()), cuda_detail::kThreads, 0, ctx.stream()>>>(
      x_pred.data(), z.data(), static_cast<T>(k), v.data(), v.numel());
  CudaContext::check_launch("velocity_from_x");
}

}  // namespace irepa::ops
