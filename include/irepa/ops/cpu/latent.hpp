#pragma once
// Latent arithmetic of the SD-VAE on the CPU, channels-first latents [B, E, h, w]:
//  - posterior_from_moments: moments [B, 2E, h, w] = (mean | logvar) -> mean_std [B, 2E, h, w] =
//    (mean | std), std = exp(0.5 clamp(logvar, lo, hi)), the layout the latent datasets store;
//    logvar [B, E, h, w] clamped (DiagonalGaussianDistribution).
//  - sample_posterior: z = (mean + std * eps - bias) * scale per channel (train.py).
//  - unscale_latents: x = z / scale + bias per channel (what the decoder takes).

#include <algorithm>
#include <cmath>

#include "irepa/core/context.hpp"
#include "irepa/core/tensor.hpp"

namespace irepa::ops {

namespace detail {
inline void check_moments(std::string_view op, const Shape& moments, const Shape& mean_std, const Shape& logvar) {
  IREPA_CHECK(moments.rank() == 4 && moments[1] % 2 == 0 && moments[1] > 0,
              "{}: moments have shape {}, expected [B, 2E, h, w] (mean | logvar)", op, moments.str());
  check_shape(op, "mean_std", mean_std, moments);
  check_shape(op, "logvar", logvar, Shape{moments[0], moments[1] / 2, moments[2], moments[3]});
}
inline void check_latents(std::string_view op, const Shape& z, const Shape& scale, const Shape& bias, const Shape& out) {
  IREPA_CHECK(z.rank() == 4, "{}: latents have shape {}, expected [B, E, h, w]", op, z.str());
  IREPA_CHECK(scale.numel() == z[1] && bias.numel() == z[1], "{}: scale has {} values and bias {}, expected {} (one per latent channel)",
              op, scale.numel(), bias.numel(), z[1]);
  check_shape(op, "output", out, z);
}
}  // namespace detail

/// mean_std [B, 2E, h, w] = (mean | exp(0.5 clamp(logvar))), logvar [B, E, h, w] = clamp(logvar, lo, hi).
template <class T>
void posterior_from_moments(const CpuContext& ctx, In<T> moments, std::type_identity_t<T> lo, std::type_identity_t<T> hi,
                            TensorView<T> mean_std, TensorView<T> logvar) {
  detail::check_moments("posterior_from_moments", moments.shape(), mean_std.shape(), logvar.shape());
  check_contiguous("posterior_from_moments", moments, mean_std, logvar);
  const std::int64_t B = moments.size(0), half = moments.numel() / std::max<std::int64_t>(1, B) / 2;
  ctx.parallel_for(B, static_cast<double>(20 * half), [&](std::int64_t b0, std::int64_t b1) {
    for (std::int64_t b = b0; b < b1; ++b) {
      const T* m = moments.data() + b * 2 * half;
      T* ms = mean_std.data() + b * 2 * half;
      T* lv = logvar.data() + b * half;
      for (std::int64_t i = 0; i < half; ++i) {
        const T v = std::clamp(m[half + i], lo, hi);
        ms[i] = m[i], ms[half + i] = std::exp(T(0.5) * v), lv[i] = v;
      }
    }
  });
}

/// z [B, E, h, w] = (mean + std * eps - bias[c]) * scale[c], from mean_std [B, 2E, h, w] and eps [B, E, h, w].
template <class T>
void sample_posterior(const CpuContext& ctx, In<T> mean_std, In<T> eps, In<T> scale, In<T> bias, TensorView<T> z) {
  detail::check_latents("sample_posterior", eps.shape(), scale.shape(), bias.shape(), z.shape());
  check_shape("sample_posterior", "mean_std", mean_std.shape(), Shape{z.size(0), 2 * z.size(1), z.size(2), z.size(3)});
  check_contiguous("sample_posterior", mean_std, eps, scale, bias, z);
  const std::int64_t E = z.size(1), P = z.size(2) * z.size(3);
  ctx.parallel_for(z.size(0) * E, static_cast<double>(4 * P), [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const std::int64_t b = r / E, c = r % E;
      const T* mean = mean_std.data() + (b * 2 * E + c) * P;
      const T* std_ = mean + E * P;
      const T* e = eps.data() + r * P;
      T* out = z.data() + r * P;
      for (std::int64_t p = 0; p < P; ++p) out[p] = (mean[p] + std_[p] * e[p] - bias.data()[c]) * scale.data()[c];
    }
  });
}

/// out [B, E, h, w] = z / scale[c] + bias[c] (the latents as the decoder takes them).
template <class T>
void unscale_latents(const CpuContext& ctx, In<T> z, In<T> scale, In<T> bias, TensorView<T> out) {
  detail::check_latents("unscale_latents", z.shape(), scale.shape(), bias.shape(), out.shape());
  check_contiguous("unscale_latents", z, scale, bias, out);
  const std::int64_t E = z.size(1), P = z.size(2) * z.size(3);
  ctx.parallel_for(z.size(0) * E, static_cast<double>(2 * P), [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const std::int64_t c = r % E;
      for (std::int64_t p = 0; p < P; ++p) out.data()[r * P + p] = z.data()[r * P + p] / scale.data()[c] + bias.data()[c];
    }
  });
}

}  // namespace irepa::ops
