#pragma once
// The JiT objective and sampler (REFERENCE.md section 5). t = 1 is the clean image:
//   z = t x + (1 - t) e,  e ~ N(0, noise_scale^2),  t = sigmoid(N(P_mean, P_std))
//   the network predicts x;  v = (x - z) / max(1 - t, t_eps),  v_pred = (x_pred - z) / max(1 - t, t_eps)
//   denoising = mean (v - v_pred)^2;  total = denoising + proj_coeff * mean over encoders of the alignment loss
// Sampling integrates dz/dt = v from t = 0 (noise) to 1 on linspace(0, 1, N + 1): Heun on the
// first N - 1 intervals, Euler on the last; classifier-free guidance mixes the predicted images
// x_uncond + w (x_cond - x_uncond) with a doubled batch, unless t >= interval_max or
// (interval_min != 0 and t <= interval_min).

#include <cmath>
#include <span>
#include <vector>

#include "irepa/core/rng.hpp"
#include "irepa/diffusion/sit_loss.hpp"

namespace irepa {

struct JiTObjective {
  double P_mean = -0.8, P_std = 0.8;
  double noise_scale = 1.0;
  double t_eps = 0.05;
  double proj_coeff = 0.5;
  double grad_scale = 1.0;  // backward computes d(grad_scale * total)
};

template <class Model>
struct JiTStep {
  using T = typename Model::scalar_type;
  Tensor<T> t, noise;                   // [B], [B, C, H, W] (noise already times noise_scale), host
  Tensor<T> model_input, target_v, v_pred;  // host
  std::vector<Tensor<T, typename Model::device_type>> z_normalized;
  double denoising = 0, alignment = 0, total = 0;
  std::vector<double> alignment_per_encoder;
  typename Model::Cache cache;
};

/// t [B] = sigmoid(P_mean + P_std N(0, 1)).
template <class T>
void sample_logit_normal(Philox& rng, double P_mean, double P_std, TensorView<T> t) {
  Tensor<double> n(t.shape());
  rng.normal(n.view());
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = static_cast<T>(1.0 / (1.0 + std::exp(-(P_mean + P_std * n[i]))));
}

/// Runs the objective with given t [B] and e [B, C, H, W] (already scaled by noise_scale); labels
/// as given (drop them before with nn::drop_labels). Backward accumulates parameter gradients.
/// Inputs are host tensors; a device model gets the model input uploaded and its output read
/// back (the interpolation and the loss arithmetic stay on the host, as for SiT).
template <class Model>
JiTStep<Model> jit_loss(const typename Model::Context& ctx, const Model& model, const JiTObjective& obj,
                        const SiTBatch<typename Model::scalar_type>& batch, ConstView<typename Model::scalar_type> t,
                        ConstView<typename Model::scalar_type> noise, bool backward = true) {
  using T = typename Model::scalar_type;
  using D = typename Model::device_type;
  constexpr bool on_host = std::is_same_v<D, Cpu>;
  const Shape& xs = batch.x.shape();
  IREPA_CHECK(xs.rank() == 4, "jit_loss: images have shape {}, expected [B, C, H, W]", xs.str());
  const std::int64_t B = xs[0], per = xs.numel() / B;
  check_shape("jit_loss", "t", t.shape(), Shape{B});
  check_shape("jit_loss", "noise", noise.shape(), xs);
  const std::size_t J = model.projectors.size();
  IREPA_CHECK(batch.zs.size() == J, "jit_loss: {} target feature tensors for a model with {} projectors", batch.zs.size(), J);

  JiTStep<Model> st;
  st.t = Tensor<T>::copy_of(t);
  st.noise = Tensor<T>::copy_of(noise);
  st.model_input = Tensor<T>(xs), st.target_v = Tensor<T>(xs), st.v_pred = Tensor<T>(xs);
  std::vector<T> inv(static_cast<std::size_t>(B));  // 1 / max(1 - t, t_eps)
  for (std::int64_t b = 0; b < B; ++b) {
    const T tb = t[b];
    inv[static_cast<std::size_t>(b)] = T(1) / std::max(T(1) - tb, static_cast<T>(obj.t_eps));
    for (std::int64_t i = b * per; i < (b + 1) * per; ++i) {
      const T x = batch.x.data()[i], e = noise.data()[i];
      const T z = tb * x + (T(1) - tb) * e;
      st.model_input[i] = z;
      st.target_v[i] = (x - z) * inv[static_cast<std::size_t>(b)];
    }
  }
  Tensor<T> out_copy;
  ConstView<T> out;
  if constexpr (on_host) {
    st.cache = model.forward(ctx, st.model_input, t, batch.y, /*align=*/J > 0);
    out = st.cache.output();
  } else {
    const Tensor<T, D> xin = to_device(ctx, st.model_input.cview()), td = to_device(ctx, t);
    st.cache = model.forward(ctx, xin, td, batch.y, /*align=*/J > 0);
    out_copy = to_host(ctx, st.cache.output());
    out = out_copy.cview();
  }
  Tensor<T> dout(xs);
  double sum = 0;
  const double g = 2 * obj.grad_scale / static_cast<double>(B * per);
  for (std::int64_t b = 0; b < B; ++b) {
    const T k = inv[static_cast<std::size_t>(b)];
    for (std::int64_t i = b * per; i < (b + 1) * per; ++i) {
      st.v_pred[i] = (out.data()[i] - st.model_input[i]) * k;
      const T e = st.v_pred[i] - st.target_v[i];
      sum += static_cast<double>(e) * static_cast<double>(e);
      dout[i] = static_cast<T>(g) * e * k;
    }
  }
  st.denoising = sum / static_cast<double>(B * per);

  std::vector<Tensor<T, D>> dz;
  st.alignment = detail::alignment_terms(ctx, model.head, st.cache, batch.zs, obj.grad_scale * obj.proj_coeff, backward,
                                         "jit_loss", st.z_normalized, st.alignment_per_encoder, dz);
  st.total = st.denoising + obj.proj_coeff * st.alignment;
  IREPA_CHECK(std::isfinite(st.total), "jit_loss: the loss is not finite (denoising {}, alignment {})", st.denoising,
              st.alignment);
  if (backward) {
    std::vector<ConstView<T, D>> dzv;
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

/// t = sigmoid(N(P_mean, P_std)) per image, e = noise_scale N(0, 1), both drawn from rng; then jit_loss.
template <class Model>
JiTStep<Model> jit_loss(const typename Model::Context& ctx, const Model& model, const JiTObjective& obj,
                        const SiTBatch<typename Model::scalar_type>& batch, Philox& rng, bool backward = true) {
  using T = typename Model::scalar_type;
  Tensor<T> t(Shape{batch.x.size(0)}), noise(batch.x.shape());
  sample_logit_normal<T>(rng, obj.P_mean, obj.P_std, t.view());
  rng.normal(noise.view());
  for (std::int64_t i = 0; i < noise.numel(); ++i) noise[i] *= static_cast<T>(obj.noise_scale);
  return jit_loss(ctx, model, obj, batch, t, noise, backward);
}

struct JiTSamplerOptions {
  int num_steps = 50;
  bool heun = true;             // false: Euler on every interval
  double cfg_scale = 1.0;
  double interval_min = 0.0, interval_max = 1.0;
  double t_eps = 0.05;
};

/// z0 [B, C, H, W] the starting noise (noise_scale N(0, 1)), labels [B] -> generated images.
/// Time grid in double; the network sees t as T. The sampler's state is on the host; a device
/// model gets each step's input uploaded and its prediction read back.
template <class Model>
Tensor<typename Model::scalar_type> jit_sample(const typename Model::Context& ctx, const Model& model,
                                               ConstView<typename Model::scalar_type> z0,
                                               ConstView<std::int64_t> labels, const JiTSamplerOptions& o) {
  using T = typename Model::scalar_type;
  IREPA_CHECK(o.num_steps >= 1, "jit_sample: num_steps {} must be at least 1", o.num_steps);
  const std::int64_t B = z0.size(0), per = z0.numel() / std::max<std::int64_t>(B, 1);
  check_shape("jit_sample", "labels", labels.shape(), Shape{B});
  const std::int64_t null = model.config.num_classes;

  // v(z, t) as the reference's _forward_sample.
  auto velocity = [&](const Tensor<T>& z, double tt) {
    const bool guided = o.cfg_scale != 1.0 && !(tt >= o.interval_max || (o.interval_min != 0 && tt <= o.interval_min));
    const std::int64_t n = guided ? 2 * B : B;
    Shape s = z.shape();
    s[0] = n;
    Tensor<T> zin(s), tin(Shape{n});
    Tensor<std::int64_t> yin(Shape{n});
    for (std::int64_t k = 0; k < n; ++k) {
      std::copy_n(z.data() + (k % B) * per, per, zin.data() + k * per);
      tin[k] = static_cast<T>(tt);
      yin[k] = k < B ? labels[k] : null;
    }
    Tensor<T> pred;
    if constexpr (std::is_same_v<typename Model::device_type, Cpu>) {
      pred = std::move(model.forward(ctx, zin, tin, yin, /*align=*/false).out);
    } else {
      const auto zd = to_device(ctx, zin.cview()), td = to_device(ctx, tin.cview());
      pred = to_host(ctx, model.forward(ctx, zd, td, yin, /*align=*/false).output());
    }
    const T w = static_cast<T>(o.cfg_scale), inv = T(1) / std::max(T(1) - static_cast<T>(tt), static_cast<T>(o.t_eps));
    Tensor<T> v(z.shape());
    for (std::int64_t i = 0; i < B * per; ++i) {
      const T x = guided ? pred[B * per + i] + w * (pred[i] - pred[B * per + i]) : pred[i];
      v[i] = (x - z[i]) * inv;
    }
    return v;
  };
  auto euler = [&](const Tensor<T>& z, double t0, double t1) {
    const Tensor<T> v = velocity(z, t0);
    Tensor<T> out(z.shape());
    for (std::int64_t i = 0; i < z.numel(); ++i) out[i] = z[i] + static_cast<T>(t1 - t0) * v[i];
    return out;
  };
  auto heun = [&](const Tensor<T>& z, double t0, double t1) {
    const Tensor<T> v0 = velocity(z, t0);
    Tensor<T> ze(z.shape());
    for (std::int64_t i = 0; i < z.numel(); ++i) ze[i] = z[i] + static_cast<T>(t1 - t0) * v0[i];
    const Tensor<T> v1 = velocity(ze, t1);
    Tensor<T> out(z.shape());
    for (std::int64_t i = 0; i < z.numel(); ++i) out[i] = z[i] + static_cast<T>(t1 - t0) * (T(0.5) * (v0[i] + v1[i]));
    return out;
  };
  const int N = o.num_steps;
  auto grid = [&](int i) { return static_cast<double>(i) / static_cast<double>(N); };
  Tensor<T> z = Tensor<T>::copy_of(z0);
  for (int i = 0; i < N - 1; ++i) z = o.heun ? heun(z, grid(i), grid(i + 1)) : euler(z, grid(i), grid(i + 1));
  return euler(z, grid(N - 1), grid(N));
}

}  // namespace irepa
