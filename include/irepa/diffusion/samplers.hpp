#pragma once
// Samplers, run on the model's device with the state in the model's element type (every update
// is an op of ops/diffusion.hpp; only the time grid, computed in double, lives on the host).
// The reference's SiT samplers (time runs from 1 = noise to 0 = data):
//  - Euler / Heun ODE on linspace(1, 0, N + 1); Heun averages the velocity at (x_next, t_next)
//    with the first one on every step but the last.
//  - Euler-Maruyama SDE on linspace(1, 0.04, N) then 0, diffusion w(t) = 2t, the score derived from
//    the velocity; N - 1 noisy steps, then the last interval returns the mean without noise.
//  - Classifier-free guidance with scale s > 1 while guidance_low <= t <= guidance_high: the batch
//    is doubled (labels, then the null class), v = v_null + s (v_cond - v_null) (the SDE guides its
//    drift). The guidance test uses the step's starting time, also for Heun's second evaluation.
// A sampler calls a VelocityFn: (x [B', C, H, W], t, labels [B']) -> v, all on the device, so the
// same code drives a SiT (sit_velocity) or an exact velocity field in tests. integrate_ode is the
// Euler / Heun loop that JiT's sampler (diffusion/jit_objective.hpp) shares.

#include <cmath>
#include <functional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "irepa/core/context.hpp"
#include "irepa/core/rng.hpp"
#include "irepa/core/tensor.hpp"
#include "irepa/diffusion/interpolant.hpp"
#include "irepa/ops/diffusion.hpp"
#include "irepa/ops/random.hpp"
#include "irepa/ops/tensor_ops.hpp"

