#pragma once
// One training-objective step for any model and objective (SiT with SiTObjective, JiT with
// JiTObjective, or user types satisfying DiffusionModel / ObjectiveFor):
//   inputs = draw_inputs(objective, batch.x, rng)   t, noise, noised input and target, on the device
//   cache  = model.forward(inputs.model_input, inputs.t, batch.y)
//   loss   = objective.denoising(inputs, output) + proj_coeff * mean_j alignment_j
//   model.backward(d loss / d output, d loss / d projected tokens)   (parameter gradients accumulate)
// Every tensor stays on the model's device; the losses are doubles there ([total, denoising,
// alignment, alignment per encoder]) until someone asks for them (ObjectiveStep::losses).
//
//   auto batch = irepa::upload_batch(ctx, {x, y, {z}}, model.label_rows());
//   auto st = irepa::objective_step(ctx, model, irepa::SiTObjective{}, batch, rng);
//   double total = st.losses(ctx).total;

#include <cmath>
#include <span>
#include <string_view>
#include <vector>

#include "irepa/align/alignment.hpp"
#include "irepa/core/concepts.hpp"
#include "irepa/core/rng.hpp"
#include "irepa/ops/reduce.hpp"
#include "irepa/ops/tensor_ops.hpp"

namespace irepa {

/// A batch on the model's device: clean data, labels as the model sees them (after any
/// dropout; num_classes is the null class) and one raw target [B, T, z_j] per projector.
template <class T, class D = Cpu>
struct Batch {
  Tensor<T, D> x;                 // [B, C, H, W]
  Tensor<std::int64_t, D> y;      // [B]
  std::vector<Tensor<T, D>> zs;   // raw target features, before normalisation
  std::int64_t size() const { return x.size(0); }
};

/// A batch as the host has it (views), before upload_batch.
template <class T>
struct HostBatch {
  ConstView<T> x;                  // [B, C, H, W]
  ConstView<std::int64_t> y;       // [B]
  std::vector<ConstView<T>> zs;    // [B, T, z_j]
};

/// The host batch on the context's device: the one transfer of a training step. Labels are
/// checked here, on the host, against the label table's rows (the device kernels trust them).
template <class T, class Ctx>
Batch<T, typename Ctx::device_type> upload_batch(const Ctx& ctx, const HostBatch<T>& b, std::int64_t label_rows) {
  IREPA_CHECK(b.x.rank() == 4, "upload_batch: data has shape {}, expected [B, C, H, W]", b.x.shape().str());
  check_shape("upload_batch", "labels", b.y.shape(), Shape{b.x.size(0)});
  for (std::int64_t i = 0; i < b.y.numel(); ++i)
    IREPA_CHECK(b.y.element_at(i) >= 0 && b.y.element_at(i) < label_rows,
                "upload_batch: label {} at position {} is outside the model's {} label rows (classes, then the null class)",
                b.y.element_at(i), i, label_rows);
  Batch<T, typename Ctx::device_type> out{to_device(ctx, b.x), to_device(ctx, b.y), {}};
  for (const auto& z : b.zs) {
    IREPA_CHECK(z.rank() == 3 && z.size(0) == b.x.size(0), "upload_batch: target features have shape {}, expected [{}, T, Z]",
                z.shape().str(), b.x.size(0));
    out.zs.push_back(to_device(ctx, z));
  }
  return out;
}

namespace detail {
template <class T, class D>
ObjectiveInputs<T, D> allocate_inputs(ConstView<T, D> x, const Shape& t) {
  return {Tensor<T, D>(t), Tensor<T, D>(x.shape()), Tensor<T, D>(x.shape()), Tensor<T, D>(x.shape())};
}
}  // namespace detail

/// An objective's inputs from given t [B] and noise [B, C, H, W] (copied), on the context's device.
template <class Objective, class T, class Ctx, class D = typename Ctx::device_type>
ObjectiveInputs<T, D> make_inputs(const Ctx& ctx, const Objective& obj, ConstView<T, D> x, In<T, D> t, In<T, D> noise) {
  ObjectiveInputs<T, D> in = detail::allocate_inputs<T, D>(x, t.shape());
  ops::copy<T>(ctx, t, in.t.view());
  ops::copy<T>(ctx, noise, in.noise.view());
  obj.interpolate(ctx, x, in);
  return in;
}

/// An objective's inputs with t, then the noise, drawn from rng on the device (the same draws in
/// the same order on every device).
template <class Objective, class T, class Ctx, class D = typename Ctx::device_type>
ObjectiveInputs<T, D> draw_inputs(const Ctx& ctx, const Objective& obj, ConstView<T, D> x, Philox& rng) {
  IREPA_CHECK(x.rank() == 4, "objective: data has shape {}, expected [B, C, H, W]", x.shape().str());
  ObjectiveInputs<T, D> in = detail::allocate_inputs<T, D>(x, Shape{x.size(0)});
  obj.draw_time(ctx, rng, in.t.view());
  obj.draw_noise(ctx, rng, in.noise.view());
  obj.interpolate(ctx, x, in);
  return in;
}

/// The losses of a step on the host.
struct StepLosses {
  double total = 0, denoising = 0, alignment = 0;
  std::vector<double> per_encoder;
};

/// Where each loss sits in an ObjectiveStep's scalars.
enum StepScalar : std::int64_t { kTotalLoss = 0, kDenoisingLoss = 1, kAlignmentLoss = 2, kFirstEncoderLoss = 3 };

/// The scalars [total, denoising, alignment, per encoder] brought to the host; a non-finite total
/// is an error naming the terms.
template <class Ctx>
StepLosses read_losses(const Ctx& ctx, ConstView<double, typename Ctx::device_type> scalars, std::string_view who = "objective") {
  const Tensor<double> h = to_host<double>(ctx, scalars);
  StepLosses l{h[kTotalLoss], h[kDenoisingLoss], h[kAlignmentLoss], {}};
  for (std::int64_t j = kFirstEncoderLoss; j < h.numel(); ++j) l.per_encoder.push_back(h[j]);
  IREPA_CHECK(std::isfinite(l.total), "{}: the loss is not finite (denoising {}, alignment {})", who, l.denoising, l.alignment);
  return l;
}

/// What objective_step leaves: the objective's inputs and terms, the normalised targets, the
/// losses (on the device) and the model's cache (output, projected tokens, activations).
template <class Model, class Objective>
struct ObjectiveStep {
  using T = typename Model::scalar_type;
  using D = typename Model::device_type;
  ObjectiveInputs<T, D> inputs;
  typename Objective::template Terms<T, D> terms;
  std::vector<Tensor<T, D>> z_normalized;  // per encoder [B, T, z_dim]
  Tensor<double, D> scalars;               // [3 + J]: see StepScalar
  typename Model::Cache cache;

