#pragma once
// The SiT training objective with representation alignment (the reference's SILoss):
//   model input  x_t = alpha x + sigma n,   target v = d_alpha x + d_sigma n
//   denoising    mean over C, H, W of (model(x_t) - v)^2 per image, then mean over the batch
//   alignment    per encoder: loss(projected tokens, normalizer(z)); averaged over encoders
//   total        denoising + proj_coeff * alignment
// sit_loss runs forward and (unless told not to) backward, accumulating every parameter
// gradient into model.params().grads() (times obj.grad_scale). The batch, t and noise are on the
// host; a device model gets the model input and the targets uploaded, and its output read back
// for the denoising loss (one B x C x H x W copy each way, so the arithmetic of the loss is
// the CPU path's).

#include <span>
#include <vector>

#include "irepa/diffusion/interpolant.hpp"
#include "irepa/models/sit.hpp"
#include "irepa/nn/embedders.hpp"
#include "irepa/ops/tensor_ops.hpp"

namespace irepa {

struct SiTObjective {
  PathType path = PathType::Linear;
  TimeSampling weighting = TimeSampling::Uniform;
  double proj_coeff = 0.5;
  double grad_scale = 1.0;      // backward computes d(grad_scale * total): 1/n to accumulate n micro-batches
};

/// One batch, on the host: clean latents, labels and the frozen targets, one [B, T, z_dim] per
/// encoder.
template <class T>
struct SiTBatch {
  ConstView<T> x;                  // [B, C, H, W]
  ConstView<std::int64_t> y;       // [B]
  std::vector<ConstView<T>> zs;    // raw target features, before normalisation
};

template <class Model>
struct SiTStep {
  using T = typename Model::scalar_type;
  Tensor<T> t, noise;                   // [B], [B, C, H, W] as used
  Tensor<T> model_input, target;        // [B, C, H, W]
  std::vector<Tensor<T, typename Model::device_type>> z_normalized;  // per encoder [B, T, z_dim], on the model's device
  Tensor<T> denoising_per_sample;       // [B]
  double denoising = 0, alignment = 0, total = 0;
  std::vector<double> alignment_per_encoder;
  typename Model::Cache cache;          // model output, projected tokens, activations
};

/// Runs the objective with the given t [B] and noise [B, C, H, W] (the labels are used as
/// given: drop them before, with nn::drop_labels, for classifier-free guidance training).
namespace detail {
/// The alignment terms shared by the SiT and JiT objectives: per encoder j, the normalised
/// target normalizer(z_j), the loss between the projected tokens and it; returns their mean
/// over encoders. With backward, dz[j] = d(scale * mean)/d(projected_j).
/// The targets zs are host views (uploaded for a device model).
template <class Head, class Cache, class T, class Ctx>
double alignment_terms(const Ctx& ctx, const Head& head, const Cache& cache, const std::vector<ConstView<T>>& zs,
                       double scale, bool backward, std::string_view who,
                       std::vector<Tensor<T, typename Ctx::device_type>>& z_normalized, std::vector<double>& per_encoder,
                       std::vector<Tensor<T, typename Ctx::device_type>>& dz) {
  using D = typename Ctx::device_type;
  const std::size_t J = zs.size();
  double mean = 0;
  for (std::size_t j = 0; j < J; ++j) {
    const ConstView<T, D> zhat = cache.projected(j);
    check_shape(who, "target features " + std::to_string(j), zs[j].shape(), zhat.shape());
    z_normalized.emplace_back(zhat.shape());
    if constexpr (std::is_same_v<D, Cpu>) {
      head.normalizer.apply(ctx, zs[j], z_normalized.back().view());
    } else {
      const Tensor<T, D> z = to_device(ctx, zs[j]);
      head.normalizer.apply(ctx, z.cview(), z_normalized.back().view());
    }
    auto lc = head.loss.forward(ctx, zhat, z_normalized.back().cview());
    const double v = static_cast<double>(lc.value);
    per_encoder.push_back(v);
    mean += v / static_cast<double>(J);
    if (backward) {
      dz.emplace_back(zhat.shape());
      head.loss.backward(ctx, lc, static_cast<T>(scale / static_cast<double>(J)), dz.back().view());
    }
  }
  return mean;
}
}  // namespace detail

template <class Model>
SiTStep<Model> sit_loss(const typename Model::Context& ctx, const Model& model, const SiTObjective& obj,
                        const SiTBatch<typename Model::scalar_type>& batch, ConstView<typename Model::scalar_type> t,
                        ConstView<typename Model::scalar_type> noise, bool backward = true) {
  using T = typename Model::scalar_type;
  using D = typename Model::device_type;
  constexpr bool on_host = std::is_same_v<D, Cpu>;
  const Shape& xs = batch.x.shape();
  IREPA_CHECK(xs.rank() == 4, "sit_loss: latents have shape {}, expected [B, C, H, W]", xs.str());
  const std::int64_t B = xs[0], per = xs.numel() / B;
  check_shape("sit_loss", "t", t.shape(), Shape{B});
  check_shape("sit_loss", "noise", noise.shape(), xs);
  const std::size_t J = model.projectors.size();
  IREPA_CHECK(batch.zs.size() == J, "sit_loss: {} target feature tensors for a model with {} projectors", batch.zs.size(), J);

  SiTStep<Model> st;
  st.t = Tensor<T>::copy_of(t);
  st.noise = Tensor<T>::copy_of(noise);
  st.model_input = Tensor<T>(xs);
  st.target = Tensor<T>(xs);
  for (std::int64_t b = 0; b < B; ++b) {
    const PathCoefficients k = interpolant(obj.path, static_cast<double>(t[b]));
    const T al = static_cast<T>(k.alpha), si = static_cast<T>(k.sigma), da = static_cast<T>(k.d_alpha),
            ds = static_cast<T>(k.d_sigma);
    for (std::int64_t i = b * per; i < (b + 1) * per; ++i) {
      const T x = batch.x.data()[i], n = noise.data()[i];
      st.model_input[i] = al * x + si * n;
      st.target[i] = da * x + ds * n;
    }
  }
  if constexpr (on_host) {
    st.cache = model.forward(ctx, st.model_input, t, batch.y, /*align=*/J > 0);
  } else {
    const Tensor<T, D> xin = to_device(ctx, st.model_input.cview()), td = to_device(ctx, t);
    st.cache = model.forward(ctx, xin, td, batch.y, /*align=*/J > 0);
  }

  // Denoising loss and its gradient d(total)/d(output) = 2 (out - v) / (B C H W).
  Tensor<T> out_copy;
  ConstView<T> out;
  if constexpr (on_host) {
    out = st.cache.output();
  } else {
    out_copy = to_host(ctx, st.cache.output());
    out = out_copy.cview();
  }
  st.denoising_per_sample = Tensor<T>(Shape{B});
  Tensor<T> dout(xs);
  double sum = 0;
  for (std::int64_t b = 0; b < B; ++b) {
    double acc = 0;
    for (std::int64_t i = b * per; i < (b + 1) * per; ++i) {
      const T e = out.data()[i] - st.target[i];
      acc += static_cast<double>(e) * static_cast<double>(e);
      dout[i] = static_cast<T>(2 * obj.grad_scale / static_cast<double>(B * per)) * e;
    }
    st.denoising_per_sample[b] = static_cast<T>(acc / static_cast<double>(per));
    sum += acc / static_cast<double>(per);
  }
  st.denoising = sum / static_cast<double>(B);

  // Alignment, averaged over encoders.
  std::vector<Tensor<T, D>> dz;
  std::vector<ConstView<T, D>> dzv;
  st.alignment = detail::alignment_terms(ctx, model.head, st.cache, batch.zs, obj.grad_scale * obj.proj_coeff, backward,
                                         "sit_loss", st.z_normalized, st.alignment_per_encoder, dz);
  st.total = st.denoising + obj.proj_coeff * st.alignment;
  IREPA_CHECK(std::isfinite(st.total), "sit_loss: the loss is not finite (denoising {}, alignment {})", st.denoising,
              st.alignment);
  if (backward) {
    for (const auto& d : dz) dzv.push_back(d.cview());
    if constexpr (on_host) {
      model.backward(ctx, st.cache, dout, dzv);
    } else {
      const Tensor<T, D> doutd = to_device(ctx, dout.cview());
      model.backward(ctx, st.cache, doutd, dzv);
    }
  }
  return st;
}

/// Draws t (obj.weighting, obj.path) and the noise from rng, then runs sit_loss.
template <class Model>
SiTStep<Model> sit_loss(const typename Model::Context& ctx, const Model& model, const SiTObjective& obj,
                        const SiTBatch<typename Model::scalar_type>& batch, Philox& rng, bool backward = true) {
  using T = typename Model::scalar_type;
  Tensor<T> t(Shape{batch.x.size(0)}), noise(batch.x.shape());
  sample_time<T>(rng, obj.weighting, obj.path, t.view());
  rng.normal(noise.view());
  return sit_loss(ctx, model, obj, batch, t, noise, backward);
}

}  // namespace irepa
