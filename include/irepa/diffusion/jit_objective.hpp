#pragma once
// The JiT objective and sampler (REFERENCE.md section 5), an ObjectiveFor any JiT-like model
// (x-prediction). t = 1 is the clean image:
//   z = t x + (1 - t) e,  e ~ N(0, noise_scale^2),  t = sigmoid(N(P_mean, P_std))
//   the network predicts x;  v = (x - z) / max(1 - t, t_eps),  v_pred = (x_pred - z) / max(1 - t, t_eps)
//   denoising = mean (v - v_pred)^2   (objective_step adds proj_coeff * the alignment mean)
// Sampling integrates dz/dt = v from t = 0 (noise) to 1 on linspace(0, 1, N + 1): Heun on the
// first N - 1 intervals, Euler on the last; classifier-free guidance mixes the predicted images
// x_uncond + w (x_cond - x_uncond) with a doubled batch, unless t >= interval_max or
// (interval_min != 0 and t <= interval_min). Everything runs on the model's device.

#include <algorithm>
#include <cmath>
#include <vector>

#include "irepa/core/concepts.hpp"
#include "irepa/diffusion/objective.hpp"
#include "irepa/diffusion/samplers.hpp"
#include "irepa/ops/diffusion.hpp"
#include "irepa/ops/random.hpp"

namespace irepa {

struct JiTSamplerOptions {
  int num_steps = 50;
  bool heun = true;             // false: Euler on every interval
  double cfg_scale = 1.0;
  double interval_min = 0.0, interval_max = 1.0;
  double t_eps = 0.05;
};

/// z0 [B, C, H, W] the starting noise on the model's device, labels [B] on the host -> the
/// generated images on the device. The time grid is in double; the network sees t as T.
template <class Model>
Tensor<typename Model::scalar_type, typename Model::device_type> jit_sample(
    const typename Model::Context& ctx, const Model& model, ConstView<typename Model::scalar_type, typename Model::device_type> z0,
    ConstView<std::int64_t> labels, const JiTSamplerOptions& o) {
  using T = typename Model::scalar_type;
  using D = typename Model::device_type;
  IREPA_CHECK(o.num_steps >= 1, "jit_sample: num_steps {} must be at least 1", o.num_steps);
  check_shape("jit_sample", "labels", labels.shape(), Shape{z0.size(0)});
  const auto y = guidance_labels(ctx, labels, model.config.num_classes);
  // v(z, t) as the reference's _forward_sample: the guidance decision at the evaluation time.
  auto velocity = [&](ConstView<T, D> z, double tt, double) {
    const bool guided = o.cfg_scale != 1.0 && !(tt >= o.interval_max || (o.interval_min != 0 && tt <= o.interval_min));
    const Tensor<T, D> zin = guided ? repeat_batch<T>(ctx, z) : Tensor<T, D>();
    const ConstView<T, D> in = guided ? zin.cview() : z;
    Tensor<T, D> tin(Shape{in.size(0)});
    fill(ctx, tin.view(), static_cast<T>(tt));
    Tensor<T, D> x = model.infer(ctx, in, tin.cview(), guided ? y.second.cview() : y.first.cview());
    if (guided) {
      Tensor<T, D> mixed(z.shape());
      ops::cfg_combine<T>(ctx, x.cview(), o.cfg_scale, mixed.view());
      x = std::move(mixed);
    }
    const T inv = T(1) / std::max(T(1) - static_cast<T>(tt), static_cast<T>(o.t_eps));
    Tensor<T, D> v(z.shape());
    ops::velocity_from_x<T>(ctx, x.cview(), z, static_cast<double>(inv), v.view());
    return v;
  };
  const int N = o.num_steps;
  std::vector<double> grid(static_cast<std::size_t>(N) + 1);
  for (int i = 0; i <= N; ++i) grid[static_cast<std::size_t>(i)] = static_cast<double>(i) / static_cast<double>(N);
  return integrate_ode<T>(ctx, z0, grid, o.heun ? N - 1 : 0, ops::HeunForm::HalfSum, velocity);
}

/// Class-conditional samples of a JiT (the reference's sampler) from noise drawn by
/// Philox(seed, stream 7): images [N, C, H, W] on the host, in [-1, 1].
template <class Model>
Tensor<double> sample_jit(const typename Model::Context& ctx, const Model& model, ConstView<std::int64_t> y, std::uint64_t seed,
                          const JiTSamplerOptions& so, double noise_scale = 1.0) {
  using T = typename Model::scalar_type;
  const auto& c = model.config;
  const auto z = sample_noise<T>(ctx, Shape{y.numel(), c.in_channels, c.input_size, c.input_size}, seed, noise_scale);
  return to_host_double<T>(ctx, jit_sample(ctx, model, z.cview(), y, so).cview());
}

struct JiTObjective {
  double P_mean = -0.8, P_std = 0.8;
  double noise_scale = 1.0;
  double t_eps = 0.05;
  double proj_coeff = 0.5;

