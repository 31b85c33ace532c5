#pragma once
// irepa-generate's model half: a SiT's EMA weights (with the SD-VAE's decoder for latent models)
// or a JiT's, turning labels and a seed into uint8 images, on the CPU (generate.cpp) or a GPU
// (generate_cuda.cu, compiled by nvcc). Inference only: the alignment projectors are not built.

#include <memory>
#include <optional>
#include <string>

#include <irepa/align/head.hpp>
#include <irepa/diffusion/jit_objective.hpp>
#include <irepa/diffusion/samplers.hpp>
#include <irepa/metrics/online_fid.hpp>
#include <irepa/models/jit.hpp>
#include <irepa/models/sd_vae.hpp>
#include <irepa/models/sit.hpp>
#include <irepa/ops/latent.hpp>

namespace irepa::examples {

template <class Dev = Cpu>
using GenSiT = SiT<Dynamic, DynamicPatch, REPAHead, float, Dev>;
template <class Dev = Cpu>
using GenJiT = JiT<Dynamic, DynamicPatch, REPAHead, float, Dev>;

/// What one batch needs besides its labels and seed.
struct GenerateSpec {
  SamplerOptions sampler;                     // SiT
  JiTSamplerOptions jit_sampler;              // JiT
  double noise_scale = 1.0;                   // JiT: the std of its starting noise
  Tensor<float> latents_scale, latents_bias;  // [E] (VAE models)
};

class SampleGenerator {
 public:
  virtual ~SampleGenerator() = default;
  /// labels [n] -> uint8 images [n, H, W, 3] on the host (grey models repeat their channel).
  virtual Tensor<std::uint8_t> generate(const Tensor<std::int64_t>& labels, std::uint64_t seed) = 0;
  virtual std::string where() const = 0;
};

/// x [B, C, H, W] in [-1, 1] -> uint8 [B, H, W, 3] as the reference converts samples:
/// clamp(255 (x + 1) / 2, 0, 255), truncated; one channel is repeated to three.
inline Tensor<std::uint8_t> to_rgb_uint8(const Tensor<float>& x) {
  const Tensor<std::uint8_t> u = decoded_to_uint8<float>(x.cview());  // [B, H, W, C]
  if (u.size(3) == 3) return Tensor<std::uint8_t>::copy_of(u.cview());
  IREPA_CHECK(u.size(3) == 1, "irepa-generate: samples with {} channels; expected 1 (grey) or 3 (RGB)", u.size(3));
  Tensor<std::uint8_t> rgb(Shape{u.size(0), u.size(1), u.size(2), 3});
  for (std::int64_t i = 0; i < u.numel(); ++i) rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = u[i];
  return rgb;
}

/// One batch on ctx's device: sample (sample_sit: noise and SDE draws from seed), decode through
/// the VAE when there is one (z / scale + bias first), convert to uint8.
template <class Ctx>
Tensor<std::uint8_t> generate_batch(const Ctx& ctx, const GenSiT<typename Ctx::device_type>& model,
                                    const SdVae<float, typename Ctx::device_type>* vae, const GenerateSpec& spec,
                                    const Tensor<std::int64_t>& labels, std::uint64_t seed) {
  using Dev = typename Ctx::device_type;
  const Tensor<double> x = sample_sit(ctx, model, labels.cview(), seed, spec.sampler);
  Tensor<float> xf(x.shape());
  for (std::int64_t i = 0; i < x.numel(); ++i) xf[i] = static_cast<float>(x[i]);
  if (!vae) return to_rgb_uint8(xf);
  const auto z = to_device(ctx, xf.cview());
  const auto scale = to_device(ctx, spec.latents_scale.cview()), bias = to_device(ctx, spec.latents_bias.cview());
  Tensor<float, Dev> u(z.shape());
  ops::unscale_latents<float>(ctx, z.cview(), scale.cview(), bias.cview(), u.view());
  return to_rgb_uint8(to_host(ctx, vae->decode(ctx, u.cview()).cview()));
}

/// A JiT's batch on ctx's device: its sampler (noise from seed), then uint8 as the JiT engine
/// rounds (metrics::rounded_uint8_images); JiT makes pixels, so there is no VAE.
template <class Ctx>
Tensor<std::uint8_t> generate_batch(const Ctx& ctx, const GenJiT<typename Ctx::device_type>& model,
                                    const SdVae<float, typename Ctx::device_type>* vae, const GenerateSpec& spec,
                                    const Tensor<std::int64_t>& labels, std::uint64_t seed) {
  IREPA_CHECK(vae == nullptr, "irepa-generate: a JiT makes pixels; it has no VAE");
  const Tensor<float> f = metrics::rounded_uint8_images(sample_jit(ctx, model, labels.cview(), seed, spec.jit_sampler, spec.noise_scale));
  Tensor<std::uint8_t> u(f.shape());
  for (std::int64_t i = 0; i < f.numel(); ++i) u[i] = static_cast<std::uint8_t>(f[i]);
  return u;
}

/// The generator on GPU `device` (a build with CUDA): the model (and VAE) copied from the host ones.
std::unique_ptr<SampleGenerator> make_cuda_generator(const GenSiT<>& model, const SdVae<float>* vae, GenerateSpec spec, int device,
                                                     const std::string& precision);
std::unique_ptr<SampleGenerator> make_cuda_generator(const GenJiT<>& model, const SdVae<float>* vae, GenerateSpec spec, int device,
                                                     const std::string& precision);

}  // namespace irepa::examples