  /// The losses on the host (a download; a non-finite loss is an error).
  StepLosses losses(const typename Model::Context& ctx) const { return read_losses(ctx, scalars.cview()); }
};

/// Runs model and objective on the given inputs (from make_inputs or draw_inputs):
/// forward, the denoising and alignment losses and, with backward, every parameter gradient
/// of grad_scale * total accumulated into model.params().grads() (grad_scale 1 / n averages n
/// micro-batches, or n ranks' batches before a summing all-reduce); `ready` is passed to a model
/// backward that reports finished parts of the arena (GradReady).
template <class Model, class Objective>
  requires ObjectiveFor<Objective, Model>
ObjectiveStep<Model, Objective> objective_step(const typename Model::Context& ctx, const Model& model, const Objective& obj,
                                               const Batch<typename Model::scalar_type, typename Model::device_type>& batch,
                                               ObjectiveInputs<typename Model::scalar_type, typename Model::device_type> inputs,
                                               double grad_scale = 1.0, bool backward = true, const GradReady& ready = {}) {
  using T = typename Model::scalar_type;
  using D = typename Model::device_type;
  const std::size_t J = model.num_projectors();
  IREPA_CHECK(batch.zs.size() == J, "objective: {} target feature tensors for a model with {} projectors", batch.zs.size(), J);
  check_shape("objective", "model input", inputs.model_input.shape(), batch.x.shape());
  ObjectiveStep<Model, Objective> st;
  st.inputs = std::move(inputs);
  st.scalars = Tensor<double, D>(Shape{kFirstEncoderLoss + static_cast<std::int64_t>(J)});
  st.cache = model.forward(ctx, st.inputs.model_input.cview(), st.inputs.t.cview(), batch.y.cview(), /*align=*/J > 0);

  Tensor<T, D> dout(batch.x.shape());
  st.terms = obj.denoising(ctx, st.inputs, st.cache.output(), grad_scale, dout.view(), st.scalars.view().slice(0, kDenoisingLoss, 1));
  std::vector<Tensor<T, D>> dz;
  alignment_terms(ctx, model.head, [&](std::size_t j) { return st.cache.projected(j); }, std::span<const Tensor<T, D>>(batch.zs),
                  grad_scale * obj.proj_coeff, backward, "objective", st.z_normalized,
                  st.scalars.view().slice(0, kFirstEncoderLoss, static_cast<std::int64_t>(J)), dz);
  ops::loss_totals(ctx, st.scalars.view(), static_cast<std::int64_t>(J), obj.proj_coeff);
  if (backward) {
    std::vector<ConstView<T, D>> dzv;
    for (const auto& d : dz) dzv.push_back(d.cview());
    const std::span<const ConstView<T, D>> dzs(dzv);
    if constexpr (requires { model.backward(ctx, st.cache, dout.cview(), dzs, ready); })
      model.backward(ctx, st.cache, dout.cview(), dzs, ready);
    else
      model.backward(ctx, st.cache, dout.cview(), dzs);  // a model that does not report: all is final at the end
  }
  return st;
}

/// The step with given t [B] and noise [B, C, H, W] on the model's device (make_inputs).
template <class Model, class Objective>
  requires ObjectiveFor<Objective, Model>
ObjectiveStep<Model, Objective> objective_step(const typename Model::Context& ctx, const Model& model, const Objective& obj,
                                               const Batch<typename Model::scalar_type, typename Model::device_type>& batch,
                                               ConstView<typename Model::scalar_type, typename Model::device_type> t,
                                               ConstView<typename Model::scalar_type, typename Model::device_type> noise,
                                               double grad_scale = 1.0, bool backward = true) {
  return objective_step(ctx, model, obj, batch, make_inputs(ctx, obj, batch.x.cview(), t, noise), grad_scale, backward);
}

/// The step with t and noise drawn from rng on the model's device (draw_inputs).
template <class Model, class Objective>
  requires ObjectiveFor<Objective, Model>
ObjectiveStep<Model, Objective> objective_step(const typename Model::Context& ctx, const Model& model, const Objective& obj,
                                               const Batch<typename Model::scalar_type, typename Model::device_type>& batch,
                                               Philox& rng, double grad_scale = 1.0, bool backward = true,
                                               const GradReady& ready = {}) {
  return objective_step(ctx, model, obj, batch, draw_inputs(ctx, obj, batch.x.cview(), rng), grad_scale, backward, ready);
}

}  // namespace irepa
