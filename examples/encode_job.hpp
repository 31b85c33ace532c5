#pragma once
// irepa-encode's model half: the SD-VAE that turns a batch of images into the posteriors a
// latent dataset stores, on the CPU (encode.cpp) or a GPU (encode_cuda.cu, compiled by nvcc;
// nvcc never sees the CPU model).

#include <memory>
#include <string>

#include <irepa/models/sd_vae.hpp>

namespace irepa::examples {

/// images [B, 3, R, R] in 0..255 (float) -> posteriors [B, 2E, R/f, R/f] (mean | std) on the host,
/// x = images / 127.5 - 1 as the reference's encode step (EDM2's encode_pixels) scales them.
class PosteriorEncoder {
 public:
  virtual ~PosteriorEncoder() = default;
  virtual Tensor<float> encode(const Tensor<float>& images) = 0;
  virtual std::string where() const = 0;
};

inline Tensor<float> scale_pixels(const Tensor<float>& images) {
  Tensor<float> x(images.shape());
  for (std::int64_t i = 0; i < x.numel(); ++i) x[i] = images[i] / 127.5f - 1.0f;
  return x;
}

/// The VAE on GPU `device` with fp32 / tf32 / bf16 products (encode_cuda.cu; a build with CUDA).
std::unique_ptr<PosteriorEncoder> make_cuda_posterior_encoder(const SdVae<float>& host, int device, const std::string& precision);

}  // namespace irepa::examples