  /// Settings finite and in range (the trainer calls it before the first step).
  void validate() const {
    IREPA_CHECK(std::isfinite(P_mean) && std::isfinite(P_std) && P_std > 0,
                "JiTObjective: P_mean {} and P_std {} must be finite, P_std > 0", P_mean, P_std);
    IREPA_CHECK(std::isfinite(noise_scale) && noise_scale > 0, "JiTObjective: noise_scale is {}, expected a finite value > 0", noise_scale);
    IREPA_CHECK(std::isfinite(t_eps) && t_eps > 0 && t_eps < 1, "JiTObjective: t_eps is {}, expected a value in (0, 1)", t_eps);
    IREPA_CHECK(std::isfinite(proj_coeff) && proj_coeff >= 0, "JiTObjective: proj_coeff is {}, expected a finite value >= 0", proj_coeff);
  }

  /// What the loss keeps: the predicted velocity [B, C, H, W].
  template <class T, class D>
  struct Terms {
    Tensor<T, D> v_pred;
  };

  /// t = sigmoid(N(P_mean, P_std)) per image, from normal draws in double.
  template <class T, class Ctx, class D = typename Ctx::device_type>
  void draw_time(const Ctx& ctx, Philox& rng, TensorView<T, D> t) const {
    Tensor<double, D> n(t.shape());
    ops::random_normal<double>(ctx, rng, n.view());
    ops::logit_normal_time<T>(ctx, n.cview(), P_mean, P_std, t);
  }
  /// e = noise_scale N(0, 1).
  template <class T, class Ctx, class D = typename Ctx::device_type>
  void draw_noise(const Ctx& ctx, Philox& rng, TensorView<T, D> noise) const {
    ops::random_normal<T>(ctx, rng, noise);
    ops::scale<T>(ctx, noise, static_cast<T>(noise_scale));
  }
  /// z = t x + (1 - t) e, target_v = (x - z) / max(1 - t, t_eps) (given e is already times noise_scale).
  template <class T, class Ctx, class D>
  void interpolate(const Ctx& ctx, ConstView<T, D> x, ObjectiveInputs<T, D>& in) const {
    ops::jit_interpolate<T>(ctx, x, in.noise.cview(), in.t.cview(), t_eps, in.model_input.view(), in.target.view());
  }

  /// The velocity MSE into loss [1]; dout = d(grad_scale loss)/d(out).
  template <class T, class Ctx, class D = typename Ctx::device_type>
  Terms<T, D> denoising(const Ctx& ctx, const ObjectiveInputs<T, D>& in, ConstView<T, D> out, double grad_scale, TensorView<T, D> dout,
                        TensorView<double, D> loss) const {
    Terms<T, D> terms{Tensor<T, D>(in.target.shape())};
    ops::jit_velocity_mse<T>(ctx, out, in.model_input.cview(), in.target.cview(), in.t.cview(), t_eps, grad_scale, terms.v_pred.view(),
                             dout, loss);
    return terms;
  }

  /// A sample grid with the reference's sampler: heun / Euler, guidance inside
  /// (guidance_low, guidance_high) as interval_min / interval_max, noise of this objective's scale.
  template <class Model>
  Tensor<double> sample(const typename Model::Context& ctx, const Model& model, ConstView<std::int64_t> labels, std::uint64_t seed,
                        const SampleSettings& s) const {
    const JiTSamplerOptions o{.num_steps = s.steps, .heun = s.heun, .cfg_scale = s.cfg_scale, .interval_min = s.guidance_low,
                              .interval_max = s.guidance_high, .t_eps = t_eps};
    return sample_jit(ctx, model, labels, seed, o, noise_scale);
  }
};

}  // namespace irepa