namespace irepa {

enum class SamplerKind { Euler, Heun, EulerMaruyama };

inline SamplerKind parse_sampler(std::string_view s) {
  if (s == "euler" || s == "ode") return SamplerKind::Euler;
  if (s == "heun") return SamplerKind::Heun;
  if (s == "euler_maruyama" || s == "sde") return SamplerKind::EulerMaruyama;
  fail("sampler '{}' is not known; expected euler, heun or euler_maruyama", s);
}

struct SamplerOptions {
  SamplerKind kind = SamplerKind::EulerMaruyama;
  int num_steps = 250;
  double cfg_scale = 1.0;
  double guidance_low = 0.0, guidance_high = 1.0;
  PathType path = PathType::Linear;
  std::int64_t null_class = 1000;  // the label of the unconditional branch
};

/// v = f(x, t, labels): x [B', ...] on device D, every image at time t.
template <class T, class D = Cpu>
using VelocityFn = std::function<Tensor<T, D>(ConstView<T, D> x, double t, ConstView<std::int64_t, D> labels)>;
/// Fills eps [B, ...] on device D with N(0, 1) draws, in the order the steps need them.
template <class T, class D = Cpu>
using NoiseFn = std::function<void(TensorView<T, D> eps)>;

/// torch.linspace(a, b, n) in double, the same bits (first half from a, second half from b).
inline std::vector<double> linspace(double a, double b, int n) {
  std::vector<double> v(static_cast<std::size_t>(n));
  if (n == 1) {
    v[0] = a;
    return v;
  }
  const double step = (b - a) / (n - 1);
  for (int i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = i < n / 2 ? a + step * i : b - step * (n - 1 - i);
  return v;
}

/// The doubled batch of guidance: [x; x] [2B, ...].
template <class T, class Ctx, class D = typename Ctx::device_type>
Tensor<T, D> repeat_batch(const Ctx& ctx, std::type_identity_t<ConstView<T, D>> x) {
  Shape s = x.shape();
  s[0] = 2 * x.size(0);
  Tensor<T, D> out(s);
  ops::copy<T>(ctx, x, out.view().slice(0, 0, x.size(0)));
  ops::copy<T>(ctx, x, out.view().slice(0, x.size(0), x.size(0)));
  return out;
}

/// Labels y [B] on the device, and the doubled [y; null] [2B] for guidance; checked on the host.
template <class Ctx, class D = typename Ctx::device_type>
std::pair<Tensor<std::int64_t, D>, Tensor<std::int64_t, D>> guidance_labels(const Ctx& ctx, ConstView<std::int64_t> y,
                                                                              std::int64_t null_class) {
  const std::int64_t B = y.numel();
  Tensor<std::int64_t> y2(Shape{2 * B});
  for (std::int64_t b = 0; b < B; ++b) {
    IREPA_CHECK(y.element_at(b) >= 0 && y.element_at(b) <= null_class, "sample: label {} at position {} is outside 0..{} (the null class)",
                y.element_at(b), b, null_class);
    y2[b] = y.element_at(b), y2[B + b] = null_class;
  }
  Tensor<std::int64_t, D> yd = to_device(ctx, y2.cview().slice(0, 0, B)), y2d = to_device(ctx, y2.cview());
  return {std::move(yd), std::move(y2d)};
}

/// Euler / Heun over a time grid: interval i from grid[i] to grid[i + 1] takes an Euler step,
/// and a Heun correction on the first heun_intervals intervals. velocity(x, t_eval, t_start)
/// gives the velocity at t_eval for the interval that starts at t_start.
template <class T, class Ctx, class Velocity, class D = typename Ctx::device_type>
Tensor<T, D> integrate_ode(const Ctx& ctx, std::type_identity_t<ConstView<T, D>> x0, const std::vector<double>& grid, int heun_intervals,
                           ops::HeunForm form, Velocity&& velocity) {
  Tensor<T, D> x(x0.shape());
  ops::copy<T>(ctx, x0, x.view());
  for (std::size_t i = 0; i + 1 < grid.size(); ++i) {
    const double t = grid[i], tn = grid[i + 1];
    const Tensor<T, D> d = velocity(x.cview(), t, t);
    Tensor<T, D> xn(x.shape());
    ops::euler_update<T>(ctx, x.cview(), d.cview(), tn - t, xn.view());
    if (static_cast<int>(i) < heun_intervals) {
      const Tensor<T, D> d2 = velocity(xn.cview(), tn, t);
      ops::heun_update<T>(ctx, x.cview(), d.cview(), d2.cview(), tn - t, form, xn.view());
    }
    x = std::move(xn);
  }
  return x;
}

namespace detail {
/// One (guided) evaluation at time t: the doubled batch when guidance is on; the SDE's drift.
template <class T, class Ctx, class D = typename Ctx::device_type>
Tensor<T, D> guided_velocity(const Ctx& ctx, const VelocityFn<T, D>& f, ConstView<T, D> x, double t, ConstView<std::int64_t, D> y,
                             ConstView<std::int64_t, D> y2, const SamplerOptions& o, bool guide, bool sde_drift) {
  auto drift = [&](Tensor<T, D> v, ConstView<T, D> xin) {
    if (!sde_drift) return v;
    // d = v - 0.5 w(t) score, score = (alpha/d_alpha v - x) / var, var = sigma^2 - alpha/d_alpha d_sigma sigma
    const PathCoefficients k = interpolant(o.path, t);
    const double r = k.alpha / k.d_alpha, var = k.sigma * k.sigma - r * k.d_sigma * k.sigma;
    Tensor<T, D> d(v.shape());
    ops::sde_drift<T>(ctx, v.cview(), xin, r, var, 2 * t, d.view());
    return d;
  };
  if (!guide) return drift(f(x, t, y), x);
  const Tensor<T, D> x2 = repeat_batch<T>(ctx, x);
  const Tensor<T, D> d = drift(f(x2.cview(), t, y2), x2.cview());
  Tensor<T, D> out(x.shape());
  ops::cfg_combine<T>(ctx, d.cview(), o.cfg_scale, out.view());
  return out;
}
}  // namespace detail

/// Runs the sampler from latents [B, C, H, W] (the initial noise) on the device, with labels
/// y [B] given on the host. noise is needed by the SDE only (num_steps - 1 draws of [B, C, H, W]).
template <class T, class Ctx, class D = typename Ctx::device_type>
Tensor<T, D> sample(const Ctx& ctx, const std::type_identity_t<VelocityFn<T, D>>& f, std::type_identity_t<ConstView<T, D>> latents,
                    ConstView<std::int64_t> y, const SamplerOptions& o, const std::type_identity_t<NoiseFn<T, D>>& noise = {}) {
  IREPA_CHECK(o.num_steps >= 1, "sample: num_steps {} must be >= 1", o.num_steps);
  IREPA_CHECK(latents.rank() >= 2 && y.rank() == 1 && y.size(0) == latents.size(0),
              "sample: latents {} and labels {} do not match ([B, ...] and [B])", latents.shape().str(), y.shape().str());
  const bool cfg = o.cfg_scale > 1.0;
  auto guided = [&](double t) { return cfg && t <= o.guidance_high && t >= o.guidance_low; };
  const auto labels = guidance_labels(ctx, y, o.null_class);
  const Tensor<std::int64_t, D>& yd = labels.first;
  const Tensor<std::int64_t, D>& y2d = labels.second;
  if (o.kind != SamplerKind::EulerMaruyama) {
    const int heun = o.kind == SamplerKind::Heun ? o.num_steps - 1 : 0;
    return integrate_ode<T>(ctx, latents, linspace(1.0, 0.0, o.num_steps + 1), heun, ops::HeunForm::HalfEach,
                            [&](ConstView<T, D> x, double t, double t_start) {
                              return detail::guided_velocity<T>(ctx, f, x, t, yd.cview(), y2d.cview(), o, guided(t_start), false);
                            });
  }
  IREPA_CHECK(o.num_steps == 1 || static_cast<bool>(noise), "sample: the SDE with {} steps needs a noise source", o.num_steps);
  std::vector<double> ts = linspace(1.0, 0.04, o.num_steps);
  ts.push_back(0.0);
  Tensor<T, D> x(latents.shape()), eps(latents.shape());
  ops::copy<T>(ctx, latents, x.view());
  for (std::size_t i = 0; i + 2 < ts.size(); ++i) {
    const double t = ts[i], dt = ts[i + 1] - t;
    noise(eps.view());
    const Tensor<T, D> d = detail::guided_velocity<T>(ctx, f, x.cview(), t, yd.cview(), y2d.cview(), o, guided(t), true);
    ops::sde_step<T>(ctx, x.view(), d.cview(), eps.cview(), dt, 2 * t);
  }
  const double t = ts[ts.size() - 2], dt = ts.back() - t;
  const Tensor<T, D> d = detail::guided_velocity<T>(ctx, f, x.cview(), t, yd.cview(), y2d.cview(), o, guided(t), true);
  Tensor<T, D> out(x.shape());
  ops::euler_update<T>(ctx, x.cview(), d.cview(), dt, out.view());
  return out;
}

/// A NoiseFn drawing N(0, 1) from a Philox stream on the context's device.
template <class T, class Ctx>
NoiseFn<T, typename Ctx::device_type> philox_noise(const Ctx& ctx, Philox& rng) {
  return [&ctx, &rng](TensorView<T, typename Ctx::device_type> eps) { ops::random_normal<T>(ctx, rng, eps); };
}

/// The velocity of a SiT-like model (infer(ctx, x, t, y)), in the model's scalar type on its device.
template <class Model>
VelocityFn<typename Model::scalar_type, typename Model::device_type> sit_velocity(const typename Model::Context& ctx,
                                                                                   const Model& model) {
  using T = typename Model::scalar_type;
  using D = typename Model::device_type;
  return [&ctx, &model](ConstView<T, D> x, double t, ConstView<std::int64_t, D> y) {
    Tensor<T, D> tt(Shape{x.size(0)});
    fill(ctx, tt.view(), static_cast<T>(t));
    return model.infer(ctx, x, tt.cview(), y);
  };
}

/// Widens a device tensor to host doubles (images for grids, scores, files).
template <class T, class Ctx>
Tensor<double> to_host_double(const Ctx& ctx, ConstView<T, typename Ctx::device_type> x) {
  const Tensor<T> h = to_host<T>(ctx, x);
  Tensor<double> out(h.shape());
  for (std::int64_t i = 0; i < h.numel(); ++i) out[i] = static_cast<double>(h[i]);
  return out;
}

/// The starting noise of a sample: N(0, std^2) drawn in double from Philox(seed, stream 7),
/// rounded to T and put on the context's device.
template <class T, class Ctx>
Tensor<T, typename Ctx::device_type> sample_noise(const Ctx& ctx, const Shape& shape, std::uint64_t seed, double std = 1.0) {
  Philox srng(seed, 7);
  Tensor<double> z(shape);
  srng.normal(z.view(), 0.0, std);
  Tensor<T> zt(shape);
  for (std::int64_t i = 0; i < z.numel(); ++i) zt[i] = static_cast<T>(z[i]);
  return to_device(ctx, zt.cview());
}

/// Class-conditional samples of a SiT (o's sampler; its null class is the model's) from noise
/// drawn by Philox(seed, stream 7): x [N, C, H, W] on the host, in the data's scaled range. The
/// SDE's noise is drawn on the device from Philox(seed, stream 8).
template <class Model>
Tensor<double> sample_sit(const typename Model::Context& ctx, const Model& model, ConstView<std::int64_t> y, std::uint64_t seed,
                          SamplerOptions o) {
  using T = typename Model::scalar_type;
  const auto& c = model.config;
  o.null_class = c.num_classes;
  const auto z = sample_noise<T>(ctx, Shape{y.numel(), c.in_channels, c.input_size, c.input_size}, seed);
  Philox noise_rng(seed, 8);
  const auto x = sample<T>(ctx, sit_velocity(ctx, model), z.cview(), y, o, philox_noise<T>(ctx, noise_rng));
  return to_host_double<T>(ctx, x.cview());
}

}  // namespace irepa
