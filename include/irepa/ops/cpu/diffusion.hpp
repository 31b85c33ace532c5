#pragma once
// The diffusion objectives' and samplers' elementwise steps, CPU backend (ops/cuda/diffusion.cuh
// has the same functions for CudaContext):
//  - training times from normal draws (SiT's lognormal, JiT's logit-normal);
//  - SiT's interpolant x_t = alpha x + sigma n with its velocity target, and the per-image MSE
//    with d(loss)/d(output);
//  - JiT's z = t x + (1 - t) e with its target velocity, and the velocity MSE through the
//    predicted image;
//  - the sampler updates: Euler and Heun steps, guidance mixing of a doubled batch, the SDE's
//    drift and noisy step, an x-prediction's velocity.
// Losses are written into [1] double scalars on the device; nothing is read back here.

#include <algorithm>
#include <cmath>

#include "irepa/core/context.hpp"
#include "irepa/core/tensor.hpp"
#include "irepa/diffusion/interpolant.hpp"

namespace irepa::ops {

namespace detail {
inline void check_images(std::string_view op, const Shape& x, const Shape& other, const char* what) {
  IREPA_CHECK(x.rank() >= 2 && x[0] > 0, "{}: images have shape {}, expected [B, ...]", op, x.str());
  check_shape(op, what, other, x);
}
inline void check_per_image(std::string_view op, const Shape& x, const Shape& t, const char* what) {
  check_shape(op, what, t, Shape{x[0]});
}
inline void check_scalar(std::string_view op, const Shape& s) {
  IREPA_CHECK(s.numel() == 1, "{}: the loss goes into a [1] scalar, got shape {}", op, s.str());
}
/// An interpolation's arguments: x, noise and both outputs [B, ...], t [B], all contiguous.
template <class X, class N, class Tt, class A, class Bv>
void check_interpolation(std::string_view op, const X& x, const N& noise, const Tt& t, const A& a, const char* a_name, const Bv& b,
                         const char* b_name) {
  check_images(op, x.shape(), noise.shape(), "noise");
  check_per_image(op, x.shape(), t.shape(), "t");
  check_shape(op, a_name, a.shape(), x.shape());
  check_shape(op, b_name, b.shape(), x.shape());
  check_contiguous(op, x, noise, t, a, b);
}
/// A loss's arguments: the output and each of `same` shaped as the target [B, ...], loss [1].
template <class O, class Tg, class L, class... Same>
void check_loss(std::string_view op, const O& out, const Tg& target, const L& loss, const Same&... same) {
  check_images(op, target.shape(), out.shape(), "output");
  (check_shape(op, "argument", same.shape(), target.shape()), ...);
  check_scalar(op, loss.shape());
  check_contiguous(op, out, target, loss, same...);
}
/// An update's arguments: every one shaped as x, all contiguous.
template <class X, class... Rest>
void check_update(std::string_view op, const X& x, const Rest&... rest) {
  (check_shape(op, "argument", rest.shape(), x.shape()), ...);
  check_contiguous(op, x, rest...);
}
/// Heun's average as the SiT samplers write it (0.5 d1 + 0.5 d2) or as JiT's (0.5 (d1 + d2)).
enum class HeunForm { HalfEach, HalfSum };
}  // namespace detail
using detail::HeunForm;

// ---------------------------------------------------------------------------------------------
// Training times

/// t[b] = lognormal_time(path, n[b]) (SiT's "lognormal" weighting) from normal draws n [B] in double.
template <class T>
void lognormal_time(const CpuContext&, In<double> n, PathType path, TensorView<T> t) {
  check_shape("lognormal_time", "t", t.shape(), n.shape());
  check_contiguous("lognormal_time", n, t);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = static_cast<T>(irepa::lognormal_time(path, n.data()[i]));
}

/// t[b] = sigmoid(P_mean + P_std n[b]) (JiT's logit-normal time, t = 1 clean) from n [B] in double.
template <class T>
void logit_normal_time(const CpuContext&, In<double> n, double P_mean, double P_std, TensorView<T> t) {
  check_shape("logit_normal_time", "t", t.shape(), n.shape());
  check_contiguous("logit_normal_time", n, t);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = static_cast<T>(1.0 / (1.0 + std::exp(-(P_mean + P_std * n.data()[i]))));
}

// ---------------------------------------------------------------------------------------------
// SiT: interpolant and MSE

/// model_input = alpha(t_b) x + sigma(t_b) n, target = d_alpha(t_b) x + d_sigma(t_b) n per image b;
/// coefficients in double, rounded once to T. x, n, outputs [B, ...]; t [B].
template <class T>
void sit_interpolate(const CpuContext&, In<T> x, In<T> noise, In<T> t, PathType path, TensorView<T> model_input,
                     TensorView<T> target) {
  detail::check_interpolation("sit_interpolate", x, noise, t, model_input, "model input", target, "target");
  const std::int64_t B = x.size(0), per = x.numel() / B;
  for (std::int64_t b = 0; b < B; ++b) {
    const PathCoefficients k = interpolant(path, static_cast<double>(t.data()[b]));
    const T al = static_cast<T>(k.alpha), si = static_cast<T>(k.sigma), da = static_cast<T>(k.d_alpha), ds = static_cast<T>(k.d_sigma);
    for (std::int64_t i = b * per; i < (b + 1) * per; ++i) {
      const T xi = x.data()[i], ni = noise.data()[i];
      model_input.data()[i] = al * xi + si * ni;
      target.data()[i] = da * xi + ds * ni;
    }
  }
}

/// The SiT denoising loss: per image the mean over its values of (out - target)^2 (summed in
/// double), per_sample [B] = those means, loss[0] = their mean over the batch; dout assigned
/// d(grad_scale * loss)/d(out) = 2 grad_scale (out - target) / (B n).
template <class T>
void mse_per_image(const CpuContext&, In<T> out, In<T> target, double grad_scale, TensorView<T> per_sample, TensorView<T> dout,
                   TensorView<double> loss) {
  detail::check_loss("mse_per_image", out, target, loss, dout);
  detail::check_per_image("mse_per_image", target.shape(), per_sample.shape(), "per-sample losses");
  const std::int64_t B = target.size(0), per = target.numel() / B;
  const T g = static_cast<T>(2 * grad_scale / static_cast<double>(B * per));
  double sum = 0;
  for (std::int64_t b = 0; b < B; ++b) {
    double acc = 0;
    for (std::int64_t i = b * per; i < (b + 1) * per; ++i) {
      const T e = out.data()[i] - target.data()[i];
      acc += static_cast<double>(e) * static_cast<double>(e);
      dout.data()[i] = g * e;
    }
    per_sample.data()[b] = static_cast<T>(acc / static_cast<double>(per));
    sum += acc / static_cast<double>(per);
  }
  loss.data()[0] = sum / static_cast<double>(B);
}

// ---------------------------------------------------------------------------------------------
// JiT: interpolation and velocity MSE (t = 1 is clean)

namespace detail {
template <class T>
T jit_inverse_gap(T t, double t_eps) {  // 1 / max(1 - t, t_eps)
  return T(1) / std::max(T(1) - t, static_cast<T>(t_eps));
}
}  // namespace detail

/// z = t_b x + (1 - t_b) e, target_v = (x - z) / max(1 - t_b, t_eps). x, e, z, target_v [B, ...]; t [B].
template <class T>
void jit_interpolate(const CpuContext&, In<T> x, In<T> noise, In<T> t, double t_eps, TensorView<T> z, TensorView<T> target_v) {
  detail::check_interpolation("jit_interpolate", x, noise, t, z, "z", target_v, "target velocity");
  const std::int64_t B = x.size(0), per = x.numel() / B;
  for (std::int64_t b = 0; b < B; ++b) {
    const T tb = t.data()[b], inv = detail::jit_inverse_gap(tb, t_eps);
    for (std::int64_t i = b * per; i < (b + 1) * per; ++i) {
      const T xi = x.data()[i], zi = tb * xi + (T(1) - tb) * noise.data()[i];
      z.data()[i] = zi;
      target_v.data()[i] = (xi - zi) * inv;
    }
  }
}

/// JiT's loss on the velocity: v_pred = (out - z) / max(1 - t_b, t_eps), loss[0] = mean over
/// every value of (v_pred - target_v)^2 (one running sum in double, in order); dout assigned
/// d(grad_scale * loss)/d(out); v_pred [B, ...] written.
template <class T>
void jit_velocity_mse(const CpuContext&, In<T> out, In<T> z, In<T> target_v, In<T> t, double t_eps, double grad_scale,
                      TensorView<T> v_pred, TensorView<T> dout, TensorView<double> loss) {
  detail::check_loss("jit_velocity_mse", out, z, loss, target_v, v_pred, dout);
  detail::check_per_image("jit_velocity_mse", z.shape(), t.shape(), "t");
  check_contiguous("jit_velocity_mse", t);
  const std::int64_t B = z.size(0), per = z.numel() / B;
  const T g = static_cast<T>(2 * grad_scale / static_cast<double>(B * per));
  double sum = 0;
  for (std::int64_t b = 0; b < B; ++b) {
    const T k = detail::jit_inverse_gap(t.data()[b], t_eps);
    for (std::int64_t i = b * per; i < (b + 1) * per; ++i) {
      const T vp = (out.data()[i] - z.data()[i]) * k;
      v_pred.data()[i] = vp;
      const T e = vp - target_v.data()[i];
      sum += static_cast<double>(e) * static_cast<double>(e);
      dout.data()[i] = g * e * k;
    }
  }
  loss.data()[0] = sum / static_cast<double>(B * per);
}

// ---------------------------------------------------------------------------------------------
// Sampler updates. The step sizes and coefficients come in double and are rounded once to T.

/// out = x + h d.
template <class T>
void euler_update(const CpuContext&, In<T> x, In<T> d, double h, TensorView<T> out) {
  detail::check_update("euler_update", x, d, out);
  const T hh = static_cast<T>(h);
  for (std::int64_t i = 0; i < x.numel(); ++i) out.data()[i] = x.data()[i] + hh * d.data()[i];
}

/// out = x + h (0.5 d1 + 0.5 d2) (HalfEach) or x + h (0.5 (d1 + d2)) (HalfSum).
template <class T>
void heun_update(const CpuContext&, In<T> x, In<T> d1, In<T> d2, double h, HeunForm form, TensorView<T> out) {
  detail::check_update("heun_update", x, d1, d2, out);
  const T hh = static_cast<T>(h), half = T(0.5);
  for (std::int64_t i = 0; i < x.numel(); ++i) {
    const T a = d1.data()[i], b = d2.data()[i];
    out.data()[i] = x.data()[i] + hh * (form == HeunForm::HalfEach ? half * a + half * b : half * (a + b));
  }
}

/// Classifier-free guidance over a doubled batch d [2B, ...] (conditional first, then null):
/// out [B, ...] = d_null + scale (d_cond - d_null).
template <class T>
void cfg_combine(const CpuContext&, In<T> d, double scale, TensorView<T> out) {
  IREPA_CHECK(d.rank() >= 1 && out.rank() == d.rank() && d.size(0) == 2 * out.size(0) && d.numel() == 2 * out.numel(),
              "cfg_combine: a doubled batch {} for an output of {}", d.shape().str(), out.shape().str());
  check_contiguous("cfg_combine", d, out);
  const std::int64_t n = out.numel();
  const T s = static_cast<T>(scale);
  for (std::int64_t i = 0; i < n; ++i) out.data()[i] = d.data()[n + i] + s * (d.data()[i] - d.data()[n + i]);
}

/// The Euler-Maruyama drift from a velocity: out = v - 0.5 w ((r v - x) / var), r = alpha / d_alpha.
template <class T>
void sde_drift(const CpuContext&, In<T> v, In<T> x, double r, double var, double w, TensorView<T> out) {
  detail::check_update("sde_drift", v, x, out);
  const T half_w = static_cast<T>(0.5 * w), rr = static_cast<T>(r), vv = static_cast<T>(var);
  for (std::int64_t i = 0; i < v.numel(); ++i) out.data()[i] = v.data()[i] - half_w * ((rr * v.data()[i] - x.data()[i]) / vv);
}

/// One noisy Euler-Maruyama step in place: x = x + d dt + sqrt(w) (eps sqrt|dt|).
template <class T>
void sde_step(const CpuContext&, TensorView<T> x, In<T> d, In<T> eps, double dt, double w) {
  detail::check_update("sde_step", x, d, eps);
  const T h = static_cast<T>(dt), sw = static_cast<T>(std::sqrt(w)), sdt = static_cast<T>(std::sqrt(std::abs(dt)));
  for (std::int64_t i = 0; i < x.numel(); ++i) x.data()[i] = x.data()[i] + d.data()[i] * h + sw * (eps.data()[i] * sdt);
}

/// The velocity of an x-prediction: v = (x_pred - z) k, with k = 1 / max(1 - t, t_eps) given.
template <class T>
void velocity_from_x(const CpuContext&, In<T> x_pred, In<T> z, double k, TensorView<T> v) {
  detail::check_update("velocity_from_x", x_pred, z, v);
  const T kk = static_cast<T>(k);
  for (std::int64_t i = 0; i < v.numel(); ++i) v.data()[i] = (x_pred.data()[i] - z.data()[i]) * kk;
}

}  // namespace irepa::ops
