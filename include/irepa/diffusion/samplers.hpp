#pragma once
// Samplers for velocity-predicting SiT models, as the reference's (time runs from 1 = noise to
// 0 = data; the state is kept in double whatever the model's type):
//  - Euler / Heun ODE on linspace(1, 0, N + 1); Heun averages the velocity at (x_next, t_next)
//    with the first one on every step but the last.
//  - Euler-Maruyama SDE on linspace(1, 0.04, N) then 0, diffusion w(t) = 2t, the score derived from
//    the velocity; N - 1 noisy steps, then the last interval returns the mean without noise.
//  - Classifier-free guidance with scale s > 1 while guidance_low <= t <= guidance_high: the batch
//    is doubled (labels, then the null class), v = v_null + s (v_cond - v_null) (the SDE guides its
//    drift). The guidance test uses the step's starting time, also for Heun's second evaluation.
// A sampler calls a VelocityFn: (x [B', C, H, W] double, t, labels [B']) -> v, so the same code
// drives a SiT (sit_velocity, on the CPU or a device) or an exact velocity field in tests.

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

/// v = f(x, t, labels): x [B', ...] in double, every image at time t.
using VelocityFn = std::function<Tensor<double>(ConstView<double> x, double t, ConstView<std::int64_t> labels)>;
/// Fills eps [B, ...] with N(0, 1) draws, in the order the steps need them.
using NoiseFn = std::function<void(TensorView<double> eps)>;

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

namespace detail {
/// One (guided) evaluation at time t: the doubled batch when guidance is on.
inline Tensor<double> guided_velocity(const VelocityFn& f, ConstView<double> x, double t, ConstView<std::int64_t> y,
                                      const SamplerOptions& o, bool guide, bool sde_drift) {
  const std::int64_t B = x.size(0), per = x.numel() / B;
  auto drift = [&](Tensor<double> v, ConstView<double> xin) {
    if (!sde_drift) return v;
    // d = v - 0.5 w(t) score, score = (alpha/d_alpha v - x) / var, var = sigma^2 - alpha/d_alpha d_sigma sigma
    const PathCoefficients k = interpolant(o.path, t);
    const double r = k.alpha / k.d_alpha, var = k.sigma * k.sigma - r * k.d_sigma * k.sigma, w = 2 * t;
    for (std::int64_t i = 0; i < v.numel(); ++i) v[i] = v[i] - 0.5 * w * ((r * v[i] - xin.data()[i]) / var);
    return v;
  };
  if (!guide) return drift(f(x, t, y), x);
  Shape s2 = x.shape();
  s2[0] = 2 * B;
  Tensor<double> x2(s2);
  Tensor<std::int64_t> y2(Shape{2 * B});
  std::copy_n(x.data(), B * per, x2.data());
  std::copy_n(x.data(), B * per, x2.data() + B * per);
  for (std::int64_t b = 0; b < B; ++b) y2[b] = y[b], y2[B + b] = o.null_class;
  const Tensor<double> d = drift(f(x2, t, y2), x2);
  Tensor<double> out(x.shape());
  for (std::int64_t i = 0; i < B * per; ++i) out[i] = d[B * per + i] + o.cfg_scale * (d[i] - d[B * per + i]);
  return out;
}
}  // namespace detail

