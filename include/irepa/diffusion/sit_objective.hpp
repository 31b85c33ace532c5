#pragma once
// The SiT training objective (the reference's SILoss), an ObjectiveFor any SiT-like model:
//   model input  x_t = alpha x + sigma n,   target v = d_alpha x + d_sigma n
//   denoising    mean over C, H, W of (model(x_t) - v)^2 per image, then mean over the batch
//   time         uniform, or lognormal on the chosen path
// plus, through objective_step, the alignment terms; sampling with the reference's samplers.
// Everything runs on the model's device (ops/diffusion.hpp).

#include <cmath>

#include "irepa/core/concepts.hpp"
#include "irepa/diffusion/interpolant.hpp"
#include "irepa/diffusion/objective.hpp"
#include "irepa/diffusion/samplers.hpp"
#include "irepa/ops/diffusion.hpp"
#include "irepa/ops/random.hpp"

namespace irepa {

struct SiTObjective {
  PathType path = PathType::Linear;
  TimeSampling weighting = TimeSampling::Uniform;
  double proj_coeff = 0.5;

  /// Settings finite and in range (the trainer calls it before the first step).
  void validate() const {
    IREPA_CHECK(std::isfinite(proj_coeff) && proj_coeff >= 0, "SiTObjective: proj_coeff is {}, expected a finite value >= 0", proj_coeff);
  }

  /// What the denoising loss keeps: the loss of each image [B].
  template <class T, class D>
  struct Terms {
    Tensor<T, D> per_sample;
  };

  /// t [B]: uniform, or lognormal on the path from normal draws in double.
  template <class T, class Ctx, class D = typename Ctx::device_type>
  void draw_time(const Ctx& ctx, Philox& rng, TensorView<T, D> t) const {
    if (weighting == TimeSampling::Uniform) {
      ops::random_uniform<T>(ctx, rng, t);
      return;
    }
    Tensor<double, D> n(t.shape());
    ops::random_normal<double>(ctx, rng, n.view());
    ops::lognormal_time<T>(ctx, n.cview(), path, t);
  }
  /// n ~ N(0, 1).
  template <class T, class Ctx, class D = typename Ctx::device_type>
  void draw_noise(const Ctx& ctx, Philox& rng, TensorView<T, D> noise) const {
    ops::random_normal<T>(ctx, rng, noise);
  }
  /// x_t = alpha x + sigma n, target d_alpha x + d_sigma n.
  template <class T, class Ctx, class D>
  void interpolate(const Ctx& ctx, ConstView<T, D> x, ObjectiveInputs<T, D>& in) const {
    ops::sit_interpolate<T>(ctx, x, in.noise.cview(), in.t.cview(), path, in.model_input.view(), in.target.view());
  }

  /// The per-image MSE against the velocity target into loss [1]; dout = d(grad_scale loss)/d(out).
  template <class T, class Ctx, class D = typename Ctx::device_type>
  Terms<T, D> denoising(const Ctx& ctx, const ObjectiveInputs<T, D>& in, ConstView<T, D> out, double grad_scale, TensorView<T, D> dout,
                        TensorView<double, D> loss) const {
    Terms<T, D> terms{Tensor<T, D>(Shape{in.target.size(0)})};
    ops::mse_per_image<T>(ctx, out, in.target.cview(), grad_scale, terms.per_sample.view(), dout, loss);
    return terms;
  }

  /// A sample grid: Euler (or Heun) ODE on this objective's path with the settings' guidance.
  template <class Model>
  Tensor<double> sample(const typename Model::Context& ctx, const Model& model, ConstView<std::int64_t> labels, std::uint64_t seed,
                        const SampleSettings& s) const {
    const SamplerOptions o{.kind = s.heun ? SamplerKind::Heun : SamplerKind::Euler, .num_steps = s.steps, .cfg_scale = s.cfg_scale,
                           .guidance_low = s.guidance_low, .guidance_high = s.guidance_high, .path = path};
    return sample_sit(ctx, model, labels, seed, o);
  }
};

}  // namespace irepa
