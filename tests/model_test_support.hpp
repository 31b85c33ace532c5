#pragma once
// Helpers shared by the SiT and JiT model tests: parameters drawn at random (no zero layers)
// and a random batch with targets for every projector.

#include <cmath>
#include <vector>

#include "irepa/check/gradient_check.hpp"
#include "irepa/diffusion/objective.hpp"
#include "test_support.hpp"

namespace irepa::test {

/// Every parameter drawn at random so that no layer is zero (adaLN-Zero would hide bugs):
/// weights N(0, gain / sqrt(fan_in)) keep activations O(1), vectors N(0, 0.1).
template <class Model>
void randomize(Model& m, double gain = 1.0) {
  using T = typename Model::scalar_type;
  m.params().for_each([&](std::string_view, TensorView<T> v, TensorView<T>) {
    const double fan_in = v.rank() >= 2 ? static_cast<double>(v.numel() / v.size(0)) : 0.0;
    test::rng().normal(v, T(0), static_cast<T>(fan_in > 0 ? gain / std::sqrt(fan_in) : 0.1));
  });
}

template <class T>
struct RandomBatch {
  Tensor<T> x, t, noise;
  Tensor<std::int64_t> y;
  std::vector<Tensor<T>> zs;
  HostBatch<T> host() const {
    HostBatch<T> b{x, y, {}};
    for (const auto& z : zs) b.zs.push_back(z);
    return b;
  }
  /// On the CPU (the model's device in these tests), labels checked against `label_rows`.
  Batch<T> batch(std::int64_t label_rows) const { return upload_batch(CpuContext{1}, host(), label_rows); }
};

template <class Model>
RandomBatch<typename Model::scalar_type> random_batch(const Model& m, std::int64_t B) {
  using T = typename Model::scalar_type;
  const auto& c = m.config;
  RandomBatch<T> r;
  r.x = test::randn<T>(Shape{B, c.in_channels, c.input_size, c.input_size});
  r.noise = test::randn<T>(r.x.shape());
  r.t = test::rand_uniform<T>(Shape{B}, T(0.05), T(0.95));
  r.y = Tensor<std::int64_t>(Shape{B});
  test::rng().randint(r.y.view(), 0, m.y_embedder.table.shape[0]);  // the null class included, when there is one
  for (auto z : c.z_dims) r.zs.push_back(test::randn<T>(Shape{B, m.grid.tokens(), z}));
  return r;
}

/// Central differences of the total loss (objective_step on the batch's t and noise, in double)
/// against the backward pass, for every parameter tensor of the model (a random subset of each).
template <class Model, class Objective>
check::GradCheckResult total_loss_gradient_check(Model& m, const Objective& obj, const RandomBatch<double>& data,
                                                 check::GradCheckOptions opt) {
  std::vector<check::GradTarget> targets;
  m.params().for_each([&](std::string_view name, TensorView<double> v, TensorView<double> g) {
    targets.push_back(check::param(std::string(name), v, g));
  });
  const CpuContext ctx;
  const auto batch = data.batch(m.label_rows());
  return check::gradient_check(
      [&] {
        Tensor<double> out(Shape{1});
        out[0] = objective_step(ctx, m, obj, batch, data.t, data.noise, 1.0, /*backward=*/false).losses(ctx).total;
        return out;
      },
      [&](const std::vector<Tensor<double>>& g) { objective_step(ctx, m, obj, batch, data.t, data.noise, /*grad_scale=*/g[0][0]); },
      targets, opt);
}

}  // namespace irepa::test