/// Runs the sampler from latents [B, C, H, W] (the initial noise) with labels y [B]. noise is
/// needed by the SDE only (num_steps - 1 draws of [B, C, H, W]).
inline Tensor<double> sample(const VelocityFn& f, ConstView<double> latents, ConstView<std::int64_t> y, const SamplerOptions& o,
                             const NoiseFn& noise = {}) {
  IREPA_CHECK(o.num_steps >= 1, "sample: num_steps {} must be >= 1", o.num_steps);
  IREPA_CHECK(latents.rank() >= 2 && y.rank() == 1 && y.size(0) == latents.size(0),
              "sample: latents {} and labels {} do not match ([B, ...] and [B])", latents.shape().str(), y.shape().str());
  const bool cfg = o.cfg_scale > 1.0;
  auto guided = [&](double t) { return cfg && t <= o.guidance_high && t >= o.guidance_low; };
  Tensor<double> x = Tensor<double>::copy_of(latents);
  const std::int64_t n = x.numel();
  if (o.kind != SamplerKind::EulerMaruyama) {
    const auto ts = linspace(1.0, 0.0, o.num_steps + 1);
    for (int i = 0; i < o.num_steps; ++i) {
      const double t = ts[static_cast<std::size_t>(i)], tn = ts[static_cast<std::size_t>(i + 1)];
      const bool g = guided(t);
      const Tensor<double> d = detail::guided_velocity(f, x, t, y, o, g, false);
      Tensor<double> xn(x.shape());
      for (std::int64_t k = 0; k < n; ++k) xn[k] = x[k] + (tn - t) * d[k];
      if (o.kind == SamplerKind::Heun && i < o.num_steps - 1) {
        const Tensor<double> d2 = detail::guided_velocity(f, xn, tn, y, o, g, false);
        for (std::int64_t k = 0; k < n; ++k) xn[k] = x[k] + (tn - t) * (0.5 * d[k] + 0.5 * d2[k]);
      }
      x = std::move(xn);
    }
    return x;
  }
  IREPA_CHECK(o.num_steps == 1 || static_cast<bool>(noise), "sample: the SDE with {} steps needs a noise source", o.num_steps);
  std::vector<double> ts = linspace(1.0, 0.04, o.num_steps);
  ts.push_back(0.0);
  Tensor<double> eps(x.shape());
  for (std::size_t i = 0; i + 2 < ts.size(); ++i) {
    const double t = ts[i], dt = ts[i + 1] - t, w = 2 * t;
    noise(eps.view());
    const Tensor<double> d = detail::guided_velocity(f, x, t, y, o, guided(t), true);
    for (std::int64_t k = 0; k < n; ++k) x[k] = x[k] + d[k] * dt + std::sqrt(w) * (eps[k] * std::sqrt(std::abs(dt)));
  }
  const double t = ts[ts.size() - 2], dt = ts.back() - t;
  const Tensor<double> d = detail::guided_velocity(f, x, t, y, o, guided(t), true);
  for (std::int64_t k = 0; k < n; ++k) x[k] = x[k] + dt * d[k];
  return x;
}

/// A NoiseFn drawing N(0, 1) from a Philox stream.
inline NoiseFn philox_noise(Philox& rng) {
  return [&rng](TensorView<double> eps) { rng.normal(eps); };
}

/// The velocity of a SiT-like model (forward(ctx, x, t, y, align) -> cache.output()), evaluated
/// in the model's scalar type.
template <class Model>
VelocityFn sit_velocity(const typename Model::Context& ctx, const Model& model) {
  using T = typename Model::scalar_type;
  return [&ctx, &model](ConstView<double> x, double t, ConstView<std::int64_t> y) {
    Tensor<T> xt(x.shape()), tt(Shape{x.size(0)});
    for (std::int64_t i = 0; i < x.numel(); ++i) xt[i] = static_cast<T>(x.data()[i]);
    tt.fill(static_cast<T>(t));
    Tensor<double> v(x.shape());
    auto widen = [&](ConstView<T> out) {
      for (std::int64_t i = 0; i < v.numel(); ++i) v[i] = static_cast<double>(out.data()[i]);
    };
    if constexpr (std::is_same_v<typename Model::device_type, Cpu>) {
      widen(model.forward(ctx, xt, tt, y, /*align=*/false).output());
    } else {  // a device model: the state stays on the host, x and t go up, v comes back
      const auto xd = to_device(ctx, xt.cview()), td = to_device(ctx, tt.cview());
      widen(to_host(ctx, model.forward(ctx, xd, td, y, /*align=*/false).output()).cview());
    }
    return v;
  };
}

}  // namespace irepa
